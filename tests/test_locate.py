"""Multilateration against exact and corrupted synthetic TDOAs, SRP-PHAT, and `locate`/`evaluate` as products."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FS, SPEED_OF_SOUND, assert_one_line_error, free_field_recording
from sslkit.errors import GeometryError
from sslkit.evaluation import matched_errors, summarize_errors
from sslkit.geometry import array_span, bounds_side, check_array_geometry, mirror_normal, on_known_side, range_differences
from sslkit.localization.directions import unit_vector
from sslkit.localization.multilat import RansacOptions, mirror_star_solutions, pool_frames, ransac_multilaterate, refine, star_solutions
from sslkit.localization.track import PositionTrack, read_positions, smooth_track
from sslkit.recording import SourceTrack, load_recording, write_mics

TOL_POS_M = 0.005
MICS = np.array([
    [5.9, 5.7, 1.15], [6.4, 3.4, 0.05], [4.8, 0.9, 1.57], [2.4, 0.5, 1.1], [0.4, 3.9, 1.37], [1.1, 6.5, 1.55],
    [5.7, 3.2, 0.21], [5.3, 1.6, 0.2], [3.6, 0.6, 0.21], [1.6, 1.2, 0.14], [0.6, 4.7, 0.15],
])
PAIRS = np.stack(np.triu_indices(len(MICS), k=1), axis=1)
BOUNDS = np.array([[0.0, 0.0, 0.0], [7.0, 8.0, 2.0]])


def sources(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform([1.0, 1.0, 0.5], [6.0, 7.0, 1.8], (n, 3))


def test_minimal_solver_recovers_exact_position():
    src = sources(50)
    ref, others = MICS[0], MICS[[3, 5, 8]]
    delta = np.linalg.norm(src[:, None] - others, axis=-1) - np.linalg.norm(src - ref, axis=-1)[:, None]
    roots = star_solutions(np.repeat(ref[None], 50, 0), np.repeat(others[None], 50, 0), delta, np.ones(3, bool), np.zeros(3))
    err = np.nanmin(np.linalg.norm(roots - src[:, None], axis=-1), axis=1)
    assert np.all(err < 1e-8)


def unit(v) -> np.ndarray:
    return np.asarray(v, float) / np.linalg.norm(v)


@pytest.mark.parametrize(("shape", "dims"), [("plane", 3), ("line", 2), ("wall", 2)])
def test_minimal_solver_of_lines_and_planes_recovers_positions_and_their_mirror_images(shape, dims):
    """Where the mics lie on a line or in a plane (star_solutions' system is singular): a tilted
    plane in 3D, a tilted line with the search plane at another height, a vertical plane in 2D.
    The two roots are the source and its mirror image."""
    rng = np.random.default_rng(5)
    directions = {"plane": [unit([1.0, 0.2, 0.3]), unit([-0.1, 1.0, 0.4])], "line": [unit([0.6, 0.7, 0.1])],
                  "wall": [unit([1.0, 0.3, 0.0]), [0.0, 0.0, 1.0]]}[shape]
    mics = np.array([3.0, 4.0, 1.0]) + rng.uniform(-1, 1, (6, len(directions))) @ np.array(directions)
    src = sources(40, seed=3)
    if dims == 2:
        src[:, 2] = 0.8
    ref, others = mics[0], mics[1 : dims + 1]
    delta = np.linalg.norm(src[:, None] - others, axis=-1) - np.linalg.norm(src - ref, axis=-1)[:, None]
    across = mirror_normal(mics, dims)
    roots = mirror_star_solutions(np.repeat(ref[None], 40, 0), np.repeat(others[None], 40, 0), delta, array_span(mics), across,
                                  0.8 if dims == 2 else None)
    mirror = src - 2 * ((src - mics.mean(0)) @ across)[:, None] * across
    for root in (src, mirror):
        assert np.all(np.nanmin(np.linalg.norm(roots - root[:, None], axis=-1), axis=1) < 1e-7), shape


def test_coplanar_mics_multilaterate_on_the_side_the_bounds_give():
    """A table of mics (z = 1): the minimal solutions used to be singular and every frame empty."""
    table = MICS.copy()
    table[:, 2] = 1.0
    src = sources(10, seed=2)
    src[:, 2] = np.abs(src[:, 2] - 1.0) + 1.1  # above the table
    tdoa = range_differences(src, table, PAIRS)[..., None] / SPEED_OF_SOUND
    above = np.array([[0.0, 0.0, 1.0], [7.0, 8.0, 3.0]])
    np.testing.assert_allclose(ransac_multilaterate(table, PAIRS, tdoa, RansacOptions(bounds=above))["xyz"], src, atol=1e-6)


def test_exact_tdoas_give_exact_positions():
    src = sources(30, seed=1)
    tdoa = range_differences(src, MICS, PAIRS)[..., None] / SPEED_OF_SOUND
    out = ransac_multilaterate(MICS, PAIRS, tdoa, RansacOptions(bounds=BOUNDS))
    np.testing.assert_allclose(out["xyz"], src, atol=1e-6)
    assert np.all(out["n_inliers"] == len(PAIRS)) and np.all(out["confidence"] > 0.99)


def test_gross_outliers_and_spurious_peaks_are_rejected():
    rng = np.random.default_rng(2)
    src = sources(40, seed=2)
    true = range_differences(src, MICS, PAIRS) / SPEED_OF_SOUND
    spurious = rng.uniform(-0.02, 0.02, (*true.shape, 3))
    first = np.where(rng.random(true.shape) < 0.3, rng.uniform(-0.02, 0.02, true.shape), true)  # 30 % gross outliers
    tdoa = np.concatenate([first[..., None], spurious], axis=-1)
    scores = np.broadcast_to([0.4, 0.2, 0.2, 0.2], tdoa.shape)
    out = ransac_multilaterate(MICS, PAIRS, tdoa, RansacOptions(bounds=BOUNDS, hypotheses=800), scores)
    err = np.linalg.norm(out["xyz"] - src, axis=1)
    assert np.nanmedian(err) < TOL_POS_M
    assert np.mean(err < 0.05) > 0.9  # a stray peak within the threshold can nudge a few frames by cm
    # plain least squares on the strongest peaks is ruined by the same outliers
    plain, _, _ = refine(np.repeat(MICS.mean(0)[None], len(src), 0), MICS, PAIRS, first[..., None] * SPEED_OF_SOUND,
                         RansacOptions(threshold=1e6), np.ones(3, bool))
    assert np.median(np.linalg.norm(plain - src, axis=1)) > 10 * np.nanmedian(err)


def test_inconsistent_frames_are_nan_with_zero_confidence():
    rng = np.random.default_rng(3)
    tdoa = rng.uniform(-0.02, 0.02, (10, len(PAIRS), 1))
    out = ransac_multilaterate(MICS, PAIRS, tdoa, RansacOptions(bounds=BOUNDS))
    assert np.all(np.isnan(out["xyz"])) and np.all(out["confidence"] == 0)


def test_two_dimensional_mode_with_known_height():
    src = sources(10, seed=4)
    src[:, 2] = 1.2
    pairs = np.stack(np.triu_indices(4, k=1), axis=1)
    tdoa = range_differences(src, MICS[:4], pairs)[..., None] / SPEED_OF_SOUND
    out = ransac_multilaterate(MICS[:4], pairs, tdoa, RansacOptions(dims=2, height=1.2, bounds=BOUNDS))
    np.testing.assert_allclose(out["xyz"], src, atol=1e-6)


def test_degenerate_geometry():
    with pytest.raises(GeometryError, match=r"rec/: 3D localization needs at least 4 microphones, got 3; with 3, localize in a plane"):
        check_array_geometry(MICS[:3], 3, where="rec/")
    planar = MICS.copy()
    planar[:, 2] = 1.0
    assert "coplanar" in check_array_geometry(planar, 3)
    assert "coplanar" in check_array_geometry(planar, 3, np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 2.0]]))  # both sides of z = 1
    assert check_array_geometry(planar, 3, np.array([[0.0, 0.0, 1.0], [5.0, 5.0, 2.5]])) is None  # above the plane only
    assert check_array_geometry(planar, 2) is None
    line = np.outer(np.arange(5), [1.0, 0.5, 0.0])
    with pytest.raises(GeometryError, match="collinear"):
        check_array_geometry(line, 2)


def test_the_unheard_mirror_of_lines_and_planes():
    """The mirror a degenerate array cannot hear, and the sides of it a search box covers: in 2D a
    box that spans both sides of a line's vertical plane is refused at any search height (it was
    accepted when the plane lay above or below the line), as is a vertical plane's mirror."""
    line = np.stack([np.zeros(5), 0.1 * np.arange(5), np.zeros(5)], 1)  # along y at z = 0
    np.testing.assert_allclose(mirror_normal(line, 2), [1.0, 0.0, 0.0], atol=1e-12)
    both_sides = np.array([[-1.0, -1.0, 0.3], [3.0, 2.0, 0.3]])  # the 2D search plane at z = 0.3
    with pytest.raises(GeometryError, match="mirror image about their line"):
        check_array_geometry(line, 2, both_sides)
    assert check_array_geometry(line, 2, np.array([[0.0, -1.0, 0.3], [3.0, 2.0, 0.3]])) is None
    with pytest.raises(GeometryError, match="vertical line"):
        check_array_geometry(line[:, [2, 0, 1]], 2)  # along z
    wall = MICS.copy()
    wall[:, 0] = 0.5  # a vertical plane x = 0.5
    np.testing.assert_allclose(mirror_normal(wall, 2), [1.0, 0.0, 0.0], atol=1e-12)
    with pytest.raises(GeometryError, match="in a vertical plane"):
        check_array_geometry(wall, 2, np.array([[0.0, 0.0, 1.0], [5.0, 5.0, 1.0]]))
    assert check_array_geometry(wall, 3).endswith("give --bounds on one side of the plane")  # --dims 2 would not help it
    assert bounds_side(wall, np.array([[-3.0, 0.0, 0.0], [0.5, 5.0, 2.0]]), mirror_normal(wall, 2)) == -1
    table = MICS.copy()
    table[:, 2] = 1.0
    assert mirror_normal(table, 2) is None  # horizontal directions and positions are their own mirror images
    np.testing.assert_allclose(mirror_normal(table, 3), [0.0, 0.0, 1.0], atol=1e-12)
    assert mirror_normal(MICS, 3) is None


