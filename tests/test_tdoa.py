"""GCC-PHAT against slow obvious code and exact fractional delays; NGCC-PHAT's equivariance; the tdoa CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sslkit.errors as sslkit_errors
from conftest import FS, SPEED_OF_SOUND, assert_one_line_error, free_field_recording, small_scene
from sslkit.gcc import centred, gcc, gcc_fft_length, mic_pairs, pick_peaks, row_max
from sslkit.models.ngcc import NGCCPHAT, lag_targets, run_blocks
from sslkit.recording import Recording, SourceTrack, load_recording, write_audio, write_mics
from sslkit.tdoa import estimate_tdoa, read_tdoa_csv, true_tdoa, write_tdoa_csv

TOL_TDOA_S = 0.25 / FS
TINY_NGCC = dict(max_tau=12, n_sinc=8, sinc_len=63, channels=8, head_channels=8)


def fractional_delays(n: int, delays: list[float], seed: int = 0) -> np.ndarray:
    """White noise delayed by exact (fractional) sample delays via the DFT, shape (n, len(delays))."""
    x = np.random.default_rng(seed).standard_normal(n)
    f = np.fft.rfftfreq(n)
    return np.stack([np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * d), n) for d in delays], axis=1)


def gcc_phat_loop(x: np.ndarray, pairs: np.ndarray, max_lag: int, max_freq: float = 0.5, taper: bool = False) -> np.ndarray:
    """Obvious per-frame, per-pair GCC-PHAT in numpy of the frames less their means (with ``taper``
    under a periodic Hann window), over the frequencies above 0 and up to ``max_freq`` (cycles per
    sample). x (F, M, L) → (F, P, 2·max_lag+1)."""
    f_count, _, n = x.shape
    x = (x - x.mean(axis=-1, keepdims=True)) * (np.hanning(n + 1)[:n] if taper else 1.0)
    n_fft = gcc_fft_length(n, max_lag)
    kept = (np.fft.rfftfreq(n_fft) > 0) & (np.fft.rfftfreq(n_fft) <= max_freq)
    out = np.zeros((f_count, len(pairs), 2 * max_lag + 1))
    for f in range(f_count):
        for p, (i, j) in enumerate(pairs):
            cross = np.fft.rfft(x[f, i], n_fft) * np.conj(np.fft.rfft(x[f, j], n_fft))
            r = np.fft.irfft(np.where(kept, cross / (np.abs(cross) + 1e-20), 0), n_fft)
            out[f, p] = [r[m % n_fft] for m in range(-max_lag, max_lag + 1)]
    return out


def test_batched_gcc_matches_per_pair_loop():
    x = np.random.default_rng(1).standard_normal((3, 4, 256))
    pairs = mic_pairs("all", 4)
    fast = gcc(torch.as_tensor(x), pairs, 20).numpy()
    np.testing.assert_allclose(fast, gcc_phat_loop(x, pairs, 20), atol=1e-9)
    for band in (0.3, 0.61):  # a share of the band up to the Nyquist frequency
        np.testing.assert_allclose(gcc(torch.as_tensor(x), pairs, 20, band=band).numpy(), gcc_phat_loop(x, pairs, 20, band / 2), atol=1e-9)
    np.testing.assert_allclose(gcc(torch.as_tensor(x), pairs, 20, taper=True).numpy(), gcc_phat_loop(x, pairs, 20, taper=True), atol=1e-9)


@pytest.mark.parametrize("delays", [[0.0, 3.3, -7.6], [10.25, 0.0, 2.5]])
def test_gcc_phat_recovers_fractional_delays_with_sign_convention(delays):
    audio = fractional_delays(8192, delays)
    rec = Recording(audio.astype(np.float32), FS, ["1", "2", "3"], np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]], float))
    result = estimate_tdoa(rec, "gcc-phat", frame=2048, hop=1024, max_tau="0.002")
    expected = np.array([delays[i] - delays[j] for i, j in result.pairs]) / FS  # τij = ti − tj
    np.testing.assert_allclose(result.tdoa[:, :, 0], np.broadcast_to(expected, result.tdoa.shape[:2]), atol=TOL_TDOA_S)


def test_peaks_are_sorted_separated_and_bounded():
    corr = torch.zeros(1, 41)
    corr[0, [5, 6, 20, 30]] = torch.tensor([0.5, 0.4, 1.0, 0.7])
    lags, values = pick_peaks(corr, 3, min_separation=2)
    assert lags[0].round().tolist() == [0, 10, -15]  # 6 is within 2 bins of the stronger 5
    assert values[0].tolist() == pytest.approx([1.0, 0.7, 0.5])
    lags, _ = pick_peaks(corr, 2, 2, limit=torch.tensor([5.0]))
    assert lags[0, 0].item() == 0 and np.isnan(lags[0, 1].item())


def test_row_max_is_tensor_max():
    rows = torch.as_tensor(np.random.default_rng(4).integers(0, 5, (3, 7, 40)).astype(np.float32))  # ties in every row
    rows[0, 0] = -torch.inf
    value, idx = row_max(rows)
    expected_value, expected_idx = rows.max(dim=-1, keepdim=True)
    assert torch.equal(value, expected_value) and torch.equal(idx, expected_idx)


def greedy_peaks(row: np.ndarray, k: int, separation: int) -> list[int]:
    """Brute force: local maxima strongest first, each skipped when within ``separation`` of one taken."""
    n = len(row)
    is_peak = [(i == 0 or row[i] >= row[i - 1]) and (i == n - 1 or row[i] >= row[i + 1])
               and ((i > 0 and row[i] > row[i - 1]) or (i < n - 1 and row[i] > row[i + 1])) for i in range(n)]
    taken: list[int] = []
    for i in sorted(np.flatnonzero(is_peak), key=lambda i: -row[i]):
        if len(taken) < k and all(abs(i - t) > separation for t in taken):
            taken.append(int(i))
    return taken


def test_peak_picking_equals_brute_force_greedy():
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((200, 61))
    plateau = rng.integers(0, 60, 200)
    rows[np.arange(200), plateau + 1] = rows[np.arange(200), plateau]  # a flat run of two bins in each row
    _, values = pick_peaks(torch.as_tensor(rows), 4, min_separation=3)
    for row, found in zip(rows, values.numpy()):
        expected = row[greedy_peaks(row, 4, 3)]
        np.testing.assert_array_equal(found[: len(expected)], expected)
        assert not found[len(expected) :].any()


def test_fft_length_is_scipys_next_fast_length():
    from scipy.fft import next_fast_len

    for frame, lag in [(1, 0), (2048, 330), (2048, 23), (1000, 1), (4097, 0), (123457, 789), (16384, 0)]:
        assert gcc_fft_length(frame, lag) == next_fast_len(frame + lag, real=True)


def test_pairs_parsing():
    assert mic_pairs("all", 3).tolist() == [[0, 1], [0, 2], [1, 2]]
    assert mic_pairs("ref:2", 3).tolist() == [[1, 0], [1, 2]]
    assert mic_pairs("1-3,3-2", 3).tolist() == [[0, 2], [2, 1]]


def test_ngcc_common_shift_changes_nothing_and_delay_moves_the_peak():
    torch.manual_seed(0)
    model = NGCCPHAT(**TINY_NGCC).eval()
    x = torch.randn(4, 512)
    with torch.no_grad():
        base = model(x, x)
        shifted = model(torch.roll(x, 37, 1), torch.roll(x, 37, 1))
        torch.testing.assert_close(base, shifted, atol=1e-5, rtol=1e-4)
        for d in (-5, 3, 7):
            # x1 = x2 delayed by d samples (circularly): τ12 = d, so the output moves by d lags
            moved = model(torch.roll(x, d, 1), x)
            torch.testing.assert_close(moved, torch.roll(base, d, dims=-1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("design", ["circular", "reference"])
def test_ngcc_inference_folds_each_batch_norm_into_its_convolution(design):
    torch.manual_seed(0)
    model = NGCCPHAT(**TINY_NGCC, design=design)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):  # statistics as after training
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.weight.data.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
    model.eval()
    x = torch.randn(3, 8, 64)
    for block in [*model.features_cnn, *model.head]:  # each against torch's padded convolution, batch norm and activation
        k = block.conv.kernel_size[0]
        conv = torch.nn.Conv1d(8, block.conv.out_channels, k, padding=k // 2, padding_mode="circular" if design == "circular" or block in model.features_cnn else "zeros",
                               bias=block.conv.bias is not None)
        conv.load_state_dict(block.conv.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(block(x), block.act(block.norm(conv(x))), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sinc_len", [63, 255])  # SincNet by conv1d and by FFT
def test_ngcc_inference_folds_the_sinc_batch_norm_into_the_filters(sinc_len):
    """At inference f's first batch norm scales the sinc filters and adds its shift (by FFT: at 0 Hz):
    the same as the batch norm after them, as in training."""
    torch.manual_seed(0)
    model = NGCCPHAT(**{**TINY_NGCC, "sinc_len": sinc_len})
    norm = model.sinc_norm[0]
    norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.weight.data.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
    model.eval()
    x = torch.randn(3, 512)
    with torch.no_grad():
        expected = run_blocks(model.features_cnn, model.sinc_norm(model.sinc(centred(x)[:, None])))
        torch.testing.assert_close(model.features(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_tau, design, channels", [(23, "circular", 8), (23, "circular", 16), (3, "circular", 8), (23, "reference", 8)])
def test_ngcc_blocks_at_inference_equal_padding_at_every_layer(max_tau, design, channels):
    """f and g pad their input once and convolve unpadded at inference (``run_blocks``), narrow ones
    (8 channels) two samples per step: the same as torch's padded convolutions layer by layer, for
    even and odd lengths, also for fewer lags than the head's summed half-kernels and for the
    reference design's zero-padded head (both padded layer by layer)."""
    torch.manual_seed(0)
    model = NGCCPHAT(**{**TINY_NGCC, "max_tau": max_tau, "channels": channels, "head_channels": channels}, design=design).eval()
    for blocks, length in ((model.features_cnn, 64), (model.features_cnn, 63), (model.head, model.n_lags), (model.head[:-1], model.n_lags)):
        x = torch.randn(3, blocks[0].conv.in_channels, length)
        expected = x
        for block in blocks:
            k = block.conv.kernel_size[0]
            conv = torch.nn.Conv1d(block.conv.in_channels, block.conv.out_channels, k, padding=k // 2, padding_mode="circular" if block.padding == "circular" else "zeros",
                                   bias=block.conv.bias is not None)
            conv.load_state_dict(block.conv.state_dict())
            expected = block.act(block.norm(conv(expected)))
        with torch.no_grad():
            torch.testing.assert_close(run_blocks(blocks, x), expected, atol=1e-5, rtol=1e-5)


