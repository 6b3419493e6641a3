"""The hostile-input floor: every bad or unusual input is one line and exit code 2 (or a warning
and a result), nothing is half written, and no file sslkit did not write is replaced or deleted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import sslkit
from conftest import FS, SPEED_OF_SOUND, assert_one_line_error, small_scene
from sslkit.errors import InputFileError, UserError
from sslkit.models.checkpoint import resolve_checkpoint

ROOM = [5.0, 4.0, 3.0]
SOURCE = [2.5, 1.8, 1.2]
MICS = np.array([[0.6, 0.5, 0.4], [4.4, 0.6, 1.9], [4.3, 3.5, 0.6], [0.7, 3.4, 2.2], [2.4, 0.4, 2.6], [2.6, 3.6, 1.0]])


def delayed_noise(mics: np.ndarray, source: list[float], seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """White noise reaching each mic after ‖s − rᵢ‖/c (exact fractional delays), (samples, mics)."""
    n = int(seconds * FS)
    x = np.random.default_rng(seed).standard_normal(n)
    f = np.fft.rfftfreq(n)
    delays = np.linalg.norm(mics - np.array(source), axis=1) / SPEED_OF_SOUND * FS
    return np.stack([np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * d), n) for d in delays], 1).astype(np.float32) * 0.1


def user_recording(folder: Path, mics: np.ndarray = MICS, audio: np.ndarray | None = None, scale: float = 1.0) -> Path:
    """A recording folder as a user makes it (plain files, no sslkit manifest); sources.csv lists
    the static source once, at time 0, as measured datasets do."""
    folder.mkdir(parents=True)
    sf.write(folder / "audio.wav", delayed_noise(mics, SOURCE) if audio is None else audio, FS, subtype="FLOAT")
    (folder / "mics.csv").write_text("mic_id,x,y,z\n" + "".join(f"{i + 1},{x * scale},{y * scale},{z * scale}\n" for i, (x, y, z) in enumerate(mics)))
    (folder / "sources.csv").write_text("time,source_id,x,y,z\n" + "0,0," + ",".join(str(v * scale) for v in SOURCE) + "\n")
    (folder / "scene.yaml").write_text(yaml.safe_dump({"room": {"dimensions": ROOM}}))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def rec(tmp_path) -> Path:
    return user_recording(tmp_path / "rec")


@pytest.fixture
def scene_file(tmp_path) -> Path:
    path = tmp_path / "scene.yml"
    path.write_text(yaml.safe_dump(small_scene()))
    return path


# ---------------------------------------------------------------------------------------------
# Data loss
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_simulate_never_replaces_a_folder_it_did_not_write(cli, tmp_path, scene_file, overwrite):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = snapshot(mine)
    assert_one_line_error(cli("simulate", "--config", scene_file, "--out", mine, *overwrite), "thesis.tex", "sslkit did not write")
    assert snapshot(mine) == before


def test_simulate_never_replaces_the_current_folder(cli, tmp_path, scene_file, monkeypatch):
    (tmp_path / "notes.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    for out in (".", str(tmp_path), ".."):
        assert_one_line_error(cli("simulate", "--config", scene_file, "--out", out, "--overwrite"), "current folder")
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_what_sslkit_wrote(cli, tmp_path, scene_file):
    out = tmp_path / "rec"
    assert cli("simulate", "--config", scene_file, "--out", out).exit_code == 0
    assert_one_line_error(cli("simulate", "--config", scene_file, "--out", out), "--overwrite")
    assert cli("simulate", "--config", scene_file, "--out", out, "--overwrite", "--seed", 1).exit_code == 0
    (out / "my_notes.txt").write_text("added by the user")
    before = snapshot(out)
    assert_one_line_error(cli("simulate", "--config", scene_file, "--out", out, "--overwrite"), "my_notes.txt")
    assert snapshot(out) == before


def test_a_folder_holding_the_input_is_never_replaced(cli, tmp_path, scene_file):
    out = tmp_path / "rec"
    assert cli("simulate", "--config", scene_file, "--out", out).exit_code == 0
    before = snapshot(out)
    assert_one_line_error(cli("simulate", "--config", out / "scene.yaml", "--out", out, "--overwrite"), "holds the input")
    assert snapshot(out) == before


@pytest.mark.parametrize("command", ["tdoa", "locate"])
def test_file_outputs_never_replace_user_files(cli, rec, tmp_path, command):
    mine = tmp_path / "results.csv"
    mine.write_text("my own table\n")
    assert_one_line_error(cli(command, rec, "--out", mine), "not written by sslkit")
    assert mine.read_text() == "my own table\n"


def test_rerunning_a_command_replaces_its_own_output(cli, rec):
    assert cli("tdoa", rec).exit_code == 0
    assert cli("tdoa", rec, "--peaks", 2).exit_code == 0
    assert "rank" in (rec / "tdoa.csv").read_text()


def test_evaluate_and_evaluate_seld_never_replace_user_files(cli, rec, tmp_path):
    assert cli("locate", rec, "--no-plot").exit_code == 0
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert_one_line_error(cli("evaluate", "--pred", rec / "positions.csv", "--truth", rec / "sources.csv", "--out", out), "metrics.json")
    assert (out / "metrics.json").read_text() == "{}"
    (tmp_path / "pred.csv").write_text("0,1,0,10,0,100\n")
    (tmp_path / "seld_metrics.json").write_text("mine")
    assert_one_line_error(cli("evaluate-seld", "--pred", tmp_path / "pred.csv", "--truth", tmp_path / "pred.csv"), "seld_metrics.json")
    assert (tmp_path / "seld_metrics.json").read_text() == "mine"


def test_out_with_a_trailing_slash_or_an_existing_folder_writes_inside(cli, rec, tmp_path):
    result = cli("locate", rec, "--no-plot", "--out", f"{tmp_path / 'results'}/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "positions.csv").is_file()
    assert cli("tdoa", rec, "--out", tmp_path / "results").exit_code == 0
    assert (tmp_path / "results" / "tdoa.csv").is_file()


@pytest.mark.parametrize(("where", "fragment"), [("under_file", "is a file"), ("proc", "cannot write"), ("file_as_folder", "is a file")])
def test_unwritable_output_places_fail_before_any_work(cli, rec, tmp_path, scene_file, where, fragment):
    (tmp_path / "plain.txt").write_text("x")
    if where == "file_as_folder":
        result = cli("simulate", "--config", scene_file, "--out", tmp_path / "plain.txt")
    else:
        out = tmp_path / "plain.txt" / "positions.csv" if where == "under_file" else Path("/proc/sslkit-test/positions.csv")
        result = cli("locate", rec, "--out", out)
    assert_one_line_error(result, fragment)
    assert (tmp_path / "plain.txt").read_text() == "x"


def test_a_resumed_run_may_change_only_its_length_device_and_workers(tmp_path):
    """Settings config.yaml records must match (a run of an older sslkit may lack newer ones)."""
    import yaml

    from sslkit.errors import UserError
    from sslkit.models.train_ngcc import NgccTrainConfig
    from sslkit.models.training import check_same_run

    saved = tmp_path / "config.yaml"
    recorded = {key: value for key, value in NgccTrainConfig().__dict__.items() if key != "sigma"}  # as if sigma came later
    saved.write_text(yaml.safe_dump({**recorded, "network": {"channels": 32}}))
    check_same_run(saved, NgccTrainConfig(epochs=60, device="cuda", workers=4, sigma=2.0))
    with pytest.raises(UserError, match=r"batch_size = 32 \(not 8\)"):
        check_same_run(saved, NgccTrainConfig(batch_size=8))


def test_training_run_folders_are_checked_before_work_and_failed_runs_leave_none(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.bin").write_bytes(b"\x00")
    assert_one_line_error(cli("train-ngcc", "--out", mine, "--scenes", 1, "--val-scenes", 1), "data.bin")
    assert_one_line_error(cli("train-ngcc", "--out", tmp_path / "new", "--resume"), "nothing to resume")
    assert_one_line_error(cli("train-wav2pos", "--out", tmp_path / "run", "--scene", tmp_path / "missing.yaml"), "missing.yaml")
    assert not (tmp_path / "new").exists() and not (tmp_path / "run").exists()


def test_import_luvira_never_replaces_a_foreign_folder(cli, tmp_path):
    from test_luvira_import import fake_luvira

    fake_luvira(tmp_path / "speech3")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("k")
    result = cli("import-luvira", tmp_path / "speech3", "--mic-positions", tmp_path / "speech3" / "mics.csv",
                 "--truth", tmp_path / "speech3" / "mocap.csv", "--out", out, "--overwrite")
    assert_one_line_error(result, "keep.txt")
    assert (out / "keep.txt").read_text() == "k"


@pytest.mark.parametrize("args", [("locate", "{rec}", "--hop", "0"), ("locat", "{rec}"), ("locate",), ("tdoa", "{rec}", "--bogus"),
                                  ("locate", "{rec}", "--window", "-1"), ("locate", "{rec}", "--sources", "0"), ("locate", "{rec}", "--sources", "99")])
def test_usage_errors_are_one_line(cli, rec, args):
    assert_one_line_error(cli(*(a.format(rec=rec) for a in args)), "--help")


# ---------------------------------------------------------------------------------------------
# Validate before working: numbers, units, sizes, geometry, checkpoints
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"fs": 0}, ["fs must be an integer"]),
        ({"fs": 16000.5}, ["fs must be an integer"]),
        ({"fs": "fast"}, ["fs must be an integer"]),
        ({"duration": 0}, ["duration must be a number"]),
        ({"duration": -1.0}, ["duration must be a number"]),
        ({"c": -343.0}, ["c must be a number"]),
        ({"room": {"dimensions": [4.0, 3.0, 2.5], "absorption": 1.5}}, ["room.absorption", "(0, 1]"]),
        ({"noise": {"snr_db": float("nan")}}, ["noise.snr_db"]),
        ({"noise": {"snr_db": {"uniform": [30, 10]}}}, ["scene.noise.snr_db", "lo ≤ hi"]),
        ({"sources": []}, ["at least one source"]),
        ({"room": {"dimensions": [4.0, 3.0, 2.5], "rt60": 0.01}}, ["cannot have an RT60"]),
        ({"sources": [{"signal": "noise", "position": [3.0, 2.0, 1.5], "gain_db": float("inf")}]}, ["gain_db"]),
        ({"duration": 36000.0}, ["needs about", "shorten the duration"]),
        ({"mics": "everywhere"}, ["invalid scene"]),
        ({"mics": {"positions": [[1.0, 1.0, 1.2], [1.0, 1.0, 1.2], [2.0, 1.0, 1.0], [1.2, 2.0, 1.4]]}}, ["mics", "1 and 2 have the same position"]),
        ({"sources": [{"signal": "noise", "trajectory": {"waypoints": [[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]], "speed": 20.0}}]}, ["sources[0]", "1 m between", "block"]),
    ],
)
def test_scene_numbers_are_checked_before_simulating(cli, tmp_path, change, fragments):
    cfg = tmp_path / "bad.yml"
    cfg.write_text(yaml.safe_dump(small_scene(**change)))
    assert_one_line_error(cli("simulate", "--config", cfg, "--out", tmp_path / "out"), "bad.yml", *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["tdoa", "locate"])
@pytest.mark.parametrize("c", ["0", "-343"])
def test_speed_of_sound_must_be_positive(cli, rec, command, c):
    assert_one_line_error(cli(command, rec, "--c", c), "speed of sound")
    assert not (rec / "tdoa.csv").exists() and not (rec / "positions.csv").exists()


def test_jobs_that_cannot_fit_in_memory_are_refused_with_the_estimate(cli, rec):
    assert_one_line_error(cli("tdoa", rec, "--upsample", 100000), "needs about", "upsampling")
    assert_one_line_error(cli("locate", rec, "--method", "srp-phat", "--bounds", "0,0,0,5000,4000,3000"), "bounds", "millimetres", "metres")
    assert_one_line_error(cli("locate", rec, "--method", "srp-phat", "--beam", 10**9), "needs about", "beam")
    assert_one_line_error(cli("locate", rec, "--method", "multilat", "--hypotheses", 10**9), "needs about", "--hypotheses")
    from sslkit import load_recording, locate
    from sslkit.errors import UserError

    with pytest.raises(UserError, match="beam = 0"):
        locate(load_recording(rec), "srp-phat", beam=0)
    with pytest.raises(UserError, match="views = 100000000"):  # once a 77 GB draw of masks
        locate(load_recording(rec), "wav2pos", refine_radius=0, views=10**8)


@pytest.mark.parametrize("tracks", ["1", "7", "3,8"])
def test_bench_adpit_refuses_track_counts_it_cannot_enumerate(cli, tmp_path, tracks):
    assert_one_line_error(cli("bench-adpit", "--tracks", tracks, "--device", "cpu", "--out", tmp_path / "b.json"), "--tracks")


def test_bench_adpit_memory_cap_must_be_positive_and_may_skip_every_variant(cli, tmp_path):
    for cap in ("-1", "nan"):  # once a ZeroDivisionError, and no cap at all
        assert_one_line_error(cli("bench-adpit", "--tracks", "3", "--device", "cpu", "--max-memory-gb", cap, "--out", tmp_path / "b.json"), "max_memory_gb")
    result = cli("bench-adpit", "--tracks", "3", "--device", "cpu", "--repeats", 1, "--warmup", 0, "--max-memory-gb", "1e-7", "--out", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    import json

    assert all("skipped" in row for row in json.loads((tmp_path / "b.json").read_text())["results"])


def test_adpit_loss_refuses_more_tracks_than_it_can_enumerate():
    from sslkit.models.adpit import adpit_loss

    with pytest.raises(ValueError, match="1 to 6 tracks"):
        adpit_loss(torch.zeros(1, 1, 7, 4, 1), torch.zeros(1, 1, 28, 5, 1), "bradpit")


def test_millimetre_coordinates_are_named(cli, tmp_path):
    rec = user_recording(tmp_path / "rec", scale=1000.0)
    assert_one_line_error(cli("locate", rec), "millimetres")
    good = user_recording(tmp_path / "good")
    assert cli("locate", good, "--no-plot").exit_code == 0
    pred = tmp_path / "mm.csv"
    pred.write_text("time,x,y,z\n0.1,2500,1800,1200\n0.2,2400,1700,1100\n")
    assert_one_line_error(cli("evaluate", "--pred", pred, "--truth", good / "sources.csv", "--out", tmp_path / "ev"), "millimetres")


def test_collinear_mics_in_3d_are_an_error(cli, tmp_path):
    line = np.array([[0.5 + 0.6 * k, 1.0, 1.2] for k in range(6)])
    rec = user_recording(tmp_path / "rec", mics=line, audio=delayed_noise(line, SOURCE))
    assert_one_line_error(cli("locate", rec, "--method", "multilat"), "collinear")
    assert not (rec / "positions.csv").exists()


def test_ground_truth_rows_in_any_order_score_the_same(cli, tmp_path):
    """A moving source's rows need not be sorted by time (a spreadsheet sort by source); a source at
    one time twice is an error naming the file."""
    from sslkit.evaluation import evaluate_positions
    from sslkit.localization.track import PositionTrack
    from sslkit.recording import read_sources

    rows = [f"{t:g},{sid},{1 + t + sid},{2 - t},1.2" for t in np.arange(0, 2.01, 0.25) for sid in (1, 2)]
    ordered, shuffled = tmp_path / "ordered.csv", tmp_path / "shuffled.csv"
    ordered.write_text("time,source_id,x,y,z\n" + "\n".join(rows) + "\n")
    shuffled.write_text("time,source_id,x,y,z\n" + "\n".join(np.random.default_rng(0).permutation(rows)) + "\n")
    times = np.repeat(np.arange(0.1, 2.0, 0.3), 2)
    found = np.stack([1 + times + np.tile([1, 2], 7), 2 - times, np.full(14, 1.2)], 1) + 0.1
    track = PositionTrack(times, found, np.ones(14), np.zeros(14, int), track=np.tile([0, 1], 7))
    metrics = [evaluate_positions(track, read_sources(path))["mae_m"] for path in (ordered, shuffled)]
    assert metrics[0] == metrics[1] and abs(metrics[0] - 0.1 * np.sqrt(3)) < 1e-9
    shuffled.write_text("time,source_id,x,y,z\n0,1,1,2,1\n1,1,2,2,1\n0,1,1,3,1\n")
    with pytest.raises(UserError, match="source 1 is listed twice at time 0 s"):
        read_sources(shuffled)


def test_ground_truth_in_milliseconds_is_named(cli, tmp_path):
    """Times in ms ran the truth to 3900 "s" beside 4 s of audio and scored 129 cm without a word."""
    demo = Path(__file__).parents[1] / "examples" / "luvira-demo"
    shutil.copytree(demo, tmp_path / "rec")
    lines = (demo / "sources.csv").read_text().splitlines()
    (tmp_path / "rec" / "sources.csv").write_text("\n".join(lines[:1] + [f"{float(ln.split(',')[0]) * 1000:g}," + ln.split(",", 1)[1] for ln in lines[1:]]) + "\n")
    result = cli("locate", tmp_path / "rec", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0 and "sources.csv: its times run to 3900 s but the audio lasts 4 s" in result.output
    assert "in milliseconds they would run to 3.9 s" in result.output
    result = cli("locate", demo, "--out", tmp_path / "q.csv")
    assert result.exit_code == 0 and "its times run to" not in result.output


def test_a_single_microphone_is_an_error_naming_the_recording(cli, tmp_path):
    one = np.array([[1.0, 1.0, 1.2]])
    rec = user_recording(tmp_path / "mono", mics=one, audio=delayed_noise(one, SOURCE))
    for command in ("tdoa", "locate"):
        assert_one_line_error(cli(command, rec), "mono", "at least two")


@pytest.mark.parametrize(
    ("args", "found", "needed"),
    [
        (("tdoa", "{rec}", "--method", "ngcc", "--checkpoint", "{wav2pos}"), "wav2pos", "ngcc-phat"),
        (("locate", "{rec}", "--method", "wav2pos", "--checkpoint", "{ngcc}"), "ngcc-phat", "wav2pos"),
        (("locate", "{rec}", "--method", "multilat", "--tdoa", "ngcc", "--checkpoint", "{wav2pos}"), "wav2pos", "ngcc-phat"),
        (("predict-seld", "--checkpoint", "{ngcc}", "{rec}", "--out", "{tmp}/pred"), "ngcc-phat", "seldnet"),
        (("evaluate-tdoa", "--checkpoint", "{wav2pos}", "--out", "{tmp}/ev"), "wav2pos", "ngcc-phat"),
    ],
)
def test_checkpoints_of_the_wrong_kind_are_named(cli, rec, tmp_path, args, found, needed):
    names = {"rec": rec, "tmp": tmp_path, "wav2pos": resolve_checkpoint("wav2pos"), "ngcc": resolve_checkpoint("ngcc-phat")}
    assert_one_line_error(cli(*(a.format(**names) for a in args)), f"is a {found} checkpoint", f"a {needed} checkpoint is needed")


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(cli, rec, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": "ngcc-phat", "payload": Payload()}, tmp_path / "evil.pt")
    assert_one_line_error(cli("tdoa", rec, "--method", "ngcc", "--checkpoint", tmp_path / "evil.pt"), "evil.pt", "not a readable checkpoint")
    assert not marker.exists()
    (tmp_path / "notes.pt").write_text("mic_id,x,y,z\n")
    assert_one_line_error(cli("tdoa", rec, "--method", "ngcc", "--checkpoint", tmp_path / "notes.pt"), "notes.pt", "not a PyTorch checkpoint file")


def test_a_damaged_checkpoint_is_one_error_without_torch_warnings(tmp_path):
    """A file whose second byte reads as pickle protocol 36: torch warned of the protocol before
    sslkit's error, from the library (the hypothesis test's mutations found it)."""
    import warnings

    from sslkit.models.checkpoint import read_checkpoint

    path = tmp_path / "protocol.pt"
    path.write_bytes(b"\x80\x24" + b"garbage" * 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputFileError, match="not a PyTorch checkpoint file"):
            read_checkpoint(path)
    assert not caught, [str(w.message) for w in caught]


def test_malformed_scene_yaml_in_a_recording_names_file_and_line(cli, rec):
    (rec / "scene.yaml").write_text("room:\n  dimensions: [5, 4, 3\nnoise: 1\n")
    assert_one_line_error(cli("locate", rec), "scene.yaml", "invalid YAML", "line")


# ---------------------------------------------------------------------------------------------
# Real inputs that must simply work
# ---------------------------------------------------------------------------------------------
def test_sources_listed_once_are_static_for_the_whole_recording(cli, rec, tmp_path):
    result = cli("locate", rec, "--no-plot")
    assert result.exit_code == 0, result.output
    assert "MAE vs sources.csv" in result.stdout
    result = cli("evaluate", "--pred", rec / "positions.csv", "--truth", rec / "sources.csv", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    import json

    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["results"]
    (only,) = metrics.values()
    assert only["n"] >= 10 and only["median_m"] < 0.05  # every hop scored against the one static row


def test_truncated_wav_is_read_with_a_warning(cli, tmp_path):
    rec = user_recording(tmp_path / "rec")
    sf.write(rec / "audio.wav", delayed_noise(MICS, SOURCE), FS, subtype="PCM_16")
    data = (rec / "audio.wav").read_bytes()
    (rec / "audio.wav").write_bytes(data[: len(data) * 3 // 4])
    result = cli("locate", rec, "--no-plot")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "truncated" in result.stderr


def test_clipped_audio_is_read_with_a_warning(cli, tmp_path):
    audio = np.clip(delayed_noise(MICS, SOURCE) * 20, -1, 1)
    rec = user_recording(tmp_path / "rec", audio=audio)
    result = cli("locate", rec, "--no-plot")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "clipped" in result.stderr


# ---------------------------------------------------------------------------------------------
# No silent garbage
# ---------------------------------------------------------------------------------------------
def test_simulate_refuses_a_scene_with_no_active_source(cli, tmp_path):
    assert_one_line_error(cli("simulate", "--preset", "tetra-seld", "--duration", 1, "--seed", 5, "--out", tmp_path / "t"), "no source is active")
    assert not (tmp_path / "t").exists()


def test_resuming_a_dataset_checks_it_is_the_same_dataset(cli, tmp_path, scene_file):
    out = tmp_path / "data"
    assert cli("simulate", "--config", scene_file, "--count", 2, "--out", out, "--workers", 1).exit_code == 0
    assert_one_line_error(cli("simulate", "--config", scene_file, "--count", 3, "--out", out, "--seed", 1), "seed = 0 (not 1)")
    other = tmp_path / "other.yml"
    other.write_text(yaml.safe_dump(small_scene(fs=8000)))
    assert_one_line_error(cli("simulate", "--config", other, "--count", 3, "--out", out), "fs = 16000 (not 8000)")
    result = cli("simulate", "--config", scene_file, "--count", 3, "--out", out, "--workers", 1)
    assert result.exit_code == 0 and "resuming: 2 of 3 scenes present" in result.stdout


def test_seld_training_needs_labels_and_says_when_it_cannot_validate(cli, tmp_path):
    bells = tmp_path / "bells.yml"
    bells.write_text(yaml.safe_dump(small_scene(duration=1.0, sources=[{"signal": "bell", "position": [3.0, 2.0, 1.5]}])))
    noise = tmp_path / "noise.yml"
    noise.write_text(yaml.safe_dump(small_scene(duration=1.0)))
    for name, cfg in (("labelled", bells), ("unlabelled", noise)):
        assert cli("simulate", "--config", cfg, "--count", 2, "--out", tmp_path / name, "--workers", 1).exit_code == 0
    (tmp_path / "classes.yaml").write_text("[bell]\n")
    args = ("train-seld", "--classes", tmp_path / "classes.yaml", "--epochs", 1, "--batch-size", 2, "--device", "cpu")
    assert_one_line_error(cli(*args, "--data", tmp_path / "unlabelled", "--out", tmp_path / "bad"), "no event labels")
    assert not (tmp_path / "bad").exists()
    result = cli(*args, "--data", tmp_path / "labelled", "--val", tmp_path / "unlabelled", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "validation clips hold no events" in result.stderr and "not measured" in result.stdout
    assert (tmp_path / "run" / "best.pt").is_file()


def test_no_runtime_warning_reaches_the_terminal(cli, rec, tmp_path):
    pred = tmp_path / "none.csv"
    pred.write_text("time,x,y,z\n0.1,nan,nan,nan\n0.2,nan,nan,nan\n")
    result = cli("evaluate", "--pred", pred, "--truth", rec / "sources.csv", "--out", tmp_path / "ev", "--no-truncate")
    assert result.exit_code == 0, result.output
    assert "RuntimeWarning" not in result.output


def test_options_a_method_cannot_honour_are_errors(cli, rec):
    assert_one_line_error(cli("locate", rec, "--method", "wav2pos", "--sources", 2), "--sources does not apply to --method wav2pos")
    assert_one_line_error(cli("locate", rec, "--method", "srp-phat", "--tdoa", "ngcc"), "--tdoa does not apply to --method srp-phat")
    assert_one_line_error(cli("locate", rec, "--method", "srp-phat", "--known-source"), "--known-source does not apply")
    assert_one_line_error(cli("locate", rec, "--method", "nope"), "unknown --method 'nope'", "srp-phat")


def test_the_library_names_the_options_a_method_takes(rec):
    import sslkit

    recording = sslkit.load_recording(rec)
    with pytest.raises(TypeError, match="takes no option 'sources'.*refine_radius"):
        sslkit.locate(recording, "wav2pos", sources=2)
    with pytest.raises(TypeError, match="takes no option 'tdoa'.*final_step"):
        sslkit.locate(recording, "srp-phat", tdoa="ngcc")
    with pytest.raises(TypeError, match="takes no option 'sources'.*upsample"):
        sslkit.estimate_tdoa(recording, sources=2)


def test_a_silence_threshold_that_silences_everything_is_an_error(cli, rec):
    assert_one_line_error(cli("tdoa", rec, "--silence-db", "-5"), "silence threshold")


def test_wav2pos_warns_outside_the_geometry_it_was_trained_on(cli, rec):
    result = cli("locate", rec, "--method", "wav2pos", "--no-plot", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "train-wav2pos" in result.stderr


def test_ctrl_c_stops_dataset_generation_keeps_complete_scenes_and_resumes(tmp_path, scene_file):
    cfg = tmp_path / "long.yml"
    cfg.write_text(yaml.safe_dump(small_scene(duration=3.0)))
    out = tmp_path / "data"
    command = [sys.executable, "-m", "sslkit", "simulate", "--config", str(cfg), "--count", "200", "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's background jobs ignore it
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("scene_*"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1 and "scenes kept" in stderr and "Traceback" not in stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".scene_")]  # no half-written scene
    kept = sorted(p.name for p in out.glob("scene_*"))
    assert all((out / name / "audio.wav").is_file() for name in kept)
    assert len((out / "index.csv").read_text().splitlines()) == len(kept) + 1


def test_spreadsheet_exports_of_mics_csv(cli, tmp_path):
    """A byte-order mark (a spreadsheet's "CSV UTF-8") is read; semicolon-separated columns are named."""
    rec = user_recording(tmp_path / "bom")
    mics = rec / "mics.csv"
    mics.write_bytes(b"\xef\xbb\xbf" + mics.read_bytes())
    result = cli("locate", rec, "--method", "srp-phat", "--static", "--no-plot")
    assert result.exit_code == 0, result.output
    semicolons = user_recording(tmp_path / "semicolons")
    mics = semicolons / "mics.csv"
    mics.write_text(mics.read_text().replace(",", ";"))
    assert_one_line_error(cli("locate", semicolons), "mics.csv", "';'")


@pytest.mark.parametrize("text, fragment", [("speech: 1\n", "list of class names"), ("[speech, speech]\n", "repeat"), ("[speech\n", "invalid YAML")])
def test_train_seld_class_names_are_checked(cli, tmp_path, text, fragment):
    classes = tmp_path / "classes.yaml"
    classes.write_text(text)
    assert_one_line_error(cli("train-seld", "--data", tmp_path, "--classes", classes, "--out", tmp_path / "run"), "classes.yaml", fragment)
    assert not (tmp_path / "run").exists()


def test_dead_and_duplicated_channels_are_named(cli, tmp_path):
    audio = delayed_noise(MICS, SOURCE)
    audio[:, 2] = 0.0
    audio[:, 5] = audio[:, 3]
    rec = user_recording(tmp_path / "rec", audio=audio)
    result = cli("locate", rec, "--method", "srp-phat", "--static", "--no-plot")
    assert result.exit_code == 0
    assert "channel(s) 3 silent throughout" in result.output and "channel 6 is channel 4 sample for sample" in result.output
    clean = cli("locate", user_recording(tmp_path / "clean"), "--method", "srp-phat", "--static", "--no-plot")
    assert "silent throughout" not in clean.output and "sample for sample" not in clean.output


def test_quiet_float_audio_is_not_called_zero(tmp_path):
    from sslkit.recording import read_audio

    sf.write(tmp_path / "quiet.wav", delayed_noise(MICS, SOURCE) * 1e-9, FS, subtype="FLOAT")
    with pytest.raises(InputFileError, match="peak .* below"):
        read_audio(tmp_path / "quiet.wav")


def test_two_estimates_for_one_track_at_one_time_are_refused(cli, tmp_path):
    truth = user_recording(tmp_path / "rec") / "sources.csv"
    pred = tmp_path / "pred.csv"
    pred.write_text("time,x,y,z,track\n0.5,1,2,1,0\n0.5,1,2,1,1\n0.5,2,2,1,0\n")
    assert_one_line_error(cli("evaluate", "--pred", pred, "--truth", truth, "--out", tmp_path / "ev"), "pred.csv", "line 2", "more than one row")
    assert not (tmp_path / "ev").exists()
    # a row with x empty but y, z and a direction given was scored as missing and counted as located
    pred.write_text("time,x,y,z,track,azimuth_deg,elevation_deg\n0.5,1,2,1,0,10,5\n1.0,,2,1,0,10,5\n")
    assert_one_line_error(cli("evaluate", "--pred", pred, "--truth", truth, "--out", tmp_path / "ev"), "pred.csv", "line 3", "all empty")


@pytest.mark.parametrize("method", ["multilat", "srp-phat"])
def test_two_dimensional_search_plane(cli, tmp_path, method):
    """Both methods search the plane at the mean mic height by default, and refuse one outside the room."""
    from sslkit import load_recording, locate

    rec = load_recording(user_recording(tmp_path / "rec"))
    track = locate(rec, method, dims=2, static=True)
    np.testing.assert_allclose(track.xyz[:, 2], MICS[:, 2].mean(), atol=1e-6)
    assert_one_line_error(cli("locate", tmp_path / "rec", "--method", method, "--dims", "2", "--height", "100"), "height = 100", "z range")
    assert_one_line_error(cli("locate", tmp_path / "rec", "--use-mics", "1,2,2,3,4"), "mic 2 is listed more than once")


@pytest.mark.parametrize("command", ["train-seld", "train-ngcc", "train-wav2pos"])
@pytest.mark.parametrize("lr", ["nan", "-0.001", "0"])
def test_a_learning_rate_that_cannot_train_is_refused_before_the_run_folder(cli, rec, tmp_path, command, lr):
    data = ("--data", rec) if command == "train-seld" else ()
    result = cli(command, *data, "--lr", lr, "--epochs", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, "--lr")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("sources", "fragment"), [(None, "no sources.csv"), ("0,1,1,1,1\n0,2,2,2,1\n", "2 sources in sources.csv")])