def test_directions_reflected_to_the_known_side_keep_their_tdoas():
    table = MICS.copy()
    table[:, 2] = 1.0
    u = unit_vector(np.array([10.0, 120.0, -60.0]), np.array([30.0, -40.0, -5.0]))
    below = np.array([[-9.0, -9.0, -9.0], [9.0, 9.0, 1.0]])
    for bounds, sign in ((None, 1), (below, -1)):
        side = on_known_side(u, table, 3, bounds)
        assert np.all(np.sign(side[:, 2]) == sign)
        np.testing.assert_allclose((table - table.mean(0)) @ side.T, (table - table.mean(0)) @ u.T, atol=1e-12)
    np.testing.assert_array_equal(on_known_side(u, MICS, 3, None), u)


def test_pooling_and_smoothing():
    times = np.arange(6.0)
    tdoa = np.arange(6 * 2 * 1, dtype=float).reshape(6, 2, 1)
    t, pooled, _ = pool_frames(times, tdoa, tdoa, 3)
    assert t.tolist() == [1.0, 4.0] and pooled.shape == (2, 2, 3)
    assert pooled[0, 1].tolist() == [1.0, 3.0, 5.0]
    xyz = np.zeros((7, 3))
    xyz[3] = 10.0
    xyz[5] = np.nan
    smooth = smooth_track(xyz, 3)
    assert smooth[3].tolist() == [0.0, 0.0, 0.0] and np.isnan(smooth[5]).all()


