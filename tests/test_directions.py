"""Directions of arrival: far-field SRP-PHAT, MUSIC and NormMUSIC on plane waves built by hand,
linear arrays in a half-plane, and the measured arrays of ../shared/real when present."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sslkit
from conftest import assert_one_line_error, free_field_recording
from sslkit.errors import GeometryError, UserError
from sslkit.localization.directions import angle_between, azimuth_elevation, unit_vector
from sslkit.localization.track import read_positions
from sslkit.recording import Recording, SourceTrack

FS = 16000
C = 343.0
REAL = Path(__file__).parents[2] / "shared" / "real"


def plane_waves(mics: np.ndarray, directions_deg: list[tuple[float, float]], seconds: float = 1.0, seed: int = 0) -> Recording:
    """White-noise plane waves from the given (azimuth, elevation) reaching mics (M, 3): each mic
    hears source k delayed by −(rₘ − r̄)·uₖ / c (an exact fractional delay in the frequency domain)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    freqs = np.fft.rfftfreq(n, 1 / FS)
    audio = np.zeros((n, len(mics)))
    for az, el in directions_deg:
        spectrum = np.fft.rfft(rng.normal(size=n))
        delays = -(mics - mics.mean(0)) @ unit_vector(az, el) / C
        audio += np.fft.irfft(spectrum[None] * np.exp(-2j * np.pi * freqs[None] * delays[:, None]), n).T
    far = 100.0 * unit_vector(*np.array(directions_deg).T).reshape(-1, 3) + mics.mean(0)
    truth = SourceTrack(np.zeros(len(far)), np.arange(len(far)), far)
    return Recording((audio / np.abs(audio).max()).astype(np.float32), FS, [str(i + 1) for i in range(len(mics))], mics, truth, {"c": C})


def compact_array(seed: int = 1) -> np.ndarray:
    """12 mics at random inside a 20 cm ball (a compact 3D array)."""
    points = np.random.default_rng(seed).normal(size=(12, 3))
    return 0.1 * points / np.linalg.norm(points, axis=1, keepdims=True) * np.random.default_rng(seed + 1).uniform(0.3, 1, (12, 1))


def test_multilateration_that_locates_nothing_says_why():
    rec = plane_waves(compact_array(), [(40.0, 20.0)])  # a source 100 m away, far outside the default region
    track = sslkit.locate(rec, "multilat")
    assert np.isnan(track.xyz).all()
    assert any("no hop was located" in w and "--far-field" in w for w in track.warnings)
    near = sslkit.locate(free_field_recording(6, np.array([1.5, 2.0, 1.2])), "multilat")
    assert np.isfinite(near.xyz).any() and not any("no hop was located" in w for w in near.warnings)


@pytest.mark.parametrize("method", ["srp-phat", "music", "normmusic"])
def test_far_field_methods_find_a_plane_wave(method):
    rec = plane_waves(compact_array(), [(40.0, 20.0)])
    options = {"far_field": True} if method == "srp-phat" else {}
    track = sslkit.locate(rec, method, static=True, **options)
    assert np.isnan(track.xyz).all()  # directions only
    error = angle_between(unit_vector(track.azimuth, track.elevation), unit_vector(40.0, 20.0))
    assert error.max() < 1.0, (track.azimuth, track.elevation)


@pytest.mark.parametrize("method", ["music", "normmusic"])
def test_music_refuses_as_many_sources_as_mics(method):
    """With K ≥ M the noise subspace is empty and every direction scores alike: 4 mics and
    sources=4 answered elevations near 80° for talkers at 20° and 0°, without a word."""
    rec = plane_waves(compact_array()[:4], [(40.0, 20.0), (-60.0, 0.0)], seconds=0.5)
    with pytest.raises(UserError, match="at most M − 1 = 3 sources with 4 microphones"):
        sslkit.locate(rec, method, static=True, sources=4)
    assert len(sslkit.locate(rec, method, static=True, sources=3).azimuth) == 3


def test_far_field_srp_separates_two_plane_waves():
    rec = plane_waves(compact_array(3), [(40.0, 10.0), (-70.0, -5.0)])
    track = sslkit.locate(rec, "srp-phat", far_field=True, static=True, sources=2)
    from sslkit.evaluation import angular_errors

    errors, _ = angular_errors(track, rec.sources, rec.mics.mean(0))
    assert len(errors) == 2 and errors.max() < 2.0


