"""The lag-distribution fit that refines wav2pos: likelihood against a brute-force loop, the sign
convention, and recovery of a source from distributions with wrong pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FS, SPEED_OF_SOUND
from sslkit.localization.lagfit import LagFitOptions, LagSmoother, fit_lag_distributions, lag_fit_confidence, lag_log_likelihood

MICS = np.array([
    [5.9, 5.7, 1.15], [6.4, 3.4, 0.05], [4.8, 0.9, 1.57], [2.4, 0.5, 1.1], [0.4, 3.9, 1.37], [1.1, 6.5, 1.55],
    [5.7, 3.2, 0.21], [5.3, 1.6, 0.2], [3.6, 0.6, 0.21],
])
PAIRS = np.stack(np.triu_indices(len(MICS), k=1), axis=1)
MAX_LAG = 320
BOUNDS = torch.tensor([[0.0, 0.0, 0.0], [7.0, 8.0, 2.0]])


def true_lags(src: np.ndarray) -> np.ndarray:
    """τᵢⱼ = tᵢ − tⱼ in samples for sources (F, 3) → (F, P)."""
    dist = np.linalg.norm(src[:, None] - MICS, axis=-1)
    return (dist[:, PAIRS[:, 0]] - dist[:, PAIRS[:, 1]]) * FS / SPEED_OF_SOUND


def peaked(lags: np.ndarray, width: float = 1.0) -> torch.Tensor:
    """Gaussian lag distributions centred on ``lags`` (F, P) → (F, P, 2·MAX_LAG + 1)."""
    grid = np.arange(-MAX_LAG, MAX_LAG + 1)
    p = np.exp(-0.5 * ((grid - lags[..., None]) / width) ** 2)
    return torch.tensor(p / p.sum(-1, keepdims=True), dtype=torch.float32)


def test_likelihood_matches_a_loop_over_points_and_pairs():
    rng = np.random.default_rng(0)
    probs = torch.tensor(rng.dirichlet(np.ones(2 * MAX_LAG + 1), (2, len(PAIRS))), dtype=torch.float32)
    points = rng.uniform([0.5, 0.5, 0.2], [6.5, 7.5, 1.8], (2, 5, 3))
    valid = torch.tensor(rng.random((2, len(PAIRS))) < 0.8)
    opts = LagFitOptions()
    got = lag_log_likelihood(torch.tensor(points, dtype=torch.float32), torch.tensor(MICS, dtype=torch.float32),
                             torch.tensor(PAIRS), probs, valid, FS, opts)
    grid = np.arange(-MAX_LAG, MAX_LAG + 1)
    for f in range(2):
        for g in range(5):
            lags = true_lags(points[f, g][None])[0]
            expected = sum(np.log(np.interp(lags[k], grid, probs[f, k].numpy()) + opts.floor)
                           for k in range(len(PAIRS)) if valid[f, k])
            assert abs(got[f, g].item() - expected) < 1e-3


def test_recovers_the_source_despite_wrong_pairs_and_a_far_start():
    rng = np.random.default_rng(1)
    src = rng.uniform([1.0, 1.0, 0.5], [6.0, 7.0, 1.8], (100, 3))
    lags = true_lags(src)
    wrong = rng.random(lags.shape) < 0.2  # a fifth of the pairs peak at a reflection-like lag
    lags = np.where(wrong, lags + rng.choice([-1, 1], lags.shape) * rng.uniform(15, 60, lags.shape), lags)
    start = src + rng.normal(size=src.shape) * 0.35 / np.sqrt(3)
    fitted = fit_lag_distributions(torch.tensor(start, dtype=torch.float32), torch.tensor(MICS, dtype=torch.float32),
                                   torch.tensor(PAIRS), peaked(lags), FS, BOUNDS).numpy()
    error = np.linalg.norm(fitted - src, axis=1)
    assert np.linalg.norm(start - src, axis=1).mean() > 0.25
    assert error.mean() < 0.01 and error.max() < 0.04


def test_reversed_pairs_with_mirrored_distributions_give_the_same_fit():
    src = np.array([[2.5, 4.0, 1.2]])
    probs = peaked(true_lags(src), width=3.0)
    start = torch.tensor([[2.9, 3.7, 1.0]])
    mics = torch.tensor(MICS, dtype=torch.float32)
    forward = fit_lag_distributions(start, mics, torch.tensor(PAIRS), probs, FS, BOUNDS)
    backward = fit_lag_distributions(start, mics, torch.tensor(PAIRS[:, ::-1].copy()), probs.flip(-1), FS, BOUNDS)
    assert torch.allclose(forward, backward)
    assert np.linalg.norm(forward.numpy() - src) < 0.02


def test_a_radius_wider_than_the_region_searches_the_region():
    """A radius of 10⁹ m (once a 280 GB smoothing kernel) fits as the region's own extent does."""
    src = np.array([[2.5, 4.0, 1.2]])
    probs, start, mics = peaked(true_lags(src), width=3.0), torch.tensor([[2.9, 3.7, 1.0]]), torch.tensor(MICS, dtype=torch.float32)
    extent = float((BOUNDS[1] - BOUNDS[0]).max())
    fits = [fit_lag_distributions(start, mics, torch.tensor(PAIRS), probs, FS, BOUNDS, LagFitOptions(radius=r, prior=1e3)) for r in (1e9, extent)]
    assert torch.equal(*fits)
    assert np.linalg.norm(fits[0].numpy() - src) < 0.02