def test_wav2pos_trains_only_on_recordings_of_one_known_source(cli, tmp_path, sources, fragment):
    """A recording without sources.csv was an AttributeError traceback, and one whose source is not
    numbered 0 a ValueError; of several sources, only source 0 was used, without a word."""
    for name in ("a", "b"):
        user_recording(tmp_path / "data" / name)
    (tmp_path / "data" / "b" / "sources.csv").unlink()
    if sources:
        (tmp_path / "data" / "b" / "sources.csv").write_text("time,source_id,x,y,z\n" + sources)
    assert_one_line_error(cli("train-wav2pos", "--data", tmp_path / "data", "--epochs", 1, "--out", tmp_path / "run"), "data/b", fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("command", "args", "fragments"), [
    ("train-ngcc", ("--scenes", 10**9), ["--scenes 1000000000", "validation rooms"]),  # its task list once took 24 GB, then the OOM killer
    ("train-ngcc", ("--scenes", 900_000), ["simulated rooms held in memory", "needs about", "lower --scenes or --val-scenes"]),
    ("train-ngcc", ("--batch-size", 10**9), ["a batch of 1000000000 windows", "--batch-size"]),  # a MemoryError after simulating
    ("train-ngcc", ("--targets", 1000), ["--targets 1000", "1 to 6"]),  # a ValueError after simulating
    ("train-wav2pos", ("--scenes", 10**9), ["--scenes 1000000000"]),
    ("train-wav2pos", ("--scenes", 100_000, "--windows-per-scene", 1000), ["simulated rooms held in memory", "--windows-per-scene"]),
    ("train-wav2pos", ("--batch-size", 10**9), ["a batch of 1000000000 windows"]),
    ("train-wav2pos", ("--scenes", 2, "--val-scenes", 1, "--depth", 100_000), ["wav2pos of", "--depth"]),  # built 5 GB of layers for minutes
    ("evaluate-tdoa", ("--snippets", 10**9), ["snippets of ngcc-test held in memory", "--snippets"]),
])
def test_training_sizes_that_cannot_fit_are_refused_before_simulating(cli, tmp_path, monkeypatch, command, args, fragments):
    monkeypatch.setattr("sslkit.resources.available_memory", lambda: 16 * 2**30)  # refused on any machine, not only on small ones
    epochs = ("--epochs", 1) if command.startswith("train") else ()
    assert_one_line_error(cli(command, *args, *epochs, "--out", tmp_path / "run"), *fragments)
    assert not (tmp_path / "run").exists()