def test_near_field_methods_give_directions_from_the_array_centroid():
    from sslkit.localization.track import PositionTrack

    track = PositionTrack(np.zeros(2), np.array([[1.0, 1.0, 0.0], [0.0, 3.0, 2.0]]), np.ones(2), np.zeros(2, int))
    track.fill_directions(np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(track.azimuth, [0.0, 90.0])
    np.testing.assert_allclose(track.elevation, [0.0, 45.0])
    az, el = azimuth_elevation(unit_vector(np.array([170.0, -30.0]), np.array([-10.0, 80.0])))
    np.testing.assert_allclose(az, [170.0, -30.0], atol=1e-9)
    np.testing.assert_allclose(el, [-10.0, 80.0], atol=1e-9)


def test_correlation_at_few_lags_equals_the_inverse_fft():
    from sslkit.gcc import correlation_at_lags, cross_spectra

    frames = torch.randn(3, 4, 2048)
    pairs = np.array([[0, 1], [1, 2], [3, 0]])
    for n_fft, upsample, max_lag in ((2100, 4, 11), (2048, 1, 20), (2059, 1, 5)):
        cross = cross_spectra(frames, pairs, n_fft)
        full = torch.fft.irfft(cross, n=n_fft * upsample) * upsample
        half = max_lag * upsample
        expected = torch.cat([full[..., -half:], full[..., : half + 1]], -1)
        torch.testing.assert_close(correlation_at_lags(cross, n_fft, max_lag, upsample), expected, atol=2e-7, rtol=0)


def linear_array_recording(source_xy: tuple[float, float]) -> Recording:
    """A 16-mic line along y (3 cm apart) and a near white-noise source in its plane (free field)."""
    mics = np.stack([np.zeros(16), 0.03 * np.arange(16), np.zeros(16)], 1)
    source = np.array([*source_xy, 0.0])
    n = FS
    rng = np.random.default_rng(0)
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / FS)
    delays = np.linalg.norm(mics - source, axis=1) / C
    audio = np.fft.irfft(spectrum[None] * np.exp(-2j * np.pi * freqs[None] * delays[:, None]), n).T
    truth = SourceTrack(np.zeros(1), np.zeros(1, int), source[None])
    return Recording((audio / np.abs(audio).max()).astype(np.float32), FS, [str(i + 1) for i in range(16)], mics, truth, {"c": C})


def test_a_linear_array_localizes_in_its_plane_on_the_side_the_bounds_give():
    rec = linear_array_recording((0.6, 0.3))
    with pytest.raises(GeometryError, match="mirror image"):
        sslkit.locate(rec, "srp-phat", dims=2, height=0.0, static=True)
    with pytest.raises(GeometryError, match="far-field"):
        sslkit.locate(rec, "srp-phat", static=True)
    for side, expected_x in (([[0.0, -1.0, -1.0], [2.0, 2.0, 1.0]], 0.6), ([[-2.0, -1.0, -1.0], [0.0, 2.0, 1.0]], -0.6)):
        for method in ("srp-phat", "multilat"):  # multilat found nothing: its minimal solver's system is singular on a line
            track = sslkit.locate(rec, method, dims=2, height=0.0, bounds=side, static=True)
            np.testing.assert_allclose(track.xyz[0], [expected_x, 0.3, 0.0], atol=0.02)


FAR_FIELD = {"srp-phat": {"far_field": True}, "music": {}, "normmusic": {}}


@pytest.mark.parametrize("method", FAR_FIELD)
def test_a_linear_array_gives_horizontal_directions_on_the_side_the_bounds_give(method):
    """A line of mics hears only a direction's angle from it: directions in 3D are refused, and in
    the horizontal plane the bounds pick one of the two mirror images about the line."""
    line = np.stack([np.zeros(16), 0.03 * np.arange(16), np.zeros(16)], 1)
    rec = plane_waves(line, [(30.0, 0.0)], seconds=0.5)
    with pytest.raises(GeometryError, match="^the recording: the microphones are collinear: .* angle between a direction and their line"):
        sslkit.locate(rec, method, static=True, **FAR_FIELD[method])
    with pytest.raises(GeometryError, match="mirror image about their line"):
        sslkit.locate(rec, method, static=True, dims=2, **FAR_FIELD[method])
    for x_range, expected in (((0.0, 5.0), 30.0), ((-5.0, 0.0), 150.0)):
        bounds = [[x_range[0], -5.0, -1.0], [x_range[1], 5.0, 1.0]]
        track = sslkit.locate(rec, method, static=True, dims=2, bounds=bounds, **FAR_FIELD[method])
        assert abs(track.azimuth[0] - expected) < 1.0 and track.horizontal, (x_range, track.azimuth, track.elevation)