def test_invalid_pairs_are_ignored():
    src = np.array([[2.5, 4.0, 1.2]])
    lags = true_lags(src)
    lags[0, :8] += 40  # every pair of mic 0 lies
    valid = torch.ones(1, len(PAIRS), dtype=torch.bool)
    valid[0, :8] = False
    fitted = fit_lag_distributions(torch.tensor([[2.2, 4.3, 1.0]]), torch.tensor(MICS, dtype=torch.float32),
                                   torch.tensor(PAIRS), peaked(lags), FS, BOUNDS, valid=valid)
    assert np.linalg.norm(fitted.numpy() - src) < 0.02


def test_confidence_is_one_at_every_peak_and_falls_with_each_wrong_pair():
    src = np.array([[2.5, 4.0, 1.2]] * 3)
    lags = true_lags(src)
    lags[1, :6] += 30  # 6 of the 36 pairs peak elsewhere
    lags[2, :18] += 30  # half of them do
    probs = peaked(lags)
    at_source = lag_fit_confidence(torch.tensor(src, dtype=torch.float32), torch.tensor(MICS, dtype=torch.float32),
                                   torch.tensor(PAIRS), probs, FS)
    floor = LagFitOptions().floor
    grid = np.arange(-MAX_LAG, MAX_LAG + 1)
    clean = true_lags(src)[0]
    expected = [np.exp(np.mean([np.log((np.interp(clean[k], grid, probs[f, k].numpy()) + floor) / (probs[f, k].max().item() + floor))
                                for k in range(len(PAIRS))])) for f in range(3)]
    np.testing.assert_allclose(at_source.numpy(), expected, rtol=1e-4)
    assert at_source[0] > 0.95 and at_source[0] > at_source[1] > at_source[2]


def test_smoothing_finds_sharp_peaks_from_a_far_start_with_few_pairs():
    """5 mics (10 pairs), starts 0.6–0.9 m off and no prior: without smoothing the coarse grid
    steps over the 1-lag-wide peaks and lands up to 1.4 m off."""
    mics, pairs = MICS[:5], np.stack(np.triu_indices(5, k=1), axis=1)
    rng = np.random.default_rng(2)
    src = rng.uniform([1.5, 1.5, 0.6], [5.5, 6.5, 1.6], (100, 3))
    direction = rng.normal(size=src.shape)
    start = src + direction / np.linalg.norm(direction, axis=1, keepdims=True) * rng.uniform(0.6, 0.9, (100, 1))
    dist = np.linalg.norm(src[:, None] - mics, axis=-1)
    lags = (dist[:, pairs[:, 0]] - dist[:, pairs[:, 1]]) * FS / SPEED_OF_SOUND
    fitted = fit_lag_distributions(torch.tensor(start, dtype=torch.float32), torch.tensor(mics, dtype=torch.float32),
                                   torch.tensor(pairs), peaked(lags), FS, BOUNDS, LagFitOptions(prior=10.0)).numpy()
    error = np.linalg.norm(fitted - src, axis=1)
    assert error.mean() < 0.02 and error.max() < 0.05


def test_delayed_fit_over_blocks_equals_one_fit_from_the_running_median():
    """Brute force: the block-by-block fit (any block size) equals smoothing all the network's
    estimates at once and fitting every frame in one call; silent frames (NaN) are left out of the medians."""
    from sslkit.localization.track import smooth_track
    from sslkit.localization.wav2pos import DelayedLagFit
    from sslkit.options import Wav2PosOptions
    from sslkit.recording import Recording

    rng = np.random.default_rng(3)
    n_frames = 23
    src = np.linspace([1.5, 2.0, 1.0], [4.5, 5.0, 1.4], n_frames)
    network = src + rng.normal(size=src.shape) * 0.3
    network[[4, 5, 17]] = np.nan
    upper = np.stack(np.triu_indices(len(MICS), k=1), axis=1)
    dist = np.linalg.norm(src[:, None] - MICS, axis=-1)
    probs = peaked((dist[:, upper[:, 0]] - dist[:, upper[:, 1]]) * FS / SPEED_OF_SOUND)
    rec = Recording(np.zeros((10, len(MICS))), FS, [str(k) for k in range(len(MICS))], MICS, None, {"room": {"dimensions": [7.0, 8.0, 2.0]}})
    opts = Wav2PosOptions(start_window=5, c=343.0)
    start = torch.tensor(np.nan_to_num(smooth_track(network, 5)), dtype=torch.float32)
    expected = DelayedLagFit(rec, [], FS, opts, n_frames).refine(start, probs)  # one fit over the whole track
    for block in (1, 4, 16, 40):
        fit = DelayedLagFit(rec, [], FS, opts, n_frames)
        parts = [fit.add(network[s : s + block], probs[s : s + block]) for s in range(0, n_frames, block)] + [fit.finish()]
        torch.testing.assert_close(torch.tensor(np.concatenate([p[0] for p in parts]), dtype=torch.float32), expected[0])
        torch.testing.assert_close(torch.tensor(np.concatenate([p[1] for p in parts]), dtype=torch.float32), expected[1])


