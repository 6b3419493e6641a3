"""The Python API does what the CLI does: the quick start of the README, on the bundled demo."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import sslkit

DEMO = Path(__file__).parents[1] / "examples" / "luvira-demo"


@pytest.fixture(scope="module")
def demo():
    return sslkit.load_recording(DEMO)


@pytest.mark.parametrize("method", ["srp-phat", "multilat", "wav2pos"])
def test_python_api_writes_the_cli_positions_exactly(cli, tmp_path, demo, method):
    assert cli("locate", DEMO, "--method", method, "--device", "cpu", "--no-plot", "--out", tmp_path / "cli.csv").exit_code == 0
    sslkit.write_positions(tmp_path / "api.csv", sslkit.locate(demo, method, device="cpu"))
    assert (tmp_path / "api.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()


def test_the_near_source_channel_is_split_off_once_and_never_a_room_mic(tmp_path, demo):
    full = sslkit.read_recording(DEMO)
    assert full.n_mics == 12 and full.scene["near_source"]
    assert demo.n_mics == 11 and demo.source_signal is not None
    np.testing.assert_array_equal(demo.source_signal, full.audio[:, -1])
    assert sslkit.load_recording(DEMO).mic_ids == full.mic_ids[:11]
    with_channel = sslkit.locate(full, "srp-phat", device="cpu", static=True)  # given all 12 channels, locate leaves it out
    without = sslkit.locate(demo, "srp-phat", device="cpu", static=True)
    np.testing.assert_array_equal(with_channel.xyz, without.xyz)


def test_quick_start_evaluates_against_the_ground_truth(demo):
    metrics = sslkit.evaluate_positions(sslkit.locate(demo, "multilat", device="cpu"), demo.sources)
    assert metrics["n"] > 0 and metrics["mae_m"] < 0.3 and metrics["accuracy"] > 0.8
    assert set(metrics) >= {"mae_m", "median_m", "accuracy", "accuracy_ci", "coverage"}


def test_tdoa_from_python_equals_the_cli_file(cli, tmp_path, demo):
    assert cli("tdoa", DEMO, "--peaks", "2", "--device", "cpu", "--out", tmp_path / "cli.csv").exit_code == 0
    result = sslkit.estimate_tdoa(demo, peaks=2, device="cpu")
    sslkit.write_tdoa_csv(tmp_path / "api.csv", result, sslkit.SPEED_OF_SOUND)
    assert (tmp_path / "api.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()


def test_the_speed_of_sound_defaults_to_the_recordings(demo):

    faster = dataclasses.replace(demo, scene={**demo.scene, "c": 360.0})
    in_faster_air = sslkit.locate(faster, "srp-phat", static=True).xyz
    np.testing.assert_array_equal(in_faster_air, sslkit.locate(demo, "srp-phat", static=True, c=360.0).xyz)
    assert not np.array_equal(in_faster_air, sslkit.locate(demo, "srp-phat", static=True).xyz)


def test_models_load_by_shipped_name_and_the_index_matches_the_files():
    for name, entry in sslkit.shipped_index().items():
        model, meta, path = sslkit.load_model(name)
        assert path.name == f"{name}.pt" and meta["model"] == entry["kind"] and model.fs == entry["fs"]
        if entry["kind"] == "ngcc-phat":
            assert (model.max_tau, model.config["n_outputs"], model.config["channels"]) == (entry["max_tau"], entry["outputs"], entry["channels"])
    assert sslkit.load_model(kind="ngcc-phat", fs=16000, max_lag=100)[2].name == "ngcc-phat-luvira-compact.pt"  # the smallest that covers, the cheapest of those
    with pytest.raises(sslkit.UserError, match="no shipped ngcc-phat checkpoint at 8000 Hz"):
        sslkit.load_model(kind="ngcc-phat", fs=8000)


def test_the_default_ngcc_for_the_luvira_array_is_the_compact_one_and_as_accurate(demo):
    """The 8-channel network is picked for the LuViRA array, and its TDOAs on the demo are at least
    as often within 10 cm of the truth as those of the 32-channel one (72 % against 61 %)."""
    from sslkit.geometry import speed_of_sound
    from sslkit.recording import room_channels
    from sslkit.tdoa import true_tdoa

    def share_within_10_cm(result: sslkit.TdoaResult) -> float:
        xyz = demo.sources.held_positions(result.times)
        err = np.abs(result.tdoa[:, :, 0] - true_tdoa(xyz, room_channels(demo).mics, result.pairs)) * speed_of_sound(demo.scene)
        return float(np.mean(err[~result.silent] < 0.1))

    compact = share_within_10_cm(sslkit.estimate_tdoa(demo, "ngcc", device="cpu"))
    small = share_within_10_cm(sslkit.estimate_tdoa(demo, "ngcc", device="cpu", checkpoint="ngcc-phat-luvira"))
    assert compact >= small > 0.5 and compact > 0.65


def test_importing_sslkit_and_its_cli_does_not_import_torch():
    code = "import sys, sslkit, sslkit.cli; assert sslkit.locate; print('torch' in sys.modules)"
    lazy = "import sys, sslkit, sslkit.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_a_48_khz_recording_meets_16_khz_models_resampled_with_a_note(demo):
    fast = demo.resampled(48000)
    assert fast.fs == 48000 and fast.audio.shape[0] == 3 * demo.audio.shape[0]
    with pytest.warns(sslkit.SslkitWarning, match="resampled from 48000 to 16000 Hz"):
        track = sslkit.locate(fast, "wav2pos", device="cpu")
    assert sslkit.evaluate_positions(track, demo.sources)["mae_m"] < 0.3
    with pytest.warns(sslkit.SslkitWarning, match="resampled from 48000 to 16000 Hz, the rate of the ngcc-phat model"):
        result = sslkit.estimate_tdoa(fast, "ngcc", device="cpu", frame=2048)
    assert np.isfinite(result.tdoa).any()
    slow = demo.resampled(8000)  # upsampled for the model: the note says what it lacks
    with pytest.warns(sslkit.SslkitWarning, match="resampled from 8000 to 16000 Hz.*nothing above 4000 Hz reaches the model"):
        sslkit.estimate_tdoa(slow, "ngcc", device="cpu")


def first_half_second(rec: sslkit.Recording) -> sslkit.Recording:
    """The recording's first half second: bfloat16 is emulated, and slow, on CPUs without AVX-512."""
    return dataclasses.replace(rec, audio=rec.audio[: rec.fs // 2])


def test_wav2pos_with_ngcc_in_bfloat16_gives_nearly_the_same_positions(demo):
    demo = first_half_second(demo)
    exact = sslkit.locate(demo, "wav2pos", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sslkit.SslkitWarning)  # this CPU may only emulate bfloat16
        reduced = sslkit.locate(demo, "wav2pos", device="cpu", precision="bfloat16")
    moved = np.linalg.norm(exact.xyz - reduced.xyz, axis=1)
    assert 0 < np.nanmedian(moved) < 0.02  # the reduced precision is used, and costs millimetres
    assert sslkit.evaluate_positions(reduced, demo.sources)["mae_m"] < 0.1
    with pytest.raises(sslkit.UserError, match="precision must be one of float32, bfloat16"):
        sslkit.locate(demo, "wav2pos", precision="float16")


def test_ngcc_in_bfloat16_gives_nearly_the_same_tdoas(demo):
    demo = first_half_second(demo)
    exact = sslkit.estimate_tdoa(demo, "ngcc", device="cpu", static=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sslkit.SslkitWarning)
        reduced = sslkit.estimate_tdoa(demo, "ngcc", device="cpu", static=True, precision="bfloat16")
    same = np.abs(exact.tdoa - reduced.tdoa) * demo.fs <= 1.0  # within a sample
    assert same.mean() > 0.9
    with pytest.raises(sslkit.UserError, match="precision must be one of float32, bfloat16"):
        sslkit.estimate_tdoa(demo, "ngcc", precision="float16")


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_on_a_device_that_only_emulates_it_says_so(demo, monkeypatch, native):
    monkeypatch.setattr(sslkit.resources, "native_bfloat16", lambda device: native)
    short = dataclasses.replace(demo, audio=demo.audio[:2048])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sslkit.estimate_tdoa(short, "ngcc", device="cpu", precision="bfloat16")
    notes = [str(w.message) for w in caught if "emulated" in str(w.message)]
    assert len(notes) == (0 if native else 1) and (native or "slower than float32" in notes[0])


def test_static_runs_refuse_what_they_would_ignore(demo):
    for method, options in [("srp-phat", dict(window=0.3)), ("multilat", dict(smooth=5)), ("wav2pos", dict(window=0.2)), ("wav2pos", dict(start_window=3)),
                            ("music", dict(window=1.0))]:
        with pytest.raises(sslkit.UserError, match="static takes the whole recording as one window"):
            sslkit.locate(demo, method, static=True, **options)
    with pytest.raises(sslkit.UserError, match="window would do nothing"):
        sslkit.estimate_tdoa(demo, "gcc-phat", static=True, window=0.2)


def test_options_a_method_would_ignore_are_refused(demo):
    cases = [("multilat", dict(beta=0.5), "the exponent of weighting beta-phat, but weighting is phat"),
             ("wav2pos", dict(views=4), "the views give the network's own estimates a confidence"),
             ("wav2pos", dict(refine_radius=0.0, start_window=5), "refine_radius 0 fits nothing"),
             ("srp-phat", dict(far_field=True, final_step=0.1), r"final_step \(--resolution\) sizes the position search's cells")]
    for method, options, message in cases:
        with pytest.raises(sslkit.UserError, match=message):
            sslkit.locate(demo, method, **options)
    with pytest.raises(sslkit.UserError, match="the exponent of weighting beta-phat"):
        sslkit.estimate_tdoa(demo, "gcc-phat", beta=0.3)
    assert np.isfinite(sslkit.locate(demo, "multilat", weighting="beta-phat", beta=0.5).xyz).any()  # where it applies