def test_locate_gives_a_linear_arrays_directions_from_the_cli(tmp_path, cli):
    from sslkit.recording import save_recording

    line = np.stack([np.zeros(16), 0.03 * np.arange(16), np.zeros(16)], 1)
    folder = save_recording(tmp_path / "line", plane_waves(line, [(30.0, 0.0)], seconds=0.5))
    assert_one_line_error(cli("locate", folder, "--far-field", "--no-plot"), "collinear")
    result = cli("locate", folder, "--method", "music", "--dims", "2", "--bounds", "0,-5,-1,5,5,1", "--static", "--no-plot")
    assert result.exit_code == 0, result.output
    track = read_positions(folder / "positions.csv")
    assert abs(track.azimuth[0] - 30.0) < 1.0 and np.isnan(track.elevation[0])  # a horizontal direction: no elevation estimated


@pytest.mark.parametrize("method", FAR_FIELD)
def test_a_planar_array_reports_the_mirror_side_the_bounds_give(method):
    """A horizontal ring hears (az, el) and (az, −el) alike: without bounds the answer is above its
    plane, with a warning that says so; bounds below the plane give the direction below it."""
    phi = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    ring = np.stack([0.1 * np.cos(phi), 0.1 * np.sin(phi), np.full(8, 1.0)], 1)
    rec = plane_waves(ring, [(40.0, -25.0)], seconds=0.5)
    track = sslkit.locate(rec, method, static=True, **FAR_FIELD[method])
    assert any("toward +z" in note for note in track.warnings), track.warnings
    assert angle_between(unit_vector(track.azimuth, track.elevation), unit_vector(40.0, 25.0))[0] < 2.0
    below = sslkit.locate(rec, method, static=True, bounds=[[-9.0, -9.0, -9.0], [9.0, 9.0, 0.5]], **FAR_FIELD[method])
    assert not any("coplanar" in note for note in below.warnings)
    assert angle_between(unit_vector(below.azimuth, below.elevation), unit_vector(40.0, -25.0))[0] < 2.0


@pytest.mark.parametrize("method", FAR_FIELD)
def test_horizontal_directions_are_azimuths_and_scored_as_azimuths(method, tmp_path, cli):
    """A ring's horizontal search (--dims 2) estimates no elevation: positions.csv leaves it empty
    and evaluate scores the azimuth, where it counted the talker's 25° elevation as error."""
    from sslkit.evaluation import evaluate_track
    from sslkit.recording import save_recording

    phi = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    rec = plane_waves(np.stack([0.1 * np.cos(phi), 0.1 * np.sin(phi), np.full(8, 1.0)], 1), [(40.0, 25.0)], seconds=0.5)
    track = sslkit.locate(rec, method, dims=2, **FAR_FIELD[method])
    assert track.horizontal and np.isnan(track.elevation).all() and np.allclose(track.azimuth, 40.0, atol=1.0)
    angular = evaluate_track(track, rec.sources, rec.mics)["angular"]
    assert angular["horizontal"] and angular["median_deg"] < 1.0 and angular["accuracy_deg"] == 1.0
    in_3d = evaluate_track(sslkit.locate(rec, method, **FAR_FIELD[method]), rec.sources, rec.mics)["angular"]
    assert not in_3d["horizontal"] and in_3d["median_deg"] < 2.0
    folder = save_recording(tmp_path / "ring", rec)
    result = cli("locate", folder, "--method", method, "--dims", "2", *(["--far-field"] if method == "srp-phat" else []), "--out", tmp_path / "az.csv")
    assert result.exit_code == 0 and "azimuth error vs sources.csv" in " ".join(result.output.split()), result.output
    assert read_positions(tmp_path / "az.csv").horizontal and (tmp_path / "az.png").is_file()


