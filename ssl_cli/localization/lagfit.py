"""Refine source positions by fitting per-pair lag distributions (NGCC-PHAT's) around a start point.

For a candidate position r, pair (i, j) predicts the lag τᵢⱼ(r) = (‖r − mᵢ‖ − ‖r − mⱼ‖)·fs / c (sslkit's
sign, see :mod:`sslkit.gcc`). The fit maximises the log-likelihood Σᵢⱼ log(pᵢⱼ(τᵢⱼ(r)) + floor) of the
lag distributions pᵢⱼ, plus a Gaussian prior around the start, by a coarse-to-fine grid search:
each stage searches a 9×9×9 grid, smoothing the distributions by one grid step's worth of lag so
that no peak falls between grid points, then searches a grid half as wide around its best point. The floor
bounds what one wrong pair (a reflection, a silent mic) can cost. All frames and grid points are
evaluated at once, on the device of the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sslkit.gcc import gcc_fft_length
from sslkit.geometry import SPEED_OF_SOUND, range_differences


@dataclass
class LagFitOptions:
    """Search half-width around the start (m), prior std around it (m), probability floor, grid
    points per axis and the step (m) at which the search stops."""

    radius: float = 1.0
    prior: float = 0.3
    floor: float = 1e-2
    points: int = 9
    final_step: float = 0.004
    c: float = SPEED_OF_SOUND


class LagSmoother:
    """Gaussian smoothing of distributions (..., L) along the lag axis, zero-padded, by several widths:
    transformed once, over enough points that the circular convolution is the linear one (taps beyond
    ±(L − 1) reach no output), then one product and one inverse transform per width."""

    def __init__(self, probs: torch.Tensor):
        self.probs, self.n_lags = probs, probs.shape[-1]
        self.n_fft = gcc_fft_length(self.n_lags, self.n_lags)
        self.spectrum = torch.fft.rfft(probs, n=self.n_fft)

    def __call__(self, sigma: float) -> torch.Tensor:
        """The distributions smoothed by a Gaussian of ``sigma`` lags (taps to ±3σ, summing to one);
        below 0.3 lags, as they are."""
        if sigma < 0.3:
            return self.probs
        half = math.ceil(3 * sigma)
        x = torch.arange(-half, half + 1, dtype=self.probs.dtype, device=self.probs.device)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel = kernel / kernel.sum()
        reach = min(half, self.n_lags - 1)
        circular = torch.zeros(self.n_fft, dtype=self.probs.dtype, device=self.probs.device)
        circular[: reach + 1] = kernel[half : half + reach + 1]
        if reach:
            circular[-reach:] = kernel[half - reach : half]
        return torch.fft.irfft(self.spectrum * torch.fft.rfft(circular), n=self.n_fft)[..., : self.n_lags]


def lag_log_likelihood(points: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, probs: torch.Tensor,
                       valid: torch.Tensor, fs: float, opts: LagFitOptions) -> torch.Tensor:
    """Σ over valid pairs of log(p(τ(r)) + floor), p linearly interpolated between lags.

    points (F, G, 3), mics (M, 3), pairs (P, 2), probs (F, P, L) over lags −(L−1)/2 … (L−1)/2,
    valid (F, P) → (F, G). Lags beyond the distributions' range take the edge value.
    """
    n_lags = probs.shape[-1]
    lag = range_differences(points, mics, pairs) * (fs / opts.c) + (n_lags - 1) / 2  # (F, G, P)
    lag = lag.clamp(0, n_lags - 1)
    low = lag.floor().clamp(max=n_lags - 2)
    frac = lag - low
    index = low.long() + torch.arange(pairs.shape[0], device=probs.device) * n_lags  # into (F, P·L)
    flat = probs.flatten(1)
    below = flat.gather(1, index.flatten(1)).view_as(lag)
    above = flat.gather(1, index.flatten(1) + 1).view_as(lag)
    loglik = torch.log(below * (1 - frac) + above * frac + opts.floor)
    return (loglik * valid[:, None]).sum(-1)


def pair_weights(probs: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """1/0 weights (F, P) of the pairs of ``probs`` (F, P, L) from ``valid`` (F, P), (P,) or None (all)."""
    return torch.ones(probs.shape[:2], device=probs.device) if valid is None else valid.expand(probs.shape[:2]).to(probs.dtype)


def fit_lag_distributions(start: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, probs: torch.Tensor,
                          fs: float, bounds: torch.Tensor, opts: LagFitOptions | None = None,
                          valid: torch.Tensor | None = None) -> torch.Tensor:
    """Positions (F, 3) within ``opts.radius`` of ``start`` (F, 3) and inside ``bounds`` (2, 3) that
    best explain the pair lag distributions ``probs`` (F, P, L) of mic ``pairs`` (P, 2) (see the
    module docstring); ``valid`` (F, P) or (P,) leaves pairs out (default: all in)."""
    opts = opts or LagFitOptions()
    valid = pair_weights(probs, valid)
    axis = torch.linspace(-1, 1, opts.points, device=start.device)
    offsets = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)  # (G, 3)
    best, half_width = start, min(opts.radius, float((bounds[1] - bounds[0]).max()))  # a wider box holds no more of the region
    frames = torch.arange(len(start), device=start.device)
    smoothed = LagSmoother(probs)
    while True:
        step = 2 * half_width / (opts.points - 1)
        grid = torch.maximum(torch.minimum(best[:, None] + offsets * half_width, bounds[1]), bounds[0])  # (F, G, 3)
        score = lag_log_likelihood(grid, mics, pairs, smoothed(step * fs / opts.c), valid, fs, opts)
        score = score - ((grid - start[:, None]) ** 2).sum(-1) / (2 * opts.prior**2)
        best = grid[frames, score.argmax(1)]
        if step <= opts.final_step:
            return best
        half_width = 2 * step  # half this stage's width: shrinking faster lost the peak at times


def lag_fit_confidence(points: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, probs: torch.Tensor, fs: float,
                       opts: LagFitOptions | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """How well positions (F, 3) explain the lag distributions: the geometric mean over valid pairs
    of (p(τ(r)) + floor) / (max p + floor), 1 when every pair's TDOA at r is its most likely lag. → (F,)"""
    opts = opts or LagFitOptions()
    valid = pair_weights(probs, valid)
    fit = lag_log_likelihood(points[:, None], mics, pairs, probs, valid, fs, opts)[:, 0]
    best = (torch.log(probs.amax(-1) + opts.floor) * valid).sum(-1)
    return torch.exp((fit - best) / valid.sum(-1).clamp(min=1))