@pytest.mark.filterwarnings("ignore:All-NaN slice")
@pytest.mark.parametrize("window", [1, 2, 4, 5, 13, 1000])
def test_running_median_of_any_window_against_brute_force(window):
    """Even windows (once a shape error) reach one frame further back than forward; windows wider
    than the track take all of it."""
    xyz = np.random.default_rng(window).normal(size=(9, 3))
    xyz[[2, 6]] = np.nan
    before, after = window // 2, window - 1 - window // 2
    expected = np.array([np.nanmedian(xyz[max(0, i - before) : i + after + 1], axis=0) for i in range(len(xyz))])
    expected[np.isnan(xyz)] = np.nan
    np.testing.assert_array_equal(smooth_track(xyz, window), expected)
    assert smooth_track(np.zeros((0, 3)), window).shape == (0, 3)


def test_metrics_on_hand_made_errors():
    truth = SourceTrack(np.array([0.0, 1.0, 2.0]), np.zeros(3, int), np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]]))
    pred = PositionTrack(np.array([0.5, 1.5, 2.0, 5.0]), np.array([[0.5, 0.1, 0], [1.5, 0, 0.5], [np.nan] * 3, [0, 0, 0]]),
                         np.ones(4), np.zeros(4, int))
    err = matched_errors(pred, truth, truncate=3.0)[0]
    np.testing.assert_allclose(err, [0.1, 0.5, 3.0])  # the last estimate lies outside the truth's span
    m = summarize_errors(err, threshold=0.3, n_boot=200)
    assert m["accuracy"] == pytest.approx(1 / 3) and m["mae_m"] == pytest.approx(3.6 / 3) and m["median_m"] == pytest.approx(0.5)
    assert m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1]