def real_recording(tmp_path: Path, array: str, sources: str, seconds: float = 1.0, fitted: bool = False) -> Path:
    """A recording folder made by ../shared/real/make_recording.py with the bundled test voices."""
    voices = sorted((Path(sslkit.__file__).parents[1] / "sims" / "signals" / "test").glob("*.flac"))
    out = tmp_path / array.replace("/", "-")
    args = [sys.executable, str(REAL / "make_recording.py"), array, "--sources", sources, "--signals", ",".join(map(str, voices)),
            "--duration", str(seconds), "--out", str(out)] + (["--fitted"] if fitted else [])
    subprocess.run(args, check=True, capture_output=True)
    return out


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real is absent")
@pytest.mark.parametrize("method", ["srp-phat", "normmusic"])
def test_measured_spherical_array_gives_the_fitted_direction(tmp_path, method):
    folder = real_recording(tmp_path, "sofia-sphere/a3-rigid-r0.0875-110ch", "2", seconds=1.5)
    options = {"far_field": True} if method == "srp-phat" else {}
    track = sslkit.locate(sslkit.load_recording(folder), method, **options)
    fitted = unit_vector(16.2, 0.8)  # shared/real/README: the fit to the measured onsets
    assert np.median(angle_between(unit_vector(track.azimuth, track.elevation), fitted)) < 2.0


def test_cubic_reading_of_correlations_is_catmull_rom():
    """power_at_bins with second differences against the Catmull-Rom spline in its matrix form,
    neighbours beyond the ends clamped; without them, linear interpolation."""
    from sslkit.localization.srp import power_at_bins, second_differences

    generator = torch.Generator().manual_seed(0)
    corr = torch.randn(2, 7, 30, dtype=torch.float64, generator=generator)
    tau = torch.rand(2, 11, 7, dtype=torch.float64, generator=generator) * 28.999
    tau[0, 0] = 0.0  # the first bin and the last interval, where the clamping acts
    tau[1, 0] = 28.999
    low = tau.floor().long()
    t = tau - low
    p0, p1, p2, p3 = (corr.transpose(1, 2).gather(1, (low + shift).clamp(0, 29)) for shift in (-1, 0, 1, 2))
    spline = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    torch.testing.assert_close(power_at_bins(corr, tau, second_differences(corr)), spline.sum(-1), atol=1e-12, rtol=0)
    torch.testing.assert_close(power_at_bins(corr, tau), ((1 - t) * p1 + t * p2).sum(-1), atol=1e-12, rtol=0)


def test_far_field_srp_is_not_drawn_to_the_correlation_bins_on_a_small_ring():
    """A 6-mic ring 9.2 cm across (a ReSpeaker's size): far-field SRP-PHAT read the correlations by
    linear interpolation, whose maxima lie where the pairs' lags fall on bins: noise-free plane
    waves came out up to 3.5° off. Cubic interpolation: within a few tenths of a degree."""
    phi = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    ring = np.stack([0.046 * np.cos(phi), 0.046 * np.sin(phi), np.zeros(6)], 1)
    rng = np.random.default_rng(0)
    errors = []
    for seed in range(6):
        direction = (rng.uniform(0, 360), rng.uniform(5, 60))
        track = sslkit.locate(plane_waves(ring, [direction], seconds=0.5, seed=seed), "srp-phat", far_field=True, static=True)
        errors.append(angle_between(unit_vector(track.azimuth, track.elevation), unit_vector(*direction))[0])
    assert max(errors) < 0.5, errors


def test_music_peaks_are_local_maxima_not_the_flank_of_a_stronger_peak():
    """After the strongest peak and its 10° neighbourhood, the highest value left lay on that peak's
    flank: a broad peak beside a narrow weaker one gave the flank as the second source."""
    from sslkit.localization.music import find_peaks, first_grid, grid_neighbours

    grid, _ = first_grid(3)
    strong, weak = unit_vector(40.0, 0.0), unit_vector(120.0, 10.0)
    bump = lambda centre, width_deg: np.exp(-((angle_between(grid.numpy(), centre) / width_deg) ** 2))  # noqa: E731
    power = torch.as_tensor(2.0 * bump(strong, 30.0) + 0.5 * bump(weak, 5.0), dtype=torch.float32)[None]
    peaks = find_peaks(power, grid, grid_neighbours(grid, 3), 2)[0].numpy()
    assert angle_between(peaks, np.stack([strong, weak])).max() < 3.0, peaks


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real is absent")
def test_normmusic_finds_four_talkers_on_the_measured_sphere(tmp_path):
    """The four loudspeakers of the 110-point sphere at once: NormMUSIC's fourth direction was the
    flank of another talker's peak (29° off)."""
    folder = real_recording(tmp_path, "sofia-sphere/a3-rigid-r0.0875-110ch", "1,2,3,4", seconds=1.5, fitted=True)
    track = sslkit.locate(sslkit.load_recording(folder), "normmusic", static=True, sources=4)
    fitted = unit_vector(np.array([45.6, 16.2, 346.0, 316.1]), np.array([0.6, 0.8, 1.0, 1.3]))  # shared/real/README
    errors = angle_between(fitted[:, None], unit_vector(track.azimuth, track.elevation)[None]).min(axis=1)
    assert errors.max() < 2.0, errors


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real is absent")
@pytest.mark.parametrize("method", ["srp-phat", "multilat"])
def test_measured_linear_array_localizes_with_the_half_plane(tmp_path, method):
    folder = real_recording(tmp_path, "ula32-office", "3", fitted=True)
    rec = sslkit.load_recording(folder)
    track = sslkit.locate(rec, method, dims=2, height=0.0, bounds=[[0.0, -0.5, -1.0], [2.0, 1.5, 1.0]])
    errors, _ = sslkit.matched_errors(track, rec.sources)
    assert np.median(errors) < 0.08