def test_a_speed_of_sound_in_other_units_and_a_too_short_recording_are_named(cli, rec, tmp_path):
    assert_one_line_error(cli("locate", rec, "--c", "0.343", "--out", tmp_path / "a"), "speed of sound", "0.343")
    assert_one_line_error(cli("tdoa", rec, "--c", "34300", "--out", tmp_path / "b"), "speed of sound", "34300")
    audio, fs = sf.read(rec / "audio.wav")
    short = tmp_path / "short"
    short.mkdir()
    (short / "mics.csv").write_text((rec / "mics.csv").read_text())
    sf.write(short / "audio.wav", audio[:1000], fs, subtype="FLOAT")
    for args in (("locate", short), ("locate", short, "--method", "music"), ("tdoa", short)):
        assert_one_line_error(cli(*args, "--out", tmp_path / "c"), "short", "1000 samples", "shorter than one frame")


def test_more_tdoa_peaks_than_lags_and_a_pair_listed_twice_are_refused(cli, rec, tmp_path):
    assert_one_line_error(cli("tdoa", rec, "--peaks", 100000, "--out", tmp_path / "a"), "peaks = 100000", "lags")
    for pairs in ("1-2,1-2", "1-2,2-1"):
        assert_one_line_error(cli("tdoa", rec, "--pairs", pairs, "--out", tmp_path / "b"), pairs, "listed twice")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_tdoa_csv_larger_than_the_free_disk_is_refused(cli, rec, tmp_path, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))  # 1 kB free
    assert_one_line_error(cli("tdoa", rec, "--out", tmp_path / "t.csv"), "t.csv", "rows", "free on the disk")
    assert not (tmp_path / "t.csv").exists()


