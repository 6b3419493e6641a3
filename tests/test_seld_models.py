"""SELD features and the CRNN: shapes, GCC lag of a delayed channel, and learning a fixed batch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from sslkit.errors import UserError
from sslkit.models.adpit import ADPITLoss
from sslkit.models.seld_features import SeldFeatures
from sslkit.models.seldnet import SeldNet
from sslkit.recording import read_recording as load_recording

FS = 24000


def test_features_shapes_and_gcc_peak_at_the_delay():
    x = torch.randn(1, 1, FS)
    audio = torch.cat([x, torch.roll(x, 5, -1), x, x], dim=1)  # mic 2 hears the signal 5 samples later
    feats = SeldFeatures(FS)(audio)
    assert feats.shape == (1, 4 + 6, FS // 480 + 1, 64)
    gcc_01 = feats[0, 4].mean(0)  # pair (0, 1): τ01 = t0 − t1 = −5 samples
    assert gcc_01.argmax().item() - 32 == -5


def test_seldnet_learns_a_fixed_batch_with_adpit():
    torch.manual_seed(0)
    feats = SeldFeatures(FS)(torch.randn(2, 4, FS // 2))  # 0.5 s → 26 frames → 5 label frames
    model = SeldNet(in_channels=10, n_classes=3, filters=16, rnn_size=32, fc_size=32)
    out = model(feats[:, :, :25])
    assert out.shape == (2, 5, 3, 4, 3)
    target = torch.zeros(2, 5, 6, 5, 3)
    target[:, :, 0, 0, 1] = 1.0  # one class-1 event everywhere: A0 active
    target[:, :, 0, 1:, 1] = torch.tensor([0.6, 0.8, 0.0, 2.0])
    loss_fn = ADPITLoss("bradpit")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = loss_fn(model(feats[:, :, :25]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_distance_unit_rescales_only_the_distance_term():
    from sslkit.models.train_seld import in_distance_units

    target = torch.zeros(1, 1, 6, 5, 2)
    target[0, 0, 0, :, 1] = torch.tensor([1.0, 0.6, 0.8, 0.0, 3.0])  # activity, DOA, 3 m
    output = torch.zeros(1, 1, 3, 4, 2)
    output[0, 0, 0, :, 1] = torch.tensor([0.3, 0.4, 0.0, 1.0])  # DOA off, 1 m
    out, tgt = in_distance_units(output, target, 2.0)
    torch.testing.assert_close(tgt[0, 0, 0, :, 1], torch.tensor([1.0, 0.6, 0.8, 0.0, 1.5]))
    torch.testing.assert_close(out[0, 0, 0, :, 1], torch.tensor([0.3, 0.4, 0.0, 0.5]))
    # the loss's DOA part is kept, its distance part divided by unit²: (3 − 1)² = 4 m² → 1
    loss_fn = ADPITLoss("bradpit")
    doa_only = loss_fn(*in_distance_units(output, target, 1e9))
    assert torch.isclose(loss_fn(*in_distance_units(output, target, 2.0)) - doa_only,
                         (loss_fn(output, target) - doa_only) / 4, rtol=1e-5)


def test_train_seld_cli_and_loss_choice_does_not_change_training(cli, tmp_path):
    import yaml

    scene = {"fs": FS, "duration": 2.0, "room": {"dimensions": [6.0, 5.0, 3.0], "rt60": 0.3},
             "mics": {"positions": [[2.52, 2.02, 1.52], [2.52, 1.98, 1.48], [2.48, 2.02, 1.48], [2.48, 1.98, 1.52]]},
             "sources": [{"signal": {"choice": ["bell", "alarm"]}, "position": {"random": {"min_wall_distance": 0.5}}, "length": 1.5},
                         {"signal": "bell", "position": {"random": {"min_wall_distance": 0.5}}, "start": 0.5}],
             "noise": {"snr_db": 20}}
    (tmp_path / "scene.yml").write_text(yaml.safe_dump(scene))
    assert cli("simulate", "--config", tmp_path / "scene.yml", "--count", 3, "--out", tmp_path / "data", "--workers", 1).exit_code == 0
    (tmp_path / "classes.yaml").write_text("[bell, alarm]\n")
    curves = {}
    for loss in ("adpit", "bradpit"):
        result = cli("train-seld", "--data", tmp_path / "data", "--classes", tmp_path / "classes.yaml", "--epochs", 2,
                     "--batch-size", 2, "--loss", loss, "--device", "cpu", "--out", tmp_path / loss)
        assert result.exit_code == 0, result.output
        curves[loss] = (tmp_path / loss / "metrics.csv").read_text().splitlines()
    resumed = cli("train-seld", "--data", tmp_path / "data", "--classes", tmp_path / "classes.yaml", "--epochs", 3,
                  "--batch-size", 2, "--loss", "adpit", "--device", "cpu", "--out", tmp_path / "adpit", "--resume")
    assert resumed.exit_code == 0 and len((tmp_path / "adpit" / "metrics.csv").read_text().splitlines()) == 4
    from conftest import assert_one_line_error

    for size, fragment in ((("--filters", 100_000), "SELDnet of"), (("--batch-size", 10**9), "a batch of 1000000000")):  # once allocation tracebacks
        assert_one_line_error(cli("train-seld", "--data", tmp_path / "data", "--classes", tmp_path / "classes.yaml", *size, "--out", tmp_path / "big"),
                              fragment, "needs about")
    assert not (tmp_path / "big").exists()
    for flag, value, fragment in (("--loss", "brute-force", "adpit (baseline), overlay"), ("--features", "mfcc", "logmel+gcc"),
                                  ("--distance-weight", "square", "none, reciprocal")):
        assert_one_line_error(cli("train-seld", "--data", tmp_path / "data", flag, value, "--out", tmp_path / "bad"), f"{flag} must be one of", fragment)
    from sslkit.models.train_seld import SeldTrainConfig, train_seld

    with pytest.raises(UserError, match="--loss must be one of"):  # the library's rule, not only the CLI's
        train_seld(SeldTrainConfig([str(tmp_path / "data")], [], ["speech"], loss="adpit"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    from pathlib import Path

    shutil.copytree(tmp_path / "data" / "scene_00000", tmp_path / "mixed" / "a")
    shutil.copytree(Path(__file__).parents[1] / "examples" / "luvira-demo", tmp_path / "mixed" / "b")  # 12 mics: another array
    assert_one_line_error(cli("predict-seld", "--checkpoint", tmp_path / "adpit" / "best.pt", tmp_path / "mixed", "--out", tmp_path / "pred"),
                          "mixed/b", "12 microphones")
    assert not (tmp_path / "pred").exists()  # a.csv was written before b was refused
    from sslkit.seld import write_dcase_csv
    from sslkit.sims.seld_labels import dcase_labels

    (tmp_path / "meta").mkdir()
    for folder in sorted((tmp_path / "data").glob("scene_*")):
        write_dcase_csv(tmp_path / "meta" / f"{folder.name}.csv", dcase_labels(load_recording(folder), ["bell", "alarm"]), "polar")
    from sslkit.models.checkpoint import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(tmp_path / "adpit" / "best.pt")
    last = model.fc[-1]
    with torch.no_grad():  # every frame: track 0 of every class active at azimuth 0, elevation 0, 2 m
        last.weight.zero_()
        last.bias.zero_()
        last.bias[: model.n_classes] = 1.0
        last.bias[3 * model.n_classes : 4 * model.n_classes] = 2.0
    save_checkpoint(tmp_path / "constant.pt", model, "seldnet", **{k: v for k, v in meta.items() if k not in ("model", "config")})
    scored = {}
    for fmt, width in (("cartesian", 7), ("polar", 6)):  # predict-seld → evaluate-seld in both formats gives the same scores
        result = cli("predict-seld", "--checkpoint", tmp_path / "constant.pt", tmp_path / "data", "--out", tmp_path / fmt, "--format", fmt,
                     "--device", "cpu")
        assert result.exit_code == 0, result.output
        lines = [line for f in sorted((tmp_path / fmt).glob("scene_*.csv")) for line in f.read_text().splitlines()]
        assert lines and {len(line.split(",")) for line in lines} == {width}
        evaluated = cli("evaluate-seld", "--pred", tmp_path / fmt, "--truth", tmp_path / "meta", "--classes", 2)
        assert evaluated.exit_code == 0 and f"predictions: {fmt} format" in evaluated.output, evaluated.output
        scored[fmt] = json.loads((tmp_path / fmt / "seld_metrics.json").read_text())
    for cartesian, polar in zip(scored["cartesian"]["per_class"], scored["polar"]["per_class"]):
        assert {k: cartesian[k] for k in ("tp", "fp", "fn")} == {k: polar[k] for k in ("tp", "fp", "fn")} and cartesian["tp"] + cartesian["fp"] > 0
        assert cartesian["doae_deg"] == pytest.approx(polar["doae_deg"], abs=1e-6) and cartesian["rde"] == pytest.approx(polar["rde"], abs=1e-6)
    from scipy.signal import resample_poly

    from conftest import assert_one_line_error

    first = sorted((tmp_path / "data").glob("scene_*"))[0]
    audio, fs = sf.read(first / "audio.wav")
    for name, changed, rate in (("fast", resample_poly(audio, 2, 1, axis=0), 2 * fs), ("stereo", audio[:, :2], fs)):
        shutil.copytree(first, tmp_path / name)
        sf.write(tmp_path / name / "audio.wav", changed, rate, subtype="FLOAT")
    (tmp_path / "stereo" / "mics.csv").write_text("\n".join((first / "mics.csv").read_text().splitlines()[:3]) + "\n")
    result = cli("predict-seld", "--checkpoint", tmp_path / "constant.pt", tmp_path / "fast", "--out", tmp_path / "fast_pred", "--device", "cpu")
    assert result.exit_code == 0 and f"resampled from {2 * fs} to {fs} Hz" in result.output, result.output
    assert (tmp_path / "fast_pred" / "fast.csv").read_text() == (tmp_path / "cartesian" / f"{first.name}.csv").read_text()
    assert_one_line_error(cli("predict-seld", "--checkpoint", tmp_path / "constant.pt", tmp_path / "stereo", "--out", tmp_path / "p2"),
                          "2 microphones", "trained on 4")
    from sslkit.models.train_seld import load_clips
    from sslkit.seld_metrics import seld_metrics

    evaluated = cli("evaluate-seld", tmp_path / "bradpit", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads((tmp_path / "bradpit" / "seld_metrics.json").read_text())
    rows = [dict(zip(curves["bradpit"][0].split(","), map(float, r.split(",")))) for r in curves["bradpit"][1:]]
    saved = max(rows, key=lambda r: r["f_ld"])  # best.pt: the first epoch with the highest F_LD
    undefined_as_nan = [float("nan") if scores[k] is None else scores[k] for k in ("f_ld", "doae_deg", "rde", "seld_score")]
    assert undefined_as_nan == pytest.approx([saved[k] for k in ("f_ld", "doae_deg", "rde", "seld_score")], abs=1e-6, nan_ok=True)
    val_clip = load_clips([str(tmp_path / "data" / f"scene_0000{i}") for i in (0, 1)], ["bell", "alarm"])[0]  # the first fifth validates
    references = [c["tp"] for c in seld_metrics([val_clip.labels], [val_clip.labels], 2)["per_class"]]
    assert [c["tp"] + c["fn"] for c in scores["per_class"]] == references and sum(references) > 0
    assert cli("evaluate-seld", tmp_path / "data").exit_code == 2  # not a run folder
    first = [float(r.split(",")[1]) for r in curves["adpit"][1:3]]
    second = [float(r.split(",")[1]) for r in curves["bradpit"][1:3]]
    assert first == pytest.approx(second, rel=1e-4)


def test_dcase_layout_is_read_and_checked(tmp_path):
    import soundfile as sf

    from sslkit.errors import InputFileError
    from sslkit.models.train_seld import clip_targets, load_clips

    for name in ("fold1_room1_mix001", "fold1_room1_mix002"):
        (tmp_path / "mic_dev" / "dev-train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "metadata_dev" / "dev-train").mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "mic_dev" / "dev-train" / f"{name}.wav", 0.1 * np.random.default_rng(0).standard_normal((FS, 4)), FS)
        (tmp_path / "metadata_dev" / "dev-train" / f"{name}.csv").write_text("0,1,0,90,0,250\n3,1,0,0,0,100\n3,1,1,180,0,100\n")
    clips = load_clips([str(tmp_path)], ["a", "b"])
    assert len(clips) == 2 and clips[0].n_frames == 10
    target = clip_targets(clips[0], 2)
    assert target.shape == (10, 6, 5, 2)
    assert target[0, 0, 0, 1] == 1 and np.allclose(target[0, 0, 1:, 1], [0, 1, 0, 2.5], atol=1e-6)  # A0 at 90°, 2.5 m
    assert target[3, 1:3, 0, 1].tolist() == [1, 1]  # two class-1 events in frame 3: B0, B1
    (tmp_path / "metadata_dev" / "dev-train" / "fold1_room1_mix002.csv").write_text("40,1,0,0,0,100\n")
    with pytest.raises(InputFileError, match="labels reach frame 40"):
        load_clips([str(tmp_path)], ["a", "b"])


def test_channel_swaps_of_the_tetrahedral_array():

    from sslkit.models.channel_swap import channel_swaps, swap_targets

    r = 0.042
    angles = np.radians([[45, 35], [-45, -35], [135, -35], [-135, 35]])
    tetra = r * np.stack([np.cos(angles[:, 1]) * np.cos(angles[:, 0]), np.cos(angles[:, 1]) * np.sin(angles[:, 0]), np.sin(angles[:, 1])], 1)
    swaps = channel_swaps(tetra + [2.5, 2.0, 1.5])
    assert len(swaps) == 24 and (swaps[0][0] == np.arange(4)).all()
    d = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    for perm, rot in swaps:
        # far-field delays of the swapped channels equal those of the rotated source direction
        np.testing.assert_allclose(tetra[perm] @ d, tetra @ (rot.T @ d), atol=0.01 * r)  # within the 1 % tolerance
    irregular = tetra + np.array([[0.010, 0.004, -0.006], [0, 0, 0], [0, -0.008, 0.003], [0, 0, 0]])  # no symmetry left
    assert len(channel_swaps(irregular)) == 1
    target = np.zeros((2, 6, 5, 1))
    target[:, 0, 0, 0], target[:, 0, 1:4, 0], target[:, 0, 4, 0] = 1, d, 2.0
    swapped = swap_targets(target, swaps[5][1])
    np.testing.assert_allclose(swapped[0, 0, 1:4, 0], swaps[5][1].T @ d)
    assert swapped[0, 0, 4, 0] == 2.0 and swapped[0, 0, 0, 0] == 1


def test_channel_swapped_cached_features_match_recomputed_ones():
    """Cached log-mels and GCC-PHAT, rearranged for a channel swap, equal the features of the swapped audio."""
    from sslkit.models.seld_features import swap_channel_features

    audio = torch.randn(1, 4, FS // 4)
    features = SeldFeatures(FS)
    logmel, lags = features.with_mirror_lag(audio)
    assert lags.shape[-1] == 65
    for perm in ([1, 0, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        torch.testing.assert_close(swap_channel_features(logmel[0], lags[0], np.array(perm)), features(audio[:, perm])[0], atol=1e-5, rtol=1e-4)
    only_mels = SeldFeatures(FS, gcc=False)
    torch.testing.assert_close(swap_channel_features(only_mels.with_mirror_lag(audio)[0][0], None, np.array([3, 2, 1, 0])),
                               only_mels(audio[:, [3, 2, 1, 0]])[0])


def test_channel_swapped_ngcc_features_match_recomputed_ones():
    """Cached NGCC-PHAT pair features, rearranged for a channel swap, equal those of the swapped audio."""
    from sslkit.models.channel_swap import channel_swaps
    from sslkit.models.ngcc import NGCCPHAT
    from sslkit.models.seld_features import NgccSeldFeatures, swap_pair_features

    torch.manual_seed(0)
    ngcc = NGCCPHAT(max_tau=6, fs=FS, n_sinc=4, sinc_len=31, channels=4, head_channels=4, n_outputs=3)
    for p in ngcc.head.parameters():  # sharper, less symmetric outputs
        p.data.mul_(3.0)
    features = NgccSeldFeatures(ngcc, FS, window=256, chunk=4)
    audio = torch.randn(1, 4, 2400)
    base = features(audio)
    assert base.shape == (1, 2400 // 480 + 1, 6 * 4 * 13)  # C = head_channels = 4 feature channels per pair, 13 lags
    tetra = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) * 0.0242
    for perm, _ in channel_swaps(tetra)[1:24:5]:
        torch.testing.assert_close(swap_pair_features(base, perm, 13), features(audio[:, perm]), atol=1e-5, rtol=1e-4)


def test_train_seld_with_multi_target_ngcc_features(cli, tmp_path):
    import yaml

    from sslkit.models.checkpoint import save_checkpoint
    from sslkit.models.ngcc import NGCCPHAT

    scene = {"fs": FS, "duration": 1.5, "room": {"dimensions": [6.0, 5.0, 3.0], "rt60": 0.3},
             "mics": {"positions": [[2.52, 2.02, 1.52], [2.52, 1.98, 1.48], [2.48, 2.02, 1.48], [2.48, 1.98, 1.52]]},
             "sources": [{"signal": "bell", "position": {"random": {"min_wall_distance": 0.5}}}], "noise": {"snr_db": 20}}
    (tmp_path / "scene.yml").write_text(yaml.safe_dump(scene))
    assert cli("simulate", "--config", tmp_path / "scene.yml", "--count", 2, "--out", tmp_path / "data", "--workers", 1).exit_code == 0
    ngcc = tmp_path / "ngcc.pt"
    save_checkpoint(ngcc, NGCCPHAT(max_tau=6, fs=FS, n_sinc=4, sinc_len=31, channels=4, head_channels=4, n_outputs=3), "ngcc-phat")
    (tmp_path / "classes.yaml").write_text("[bell]\n")
    args = ("train-seld", "--data", tmp_path / "data", "--classes", tmp_path / "classes.yaml", "--epochs", 1, "--batch-size", 2,
            "--device", "cpu", "--features", "logmel+ngcc")
    from conftest import assert_one_line_error

    wrong_rate = tmp_path / "ngcc16k.pt"
    save_checkpoint(wrong_rate, NGCCPHAT(max_tau=6, fs=16000, n_sinc=4, sinc_len=31, channels=4, head_channels=4), "ngcc-phat")
    assert_one_line_error(cli(*args, "--ngcc", wrong_rate, "--out", tmp_path / "bad"), "at 24000 Hz")
    result = cli(*args, "--ngcc", ngcc, "--out", tmp_path / "run", "--val", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "--val" not in result.output and (tmp_path / "run" / "metrics.csv").is_file()
    result = cli("predict-seld", "--checkpoint", tmp_path / "run" / "best.pt", tmp_path / "data", "--out", tmp_path / "pred", "--device", "cpu")
    assert result.exit_code == 0, result.output


def test_clips_of_another_array_are_named_and_other_rates_resampled():
    from sslkit.errors import SslkitWarning
    from sslkit.models.train_seld import Clip, clip_targets, same_array_and_rate
    from sslkit.seld import SeldEvents

    none = SeldEvents(*(np.zeros(0, int),) * 2, *(np.zeros(0),) * 3)
    clip = lambda name, channels, fs: Clip(name, np.ones((fs, channels), np.float32), fs, none)  # noqa: E731
    with pytest.raises(UserError, match="clip b: 2 microphones, but clip a has 4"):
        same_array_and_rate([clip("a", 4, 24000)], [clip("b", 2, 24000)])
    with pytest.warns(SslkitWarning, match="clip b: resampled from 48000 to 24000 Hz"):
        train, val = same_array_and_rate([clip("a", 4, 24000), clip("b", 4, 48000)], [])
    assert train[1].fs == 24000 and train[1].audio.shape == (24000, 4)
    assert clip_targets(train[1], n_classes=2).shape == (10, 6, 5, 2)  # 1 s of 100 ms label frames, no events: still the distance axis
