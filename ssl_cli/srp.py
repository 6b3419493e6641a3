"""SRP-PHAT: steered response power on a 3D grid, coarse to fine, batched over frames × grid × pairs.

The power at a point s is Σ_pairs Rᵢⱼ(τᵢⱼ(s)), with Rᵢⱼ the GCC-PHAT (the inverse transform of the
whitened cross-spectrum, i.e. the sum over frequencies) read at the point's TDOA by linear
interpolation of an upsampled correlation. Unlike pyroomacoustics' far-field SRP it steers to
near-field points. Each refinement level re-grids a shrinking cube around every frame's best point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from sslkit.gcc import frame_audio, gcc, silent_frames
from sslkit.resources import check_memory

STEERING_BYTES = 64
"""Bytes per (grid point, pair) of the sparse steering matrix while it is built (indices, values, CSR)."""


@dataclass
class SrpOptions:
    """Grid and correlation settings."""

    bounds: np.ndarray  # (2, 3) lower and upper corner in metres
    coarse_step: float = 0.25
    levels: int = 3
    refine_points: int = 7
    upsample: int = 4
    frame: int = 2048
    hop: int = 1024
    silence_db: float = 40.0
    c: float = 343.0
    device: str = "cpu"
    batch_frames: int = 16


def grid_points(bounds: np.ndarray, step: float) -> np.ndarray:
    """Regular grid inside ``bounds`` with spacing about ``step``, shape (G, 3)."""
    axes = [np.linspace(lo, hi, max(2, int(round((hi - lo) / step)) + 1)) for lo, hi in bounds.T]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def steered_power(corr: torch.Tensor, points: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, bins_per_s: float) -> torch.Tensor:
    """SRP of per-frame points from correlations.

    corr (F, P, L) with lag 0 at the centre bin; points (F, G, 3) → power (F, G).
    """
    dist = torch.cdist(points, mics[None].expand(len(points), -1, -1))
    tau_bins = (dist[..., pairs[:, 0]] - dist[..., pairs[:, 1]]) * bins_per_s + (corr.shape[-1] - 1) / 2  # (F, G, P)
    tau_bins = tau_bins.clamp(0, corr.shape[-1] - 1.001)
    low = tau_bins.floor().long()
    frac = tau_bins - low
    c_t = corr.transpose(1, 2)  # (F, L, P)
    gather = lambda idx: c_t.gather(1, idx)  # noqa: E731  (F, G, P) values at lag bins
    return ((1 - frac) * gather(low) + frac * gather(low + 1)).sum(-1)


def steering_matrix(points: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, n_lags: int, bins_per_s: float) -> torch.Tensor:
    """Sparse (G, P·L) matrix that reads every pair's correlation at each point's TDOA with linear
    interpolation, so the SRP of a fixed grid is one sparse × dense product over all frames."""
    dist = torch.cdist(points, mics)  # (G, M)
    tau = ((dist[:, pairs[:, 0]] - dist[:, pairs[:, 1]]) * bins_per_s + (n_lags - 1) / 2).clamp(0, n_lags - 1.001)
    low = tau.floor().long()
    frac = tau - low
    g, p = torch.meshgrid(torch.arange(len(points), device=points.device), torch.arange(len(pairs), device=points.device), indexing="ij")
    cols = p * n_lags + low
    rows = torch.cat([g.flatten(), g.flatten()])
    index = torch.stack([rows, torch.cat([cols.flatten(), cols.flatten() + 1])])
    values = torch.cat([(1 - frac).flatten(), frac.flatten()])
    coo = torch.sparse_coo_tensor(index, values, (len(points), len(pairs) * n_lags), check_invariants=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch flags CSR as beta; the product is exact
        return coo.coalesce().to_sparse_csr()  # CSR: the fastest sparse × dense product on CPU


def srp_phat(audio: np.ndarray, fs: int, mics: np.ndarray, pairs: np.ndarray, opts: SrpOptions, on_progress=None) -> dict[str, np.ndarray]:
    """Per-frame SRP-PHAT positions.

    Returns dict with ``times`` (F,), ``xyz`` (F, 3) (NaN for silent frames), ``power`` (F,)
    the normalised peak power (mean correlation over pairs, in [−1, 1]) and ``silent`` (F,).
    """
    dev = opts.device
    frames_all = frame_audio(torch.as_tensor(audio, device=dev), opts.frame, opts.hop)
    silent = silent_frames(frames_all, opts.silence_db).cpu().numpy()
    mic_t = torch.as_tensor(mics, dtype=torch.float32, device=dev)
    pair_t = torch.as_tensor(pairs, device=dev)
    max_lag = int(np.ceil(np.linalg.norm(mics[pairs[:, 0]] - mics[pairs[:, 1]], axis=1).max() / opts.c * fs)) + 2
    n_points = np.prod([max(2, int(round((hi - lo) / opts.coarse_step)) + 1) for lo, hi in opts.bounds.T])
    check_memory(n_points * len(pairs) * STEERING_BYTES, f"an SRP grid of {n_points:.3g} points × {len(pairs)} pairs",
                 "check that the bounds and mics.csv are in metres, or narrow the search box (--bounds)")
    coarse = torch.as_tensor(grid_points(opts.bounds, opts.coarse_step), dtype=torch.float32, device=dev)
    lo = torch.as_tensor(opts.bounds[0], dtype=torch.float32, device=dev)
    hi = torch.as_tensor(opts.bounds[1], dtype=torch.float32, device=dev)
    offsets = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, opts.refine_points, device=dev)] * 3, indexing="ij"), -1).reshape(-1, 3)
    bins_per_s = fs * opts.upsample / opts.c
    steer = steering_matrix(coarse, mic_t, pair_t, 2 * max_lag * opts.upsample + 1, bins_per_s)
    xyz, power = [], []
    for start in range(0, len(frames_all), opts.batch_frames):
        frames = frames_all[start : start + opts.batch_frames]
        corr = gcc(frames, pairs, max_lag, "phat", upsample=opts.upsample).float()
        p = (steer @ corr.flatten(1).T).T  # (F, G)
        best = coarse[p.argmax(-1)]  # (F, 3)
        half = opts.coarse_step
        for _ in range(opts.levels - 1):
            pts = (best[:, None] + half * offsets[None]).clamp(lo, hi)  # (F, R³, 3)
            p = steered_power(corr, pts, mic_t, pair_t, bins_per_s)
            best = pts[torch.arange(len(pts)), p.argmax(-1)]
            half = 2 * half / (opts.refine_points - 1)
        xyz.append(best.cpu().numpy())
        power.append((p.amax(-1) / len(pairs)).cpu().numpy())
        if on_progress:
            on_progress(min(start + opts.batch_frames, len(frames_all)), len(frames_all))
    xyz, power = np.concatenate(xyz).astype(float), np.concatenate(power).astype(float)
    xyz[silent] = np.nan
    power[silent] = 0.0
    return {"xyz": xyz, "power": power, "silent": silent}
