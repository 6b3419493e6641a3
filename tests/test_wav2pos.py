"""wav2pos: permutation invariance, masking rules, loss, and that it learns on a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslkit.models.wav2pos import Wav2Pos, random_masks, wav2pos_loss

TINY = dict(n_samples=128, dim=32, depth=1, heads=4, ngcc=dict(max_tau=8, n_sinc=4, sinc_len=15, channels=4, head_channels=4))


def batch(b: int = 3, m: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(b, m + 1, TINY["n_samples"], generator=g)
    coords = torch.rand(b, m + 1, 3, generator=g) * torch.tensor([7.0, 8.0, 2.0])
    return audio, coords


def test_source_estimate_is_invariant_to_mic_order():
    torch.manual_seed(0)
    model = Wav2Pos(**TINY).eval()
    with torch.no_grad():  # sharper lag distributions and a larger φ make any order dependence visible
        for p in model.ngcc.head.parameters():
            p.mul_(3.0)
        for layer in model.phi:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(5.0)
    audio, coords = batch()
    known = torch.ones(3, 7, dtype=torch.bool)
    known[:, 0] = False
    audio_known, coord_known = known.clone(), known.clone()
    audio_known[0, 3] = False  # masks travel with their mics
    perm = torch.tensor([0, 4, 2, 6, 1, 5, 3])
    with torch.no_grad():
        out = model(audio, coords, audio_known, coord_known)
        out_p = model(audio[:, perm], coords[:, perm], audio_known[:, perm], coord_known[:, perm])
    torch.testing.assert_close(out["source"], out_p["source"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["mics"][:, perm[1:] - 1], out_p["mics"], atol=1e-4, rtol=1e-4)


def test_masked_inputs_do_not_leak():
    torch.manual_seed(0)
    model = Wav2Pos(**TINY).eval()
    audio, coords = batch()
    audio_known = torch.ones(3, 7, dtype=torch.bool)
    audio_known[:, 0] = False
    coord_known = audio_known.clone()
    audio_known[:, 2] = False
    coord_known[:, 5] = False
    changed_audio, changed_coords = audio.clone(), coords.clone()
    changed_audio[:, 2] += 5.0  # masked audio
    changed_coords[:, 5] += 1.0  # masked coordinate
    changed_coords[:, 0] += 3.0  # the source row is never an input
    with torch.no_grad():
        a = model(audio, coords, audio_known, coord_known)
        b = model(changed_audio, changed_coords, audio_known, coord_known)
    torch.testing.assert_close(a["source"], b["source"], atol=1e-5, rtol=1e-5)


def test_random_masks_follow_the_paper_rules():
    g = torch.Generator().manual_seed(0)
    audio_known, coord_known = random_masks(500, 11, g, min_known=5, p_mask=0.6)
    assert not audio_known[:, 0].any() and not coord_known[:, 0].any()
    mics_a, mics_c = audio_known[:, 1:], coord_known[:, 1:]
    assert (mics_a | mics_c).all()  # never both masked
    assert ((mics_a & mics_c).sum(1) >= 5).all()
    assert (~mics_a).any() and (~mics_c).any()


def test_reversed_pairs_use_the_mirrored_lag_distribution():
    """φ sees R_ji = R_ij mirrored: swapping two mics' audio mirrors their pair's distribution."""
    torch.manual_seed(0)
    model = Wav2Pos(**TINY).eval()
    audio, _ = batch(m=3)
    probs = model.pair_features(audio)  # pairs (1,2), (1,3), (2,3)
    swapped = model.pair_features(audio[:, [0, 2, 1, 3]])  # mics 1 and 2 exchanged
    torch.testing.assert_close(swapped[:, 0], probs[:, 0].flip(-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 3))


@pytest.mark.parametrize("design", ["sslkit", "reference"])
def test_bank_subsets_carry_the_matching_pair_features(design):
    """Cached NGCC-PHAT features of a random mic subset equal those computed on the subset's audio
    (the reference design's pairs include the source's row)."""
    import numpy as np

    from sslkit.models.train_wav2pos import Wav2PosBank
    from sslkit.recording import Recording, SourceTrack

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Wav2Pos(**TINY, design=design).eval()
    track = SourceTrack(np.array([0.0, 1.0]), np.full(2, 3), np.array([[1.0, 2.0, 1.0], [2.0, 2.0, 1.0]]))  # any source id
    recs = [Recording(rng.standard_normal((1000, 7)).astype(np.float32), 1000, [str(i) for i in range(7)],
                      rng.random((7, 3)) * 5, track, {"near_source": 0.1}) for _ in range(3)]
    bank = Wav2PosBank(recs, TINY["n_samples"], 2, rng)
    assert len(bank) == 6 and bank.n_mics == 6 and bank.has_source.all()
    bank.attach_features(model, "cpu")
    sample = bank.sample(5, rng, n_mics=4)
    assert sample["audio"].shape == (5, 5, TINY["n_samples"]) and sample["coords"].shape == (5, 5, 3)
    expected = model.pair_features(sample["audio"])
    torch.testing.assert_close(sample["probs"].float(), expected, atol=2e-3, rtol=1e-2)
    rows = {tuple(c) for c in bank.coords[:, 1:].reshape(-1, 3).numpy().round(6)}
    assert all(tuple(c) in rows for c in sample["coords"][:, 1:].reshape(-1, 3).numpy().round(6))
    out = model(sample["audio"], sample["coords"], *[torch.ones(5, 5, dtype=torch.bool)] * 2, sample["probs"])
    assert out["source"].shape == (5, 3)


REFERENCE_PARAMETERS_WITHOUT_LAGS = 9_432_198
"""Parameters of the authors' wav2pos at d = 256, D = 4, N = 2048 without its NGCC-PHAT and without
the LayerNorm of 2048 it builds and never uses, less 512 per lag of φ's input, counted layer by layer
from the reference: encoder and decoder 2 × 4 × (12d² + 13d), their final LayerNorms 4d, audio
projection and reconstruction 2 × 2048d + d + 2048, coordinate embedding 3·64 + 64 + 2·64 + 64d + d + 2d,
4 modality and 3 mask tokens 7d, messages 3 × (d² + 3d), decoder embedding and global feature
2 × (d² + d), φ 2d·512 + 512 + 2·512 + 512² + 512 and its projection 512d + d, two heads
2 × (3d·512 + 512 + 2·512 + 512·256 + 256 + 2·256 + 256·3 + 3)."""


def test_paper_size_has_the_reference_parameter_count():
    from sslkit.models.ngcc import NGCCPHAT

    ngcc = NGCCPHAT.from_size("paper", max_tau=314)
    model = Wav2Pos.from_size("paper", ngcc=ngcc.config)
    n_ngcc = sum(p.numel() for p in ngcc.parameters())
    assert sum(p.numel() for p in model.parameters()) - n_ngcc == REFERENCE_PARAMETERS_WITHOUT_LAGS + 512 * 629
    assert model.config["heads"] == 4 and model.design == "reference"
    with pytest.raises(ValueError, match="size must be one of"):
        Wav2Pos.from_size("huge")


def test_reference_lag_distributions_equal_the_mirror_averaged_ones():
    """From the reference's raw logits of both orders (source pairs included), the mic pairs' lag
    distributions equal those sslkit's design reads from the same NGCC-PHAT."""
    torch.manual_seed(0)
    reference = Wav2Pos(**TINY, design="reference").eval()
    sslkit_design = Wav2Pos(**TINY).eval()
    sslkit_design.ngcc.load_state_dict(reference.ngcc.state_dict())
    audio, _ = batch(m=4)
    feats = reference.pair_features(audio)
    assert feats.shape == (3, 10, 2, 17)  # (1+4)·4/2 token pairs, both orders, 2·8 + 1 lags
    torch.testing.assert_close(reference.lag_distributions(feats), sslkit_design.pair_features(audio), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("design", ["sslkit", "reference"])
def test_known_source_audio_enters_only_the_reference_tdoa_module(design):
    """The reference pairs the source's audio with the mics when it is known; sslkit's design does not."""
    torch.manual_seed(0)
    model = Wav2Pos(**TINY, design=design).eval()
    audio, coords = batch(m=4)
    known = torch.ones(3, 5, dtype=torch.bool)
    feats = model.pair_features(audio)
    dec = torch.randn(3, 5, TINY["dim"])
    other = model.pair_features(torch.cat([torch.randn_like(audio[:, :1]), audio[:, 1:]], dim=1))
    changed = not torch.allclose(model.tdoa_feature(feats, known, dec), model.tdoa_feature(other, known, dec))
    assert changed == (design == "reference")
    known[:, 0] = False
    torch.testing.assert_close(model.tdoa_feature(feats, known, dec), model.tdoa_feature(other, known, dec))


def test_scene_rotation_keeps_every_distance():
    import numpy as np

    from sslkit.models.train_wav2pos import rotate_scenes

    rng = np.random.default_rng(0)
    coords = rng.random((50, 12, 3)) * [7.0, 8.0, 2.0]
    turned = rotate_scenes(torch.as_tensor(coords), (3.5, 4.0, 1.0), rng).numpy()
    dist = lambda c: np.linalg.norm(c[:, :, None] - c[:, None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(turned), dist(coords), atol=1e-12)
    np.testing.assert_array_equal(turned[..., 2], coords[..., 2])
    assert np.abs(turned - coords).max() > 1.0


def test_half_precision_copy_predicts_the_same(tmp_path):
    from sslkit.models.checkpoint import half_precision_copy, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = Wav2Pos(**TINY).eval()
    save_checkpoint(tmp_path / "full.pt", model, "wav2pos", optimizer={"state": 1})
    half_precision_copy(tmp_path / "full.pt", tmp_path / "half.pt")
    copy, meta = load_checkpoint(tmp_path / "half.pt")
    assert "optimizer" not in meta and next(copy.parameters()).dtype == torch.float32
    audio, coords = batch()
    known = torch.ones(3, 7, dtype=torch.bool)
    known[:, 0] = False
    with torch.no_grad():
        torch.testing.assert_close(copy(audio, coords, known, known)["source"], model(audio, coords, known, known)["source"],
                                   atol=0.02, rtol=0.01)


def test_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = Wav2Pos(**TINY)
    audio, coords = batch(b=8)
    known = torch.ones(8, 7, dtype=torch.bool)
    known[:, 0] = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = model(audio, coords, known, known)
        loss = wav2pos_loss(out, audio, coords[:, 0], coords[:, 1:], known, known)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_train_wav2pos_and_locate_cli(cli, tmp_path):
    import yaml

    scene = {"fs": 16000, "duration": 1.0, "room": {"dimensions": [7.0, 8.0, 2.0], "rt60": 0.2},
             "mics": {"file": "luvira", "near_source": 0.1},
             "sources": [{"signal": "speech", "trajectory": {"random": {"waypoints": 2, "speed": 0.5, "height": [1.0, 1.6]}}}],
             "noise": {"snr_db": 30}}
    (tmp_path / "scene.yml").write_text(yaml.safe_dump(scene))
    assert cli("simulate", "--config", tmp_path / "scene.yml", "--count", 2, "--out", tmp_path / "data", "--workers", 1).exit_code == 0
    run = tmp_path / "run"
    result = cli("train-wav2pos", "--data", tmp_path / "data" / "scene_00000", "--data", tmp_path / "data" / "scene_00001",
                 "--epochs", 1, "--dim", 16, "--depth", 1, "--batch-size", 4, "--windows-per-scene", 2, "--device", "cpu", "--out", run)
    assert result.exit_code == 0, result.output
    assert (run / "best.pt").is_file() and (run / "metrics.csv").is_file()
    data = ["--data", tmp_path / "data"]  # a dataset folder: its recordings
    # fine-tuning keeps the checkpoint's size (the default --dim would be 256)
    result = cli("train-wav2pos", *data, "--init", run / "best.pt", "--epochs", 1, "--batch-size", 4, "--device", "cpu", "--out", tmp_path / "ft")
    assert result.exit_code == 0, result.output
    from sslkit.models.checkpoint import load_checkpoint, resolve_checkpoint

    assert load_checkpoint(tmp_path / "ft" / "best.pt")[1]["config"]["dim"] == 16
    from conftest import assert_one_line_error

    assert_one_line_error(cli("train-wav2pos", *data, "--init", resolve_checkpoint("ngcc-phat"), "--out", tmp_path / "bad"), "a wav2pos checkpoint is needed")
    assert_one_line_error(cli("train-wav2pos", *data, "--init", run / "best.pt", "--dim", 32, "--ngcc", resolve_checkpoint("ngcc-phat"), "--out", tmp_path / "bad"),
                          "keeps its network's size", "--dim, --ngcc would be ignored")  # once ignored without a word
    assert not (tmp_path / "bad").exists()
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("train-wav2pos", "--data", tmp_path / "empty", "--out", tmp_path / "bad"), "empty", "no recording folders")
    assert_one_line_error(cli("train-wav2pos", "--data", tmp_path / "absent", "--out", tmp_path / "bad"), "absent", "no such folder")
    out = tmp_path / "pos" / "positions.csv"
    result = cli("locate", tmp_path / "data" / "scene_00000", "--method", "wav2pos", "--checkpoint", run / "best.pt",
                 "--known-source", "--unknown-mics", "3", "--out", out, "--no-plot")
    assert result.exit_code == 0, result.output
    assert out.is_file() and (out.parent / "mics_estimated.csv").read_text().startswith("mic_id,x,y,z\n3,")
    import numpy as np

    confidence = np.loadtxt(out, delimiter=",", skiprows=1, usecols=4)
    assert ((confidence > 0) & (confidence < 1)).any() and (confidence <= 1).all()  # the lag fit's
    network = ["--method", "wav2pos", "--checkpoint", run / "best.pt", "--refine-radius", 0, "--no-plot"]
    views, one_pass = tmp_path / "views" / "positions.csv", tmp_path / "one" / "positions.csv"
    assert cli("locate", tmp_path / "data" / "scene_00000", *network, "--out", views).exit_code == 0
    confidence = np.loadtxt(views, delimiter=",", skiprows=1, usecols=4)
    assert ((confidence > 0) & (confidence < 1)).any()  # from the masked views
    assert cli("locate", tmp_path / "data" / "scene_00000", *network, "--views", 0, "--out", one_pass).exit_code == 0
    assert set(np.loadtxt(one_pass, delimiter=",", skiprows=1, usecols=4)) <= {0.0, 1.0}
    assert_one_line_error(cli("locate", tmp_path / "data" / "scene_00000", "--unknown-mics", "3", "--out", tmp_path / "x.csv"), "wav2pos")
    assert_one_line_error(cli("locate", tmp_path / "data" / "scene_00000", "--method", "wav2pos", "--checkpoint", run / "best.pt",
                              "--use-mics", "1,2,3,4", "--out", tmp_path / "y.csv"), "4 microphones", "trained on 5 to 11")


def test_reference_design_trains_and_locates_from_the_cli(cli, tmp_path):
    """The authors' design with the shipped LuViRA NGCC-PHAT: trained, then located with the lag fit
    on its lag distributions and with the known source signal paired in its TDOA module."""
    import yaml

    from sslkit.models.checkpoint import load_checkpoint, resolve_checkpoint

    scene = {"fs": 16000, "duration": 1.0, "room": {"dimensions": [7.0, 8.0, 2.0], "rt60": 0.2},
             "mics": {"file": "luvira", "near_source": 0.1}, "sources": [{"signal": "speech", "position": [3.0, 4.0, 1.2]}],
             "noise": {"snr_db": 30}}
    (tmp_path / "scene.yml").write_text(yaml.safe_dump(scene))
    assert cli("simulate", "--config", tmp_path / "scene.yml", "--count", 2, "--out", tmp_path / "data", "--workers", 1).exit_code == 0
    data = ["--data", tmp_path / "data" / "scene_00000", "--data", tmp_path / "data" / "scene_00001"]
    run = tmp_path / "run"
    result = cli("train-wav2pos", *data, "--design", "reference", "--heads", 4, "--dim", 16, "--depth", 1, "--epochs", 1, "--batch-size", 4,
                 "--windows-per-scene", 2, "--ngcc", resolve_checkpoint("ngcc-phat-luvira"), "--device", "cpu", "--out", run)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "best.pt")[1]["config"]["design"] == "reference"
    for extra in ([], ["--known-source"]):
        out = tmp_path / f"pos{len(extra)}" / "positions.csv"
        result = cli("locate", tmp_path / "data" / "scene_00000", "--method", "wav2pos", "--checkpoint", run / "best.pt", *extra, "--out", out, "--no-plot")
        assert result.exit_code == 0, result.output
        xyz = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(1, 2, 3))
        assert np.isfinite(xyz).all() and len(xyz) > 5
    from conftest import assert_one_line_error

    assert_one_line_error(cli("train-wav2pos", *data, "--design", "paper", "--out", tmp_path / "bad"), "--design must be one of")
    assert_one_line_error(cli("train-wav2pos", *data, "--dim", 30, "--heads", 4, "--out", tmp_path / "bad"), "--heads 4 does not divide --dim 30")
    from sslkit.errors import UserError
    from sslkit.models.train_wav2pos import Wav2PosTrainConfig, train_wav2pos

    with pytest.raises(UserError, match="--masking must be one of"):  # the library's rule, not only the CLI's
        train_wav2pos(Wav2PosTrainConfig(masking="half"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_view_masks_hide_only_fully_known_mics_and_keep_five():
    from sslkit.models.wav2pos import view_masks

    audio_known = torch.ones(4, 9, dtype=torch.bool)  # 8 mics
    audio_known[:, 0] = False
    coord_known = audio_known.clone()
    coord_known[1, [2, 5]] = False  # 6 mics known both ways: one may be hidden
    audio_known[2, 1:5] = False  # 4 mics known both ways: none may be hidden
    masks = view_masks(audio_known, coord_known, 50, torch.Generator().manual_seed(0))
    assert masks.shape == (50, 4, 9) and not masks[..., 0].any()
    hidden = audio_known & ~masks
    assert (hidden.sum(-1) == torch.tensor([2, 1, 0, 2])).all()
    assert not (hidden & ~coord_known).any()  # a mic with an unknown position keeps its audio
    assert hidden[:, 0, 1:].any(0).all()  # the hidden mics vary between views


def test_view_confidence_is_the_spread_of_separate_masked_passes():
    """Brute force: one model call per view with the same masks gives the same source and confidence."""
    from sslkit.models.wav2pos import VIEW_SPREAD_SCALE_M, predict_with_views, view_masks

    torch.manual_seed(0)
    model = Wav2Pos(**TINY).eval()
    audio, coords = batch(b=3, m=8)
    known = torch.ones(3, 9, dtype=torch.bool)
    known[:, 0] = False
    with torch.no_grad():
        out = predict_with_views(model, audio, coords, known, known, 4, torch.Generator().manual_seed(1))
        full = model(audio, coords, known, known)
        masks = view_masks(known, known, 4, torch.Generator().manual_seed(1))
        views = torch.stack([model(audio, coords, m, known)["source"] for m in masks])
        single = predict_with_views(model, audio, coords, known, known, 0, torch.Generator())
    torch.testing.assert_close(out["source"], full["source"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["mics"], full["mics"], atol=1e-5, rtol=1e-5)
    spread = (views - full["source"]).norm(dim=-1).mean(0)
    assert spread.min() > 0
    torch.testing.assert_close(out["confidence"], torch.exp(-spread / VIEW_SPREAD_SCALE_M), atol=1e-5, rtol=1e-5)
    assert (single["confidence"] == 1).all()


def test_refinement_on_the_lag_distributions_sharpens_the_shipped_model():
    """On the bundled demo the fit to the model's own NGCC-PHAT distributions beats the network's
    estimate, moves no estimate beyond the search box around its start (the median of 9 network
    estimates), and ignores mics with unknown positions."""
    from pathlib import Path

    import numpy as np

    from sslkit import locate
    from sslkit.evaluation import matched_errors
    from sslkit.localization.track import smooth_track
    from sslkit.recording import load_recording, room_channels

    rec = room_channels(load_recording(Path(__file__).parents[1] / "examples" / "luvira-demo"))
    network = locate(rec, "wav2pos", views=0, refine_radius=0.0)
    refined = locate(rec, "wav2pos", refine_radius=0.8)
    assert matched_errors(refined, rec.sources)[0].mean() < 0.7 * matched_errors(network, rec.sources)[0].mean()
    assert np.nanmax(np.abs(refined.xyz - smooth_track(network.xyz, 9))) <= 0.8 + 1e-4  # within the box around its start
    subset = dict(use_mics=["1", "2", "4", "5", "6", "8", "9"], unknown_mics=["4"])
    moved = room_channels(load_recording(rec.path))
    moved.mics[3] += 1.5  # mic 4: its position is declared unknown, so it must not matter
    np.testing.assert_array_equal(locate(rec, "wav2pos", **subset).xyz, locate(moved, "wav2pos", **subset).xyz)


def test_wav2pos_integrates_over_a_window_or_the_whole_recording():
    from pathlib import Path

    import numpy as np

    import sslkit

    rec = sslkit.load_recording(Path(__file__).parents[1] / "examples" / "luvira-demo")
    static = sslkit.locate(rec, "wav2pos", static=True)
    assert len(static.times) == 1 and np.isfinite(static.xyz).all()
    truth = rec.sources.xyz.mean(axis=0)  # the talker moves: its mean position
    assert np.linalg.norm(static.xyz[0] - truth) < 0.6
    windowed = sslkit.locate(rec, "wav2pos", window=0.5)
    assert len(windowed.times) == len(sslkit.locate(rec, "wav2pos").times)
    assert sslkit.evaluate_positions(windowed, rec.sources)["accuracy"] > 0.9