@pytest.mark.parametrize("window_frames", [3, 7, 101])
def test_delayed_fit_averages_lag_distributions_over_the_window(window_frames):
    """Brute force: with a window of W frames each frame is fitted to the mean of the lag
    distributions of the active frames within ±W//2 of it, whatever the block size (a window longer
    than the recording: all of them); static fits one position to the mean over all active frames
    from the median of all estimates."""
    from sslkit.localization.track import smooth_track
    from sslkit.localization.wav2pos import DelayedLagFit
    from sslkit.options import Wav2PosOptions
    from sslkit.recording import Recording

    rng = np.random.default_rng(4)
    n_frames = 19
    src = np.linspace([1.5, 2.0, 1.0], [3.5, 4.0, 1.2], n_frames)
    network = src + rng.normal(size=src.shape) * 0.3
    network[[3, 11]] = np.nan  # silent
    upper = np.stack(np.triu_indices(len(MICS), k=1), axis=1)
    dist = np.linalg.norm(src[:, None] - MICS, axis=-1)
    probs = peaked((dist[:, upper[:, 0]] - dist[:, upper[:, 1]]) * FS / SPEED_OF_SOUND)
    rec = Recording(np.zeros((10, len(MICS))), FS, [str(k) for k in range(len(MICS))], MICS, None, {"room": {"dimensions": [7.0, 8.0, 2.0]}})
    hop = 1024
    opts = Wav2PosOptions(start_window=5, c=343.0, hop=hop, window=(window_frames - 1) * hop / FS)  # exactly window_frames frames
    from sslkit.gcc import window_frames as frames_in_window

    assert frames_in_window(opts.window, hop, FS, n_frames) == min(window_frames, 2 * n_frames - 1)
    half = window_frames // 2
    active = ~np.isnan(network).any(1)
    averaged = torch.stack([probs[[g for g in range(max(0, f - half), min(n_frames, f + half + 1)) if active[g]]].mean(0) for f in range(n_frames)])
    start = torch.tensor(np.nan_to_num(smooth_track(network, 5)), dtype=torch.float32)
    expected = DelayedLagFit(rec, [], FS, opts, n_frames).refine(start, averaged)
    for block in (1, 5, 40):
        fit = DelayedLagFit(rec, [], FS, opts, n_frames)
        parts = [fit.add(network[s : s + block], probs[s : s + block]) for s in range(0, n_frames, block)] + [fit.finish()]
        torch.testing.assert_close(torch.tensor(np.concatenate([p[0] for p in parts]), dtype=torch.float32), expected[0])
    static = DelayedLagFit(rec, [], FS, Wav2PosOptions(c=343.0, static=True), n_frames)
    for s in range(0, n_frames, 6):
        assert len(static.add(network[s : s + 6], probs[s : s + 6])[0]) == 0
    one, _ = static.finish()
    whole = DelayedLagFit(rec, [], FS, opts, n_frames).refine(torch.tensor(np.nanmedian(network, axis=0)[None], dtype=torch.float32), probs[active].mean(0)[None])
    torch.testing.assert_close(torch.tensor(one, dtype=torch.float32), whole[0])


@pytest.mark.parametrize("sigma", [0.2, 0.7, 4.0, 500.0])
def test_lag_smoothing_is_the_zero_padded_gaussian_convolution(sigma):
    """Brute force: each distribution convolved (numpy, zero-padded) with the Gaussian of taps to
    ±⌈3σ⌉ summing to one, also when the kernel is wider than the 41 lags; below 0.3 lags, unsmoothed."""
    probs = torch.rand(3, 2, 41, dtype=torch.float64)
    half = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    expected = np.apply_along_axis(lambda row: np.convolve(row, kernel / kernel.sum())[half : half + 41], -1, probs.numpy())
    smoothed = LagSmoother(probs)(sigma).numpy()
    np.testing.assert_allclose(smoothed, probs.numpy() if sigma < 0.3 else expected, atol=1e-12)