def test_a_disk_that_fills_while_writing_is_one_line(cli, rec, tmp_path, monkeypatch):
    import errno

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("sslkit.tdoa.write_tdoa_csv", full)
    assert_one_line_error(cli("tdoa", rec, "--out", tmp_path / "t.csv"), "t.csv: No space left on device")


def test_peak_separation_and_beta_are_checked(cli, rec, tmp_path):
    """A negative or NaN separation and a β outside [0, 1] are refused (NaN β once gave a tdoa.csv of
    NaN); a separation wider than every lag range keeps one peak per pair (it once allocated 256 TB)."""
    for args, fragment in ((("--min-separation", "-1"), "min_separation = -1.0"), (("--min-separation", "nan"), "min_separation = nan"),
                           (("--weighting", "beta-phat", "--beta", "nan"), "beta = nan"), (("--weighting", "beta-phat", "--beta", "2"), "beta = 2.0")):
        assert_one_line_error(cli("tdoa", rec, *args, "--out", tmp_path / "a.csv"), fragment)
    assert not (tmp_path / "a.csv").exists()
    from sslkit import estimate_tdoa, load_recording

    result = estimate_tdoa(load_recording(rec), peaks=3, min_separation_s=1e9)
    active = ~result.silent
    assert np.isfinite(result.tdoa[active, :, 0]).all() and np.isnan(result.tdoa[active, :, 1:]).all()


