"""Room simulation checked against physics, and `sslkit simulate` as a product."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import FS, SPEED_OF_SOUND, assert_one_line_error, small_scene
from sslkit.recording import load_recording
from sslkit.sims.acoustics import measure_rt60
from sslkit.sims.noise import diffuse_coherence, make_noise
from sslkit.sims.room import compute_rirs, simulate
from sslkit.sims.scene import RoomSpec, list_presets, load_template, resolve_scene
from sslkit.sims.trajectory import positions_at

TOL_DELAY_SAMPLES = 0.5
TOL_RT60_REL = 0.15
TOL_SNR_DB = 0.05


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_rir_decay_matches_requested_rt60(rt60):
    dims = [6.0, 5.0, 3.0]
    mics = np.array([[2.0, 2.0, 1.5], [4.0, 3.0, 1.2]])
    rirs = compute_rirs(RoomSpec(dims, rt60=rt60), FS, SPEED_OF_SOUND, mics, np.array([[3.0, 1.0, 1.6]]), np.random.default_rng(0))
    for m in range(2):
        measured = measure_rt60(rirs[m, 0], FS)
        assert abs(measured - rt60) / rt60 < TOL_RT60_REL, (m, measured)


def test_direct_path_delay_is_distance_over_c():
    mics = np.array([[1.0, 1.0, 1.0], [3.5, 2.5, 1.8]])
    src = np.array([[2.2, 3.1, 1.3]])
    rirs = compute_rirs(RoomSpec([5.0, 4.0, 3.0], absorption=0.9, max_order=0), FS, SPEED_OF_SOUND, mics, src, np.random.default_rng(0))
    dist = np.linalg.norm(mics - src, axis=1)
    peaks = np.argmax(np.abs(rirs[:, 0]), axis=1)
    np.testing.assert_allclose(peaks, dist / SPEED_OF_SOUND * FS, atol=TOL_DELAY_SAMPLES)
    # and the recorded signals: the cross-correlation peak is the distance difference / c
    scene = resolve_scene(small_scene(room={"dimensions": [5.0, 4.0, 3.0], "absorption": 0.99, "max_order": 0},
                                      mics={"positions": mics.tolist()}, sources=[{"signal": "noise", "position": src[0].tolist()}],
                                      noise={}))
    rec, _ = simulate(scene)
    x1, x2 = rec.audio[:, 0], rec.audio[:, 1]
    cc = np.fft.irfft(np.fft.rfft(x2, 2 * len(x1)) * np.conj(np.fft.rfft(x1, 2 * len(x1))))
    lag = np.argmax(np.concatenate([cc[-100:], cc[:101]])) - 100
    assert abs(lag - (dist[1] - dist[0]) / SPEED_OF_SOUND * FS) <= 1


def test_measured_snr_matches_requested():
    scene = resolve_scene(small_scene(noise={"snr_db": 10.0}), seed=3)
    noisy, _ = simulate(scene)
    scene.snr_db = None
    clean, _ = simulate(scene)
    noise = noisy.audio - clean.audio
    snr = 10 * np.log10(np.mean(clean.audio.astype(float) ** 2) / np.mean(noise.astype(float) ** 2))
    assert abs(snr - 10.0) < TOL_SNR_DB


def test_diffuse_noise_follows_sinc_coherence():
    mics = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    x = make_noise("diffuse", mics, 20 * FS, FS, np.random.default_rng(0))
    from scipy.signal import csd, welch

    f, pxy = csd(x[:, 0], x[:, 1], fs=FS, nperseg=512)
    _, pxx = welch(x[:, 0], fs=FS, nperseg=512)
    _, pyy = welch(x[:, 1], fs=FS, nperseg=512)
    coherence = np.real(pxy) / np.sqrt(pxx * pyy)
    expected = diffuse_coherence(mics, f)[:, 0, 1]
    assert np.max(np.abs(coherence - expected)[5:-5]) < 0.1


def test_trajectory_is_smooth_at_constant_speed():
    waypoints = np.array([[1.0, 1.0, 1.2], [3.0, 2.0, 1.4], [2.0, 4.0, 1.2]])
    t = np.linspace(0, 6, 6001)
    pos = positions_at(waypoints, 0.5, t)
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=1) / np.diff(t)
    assert np.allclose(speed[speed > 0.05], 0.5, rtol=0.02)
    np.testing.assert_allclose(pos[0], waypoints[0])


def test_moving_source_delay_follows_trajectory():
    """The direct-path arrival at each mic tracks the moving source (block crossfade is smooth)."""
    scene = resolve_scene(small_scene(
        duration=2.0, room={"dimensions": [5.0, 4.0, 3.0], "absorption": 0.99, "max_order": 0}, noise={},
        sources=[{"signal": "noise", "trajectory": {"waypoints": [[1.0, 3.0, 1.5], [4.0, 3.0, 1.5]], "speed": 1.0}}],
    ))
    rec, _ = simulate(scene)
    mics = np.array(scene.mics)
    win = 2048
    for start in (2000, 14000, 26000):
        x = rec.audio[start:start + win].astype(float)
        src = positions_at(np.array(scene.sources[0].waypoints), 1.0, np.array([(start + win / 2) / FS]))[0]
        d = np.linalg.norm(mics - src, axis=1)
        cc = np.fft.irfft(np.fft.rfft(x[:, 1], 2 * win) * np.conj(np.fft.rfft(x[:, 0], 2 * win)))
        lag = np.argmax(np.concatenate([cc[-60:], cc[:61]])) - 60
        assert abs(lag - (d[1] - d[0]) / SPEED_OF_SOUND * FS) <= 1.5


def test_presets_resolve_and_luvira_has_near_channel():
    assert {"ngcc-train", "ngcc-test", "luvira-sim", "tetra-seld"} <= set(list_presets())
    scene = resolve_scene(load_template("luvira-sim"), seed=1)
    assert len(scene.mics) == 11 and len(scene.mic_ids) == 12 and scene.near_source
    assert 0 < scene.room.rt60 < 0.4
    test = load_template("ngcc-test")
    cells = {(resolve_scene(test, 0, i).room.rt60, resolve_scene(test, 0, i).snr_db) for i in range(30)}
    assert len(cells) == 30


def test_simulate_cli_writes_recording_and_resimulates_bit_for_bit(cli, tmp_path):
    cfg = tmp_path / "scene.yml"
    cfg.write_text(yaml.safe_dump(small_scene()))
    result = cli("simulate", "--config", cfg, "--out", tmp_path / "rec", "--seed", 4, "--save-rirs")
    assert result.exit_code == 0, result.output
    rec = load_recording(tmp_path / "rec")
    assert rec.audio.shape == (FS // 2, 4) and rec.audio.dtype == np.float32
    assert rec.sources is not None and np.allclose(rec.sources.xyz, [3.0, 2.0, 1.5])
    assert (tmp_path / "rec" / "rirs.npz").is_file()
    result = cli("simulate", "--config", tmp_path / "rec" / "scene.yaml", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(load_recording(tmp_path / "again").audio, rec.audio)


def test_dataset_is_indexed_and_resumable(cli, tmp_path):
    cfg = tmp_path / "data.yml"
    cfg.write_text(yaml.safe_dump(small_scene(room={"dimensions": [4.0, 3.0, 2.5], "rt60": {"uniform": [0.2, 0.4]}})))
    out = tmp_path / "data"
    assert cli("simulate", "--config", cfg, "--count", 3, "--out", out, "--workers", 1).exit_code == 0
    index = (out / "index.csv").read_text().splitlines()
    assert len(index) == 4 and index[0].startswith("scene,folder")
    kept = (out / "scene_00000" / "audio.wav").stat().st_mtime_ns
    redo = out / "scene_00001" / "audio.wav"
    first = load_recording(out / "scene_00001").audio
    import shutil

    shutil.rmtree(out / "scene_00001")
    assert cli("simulate", "--config", cfg, "--count", 3, "--out", out, "--workers", 2).exit_code == 0
    assert (out / "scene_00000" / "audio.wav").stat().st_mtime_ns == kept
    np.testing.assert_array_equal(load_recording(redo.parent).audio, first)


def test_a_random_path_that_swings_out_of_the_room_is_redrawn():
    """The spline through random waypoints 0.5 m from the walls can swing past a wall (scene 121 of
    luvira-sim at seed 0, about one scene in 150): a dataset redraws such a scene instead of stopping
    there with an error; scenes that fit are drawn as before."""
    from sslkit.errors import ConfigError, GeometryError, ResourceError
    from sslkit.sims.dataset import draw_feasible_scene
    from sslkit.sims.room import check_placement

    template = load_template("luvira-sim")
    with pytest.raises(GeometryError, match="source 0 at .* is outside the room"):
        check_placement(resolve_scene(template, 0, 121))
    check_placement(draw_feasible_scene(template, 0, 121, None))
    assert draw_feasible_scene(template, 0, 120, None) == resolve_scene(template, 0, 120)
    fixed = small_scene(sources=[{"signal": "noise", "trajectory": {"waypoints": [[1.0, 1.0, 1.0], [9.0, 1.0, 1.0]], "speed": 0.5}}])
    with pytest.raises(ConfigError, match="no feasible scene after .* the last: source 0 at .* is outside the room"):
        draw_feasible_scene(fixed, 0, 0, None)
    with pytest.raises(ResourceError, match="a 1e\\+09 s scene"):  # refused before its path's 2·10¹⁰ positions are traced
        draw_feasible_scene({**fixed, "duration": 1e9}, 0, 0, None)


def test_a_dataset_larger_than_the_disk_is_refused_at_once(cli, tmp_path):
    """More scenes than the disk holds: one line with the estimate before any work, and no folder."""
    import shutil

    from sslkit.sims.dataset import dataset_bytes
    from sslkit.sims.scene import load_template

    cfg = tmp_path / "data.yml"
    cfg.write_text(yaml.safe_dump(small_scene()))
    per_scene = dataset_bytes(load_template(cfg), 0, None)
    assert per_scene == 4 * FS * 0.5 * 4  # float32 × rate × 0.5 s × 4 mics
    count = int(shutil.disk_usage(tmp_path).free / per_scene) + 10
    result = cli("simulate", "--config", cfg, "--count", count, "--out", tmp_path / "data")
    assert_one_line_error(result, f"{count} scenes to simulate", "free on the disk of")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("room", [RoomSpec([6.0, 5.0, 3.0], rt60=0.8), RoomSpec([6.0, 5.0, 3.0], absorption=0.4, max_order=25),
                                  RoomSpec([9.0, 3.0, 2.5], materials={"floor": 0.1, "ceiling": 0.6, "east": 0.2, "west": 0.2,
                                                                       "north": 0.3, "south": 0.3})])
def test_the_memory_estimate_bounds_the_rirs_length(room):
    """check_scene_size plans with rir_length: at least what compute_rirs returns, not far above it."""
    from sslkit.sims.room import image_count, rir_length

    mics, sources = np.array([[0.5, 0.5, 0.5], [5.5, 2.5, 1.5]]), np.array([[2.0, 2.8, 2.4]])
    rirs = compute_rirs(room, FS, SPEED_OF_SOUND, mics, sources, np.random.default_rng(0))
    assert rirs.shape[-1] <= rir_length(room, FS, SPEED_OF_SOUND) < 1.3 * rirs.shape[-1]
    lattice = np.stack(np.meshgrid(*[np.arange(-7, 8)] * 3), -1).reshape(-1, 3)
    assert image_count(7) == int((np.abs(lattice).sum(1) <= 7).sum())


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"sources": [{"signal": "noise", "position": [9.0, 1.0, 1.0]}]}, ["source 0", "outside the room"]),
        ({"mics": {"positions": [[1.0, 1.0, 1.0], [1.0, 5.0, 1.0]]}}, ["microphone", "outside the room"]),
        ({"room": {"dimensions": [4.0, 3.0, 2.5], "rt60": 0.02}}, ["cannot have an RT60"]),
        ({"rooom": {}}, ["unknown key 'rooom'"]),
        ({"noise": {"snr": 3}}, ["unknown key 'snr' in noise"]),
        ({"c": 0.343}, ["c must be"]),
        ({"mics": {"positions": [[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]},
          "sources": [{"signal": "noise", "position": [1.0, 1.0, 1.003]}]}, ["source 0", "from microphone 1"]),
        ({"room": {"dimensions": [4.0, 3.0, 2.5], "absorption": 0.3, "max_order": -1}}, ["room.max_order must be an integer"]),
        ({"room": {"dimensions": [4.0, 3.0, 2.5], "absorption": 0.3, "max_order": 2.5}}, ["room.max_order must be an integer"]),
        ({"room": {"dimensions": [4.0, 3.0, 2.5], "absorption": 0.3, "max_order": 10**6}}, ["the room's responses", "max_order"]),
    ],
)
def test_bad_scene_gives_one_line_error_and_no_output(cli, tmp_path, change, fragments):
    cfg = tmp_path / "bad.yml"
    cfg.write_text(yaml.safe_dump(small_scene(**change)))
    result = cli("simulate", "--config", cfg, "--out", tmp_path / "out")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yml"]


def test_invalid_yaml_and_unknown_preset(cli, tmp_path):
    cfg = tmp_path / "broken.yml"
    cfg.write_text("room: [unclosed\n")
    assert_one_line_error(cli("simulate", "--config", cfg), "invalid YAML")
    assert_one_line_error(cli("simulate", "--preset", "nope"), "no such scene file or preset")


def test_audio_dir_splits_by_speaker(tmp_path):
    import soundfile as sf

    from sslkit.sims.signals import user_audio

    for spk in ("alice", "bob", "carol", "dave", "erin", "frank", "grace"):
        (tmp_path / spk).mkdir()
        sf.write(tmp_path / spk / "a.wav", np.random.default_rng(0).standard_normal(1600), FS)
    train, test = user_audio(tmp_path, "train"), user_audio(tmp_path, "test")
    assert train and test
    assert not {p.parent.name for p in train} & {p.parent.name for p in test}


def test_audio_dir_class_folders_give_labelled_seld_events(cli, tmp_path):
    """--audio-dir with class sub-folders (FSD50K-style): a signal named after a folder draws its
    clips, keeps the class for the DCASE labels, and train/test draw disjoint files."""
    import soundfile as sf

    from sslkit.sims.seld_labels import dcase_labels
    from sslkit.sims.signals import draw_signal

    clips = tmp_path / "clips"
    for name in ("dog", "door"):
        (clips / name).mkdir(parents=True)
        for k in range(20):
            sf.write(clips / name / f"{name}_{k}.wav", np.random.default_rng(k).standard_normal(FS // 2), FS)
    train = {draw_signal("dog", np.random.default_rng(k), clips) for k in range(40)}
    test = {draw_signal("dog/test", np.random.default_rng(k), clips) for k in range(40)}
    assert all(r.startswith(f"clip:dog:{clips / 'dog'}") for r in train | test)
    assert not {r.split("@")[0] for r in train} & {r.split("@")[0] for r in test}
    scene = {"fs": FS, "duration": 1.0, "room": {"dimensions": [5.0, 4.0, 3.0], "rt60": 0.2},
             "mics": {"positions": [[2.0, 2.0, 1.5], [2.1, 2.0, 1.5], [2.0, 2.1, 1.5], [2.0, 2.0, 1.6]]},
             "sources": [{"signal": "dog", "position": [3.5, 3.0, 1.5]}, {"signal": "door", "position": [1.0, 1.0, 1.5]}]}
    (tmp_path / "scene.yml").write_text(yaml.safe_dump(scene))
    result = cli("simulate", "--config", tmp_path / "scene.yml", "--audio-dir", clips, "--out", tmp_path / "rec")
    assert result.exit_code == 0, result.output
    labels = dcase_labels(load_recording(tmp_path / "rec"), ["door", "dog"])
    assert set(labels.cls) == {0, 1}
    scene["sources"][0]["signal"] = "cat"
    (tmp_path / "scene.yml").write_text(yaml.safe_dump(scene))
    assert_one_line_error(cli("simulate", "--config", tmp_path / "scene.yml", "--audio-dir", clips, "--out", tmp_path / "rec2"), "cat")
    # an --audio-dir that is not there, or that the scene never draws from, was ignored without a word
    assert_one_line_error(cli("simulate", "--config", tmp_path / "scene.yml", "--audio-dir", tmp_path / "nowhere", "--out", tmp_path / "rec2"),
                          "nowhere", "not a folder")
    result = cli("simulate", "--config", tmp_path / "rec" / "scene.yaml", "--audio-dir", clips, "--out", tmp_path / "rec3")
    assert result.exit_code == 0 and "no source of this scene takes its signal from --audio-dir" not in result.output
    scene["sources"] = [{"signal": "noise", "position": [3.5, 3.0, 1.5]}]
    (tmp_path / "scene.yml").write_text(yaml.safe_dump(scene))
    result = cli("simulate", "--config", tmp_path / "scene.yml", "--audio-dir", clips, "--out", tmp_path / "rec4")
    assert result.exit_code == 0 and "no source of this scene takes its signal from --audio-dir (they play noise" in result.output


def test_every_command_is_listed_and_has_help_with_an_example(cli):
    from sslkit.cli import app

    listing = cli("--help").output
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert len(names) >= 11
    for name in names:
        assert name in listing
        text = cli(name, "--help").output
        assert "Example" in text and f"sslkit {name}" in text, name
    assert cli("--version").output.startswith("sslkit ")


@pytest.mark.parametrize("kind", ["speech", "music", "noise", "clapping", "telephone", "footsteps", "knock", "bell", "alarm", "water"])
def test_every_signal_kind_renders_reproducibly_with_disjoint_splits(kind):
    from sslkit.sims.signals import draw_signal, render_signal

    train = draw_signal(kind, np.random.default_rng(0))
    test = draw_signal(f"{kind}/test", np.random.default_rng(0))
    assert train != test
    x = render_signal(test, 2.0, FS)
    assert x.shape == (2 * FS,) and np.all(np.isfinite(x)) and np.max(np.abs(x)) == pytest.approx(1.0)
    np.testing.assert_array_equal(x, render_signal(test, 2.0, FS))
    if kind != "speech":  # synthesized kinds: even seeds train, odd seeds test
        assert int(train.rsplit(":", 1)[1]) % 2 == 0 and int(test.rsplit(":", 1)[1]) % 2 == 1


def test_a_dask_cluster_writes_the_same_files_and_resumes(cli, tmp_path, monkeypatch):
    cfg = tmp_path / "data.yml"
    cfg.write_text(yaml.safe_dump(small_scene(room={"dimensions": [4.0, 3.0, 2.5], "rt60": {"uniform": [0.2, 0.4]}})))
    assert cli("simulate", "--config", cfg, "--count", 8, "--out", tmp_path / "local", "--workers", 1, "--seed", 3).exit_code == 0
    result = cli("simulate", "--config", cfg, "--count", 8, "--out", tmp_path / "dask", "--scheduler", "local", "--seed", 3)
    assert result.exit_code == 0, result.output
    import soundfile as sf

    def same_bits(name: str) -> bool:  # WAV headers carry the time of writing (libsndfile's PEAK chunk): compare the samples' bits
        if name.endswith(".wav"):
            return np.array_equal(*(sf.read(tmp_path / run / name, dtype="float32")[0].view(np.uint32) for run in ("dask", "local")))
        return (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()

    for name in ("index.csv", "dataset.yaml", *(f"scene_0000{i}/{f}" for i in range(8) for f in ("audio.wav", "mics.csv", "sources.csv", "scene.yaml"))):
        assert same_bits(name), name
    import shutil

    shutil.rmtree(tmp_path / "dask" / "scene_00002")
    assert cli("simulate", "--config", cfg, "--count", 8, "--out", tmp_path / "dask", "--scheduler", "local", "--workers", 2, "--seed", 3).exit_code == 0
    assert same_bits("scene_00002/audio.wav")
    from conftest import assert_one_line_error

    monkeypatch.setattr("sslkit.sims.dataset.CLUSTER_TIMEOUT_S", 2)
    assert_one_line_error(cli("simulate", "--config", cfg, "--count", 2, "--out", tmp_path / "x", "--scheduler", "tcp://127.0.0.1:9"),
                          "no Dask scheduler answers")
    assert not (tmp_path / "x").exists()  # connected before anything is written
    assert_one_line_error(cli("simulate", "--config", cfg, "--count", 2, "--out", tmp_path / "x", "--scheduler", "tcp://127.0.0.1:9", "--workers", 2),
                          "runs the scenes on its own workers")
    assert_one_line_error(cli("simulate", "--config", cfg, "--out", tmp_path / "x", "--workers", 2), "--workers runs datasets: give --count N")
    assert not (tmp_path / "x").exists()


def test_the_geometry_check_takes_many_mics_without_a_table_of_all_pairs():
    from sslkit.errors import GeometryError
    from sslkit.geometry import check_geometry

    mics = np.random.default_rng(0).uniform(0.0, 50.0, (30000, 3))  # an (M, M, 3) table would need 21 GB
    check_geometry(mics)
    mics[29999] = mics[17]
    with pytest.raises(GeometryError, match="microphones 18 and 30000 have the same position"):
        check_geometry(mics)


def test_more_workers_than_cores_are_not_started(monkeypatch):
    """--workers 1000 started 1000 processes, each with its own libraries and RIRs."""
    from sslkit.errors import SslkitWarning
    from sslkit.sims.dataset import parallel_map

    monkeypatch.setattr("os.cpu_count", lambda: 1)
    with pytest.warns(SslkitWarning, match="workers = 1000: this machine has 1 core, so 1 process run"):
        assert list(parallel_map(pow, [(2, 3), (3, 2)], 1000)) == [8, 9]  # one core: run inline, in order