def test_angular_errors_of_positions_without_directions_are_seen_from_the_centroid(tmp_path):
    """A positions.csv from elsewhere (x, y, z only) is scored by the directions of its positions."""
    from sslkit.errors import InputFileError
    from sslkit.evaluation import angular_errors
    from sslkit.localization.track import read_positions

    origin = np.array([1.0, 1.0, 1.0])
    truth = SourceTrack(np.zeros(1), np.zeros(1, int), np.array([[4.0, 1.0, 1.0]]))  # straight along +x
    pred = tmp_path / "pred.csv"
    pred.write_text("time,x,y,z\n0,2,2,1\n")  # 45° off, at any range
    errors, _ = angular_errors(read_positions(pred), truth, origin)
    np.testing.assert_allclose(errors, [45.0])
    pred.write_text("time,x,y,z,azimuth_deg,elevation_deg\n0,,,,30,400\n")
    with pytest.raises(InputFileError, match="line 2: elevation_deg 400"):
        read_positions(pred)


def test_direction_search_takes_a_neighbours_answer_only_where_it_has_more_power():
    from sslkit.gcc import frame_audio, frame_correlations, gcc_fft_length, mic_pairs
    from sslkit.localization.directions import DirectionSearch
    from sslkit.localization.srp import second_differences

    rec = plane_waves(compact_array(), [(40.0, 20.0)], seconds=0.5)
    pairs = mic_pairs("all", rec.n_mics)
    corr = frame_correlations(frame_audio(torch.as_tensor(rec.audio), 1024, 512), pairs, gcc_fft_length(1024, 10), 10, 4).float()
    search = DirectionSearch(rec.mics, pairs, corr.shape[-1], FS * 4 / C, 4, "cpu", seed_frames=3)
    found, power = search.best(corr)
    assert np.all(angle_between(found.numpy(), unit_vector(40.0, 20.0)) < 1.0)
    wrong = found.clone()
    wrong[5] = torch.as_tensor(unit_vector(-120.0, -30.0), dtype=torch.float32)  # as if the beam had missed the peak in frame 5
    curvature = second_differences(corr)
    wrong_power = search.power(corr, curvature, wrong[:, None])[:, 0]
    mended, mended_power = search.with_neighbours_answers(corr, curvature, wrong, wrong_power)
    assert angle_between(mended[5].numpy(), found[5].numpy()) < 0.3 and mended_power[5] >= 0.999 * power[5]
    assert torch.equal(mended[:5], found[:5]) and torch.all(mended_power >= wrong_power)


def test_far_field_methods_warn_when_the_room_is_the_arrays_near_field():
    """Directions from plane waves mean little for sources inside a room-sized array: the far-field
    methods say so when the room is known; a compact array in the same room is left alone."""
    for spread, warned in ((25.0, True), (1.0, False)):
        rec = plane_waves(compact_array() * spread + [2.5, 2.5, 1.2], [(40.0, 20.0)], seconds=0.5)
        rec.scene["room"] = {"dimensions": [5.0, 5.0, 2.5]}
        for method, options in (("srp-phat", {"far_field": True}), ("music", {})):
            notes = " ".join(sslkit.locate(rec, method, static=True, **options).warnings)
            assert ("near field" in notes) == warned, (spread, method, notes)
    rec = plane_waves(compact_array() * 25.0, [(40.0, 20.0)], seconds=0.5)
    assert not sslkit.locate(rec, "music", static=True).warnings  # no room known: nothing to judge by