def test_a_dc_offset_changes_neither_positions_nor_silence(tmp_path):
    """Cheap converters add a constant to each channel. A zero-padded frame spreads it over the low
    frequencies, the same on every mic; whitened, it was a peak at lag 0 (SRP-PHAT 2.5 m off on the
    demo), it hid silence, and it shrank wav2pos's unit-peak input."""
    from sslkit import load_recording, locate

    demo = Path(__file__).parents[1] / "examples" / "luvira-demo"
    audio, fs = sf.read(demo / "audio.wav", frames=2 * 16000, dtype="float32")
    audio[fs:] = 0.0  # the second second is silent
    offsets = np.linspace(0.2, 0.7, audio.shape[1], dtype=np.float32)
    for name, samples in (("clean", audio), ("offset", audio + offsets)):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "audio.wav", samples, fs, subtype="FLOAT")
        for file in ("mics.csv", "sources.csv", "scene.yaml"):
            (tmp_path / name / file).write_bytes((demo / file).read_bytes())
    clean, offset = load_recording(tmp_path / "clean"), load_recording(tmp_path / "offset")
    known_source = dict(known_source=True, refine_radius=0.0, views=0)  # the network alone, on the near-source channel too
    for method, options in (("srp-phat", {}), ("multilat", {}), ("wav2pos", {}), ("wav2pos", known_source)):
        expected, got = locate(clean, method, **options), locate(offset, method, **options)
        np.testing.assert_array_equal(np.isnan(got.xyz[:, 0]), np.isnan(expected.xyz[:, 0]), err_msg=method)
        assert np.isnan(got.xyz[got.times > 1.2, 0]).all(), method  # frames wholly in the silent second
        assert np.nanmax(np.linalg.norm(got.xyz - expected.xyz, axis=1)) < 0.02, (method, options)