@pytest.mark.parametrize("truth_at, found_at, mixed_up", [
    (3.0, 0.03, False),  # near-field estimates collapsed onto a compact array at the origin: errors to score
    (3.0, 300.0, True),  # estimates in centimetres
    (0.5, 500.0, True),  # in millimetres
    (2500.0, 2.5, True),  # the truth in millimetres
])
def test_estimates_in_other_units_are_told_from_estimates_far_off(truth_at, found_at, mixed_up):
    truth = SourceTrack(np.array([0.0, 2.0]), np.zeros(2, int), np.array([[truth_at, 0, 0]] * 2))
    pred = PositionTrack(np.array([0.5, 1.5]), np.array([[found_at, 0, 0], [0, found_at, 0]]), np.ones(2), np.zeros(2, int))
    if mixed_up:
        with pytest.raises(GeometryError, match="millimetres or centimetres"):
            matched_errors(pred, truth)
    else:
        np.testing.assert_allclose(matched_errors(pred, truth, truncate=None)[0], [truth_at - found_at, np.hypot(truth_at, found_at)])


@pytest.fixture(scope="module")
def luvira_recording(tmp_path_factory):
    """A 3 s static speech source in the LuViRA room (RT60 0.2 s)."""
    from sslkit.recording import save_recording
    from sslkit.sims.room import simulate
    from sslkit.sims.scene import resolve_scene

    scene = resolve_scene({"fs": FS, "duration": 3.0, "room": {"dimensions": [7.0, 8.0, 2.0], "rt60": 0.2},
                           "mics": {"file": "luvira"}, "sources": [{"signal": "speech/test", "position": [3.0, 5.0, 1.3]}],
                           "noise": {"snr_db": 30}}, seed=1)
    folder = tmp_path_factory.mktemp("luvira") / "rec"
    save_recording(folder, simulate(scene)[0])
    return folder