def test_ngcc_pair_logits_match_pairwise_forward():
    torch.manual_seed(0)
    model = NGCCPHAT(**TINY_NGCC).eval()
    frames = torch.randn(2, 3, 256)
    pairs = torch.tensor([[0, 1], [2, 0]])
    with torch.no_grad():
        batched = model.pair_logits(frames, pairs)
        single = model(frames[:, 2], frames[:, 0])
    torch.testing.assert_close(batched[:, 1], single, atol=1e-5, rtol=1e-4)


def test_ngcc_learns_a_delay_on_a_fixed_batch():
    torch.manual_seed(0)
    model = NGCCPHAT(**TINY_NGCC)
    audio = torch.as_tensor(fractional_delays(512 * 16, [0.0]), dtype=torch.float32)[:, 0].reshape(16, 512)
    tau = torch.randint(-8, 9, (16,)).float()
    x1 = torch.stack([torch.roll(a, int(t)) for a, t in zip(audio, tau)]) + 0.3 * torch.randn(16, 512)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    target = lag_targets(tau, model.max_tau)
    losses = []
    for _ in range(30):
        loss = -(target * torch.log_softmax(model(x1, audio)[:, 0], -1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gaussian_label_smoothing_is_centred():
    t = lag_targets(torch.tensor([2.0, -3.5]), 10, sigma=1.0)
    assert torch.allclose(t.sum(1), torch.ones(2))
    assert (t[0].argmax() - 10).item() == 2
    assert ((t[1] * torch.arange(-10, 11)).sum()).item() == pytest.approx(-3.5, abs=1e-3)


@pytest.fixture(scope="module")
def small_recording(tmp_path_factory):
    from sslkit.recording import save_recording
    from sslkit.sims.room import simulate
    from sslkit.sims.scene import resolve_scene

    scene = resolve_scene(small_scene(duration=1.0, room={"dimensions": [4.0, 3.0, 2.5], "rt60": 0.2}, noise={"snr_db": 30.0}))
    folder = tmp_path_factory.mktemp("rec") / "rec"
    save_recording(folder, simulate(scene)[0])
    return folder


def test_tdoa_cli_writes_csv_that_reads_back(cli, small_recording, tmp_path):
    out = tmp_path / "t.csv"
    result = cli("tdoa", small_recording, "--peaks", 2, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    header = out.read_text().splitlines()[0]
    assert header == "frame,time,mic_i,mic_j,rank,tdoa_s,delta_m,score"
    rec = load_recording(small_recording)
    back = read_tdoa_csv(out, rec.mic_ids)
    assert back.tdoa.shape == (len(back.times), 6, 2)
    truth = true_tdoa(np.repeat(rec.sources.xyz[:1], len(back.times), 0), rec.mics, back.pairs)
    assert np.mean(np.abs(back.tdoa[:, :, 0] - truth) * SPEED_OF_SOUND < 0.1) > 0.6  # chance is < 0.1
    again = tmp_path / "again.csv"
    write_tdoa_csv(again, back)
    np.testing.assert_allclose(read_tdoa_csv(again, rec.mic_ids).tdoa, back.tdoa, atol=1e-9)


def test_tdoa_errors_are_against_the_nearest_active_source_of_any_id(cli, small_recording, tmp_path):
    """Truth whose source is not numbered 0, and truth of several sources (measured arrays number
    their loudspeakers from 1), are scored: each pair's strongest peak against the nearest TDOA of
    the sources active then. Both ended in a traceback after tdoa.csv was written."""
    import shutil

    from sslkit.recording import write_sources
    from sslkit.tdoa import tdoa_files

    folder = shutil.copytree(small_recording, tmp_path / "rec")
    truth = load_recording(folder).sources
    run = tdoa_files(folder, tmp_path / "t0.csv")
    before, summary = run.errors_m, run.error_summary()
    assert summary == {"accuracy": np.mean(before < 0.1), "median_m": np.median(before)} and summary["accuracy"] > 0.5
    renumbered = SourceTrack(truth.time, truth.source_id + 5, truth.xyz)
    write_sources(folder / "sources.csv", renumbered)
    np.testing.assert_array_equal(tdoa_files(folder, tmp_path / "t5.csv").errors_m, before)
    decoy = SourceTrack(np.r_[renumbered.time, 0.0], np.r_[renumbered.source_id, 9], np.vstack([renumbered.xyz, [[0.5, 2.5, 0.5]]]))
    write_sources(folder / "sources.csv", decoy)
    both = tdoa_files(folder, tmp_path / "t59.csv").errors_m
    assert both.shape == before.shape and np.all(both <= before) and np.any(both < before)
    result = cli("tdoa", folder, "--out", tmp_path / "cli.csv")
    assert result.exit_code == 0 and "median |error|" in result.output, result.output


def test_source_positions_are_known_between_their_first_and_last_rows():
    track = SourceTrack(np.array([0.0, 1.0, 2.0, 0.5]), np.array([1, 1, 1, 4]), np.array([[0.0, 0, 0], [1, 0, 0], [1, 2, 0], [7, 7, 7]]))
    at = track.positions_at(np.array([-0.5, 0.5, 1.5, 2.5]))
    assert at.shape == (4, 2, 3) and track.ids.tolist() == [1, 4]
    np.testing.assert_allclose(at[1:3, 0], [[0.5, 0, 0], [1, 1, 0]])
    assert np.isnan(at[[0, 3], 0]).all()  # a moving source: unknown outside its rows
    np.testing.assert_allclose(at[:, 1], np.full((4, 3), 7.0))  # listed once: static throughout
    one = track.of_source(1)
    np.testing.assert_allclose(one.held_positions(np.array([-0.5, 1.5, 2.5])), [[0.0, 0, 0], [1, 1, 0], [1, 2, 0]])  # held beyond its rows
    with pytest.raises(ValueError):
        track.held_positions(np.zeros(1))


def test_protocol_snippets_have_a_true_tdoa_up_to_the_recordings_end():
    """A simulated scene lists its source up to its last hop (here 0.9 s of 1 s): the last
    snippet's centre lies past it, and still gets the source's position, held."""
    from sslkit.models.eval_tdoa import snippet_windows

    audio = np.random.default_rng(0).standard_normal((FS, 2)).astype(np.float32)
    hops = np.arange(10) * 0.1
    truth = SourceTrack(hops, np.zeros(10, int), np.tile([2.0, 1.0, 1.2], (10, 1)))
    rec = Recording(audio, FS, ["1", "2"], np.array([[0.0, 0.0, 1.0], [0.3, 0.0, 1.0]]), truth)
    frames, tau = snippet_windows(rec, 2048, SPEED_OF_SOUND)
    expected = (np.linalg.norm([2.0, 1.0, 0.2]) - np.linalg.norm([1.7, 1.0, 0.2])) / SPEED_OF_SOUND * FS
    assert len(tau) == len(frames) == 7 and np.allclose(tau, expected)  # the last centre is at 0.96 s


def test_ngcc_pair_correlations_of_many_mics_come_in_bounded_parts(monkeypatch):
    """With many mics one frame's pair cross-spectra outgrow the chunk (110 mics took 8 GB): pairs
    go in parts too, every part within PAIR_CHUNK_ELEMENTS, with the same correlations."""
    import sslkit.models.ngcc as ngcc

    model = NGCCPHAT(max_tau=6, n_sinc=4, sinc_len=31, channels=4, feature_kernels=(3,), head_channels=4, head_kernels=(3, 3)).eval()
    frames, pairs = torch.randn(3, 9, 256, generator=torch.Generator().manual_seed(0)), torch.as_tensor(mic_pairs("all", 9))
    with torch.no_grad():
        whole = model.pair_correlations(frames, pairs)
        per_pair = 4 * 129  # channels × bins
        monkeypatch.setattr(ngcc, "PAIR_CHUNK_ELEMENTS", 7 * per_pair)
        sizes = []
        products = ngcc.pair_products
        monkeypatch.setattr(ngcc, "pair_products", lambda spec, part: sizes.append(spec.shape[0] * len(part) * per_pair) or products(spec, part))
        parts = model.pair_correlations(frames, pairs)
    assert max(sizes) <= 7 * per_pair and len(sizes) == 3 * 6  # 36 pairs in parts of 7, frame by frame
    torch.testing.assert_close(parts, whole, rtol=0, atol=0)


def test_ngcc_inference_in_cache_sized_parts_equals_the_whole_batch(monkeypatch):
    """At inference the filters and the head run on parts of the batch (``CACHE_ELEMENTS``) and the
    correlations are read a few frames at a time (``in_frame_blocks``): the same outputs as one pass."""
    import sslkit.models.ngcc as ngcc

    model = NGCCPHAT(max_tau=6, n_sinc=4, sinc_len=31, channels=4, feature_kernels=(3,), head_channels=4, head_kernels=(3, 3)).eval()
    frames, pairs = torch.randn(5, 4, 256, generator=torch.Generator().manual_seed(0)), torch.as_tensor(mic_pairs("all", 4))
    outputs = (model.pair_logits, model.symmetric_pair_probabilities, model.symmetric_pair_features)
    with torch.no_grad():
        monkeypatch.setattr(ngcc, "CACHE_ELEMENTS", 2**40)
        whole = [fn(frames, pairs) for fn in outputs]
        monkeypatch.setattr(ngcc, "CACHE_ELEMENTS", 2 * 6 * 4 * 13)  # two frames' correlations at a time, f one signal at a time, g nine pairs
        blocks = []
        correlations = model.pair_correlations
        monkeypatch.setattr(model, "pair_correlations", lambda block, p: blocks.append(len(block)) or correlations(block, p))
        parts = [fn(frames, pairs) for fn in outputs]
    assert blocks == [2, 2, 1] * 3
    for got, expected in zip(parts, whole):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_silent_frames_are_flagged_not_estimated(tmp_path):
    audio = fractional_delays(16000, [0.0, 2.0]).astype(np.float32)
    audio[4000:12000] = 0
    rec = Recording(audio, FS, ["1", "2"], np.array([[0, 0, 0], [0.3, 0, 0]], float))
    result = estimate_tdoa(rec, frame=1024, hop=512)
    assert result.silent.any() and not result.silent.all()
    assert np.all(np.isnan(result.tdoa[result.silent])) and np.all(result.score[result.silent] == 0)
    assert np.all(np.isfinite(result.tdoa[~result.silent & ~np.isnan(result.tdoa[:, 0, 0])]))


def bad_inputs(tmp_path, small_recording):
    rec = load_recording(small_recording)
    nan_wav = tmp_path / "nan.wav"
    audio = rec.audio.copy()
    audio[100, 0] = np.nan
    write_audio(nan_wav, audio, FS)
    silent_wav = tmp_path / "silent.wav"
    write_audio(silent_wav, np.zeros_like(rec.audio), FS)
    truncated = tmp_path / "trunc.wav"
    truncated.write_bytes((small_recording / "audio.wav").read_bytes()[:30])
    text = tmp_path / "text.wav"
    text.write_text("not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    three_mics = tmp_path / "three.csv"
    write_mics(three_mics, ["a", "b", "c"], rec.mics[:3])
    bad_rows = tmp_path / "badrows.csv"
    bad_rows.write_text("mic_id,x,y,z\n1,0,0,0\n2,abc,0,0\n3,1,1,1\n4,2,2,2\n")
    wav = small_recording / "audio.wav"
    mics = small_recording / "mics.csv"
    return [
        ([nan_wav, "--mics", mics], ["NaN"]),
        ([silent_wav, "--mics", mics], ["silent"]),
        ([truncated, "--mics", mics], ["not a readable audio file"]),
        ([text, "--mics", mics], ["not a readable audio file"]),
        ([empty, "--mics", mics], ["empty"]),
        ([tmp_path / "missing.wav", "--mics", mics], ["no such"]),
        ([wav, "--mics", three_mics], ["4 channels", "3 microphones"]),
        ([wav, "--mics", bad_rows], ["line 3"]),
        ([small_recording, "--method", "music"], ["unknown TDOA method"]),
        ([small_recording, "--method", "ngcc", "--checkpoint", tmp_path / "none.pt"], ["no such checkpoint"]),
    ]


@pytest.mark.parametrize("command", ["tdoa", "locate"])
def test_bad_input_gives_one_line_error_and_no_output(cli, small_recording, tmp_path, command):
    for args, fragments in bad_inputs(tmp_path, small_recording):
        if command == "locate" and "--method" in args:
            continue  # locate's --method names localization methods: tested in test_locate
        out = tmp_path / "out.csv"
        assert_one_line_error(cli(command, *args, "--out", out), *fragments)
        assert not out.exists() and not out.with_suffix(".png").exists(), args


def test_ngcc_method_checks_the_checkpoint_range(cli, small_recording, tmp_path):
    from sslkit.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, NGCCPHAT(**{**TINY_NGCC, "max_tau": 3}), "ngcc-phat")
    assert_one_line_error(cli("tdoa", small_recording, "--method", "ngcc", "--checkpoint", ckpt), "covers |τ| ≤ 3")
    save_checkpoint(ckpt, NGCCPHAT(**{**TINY_NGCC, "max_tau": 80}), "ngcc-phat")
    result = cli("tdoa", small_recording, "--method", "ngcc", "--checkpoint", ckpt, "--out", tmp_path / "n.csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "n.csv").read_text().count("\n") > 10


def test_multi_target_lag_targets_use_the_dummy_track_layout():
    from sslkit.models.ngcc import multi_lag_targets

    tau = torch.tensor([[2.0, float("nan"), float("nan")], [float("nan"), -1.0, 3.0], [0.0, 1.0, -2.0]])
    target = multi_lag_targets(tau, max_tau=4, n_tracks=3)[:, 0, :, :, 0]  # (B, 6, 1+9)
    assert target.shape == (3, 6, 10)
    assert target[0, 0, 0] == 1 and target[0, 0, 1:].argmax() - 4 == 2 and target[0, 1:, 0].sum() == 0  # A0
    assert target[1, [1, 2], 0].tolist() == [1, 1] and (target[1, [1, 2], 1:].argmax(-1) - 4).tolist() == [-1, 3]  # B0 B1
    assert target[2, 3:, 0].tolist() == [1, 1, 1] and (target[2, 3:, 1:].argmax(-1) - 4).tolist() == [0, 1, -2]  # C0 C1 C2


def test_multi_target_loss_is_permutation_invariant():
    from sslkit.models.train_ngcc import ngcc_loss

    logits = torch.randn(4, 3, 9)
    tau = torch.tensor([[1.0, -2.0, float("nan")]] * 4)
    loss = ngcc_loss(logits, tau, 4, 0.0, "bradpit")
    swapped = ngcc_loss(logits[:, [1, 0, 2]], tau, 4, 0.0, "baseline")
    torch.testing.assert_close(loss, swapped)


def assert_resume_names_a_broken_run(cli, args: list, out: Path) -> None:
    """--resume on a run folder whose last.pt or config.yaml is not what training wrote: one line
    naming the file, and the folder as it was."""
    last, config = (out / "last.pt").read_bytes(), (out / "config.yaml").read_text()
    broken = [("last.pt", b"garbage", "not a PyTorch checkpoint file"),
              ("last.pt", (out / "best.pt").read_bytes(), "cannot resume from it: it has no optimizer, scheduler, epoch, best_metric"),
              ("config.yaml", b"- a list\n", "holds no run settings")]
    for name, content, fragment in broken:
        (out / name).write_bytes(content)
        assert_one_line_error(cli(*args, "--epochs", 3, "--resume"), f"{name}: {fragment}")
        assert (out / name).read_bytes() == content and len((out / "metrics.csv").read_text().splitlines()) == 3
        (out / "last.pt").write_bytes(last)
        (out / "config.yaml").write_text(config)


def test_ngcc_trains_through_the_inverse_fft_correlation(monkeypatch):
    """With many lags for its frame (LuViRA's τmax 315 in 2048 samples) the correlation is an inverse
    FFT rather than sums at the lags, and the loss must reach the filters through it (it raised)."""
    import sslkit.gcc

    monkeypatch.setattr(sslkit.gcc, "correlation_at_lags", lambda *args: pytest.fail("the inverse FFT is the cheaper path here"))
    model = NGCCPHAT(max_tau=100, n_sinc=4, sinc_len=31, channels=4, feature_kernels=(3,), head_channels=4, head_kernels=(3, 3))
    x = torch.randn(2, 256, generator=torch.Generator().manual_seed(0))
    model(x, x.roll(3, -1)).logsumexp(-1).sum().backward()
    grad = model.sinc.low_hz.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_train_ngcc_cli_tiny_run_writes_run_folder_and_resumes(cli, tmp_path):
    from sslkit.models.checkpoint import load_checkpoint

    out = tmp_path / "run"
    args = ["train-ngcc", "--scenes", 4, "--val-scenes", 2, "--batch-size", 4, "--workers", 1, "--device", "cpu", "--out", out]
    result = cli(*args, "--epochs", 1)
    assert result.exit_code == 0, result.output
    for name in ("best.pt", "last.pt", "metrics.csv", "learning_curve.png", "config.yaml"):
        assert (out / name).is_file(), name
    assert cli(*args, "--epochs", 2, "--resume").exit_code == 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 3  # header + epochs 1 and 2
    assert_one_line_error(cli(*args, "--epochs", 3, "--resume", "--lr", 0.01, "--seed", 3),  # two runs in one folder, the config of neither
                          "--resume continues the run as it was set up, with lr = 0.001 (not 0.01)")
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    assert_resume_names_a_broken_run(cli, args, out)
    model, meta = load_checkpoint(out / "best.pt")
    assert meta["model"] == "ngcc-phat" and model.max_tau == 23 and meta["metrics"]["epoch"] >= 1  # the 0.5 m pair's 23.3 samples, as Paper V
    assert_one_line_error(cli("train-ngcc", "--size", "huge", "--out", out), "--size")
    reference = tmp_path / "reference"
    assert cli(*args[:-1], reference, "--epochs", 1, "--design", "reference").exit_code == 0
    assert load_checkpoint(reference / "best.pt")[0].design == "reference"
    assert_one_line_error(cli("train-ngcc", "--design", "linear", "--out", tmp_path / "x"), "--design must be one of")
    assert_one_line_error(cli("train-ngcc", "--adpit", "overlay", "--out", tmp_path / "x"), "one track has nothing to permute")
    assert not (tmp_path / "x").exists()
    from sslkit.models.train_ngcc import NgccTrainConfig, train_ngcc

    with pytest.raises(sslkit_errors.UserError, match="--size must be one of"):  # the library's own rule, not the CLI's
        train_ngcc(NgccTrainConfig(size="huge"), tmp_path / "y")


def test_sinc_conv_fft_path_equals_circular_conv1d():
    import torch.nn.functional as F

    from sslkit.models.sincnet import SincConv

    layer = SincConv(8, 127, FS)
    x = torch.randn(3, 1, 512)
    expected = F.conv1d(F.pad(x, (63, 63), mode="circular"), layer.filters())
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-4)


def test_shipped_ngcc_checkpoint_describes_itself_and_is_picked_for_its_array():
    from sslkit.models.checkpoint import load_checkpoint, resolve_checkpoint

    model, meta = load_checkpoint(resolve_checkpoint("ngcc-phat"))
    assert meta["model"] == "ngcc-phat" and meta["config"]["fs"] == FS and model.max_tau == 24
    assert {"sslkit_version", "torch_version", "command", "metrics"} <= set(meta)
    assert resolve_checkpoint(None, "ngcc-phat", FS, 20).name == "ngcc-phat.pt"  # the 0.5 m pair of Paper V fits
    assert resolve_checkpoint(None, "ngcc-phat", FS, 300).name == "ngcc-phat-luvira-compact.pt"  # the LuViRA array needs ±315 lags
    with pytest.raises(Exception, match="no shipped ngcc-phat checkpoint at 44100 Hz covering lags up to 20"):
        resolve_checkpoint(None, "ngcc-phat", 44100, 20)


def test_reversed_pair_correlation_is_the_flipped_one():
    torch.manual_seed(0)
    model = NGCCPHAT(**TINY_NGCC).eval()
    frames = torch.randn(2, 3, 256)
    with torch.no_grad():
        forward = model.pair_correlations(frames, torch.tensor([[0, 2]]))
        backward = model.pair_correlations(frames, torch.tensor([[2, 0]]))
    torch.testing.assert_close(backward, forward.flip(-1), atol=1e-5, rtol=1e-4)


def test_paper_size_is_the_authors_network_layer_for_layer():
    reference = NGCCPHAT.from_size("paper", max_tau=23, fs=16000)
    assert reference.design == "reference" and sum(p.numel() for p in reference.parameters()) == 888_193  # the authors' count
    circular = NGCCPHAT.from_size("paper", max_tau=23, fs=16000, design="circular")
    assert sum(p.numel() for p in circular.parameters()) == 887_425  # no conv biases before BatchNorm


def test_reference_design_correlates_linearly_with_the_epsilon_weighting():
    torch.manual_seed(0)
    model = NGCCPHAT.from_size("small", max_tau=6, fs=16000, design="reference").eval()
    y1, y2 = torch.randn(3, 128), torch.randn(3, 128)
    n = 2 * 128  # linear correlation: 2N-point spectra
    cross = np.fft.rfft(y1.numpy(), n) * np.conj(np.fft.rfft(y2.numpy(), n))
    r = np.fft.irfft(cross / (np.abs(cross) + 1e-3), n)
    expected = np.concatenate([r[:, -6:], r[:, :7]], axis=1)
    got = model.correlate(model.spectra(y1) * model.spectra(y2).conj(), 128)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    frames = torch.randn(2, 3, 256)
    pairs = torch.tensor([[0, 1], [2, 0]])
    with torch.no_grad():
        batched = model.pair_logits(frames, pairs)
        single = model(frames[:, 2], frames[:, 0])
    torch.testing.assert_close(batched[:, 1], single, atol=1e-4, rtol=1e-4)


def test_cross_spectra_of_any_pair_order_equal_the_gathered_products():
    from sslkit.gcc import cross_spectra, mic_pairs

    frames = torch.randn(4, 6, 256, generator=torch.Generator().manual_seed(0))
    spec = torch.sgn(torch.fft.rfft(frames - frames.mean(dim=-1, keepdim=True), n=512))
    spec[..., 0] = 0
    for pairs in (mic_pairs("all", 6), np.array([[0, 3], [0, 1], [2, 1], [2, 5], [4, 0], [1, 2]])):
        idx = torch.as_tensor(pairs)
        torch.testing.assert_close(cross_spectra(frames, pairs, 512), spec[:, idx[:, 0]] * spec.conj()[:, idx[:, 1]], atol=1e-7, rtol=1e-6)


def test_lag_classes_fit_every_rounded_delay():
    from sslkit.geometry import lag_classes

    assert lag_classes(0.5 / 343.0 * 16000) == 23  # Paper V's 0.5 m pair
    rng = np.random.default_rng(0)
    for bound in rng.uniform(0, 50, 200):
        delays = rng.uniform(-bound, bound, 100)
        assert np.abs(np.round(delays)).max() <= lag_classes(bound)
        assert lag_classes(bound) <= np.ceil(bound)


def test_many_pairs_stream_in_smaller_batches_instead_of_being_refused(monkeypatch):
    """60 mics (1770 pairs) on a machine with 1 GB free: the memory check once counted 32 frames of
    8-byte values over the whole frame length (3.7 GB) and refused; batches now shrink to fit."""
    import sslkit.resources

    source = np.array([2.0, 2.5, 1.2])
    rec = free_field_recording(60, source)
    monkeypatch.setattr(sslkit.resources, "available_memory", lambda: 2**30)
    result = estimate_tdoa(rec, frame=2048, hop=1024)
    delays = np.linalg.norm(rec.mics - source, axis=1) / SPEED_OF_SOUND
    expected = delays[result.pairs[:, 0]] - delays[result.pairs[:, 1]]  # τᵢⱼ = tᵢ − tⱼ
    assert np.nanmedian(np.abs(result.tdoa[:, :, 0] - expected)) < 1 / FS


def test_a_window_longer_than_the_recording_integrates_all_of_it(small_recording):
    """A window of 10¹² s once sized its memory check by 3·10¹³ frames and was refused; a window past
    the recording's ends holds all of its frames, so every hop answers what the whole recording does."""
    from sslkit import locate

    rec = load_recording(small_recording)
    whole = estimate_tdoa(rec, window=2 * rec.duration)
    endless = estimate_tdoa(rec, window=1e12)
    np.testing.assert_array_equal(endless.tdoa, whole.tdoa)
    located = endless.tdoa[np.isfinite(endless.tdoa[:, 0, 0]), :, 0]
    assert len(located) > 1 and (located == located[0]).all()
    track = locate(rec, "srp-phat", window=1e12)
    np.testing.assert_array_equal(track.xyz, locate(rec, "srp-phat", window=2 * rec.duration).xyz)