def test_the_occupied_band_ends_at_the_first_empty_stretch():
    from sslkit.recording import occupied_band_hz

    fs, rng = 48000, np.random.default_rng(0)
    noise = rng.standard_normal((fs, 2))
    spectrum = np.fft.rfft(noise, axis=0)
    low = np.fft.irfft(np.where(np.fft.rfftfreq(fs, 1 / fs)[:, None] <= 8000, spectrum, 0), fs, axis=0)  # nothing above 8 kHz
    image = 10 ** (-60 / 20) * np.sin(2 * np.pi * 15000 * np.arange(fs) / fs)[:, None]  # a residue above the threshold further up
    assert occupied_band_hz(noise, fs) == fs / 2
    assert 8000 <= occupied_band_hz(low, fs) < 9000
    assert occupied_band_hz(low + image, fs) == occupied_band_hz(low, fs)
    assert occupied_band_hz(low + 3.0, fs) == occupied_band_hz(low, fs)  # a DC offset is not the band


def test_upsampled_audio_is_localized_in_its_occupied_band(tmp_path):
    """The demo upsampled to 48 kHz: the top of its band holds nothing but noise and the
    resampler's residue, which PHAT whitening would weigh as much as the speech; PHAT keeps the
    occupied band, exactly as if it had been given."""
    from scipy.signal import resample_poly

    from sslkit import estimate_tdoa, load_recording, locate_files
    from sslkit.errors import SslkitWarning
    from sslkit.recording import occupied_band_hz, read_audio

    demo = Path(__file__).parents[1] / "examples" / "luvira-demo"
    folder = tmp_path / "upsampled"
    folder.mkdir()
    for name in ("mics.csv", "sources.csv", "scene.yaml"):
        (folder / name).write_bytes((demo / name).read_bytes())
    audio, fs = sf.read(demo / "audio.wav", frames=2 * 16000, dtype="float32")
    sf.write(folder / "audio.wav", resample_poly(audio, 3, 1, axis=0), 3 * fs, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SslkitWarning)
        read_audio(folder / "audio.wav")  # reading alone does not judge the band: imports and training resample anyway
        estimate_tdoa(load_recording(demo), static=True)
        estimate_tdoa(load_recording(folder), weighting="cc", static=True)
    band = r"upsampled: holds nothing above \d\.?\d* kHz of its 24 kHz band.*upsampled.*PHAT uses 0–\d\.?\d* kHz only"

    def run(method: str, **options):
        return locate_files(folder, tmp_path / f"{method}{len(options)}.csv", None, method, False, **options)

    top = occupied_band_hz(load_recording(folder).audio, 3 * fs)
    assert 8000 <= top < 9500
    for method in ("srp-phat", "multilat"):
        with pytest.warns(SslkitWarning, match=band):
            auto = run(method)
        assert auto.metrics["mae_m"] < 0.15, method
        np.testing.assert_array_equal(auto.track.xyz, run(method, max_freq=top).track.xyz)
        assert not np.array_equal(auto.track.xyz, run(method, max_freq=3 * fs / 2).track.xyz)
    with pytest.raises(UserError, match=r"upsampled: max_freq = 30000 Hz is outside its band \(0, 24000\] Hz"):
        run("srp-phat", max_freq=30000)
    for shaping in (dict(max_freq=8000), dict(taper=True), dict(weighting="cc"), dict(upsample=4)):
        with pytest.raises(UserError, match="shapes gcc-phat only, not ngcc .NGCC-PHAT's network sees the frames as it was trained on"):
            estimate_tdoa(load_recording(folder), "ngcc", **shaping)
    for model_option in (dict(precision="bfloat16"), dict(checkpoint="ngcc-phat")):  # would be ignored
        with pytest.raises(UserError, match="shapes ngcc only, not gcc-phat"):
            estimate_tdoa(load_recording(folder), "gcc-phat", **model_option)