def test_locate_cli_multilat_beats_plain_least_squares(cli, luvira_recording, tmp_path):
    out = tmp_path / "pos.csv"
    result = cli("locate", luvira_recording, "--method", "multilat", "--window", "0", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[0] == "time,x,y,z,confidence,n_inliers,track,azimuth_deg,elevation_deg"
    assert (tmp_path / "pos.png").stat().st_size > 10_000
    rec = load_recording(luvira_recording)
    track = read_positions(out)
    robust = matched_errors(track, rec.sources)[0]
    assert np.mean(robust < 0.3) > 0.8
    from sslkit.tdoa import estimate_tdoa

    res = estimate_tdoa(rec, peaks=1)
    plain, _, _ = refine(np.repeat(rec.mics.mean(0)[None], len(res.times), 0), rec.mics, res.pairs,
                         np.nan_to_num(res.tdoa) * SPEED_OF_SOUND, RansacOptions(threshold=1e6), np.ones(3, bool))
    plain_err = matched_errors(PositionTrack(res.times, plain, np.ones(len(plain)), np.zeros(len(plain), int)), rec.sources)[0]
    assert np.mean(robust) < 0.5 * np.mean(plain_err)


def test_locate_srp_and_tdoa_csv_input_and_evaluate(cli, luvira_recording, tmp_path):
    assert cli("locate", luvira_recording, "--method", "srp-phat", "--out", tmp_path / "srp.csv", "--no-plot").exit_code == 0
    assert not (tmp_path / "srp.png").exists()
    assert cli("tdoa", luvira_recording, "--peaks", 4, "--out", tmp_path / "tdoa.csv").exit_code == 0
    assert cli("locate", luvira_recording, "--method", "multilat", "--tdoa", tmp_path / "tdoa.csv", "--out", tmp_path / "ml.csv").exit_code == 0
    estimation_only = cli("locate", luvira_recording, "--method", "multilat", "--tdoa", tmp_path / "tdoa.csv", "--peaks", 2, "--window", 0.2,
                          "--out", tmp_path / "ignored.csv")  # would change nothing: the TDOAs are in the file
    assert_one_line_error(estimation_only, "peaks", "window", "how TDOAs are estimated")
    assert not (tmp_path / "ignored.csv").exists()
    result = cli("evaluate", "--pred", tmp_path / "srp.csv", "--pred", tmp_path / "ml.csv", "--truth",
                 luvira_recording / "sources.csv", "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["results"]
    assert set(metrics) == {str(tmp_path / "srp.csv"), str(tmp_path / "ml.csv")}
    assert all(m["accuracy"] > 0.8 for m in metrics.values())
    assert (tmp_path / "eval" / "error_cdf.png").is_file()


def test_locate_and_evaluate_bad_input(cli, luvira_recording, tmp_path):
    rec = load_recording(luvira_recording)
    three = tmp_path / "three.csv"
    write_mics(three, rec.mic_ids[:3], rec.mics[:3])
    out = tmp_path / "o.csv"
    assert_one_line_error(cli("locate", luvira_recording, "--method", "beamform", "--out", out), "unknown --method")
    assert_one_line_error(cli("locate", luvira_recording / "audio.wav", "--mics", three, "--out", out), "11 channels", "3 microphones")
    assert_one_line_error(cli("locate", luvira_recording, "--method", "multilat", "--tdoa", "ngcc", "--checkpoint", tmp_path / "x.pt", "--out", out), "no such checkpoint")
    assert_one_line_error(cli("locate", luvira_recording, "--bounds", "1,2,3", "--out", out), "--bounds")
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("time,x,y,z\n0.0,1,2,oops\n")
    assert_one_line_error(cli("evaluate", "--pred", bad, "--truth", luvira_recording / "sources.csv", "--out", tmp_path / "e"), "line 2")
    assert_one_line_error(cli("evaluate", "--pred", tmp_path / "none.csv", "--truth", luvira_recording / "sources.csv"), "no such file")
    assert not (tmp_path / "e").exists()
    assert cli("locate", luvira_recording, "--no-plot", "--out", tmp_path / "p.csv").exit_code == 0
    scored = ("evaluate", "--pred", tmp_path / "p.csv", "--truth", luvira_recording / "sources.csv", "--out", tmp_path / "e")
    assert_one_line_error(cli(*scored, "--truncate", 2, "--no-truncate"), "contradict each other")
    assert_one_line_error(cli(*scored, "--no-angular", "--mics", luvira_recording / "mics.csv"), "serve the angular errors only")
    assert not (tmp_path / "e").exists()


def test_locate_warns_on_coplanar_mics(cli, luvira_recording, tmp_path):
    rec = load_recording(luvira_recording)
    flat = rec.mics.copy()
    flat[:, 2] = 1.0
    write_mics(tmp_path / "flat.csv", rec.mic_ids, flat)
    result = cli("locate", luvira_recording / "audio.wav", "--mics", tmp_path / "flat.csv", "--out", tmp_path / "p.csv", "--no-plot")
    assert result.exit_code == 0
    assert "coplanar" in result.stderr


def test_srp_phat_of_many_mics_widens_its_first_cells_instead_of_refusing(monkeypatch):
    """40 ad-hoc mics with 1 GB of memory free: the first level's steering at 10 cm cells would take
    2 GB (it was refused; 110 mics in the LuViRA room were refused at 40 GB). The cells widen until
    it fits its budget, the frames come in batches that fit, and the talker is found."""
    import sslkit
    import sslkit.localization.srp as srp
    import sslkit.resources

    source = np.array([2.2, 1.4, 1.1])
    rec = free_field_recording(40, source, seed=1)
    monkeypatch.setattr(sslkit.resources, "available_memory", lambda: 2**30)
    monkeypatch.setattr(srp, "STEERING_BUDGET_BYTES", 2**28)
    bounds = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 2.5]])
    step = srp.first_level_step(bounds, 780, None)
    assert step > srp.COARSE_STEP and np.prod(srp.cell_counts(bounds, step)) * 780 * srp.STEERING_BYTES <= 2**28
    assert srp.first_level_step(bounds, 6, None) == srp.COARSE_STEP and srp.first_level_step(bounds, 780, 0.3) == 0.3
    track = sslkit.locate(rec, "srp-phat", window=0.25)
    assert np.nanmedian(np.linalg.norm(track.xyz - source, axis=1)) < 0.02


@pytest.mark.parametrize(("option", "value"), [("final_step", -1.0), ("final_step", 0.0), ("coarse_step", 0.0), ("coarse_step", float("nan")), ("coarse_step", "a")])
def test_srp_search_cells_must_have_a_positive_side(option, value):
    """The library took any cell side: a negative leaf side searched forever, a zero or NaN first
    level crashed in argmax. The CLI's --resolution had its own bound."""
    import sslkit
    from sslkit.errors import UserError

    rec = free_field_recording(8, np.array([2.0, 1.5, 1.2]))
    with pytest.raises(UserError, match=f"{option} = .*positive number of metres"):
        sslkit.locate(rec, "srp-phat", static=True, **{option: value})