def test_locate_scores_directions_of_a_far_field_method_even_for_near_sources(tmp_path, cli):
    """A far-field track holds no positions: its summary gives the direction error, not a capped
    3 m position error per hop."""
    from sslkit.evaluation import evaluate_track
    from sslkit.recording import save_recording

    rec = plane_waves(compact_array(), [(40.0, 20.0)])
    rec.sources = SourceTrack(np.zeros(1), np.zeros(1, int), rec.mics.mean(0)[None] + 1.0 * unit_vector(40.0, 20.0)[None])  # 1 m away
    track = sslkit.locate(rec, "srp-phat", far_field=True)
    metrics = evaluate_track(track, rec.sources, rec.mics)
    assert metrics["angular"]["median_deg"] < 1.0 and "mae_m" not in metrics  # no positions: scored by directions alone
    assert "angular" not in evaluate_track(track, rec.sources, rec.mics, angular=False)
    result = cli("locate", save_recording(tmp_path / "rec", rec), "--far-field", "--no-plot")
    assert result.exit_code == 0 and "direction error" in result.output and "MAE" not in result.output, result.output


def test_evaluate_scores_directions_only_predictions_by_their_directions(tmp_path, cli):
    """evaluate gave a far-field track 300 cm MAE and 0 % accuracy (every hop a missing position)
    beside its direction error; its position columns are now empty and its CDF is in degrees."""
    import json

    from sslkit.recording import save_recording

    rec = plane_waves(compact_array(), [(40.0, 20.0)])
    rec.sources = SourceTrack(np.zeros(1), np.zeros(1, int), rec.mics.mean(0)[None] + 1.0 * unit_vector(40.0, 20.0)[None])  # 1 m away
    folder = save_recording(tmp_path / "rec", rec)
    assert cli("locate", folder, "--far-field", "--no-plot", "--out", tmp_path / "ff.csv").exit_code == 0
    assert cli("locate", folder, "--method", "srp-phat", "--no-plot", "--out", tmp_path / "near.csv").exit_code == 0
    result = cli("evaluate", "--pred", tmp_path / "ff.csv", "--pred", tmp_path / "near.csv", "--truth", folder / "sources.csv", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["results"]
    far, near = metrics[str(tmp_path / "ff.csv")], metrics[str(tmp_path / "near.csv")]
    assert "mae_m" not in far and far["angular"]["median_deg"] < 1.0 and "mae_m" in near
    assert result.output.count("–") >= 3 and "direction error median" in " ".join(result.output.split())  # lines wrap at the console's width


def test_the_plot_of_a_far_field_track_shows_its_directions(monkeypatch, tmp_path):
    """positions.png of a far-field track had empty x, y, z panels: it now shows the directions
    over time, beside the truth's, and draws them in the top view from the mics' centroid."""
    import sslkit.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    rec = plane_waves(compact_array(), [(40.0, 20.0)])
    track = sslkit.locate(rec, "srp-phat", far_field=True)
    plots.plot_track(tmp_path / "p.png", track, rec.mics, np.array([[-5.0, -5.0, -5.0], [5.0, 5.0, 5.0]]), rec.sources)
    panels = {ax.get_ylabel(): ax for ax in figures[0].axes}
    assert "azimuth (°)" in panels and "elevation (°)" in panels and "x (m)" not in panels
    estimated = panels["azimuth (°)"].lines[0].get_ydata()
    assert len(estimated) == len(track.times) and np.allclose(estimated, 40.0, atol=1.0)
    assert np.allclose(panels["elevation (°)"].lines[1].get_ydata(), 20.0, atol=1e-6)  # the truth, static


def test_locate_keeps_its_result_when_the_truth_cannot_be_compared(cli, tmp_path):
    """A talker 100 m from a 20 cm array, located near-field inside the array's box: the comparison
    with sources.csv takes the estimates for centimetres. locate ended in that error (exit 2) after
    writing positions.csv, and left no plot; the result now stands and only its score is left out."""
    from sslkit.recording import save_recording

    folder = save_recording(tmp_path / "rec", plane_waves(compact_array(), [(40.0, 20.0)], seconds=0.5))
    result = cli("locate", folder, "--method", "srp-phat")
    assert result.exit_code == 0, result.output
    assert "not scored against sources.csv" in result.stderr and "MAE" not in result.stdout
    assert (folder / "positions.csv").is_file() and (folder / "positions.png").is_file()