def hum(n: int, fs: int, mains: float, phases: np.ndarray) -> np.ndarray:
    """Mains hum (n, channels): the fundamental and its 2nd, 3rd and 5th harmonics (amplitudes 1/k),
    each channel at its own phase offset ``phases`` (channels,) in radians."""
    t = np.arange(n)[:, None] / fs
    return sum(np.sin(2 * np.pi * mains * k * t + k + phases[None]) / k for k in (1, 2, 3, 5)).astype(np.float32)


def demo_with(tmp_path: Path, name: str, extra: np.ndarray) -> Path:
    """A copy of the demo recording with ``extra`` (samples, channels) added to its audio."""
    demo = Path(__file__).parents[1] / "examples" / "luvira-demo"
    folder = tmp_path / name
    folder.mkdir()
    for file in ("mics.csv", "sources.csv", "scene.yaml"):
        (folder / file).write_bytes((demo / file).read_bytes())
    audio, fs = sf.read(demo / "audio.wav", dtype="float32")
    sf.write(folder / "audio.wav", audio + extra[: len(audio)], fs, subtype="FLOAT")
    return folder


def test_mains_hum_is_found_and_windowed_away(cli, tmp_path):
    """Hum on every channel, 10 dB below the speech: rectangular frames read it as a source at delay
    0 (SRP-PHAT tens of cm off); found, it is windowed away as if --taper had been given."""
    from sslkit import SslkitWarning, load_recording, locate_files
    from sslkit.hum import mains_hum

    clean = load_recording(Path(__file__).parents[1] / "examples" / "luvira-demo")
    level = np.sqrt(np.mean(clean.audio**2)) * 10 ** (-10 / 20) / np.sqrt(0.5 * (1 + 1 / 4 + 1 / 9 + 1 / 25))
    channels = sf.info(clean.path / "audio.wav").channels  # the near-source channel picks up the hum too
    folder = demo_with(tmp_path, "hum", level * hum(len(clean.audio), clean.fs, 50.0, np.zeros(channels)))
    result = cli("locate", folder, "--method", "srp-phat", "--no-plot", "--out", tmp_path / "auto.csv")
    assert result.exit_code == 0 and "mains hum at 50 Hz, the same on every channel (lines at 50, 100, 150" in result.output
    with pytest.warns(SslkitWarning, match="mains hum at 50 Hz"):
        auto = locate_files(folder, tmp_path / "a.csv", None, "srp-phat", False)
    tapered, rectangular = (locate_files(folder, tmp_path / f"{k}.csv", None, "srp-phat", False, taper=taper) for k, taper in (("t", True), ("r", False)))
    np.testing.assert_array_equal(auto.track.xyz, tapered.track.xyz)
    assert auto.metrics["mae_m"] < 0.12 < rectangular.metrics["mae_m"]
    assert cli("locate", folder, "--no-taper", "--no-plot", "--out", tmp_path / "r2.csv").exit_code == 0
    assert mains_hum(clean.audio, clean.fs) is None
    assert mains_hum(clean.audio + level * hum(len(clean.audio), clean.fs, 60.0, np.zeros(clean.n_mics)), clean.fs)[0] == 60.0


def test_coinciding_mics_are_the_pairs_a_distance_table_finds():
    """geometry.coinciding_pairs (x-sorted windows, no (M, M) table) against all pairwise distances,
    on points at and around the 1 µm reach."""
    from sslkit.geometry import SAME_POSITION_M, coinciding_pairs

    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 40))
        points = rng.choice([0.0, 0.5e-6, 1.0, 2.0], size=(m, 3)) + rng.integers(0, 2, (m, 3)) * rng.uniform(0, 2e-6, (m, 3))
        distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
        expected = [(i, j) for i in range(m) for j in range(i + 1, m) if distance[i, j] <= SAME_POSITION_M]
        assert coinciding_pairs(points, SAME_POSITION_M) == expected


def test_frames_are_tapered_at_their_edges_by_default():
    """Without hum, PHAT frames are under a Tukey window with EDGE_TAPER of them in its ramps (the
    default both GCC-PHAT and SRP-PHAT use); True is Hann, False rectangular; other values are refused."""
    from scipy.signal.windows import tukey

    from sslkit import load_recording
    from sslkit.gcc import tapered_window
    from sslkit.hum import phat_taper
    from sslkit.options import EDGE_TAPER

    torch.testing.assert_close(tapered_window(2048, 1.0), torch.hann_window(2048), atol=1e-6, rtol=0)
    ramp = tapered_window(2048, EDGE_TAPER)
    assert ramp[0] == 0 and (ramp[256:1793] == 1).all() and (ramp[1:256] < 1).all()
    np.testing.assert_allclose(ramp.numpy(), tukey(2049, EDGE_TAPER)[:-1], atol=1e-7)  # periodic: the symmetric one less its end
    for n, share in ((16, 0.1), (255, 0.5), (1023, 0.999), (6144, 0.01), (7, 0.0)):  # written out: scipy.signal took 1.7 s to import
        np.testing.assert_allclose(tapered_window(n, share, torch.float64).numpy(), tukey(n, share, sym=False), atol=1e-12, rtol=0)
    demo = load_recording(Path(__file__).parents[1] / "examples" / "luvira-demo")
    assert phat_taper(demo.audio, demo.fs, None) == EDGE_TAPER and phat_taper(demo.audio, demo.fs, True) == 1.0
    for method in ("srp-phat", "multilat"):
        by_default, edges, rectangular = (sslkit.locate(demo, method, **options).xyz for options in ({}, {"taper": EDGE_TAPER}, {"taper": False}))
        np.testing.assert_array_equal(by_default, edges)
        assert not np.allclose(by_default, rectangular, equal_nan=True)
    for bad in (-0.1, 1.5, "hann"):
        with pytest.raises(UserError, match="taper"):
            sslkit.locate(demo, "srp-phat", taper=bad)


def test_tones_that_are_not_hum_are_left_alone():
    """A steady tone at a mains harmonic that reaches each mic at its own time (a sound in the room,
    not the wiring), hum in differing phases, and audio too short to judge steadiness: no verdict."""
    from sslkit import load_recording
    from sslkit.hum import mains_hum

    clean = load_recording(Path(__file__).parents[1] / "examples" / "luvira-demo")
    level = np.sqrt(np.mean(clean.audio**2))
    delays = np.linalg.norm(clean.mics - [1.0, 1.0, 1.0], axis=1) / SPEED_OF_SOUND  # a loudspeaker in the room
    acoustic = hum(len(clean.audio), clean.fs, 50.0, -2 * np.pi * 50.0 * delays)
    scattered = hum(len(clean.audio), clean.fs, 50.0, np.random.default_rng(0).uniform(0, 2 * np.pi, clean.n_mics))
    assert mains_hum(clean.audio + level * acoustic, clean.fs) is None
    assert mains_hum(clean.audio + level * scattered, clean.fs) is None
    assert mains_hum((clean.audio + level * hum(len(clean.audio), clean.fs, 50.0, np.zeros(clean.n_mics)))[: 2 * clean.fs], clean.fs) is None


@pytest.mark.filterwarnings("ignore:.*(upsampled|resampled)")  # the occupied band's warning, NGCC-PHAT's resampling
def test_default_frames_and_hops_last_as_long_at_any_rate(tmp_path):
    """The defaults are durations (0.128 s frames every 0.064 s): the demo at 48 kHz is cut into the
    seconds its 16 kHz original is, and the method gives what the same frames in samples give."""
    from scipy.signal import resample_poly

    from sslkit import estimate_tdoa, load_recording, locate
    from sslkit.options import DEFAULT_FRAME_S, DEFAULT_HOP_S, MusicOptions, at_rate

    demo = Path(__file__).parents[1] / "examples" / "luvira-demo"
    audio, fs = sf.read(demo / "audio.wav", frames=2 * 16000, dtype="float32")
    folder = demo_with(tmp_path, "rate48k", np.zeros((1, audio.shape[1]), np.float32))  # the files beside the audio
    sf.write(folder / "audio.wav", resample_poly(audio, 3, 1, axis=0), 3 * fs, subtype="FLOAT")
    original, high = load_recording(demo), load_recording(folder)
    assert (DEFAULT_FRAME_S * fs, DEFAULT_HOP_S * fs) == (2048, 1024)
    np.testing.assert_allclose(estimate_tdoa(high).times, estimate_tdoa(original).times[: len(estimate_tdoa(high).times)])
    default, explicit = locate(high, "srp-phat"), locate(high, "srp-phat", frame=6144, hop=3072)
    np.testing.assert_array_equal(default.xyz, explicit.xyz)
    np.testing.assert_array_equal(default.times, explicit.times)
    ngcc_default, ngcc_given = estimate_tdoa(high, "ngcc"), estimate_tdoa(high, "ngcc", frame=6144, hop=3072)  # at the model's 16 kHz
    np.testing.assert_array_equal(ngcc_default.tdoa, ngcc_given.tdoa)
    np.testing.assert_allclose(ngcc_default.times, estimate_tdoa(original, "ngcc").times[: len(ngcc_default.times)])
    music = at_rate(MusicOptions(), 3 * fs)
    assert (music.frame, music.hop, music.snapshot) == (6144, 3072, 1536)
    for bad in (dict(hop=0), dict(frame=-5), dict(hop=2.5)):  # refused, not rounded into a one-sample hop
        with pytest.raises(UserError, match=r"= (0|-5|2.5): a positive whole number of samples"):
            locate(high, "srp-phat", **bad)


def test_estimates_outside_the_truths_time_span_are_one_line(cli, tmp_path):
    """A positions.csv whose hops all fall outside the sources' active time is one line naming it, for
    positions and for directions only (scored by their directions, these had no coverage to report)."""
    rec = user_recording(tmp_path / "rec")
    truth = tmp_path / "rec" / "sources.csv"
    truth.write_text("time,source_id,x,y,z\n0,0,2.5,1.8,1.2\n0.5,0,2.6,1.8,1.2\n")  # a source moving for 0.5 s
    pred = tmp_path / "pred.csv"
    for rows in ("time,x,y,z,track\n5.0,1,2,1,0\n", "time,x,y,z,track,azimuth_deg,elevation_deg\n5.0,,,,0,10,5\n"):
        pred.write_text(rows)
        result = cli("evaluate", "--pred", pred, "--truth", truth, "--mics", rec / "mics.csv", "--angular", "--out", tmp_path / "ev")
        assert_one_line_error(result, "pred.csv", "no estimate falls within the time span")
        assert not (tmp_path / "ev").exists()
