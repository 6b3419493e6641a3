"""SRP-PHAT: steered response power, found by a branch-and-bound style search over grid cells.

The power at a point s is Σ_pairs Rᵢⱼ(τᵢⱼ(s)), with Rᵢⱼ the GCC-PHAT (the inverse transform of the
whitened cross-spectrum, averaged over the integration window) read at the point's TDOA by linear
interpolation of an upsampled correlation. Unlike pyroomacoustics' far-field SRP it steers to
near-field points.

The peak of a reverberant SRP is a few centimetres wide for a metres-wide array, so a coarse grid
that reads the correlation at its points misses it. Here every level scores *cells*: within a
cube of side h around its centre a point's range difference moves by at most √3·h, so the
correlation of each pair max-pooled over that many lags, read at the centre, bounds the power
anywhere in the cell from above. Each level keeps 2 × ``BEAM`` distinct cells, those with the
highest bounds and those with the highest power at their centres taken in turn, splits each into
8 children of half the side, and so on down to ``final_step``; the leaves are scored exactly. The bounds keep a
narrow peak that no centre hits; the centre values keep a true peak whose cell's bound is beaten
by cells where unrelated peaks of different pairs fall within reach (loose bounds in reverberant
rooms).

Hops lend each other their answers: each frame also scores the leaves found in the frames within
``SEED_SPAN_S`` of it (those searched together), with their neighbouring leaves, and keeps one
that beats its own. A narrow peak the beam missed in one hop but found in a nearby one is not
lost, and no hop's power goes down.

Several sources: after each source is found, every pair's correlation is set to zero within
``suppress_m`` of that source's range difference, and the search runs again.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from sslkit.gcc import (
    LAG_MARGIN,
    WINDOW_AVERAGE_COPIES,
    band_share,
    frame_audio,
    frame_correlations,
    frame_times,
    gcc_fft_length,
    mean_correlation,
    mic_pairs,
    silent_frames,
    window_average,
    window_frames,
)
from sslkit.geometry import check_array_geometry, on_known_side, pair_lag_bounds, range_differences
from sslkit.hum import phat_taper
from sslkit.localization.region import near_field_warning, plane_height, range_warning, search_bounds
from sslkit.localization.track import PositionTrack
from sslkit.options import BATCH_FRAMES, SrpOptions, at_rate
from sslkit.recording import Recording, phat_max_freq
from sslkit.resources import check_memory, frames_per_batch

STEERING_BYTES = 64
"""Bytes per (grid point, pair) of the sparse steering matrix while it is built (indices, values, CSR)."""
COARSE_STEP = 0.1
"""Side (m) of the first level's cells unless the options say, or many pairs widen them (:func:`first_level_step`)."""
STEERING_BUDGET_BYTES = 2**30
"""Memory the first level's steering may take: with many pairs, its cells are wider."""


UPSAMPLE = 4
"""Correlation bins per sample that the steering reads (by linear interpolation at the leaves)."""
SUPPRESS_M = 0.05
"""Range-difference half-width (m) removed around a found source before the next is searched."""
BEAM = 64
"""Half the cells kept per level and frame unless the options say (see :func:`distinct_top_cells`)."""
SEED_SPAN_S = 1.0
"""Frames within this many seconds of a frame lend it their answers (see :meth:`CellSearch.with_neighbours_answers`)."""
SEARCH_BYTES = 48
"""Bytes per (candidate, pair) of one frame's search level (lag bins, their indices, the gathered values)."""
SEARCH_ELEMENTS = 8_000_000
"""Frames × candidates × pairs scored at once (bounds the search's memory for arrays of many mics)."""


def cell_counts(bounds: np.ndarray, step: float) -> np.ndarray:
    """Cells per axis (3,) that tile ``bounds`` with sides of about ``step``; an axis of zero extent gets one layer."""
    extent = bounds[1] - bounds[0]
    return np.where(extent > 0, np.maximum(1, np.ceil(extent / step)), 1).astype(int)


def first_level_step(bounds: np.ndarray, n_pairs: int, step: float | None) -> float:
    """The first level's cell side (m): ``step``, or for None ``COARSE_STEP`` widened by quarters
    until the cells × ``n_pairs`` steering fits ``STEERING_BUDGET_BYTES`` (arrays of many mics; a
    fixed budget, so that the answers do not depend on the machine)."""
    if step is not None:
        return step
    step = COARSE_STEP
    while np.prod(cell_counts(bounds, step)) * n_pairs * STEERING_BYTES > STEERING_BUDGET_BYTES and np.prod(cell_counts(bounds, step)) > 1:
        step *= 1.25
    return step


def coarse_cells(bounds: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres (G, 3) of the cells that tile ``bounds`` (see :func:`cell_counts`), and the cell side per axis (3,)."""
    counts = cell_counts(bounds, step)
    side = (bounds[1] - bounds[0]) / counts
    axes = [bounds[0, k] + (np.arange(counts[k]) + 0.5) * side[k] for k in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3), side


def pair_tdoa_bins(points: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, bins_per_m: float, n_lags: int) -> torch.Tensor:
    """Lag bin (fractional, lag 0 at the centre bin) of each pair's range difference at each point:
    points (..., 3) → (..., P), clamped to the correlation's span."""
    tau = range_differences(points, mics, pairs) * bins_per_m + (n_lags - 1) / 2
    return tau.clamp(0, n_lags - 1.001)


def steered_power(corr: torch.Tensor, points: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, bins_per_m: float) -> torch.Tensor:
    """Exact SRP at per-frame points: corr (F, P, L), points (F, G, 3) → (F, G), linear interpolation in lag."""
    return power_at_bins(corr, pair_tdoa_bins(points, mics, pairs, bins_per_m, corr.shape[-1]))


def power_at_bins(corr: torch.Tensor, tau: torch.Tensor, curvature: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over pairs of corr (F, P, L) read at the fractional lag bins tau (F, G, P) → (F, G): by linear
    interpolation, or given the ``curvature`` (:func:`second_differences` of corr) by cubic
    (Catmull-Rom) interpolation, which is the linear reading less t(1 − t)/2 times the linear reading
    of the second differences, t the fraction of a bin. Smooth: the maximum over directions is not
    drawn to where the pairs' lags fall on bins, as with linear interpolation, whose answers move in
    steps of a bin over a compact array's aperture."""
    low = tau.floor().long()
    t = tau - low
    c_t = corr.transpose(1, 2)  # (F, L, P)
    if curvature is None:
        return ((1 - t) * c_t.gather(1, low) + t * c_t.gather(1, low + 1)).sum(-1)
    e_t, w = curvature.transpose(1, 2), t * (1 - t) / 2
    return ((1 - t) * (c_t.gather(1, low) - w * e_t.gather(1, low)) + t * (c_t.gather(1, low + 1) - w * e_t.gather(1, low + 1))).sum(-1)


def second_differences(corr: torch.Tensor) -> torch.Tensor:
    """c[k+1] − 2c[k] + c[k−1] along the lags of corr (F, P, L), an end's missing neighbour taken as
    the end itself → (F, P, L)."""
    padded = torch.cat([corr[..., :1], corr, corr[..., -1:]], dim=-1)
    return padded[..., 2:] - 2 * corr + padded[..., :-2]


def cell_bounds(pooled: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Upper bounds of the SRP in the cells whose centres have lag bins tau (F, G, P), from the
    correlations ``pooled`` (F, P, L) max-pooled over each cell's lag span: read at the nearest bin."""
    return pooled.transpose(1, 2).gather(1, tau.round().long()).sum(-1)


def lag_steering(tau: torch.Tensor, n_lags: int, interpolate: bool = False) -> torch.Tensor:
    """Sparse CSR (G, P·L) that reads every pair's (pooled) correlation at the lag bins tau (G, P) of
    G fixed points: at the nearest bin, or by linear interpolation between the two around it; the
    reading for all frames is then one sparse × dense product."""
    g, p = tau.shape
    low = tau.floor() if interpolate else tau.round()
    block = torch.arange(p, device=tau.device) * n_lags
    if interpolate:
        frac = tau - low
        cols = torch.stack([block + low.long(), block + low.long() + 1], dim=-1).flatten(1)  # ascending within each row
        values = torch.stack([1 - frac, frac], dim=-1).flatten(1)
    else:
        cols, values = block + low.long(), torch.ones_like(tau)
    rows = torch.arange(0, g * cols.shape[1] + 1, cols.shape[1], device=tau.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch flags CSR as beta; the product is exact
        return torch.sparse_csr_tensor(rows, cols.flatten(), values.flatten(), (g, p * n_lags))


def pooled_over_cells(corr: torch.Tensor, side: np.ndarray, bins_per_m: float) -> torch.Tensor:
    """Each pair's correlation max-pooled over the lags a cell of ``side`` (3,) metres spans around
    its centre: range difference ± the cell's diagonal, plus one bin for the interpolation between
    two bins and half a bin because the bound is read at the centre's nearest bin."""
    return max_pooled(corr, int(math.ceil(float(np.linalg.norm(side)) * bins_per_m + 1.5)))


def max_pooled(corr: torch.Tensor, half_width: int) -> torch.Tensor:
    """Each pair's correlation (F, P, L) max-pooled over ±half_width bins."""
    f, p, n = corr.shape
    return F.max_pool1d(corr.reshape(f * p, 1, n), 2 * half_width + 1, stride=1, padding=half_width).reshape(f, p, n)


def distinct_top_cells(bound: torch.Tensor, value: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (F, min(2k, G)) of the cells to keep per frame, from their bounds and centre powers
    (F, G): the cells ranked by bound and by power, interleaved (best bound, best power, second
    bound, …), each cell once, the first 2k of them; a cell high in both rankings leaves room for
    the next of either."""
    n = min(2 * k, bound.shape[1])
    candidates = torch.stack([bound.topk(n, dim=-1).indices, value.topk(n, dim=-1).indices], dim=2).flatten(1)  # (F, 2n)
    ordered, order = candidates.sort(dim=1, stable=True)  # a repeat comes after its first (better-ranked) occurrence
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    rank = torch.arange(candidates.shape[1], device=bound.device) + candidates.shape[1] * torch.zeros_like(repeat).scatter_(1, order, repeat)
    return candidates.gather(1, rank.topk(n, dim=-1, largest=False).indices)


def child_offsets(side: np.ndarray, device: str) -> torch.Tensor:
    """Offsets (K, 3) of the centres of a cell's children (half the side on each axis that has extent)."""
    steps = [[-s / 4, s / 4] if s > 0 else [0.0] for s in side]
    grid = np.stack(np.meshgrid(*steps, indexing="ij"), -1).reshape(-1, 3)
    return torch.as_tensor(grid, dtype=torch.float32, device=device)


class CellSearch:
    """The coarse-to-fine search of one recording's geometry (see module docstring)."""

    def __init__(self, mics: np.ndarray, pairs: np.ndarray, bounds: np.ndarray, n_lags: int, bins_per_m: float, opts: SrpOptions,
                 seed_frames: int = 0, coarse_step: float = COARSE_STEP):
        dev = opts.device
        self.mics = torch.as_tensor(mics, dtype=torch.float32, device=dev)
        self.pairs = torch.as_tensor(pairs, device=dev)
        self.bins_per_m, self.opts = bins_per_m, opts
        self.beam = opts.beam or BEAM
        self.candidates = 16 * self.beam  # the most points scored at once per frame: 8 children of 2 × beam cells
        centres, self.coarse_side = coarse_cells(bounds, coarse_step)
        self.centres = torch.as_tensor(centres, dtype=torch.float32, device=dev)
        self.steer = lag_steering(pair_tdoa_bins(self.centres, self.mics, self.pairs, bins_per_m, n_lags), n_lags)
        self.lo = torch.as_tensor(bounds[0], dtype=torch.float32, device=dev)
        self.hi = torch.as_tensor(bounds[1], dtype=torch.float32, device=dev)
        leaf = np.where(bounds[1] > bounds[0], opts.final_step, 0.0)
        steps = [[-s, 0.0, s] if s > 0 else [0.0] for s in leaf]
        self.leaf_neighbours = torch.as_tensor(np.stack(np.meshgrid(*steps, indexing="ij"), -1).reshape(-1, 3), dtype=torch.float32, device=dev)
        self.seed_frames = min(seed_frames, self.candidates // (2 * len(self.leaf_neighbours)))  # within one level's memory

    def best(self, corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The highest-power point the search finds in each frame (its own leaves and those its
        neighbours lend it) and its power: corr (F, P, L) → (F, 3), (F,)."""
        beam = min(self.beam, len(self.centres))
        pooled = pooled_over_cells(corr, self.coarse_side, self.bins_per_m)
        bound = (self.steer @ pooled.flatten(1).T).T  # (F, G)
        value = (self.steer @ corr.flatten(1).T).T  # the power at the centres (nearest lag bin)
        points = self.centres[distinct_top_cells(bound, value, beam)]  # (F, 2B, 3)
        side = self.coarse_side
        while side.max() > self.opts.final_step:
            points = (points[:, :, None] + child_offsets(side, corr.device)).flatten(1, 2).clamp(self.lo, self.hi)
            side = side / 2
            tau = pair_tdoa_bins(points, self.mics, self.pairs, self.bins_per_m, corr.shape[-1])  # (F, 8·2B, P)
            bound = cell_bounds(pooled_over_cells(corr, side, self.bins_per_m), tau)
            value = power_at_bins(corr, tau)
            chosen = distinct_top_cells(bound, value, beam)
            points = points.gather(1, chosen[..., None].expand(-1, -1, 3))
        power = steered_power(corr, points, self.mics, self.pairs, self.bins_per_m)  # exact, at the leaves
        top = power.argmax(dim=-1)
        rows = torch.arange(len(points), device=corr.device)
        return self.with_neighbours_answers(corr, points[rows, top], power[rows, top])

    def with_neighbours_answers(self, corr: torch.Tensor, points: torch.Tensor, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's answer (F, 3) and power (F,), replaced where one of the answers of the frames
        within ``seed_frames`` of it, or a leaf next to one, has a higher power in that frame."""
        return with_lent_answers(points, power, self.seed_frames,
                                 lambda lent: (lent[:, :, None] + self.leaf_neighbours).flatten(1, 2).clamp(self.lo, self.hi),
                                 lambda candidates: steered_power(corr, candidates, self.mics, self.pairs, self.bins_per_m))

    def suppress(self, corr: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        """``corr`` with every pair's lags within ``SUPPRESS_M`` of the found points' (F, 3) range differences zeroed."""
        tau = pair_tdoa_bins(found, self.mics, self.pairs, self.bins_per_m, corr.shape[-1])  # (F, P)
        lags = torch.arange(corr.shape[-1], device=corr.device)
        near = (lags - tau[..., None]).abs() <= SUPPRESS_M * self.bins_per_m
        return corr.masked_fill(near, 0.0)


def with_lent_answers(points: torch.Tensor, power: torch.Tensor, span: int, around: Callable[[torch.Tensor], torch.Tensor],
                      score: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's answer (F, 3) and power (F,), replaced by the best of the candidates that
    ``around`` makes of the answers of the frames within ``span`` of it ((F, 2·span, 3) → (F, C, 3))
    where ``score`` (candidates → their power in each frame, (F, C)) beats the frame's own power."""
    if span == 0 or len(points) == 1:
        return points, power
    rows = torch.arange(len(points), device=points.device)
    shifts = torch.arange(-span, span + 1, device=points.device)
    candidates = around(points[(rows[:, None] + shifts[shifts != 0]).clamp(0, len(points) - 1)])
    scores = score(candidates)
    top = scores.argmax(dim=-1)
    better = scores[rows, top] > power
    return torch.where(better[:, None], candidates[rows, top], points), torch.where(better, scores[rows, top], power)


def srp_phat(audio: np.ndarray, fs: int, mics: np.ndarray, pairs: np.ndarray, bounds: np.ndarray | None, opts: SrpOptions,
             on_progress=None) -> dict[str, np.ndarray]:
    """SRP-PHAT per frame (per recording with ``opts.static``), up to ``opts.sources`` each: positions
    in ``bounds`` (2, 3) m, or with ``opts.far_field`` directions (unit vectors; ``bounds`` unused).

    Returns dict with ``times`` (F,) s, ``xyz`` (F, S, 3) positions or directions (NaN for silent
    frames), ``power`` (F, S) the peak power normalised to the mean correlation over pairs, and
    ``silent`` (F,); with ``static`` one row at the mean time of the active frames.
    """
    from sslkit.localization.directions import DirectionSearch

    dev = opts.device
    frames_all = frame_audio(torch.as_tensor(audio, device=dev), opts.frame, opts.hop)
    silent = silent_frames(frames_all)
    max_lag = int(np.ceil(pair_lag_bounds(mics, pairs, fs, opts.c).max())) + LAG_MARGIN
    n_fft = gcc_fft_length(opts.frame, max_lag)
    n_lags = 2 * max_lag * UPSAMPLE + 1
    seed_frames = round(SEED_SPAN_S * fs / opts.hop)
    if opts.far_field:
        search = DirectionSearch(mics, pairs, n_lags, fs * UPSAMPLE / opts.c, UPSAMPLE, dev, opts.beam, seed_frames, horizontal=opts.dims == 2)
    else:
        coarse_step = first_level_step(bounds, len(pairs), opts.coarse_step)
        n_cells = int(np.prod(cell_counts(bounds, coarse_step)))
        check_memory(n_cells * len(pairs) * STEERING_BYTES, f"an SRP grid of {n_cells:.3g} cells × {len(pairs)} pairs",
                     "check that the bounds and mics.csv are in metres, or narrow the search box (bounds), or use far_field")
        search = CellSearch(mics, pairs, bounds, n_lags, fs * UPSAMPLE / opts.c, opts, seed_frames, coarse_step)
    check_memory(search.candidates * len(pairs) * SEARCH_BYTES, f"a search beam of {opts.beam} cells per level", "narrow the beam")
    window = None if opts.static else window_frames(opts.window, opts.hop, fs, len(frames_all))
    band = band_share(opts.max_freq, fs)
    if window is None:
        averages = [(slice(0, len(frames_all)), mean_correlation(frames_all, ~silent, pairs, n_fft, max_lag, UPSAMPLE, band=band, taper=opts.taper))]
    else:  # correlations are linear in the spectra: average them (smaller than the spectra)
        batch = frames_per_batch(WINDOW_AVERAGE_COPIES * 4 * len(pairs) * n_lags, window - 1, BATCH_FRAMES,
                                 f"SRP-PHAT correlations of {len(pairs)} pairs over {n_lags} lag bins", "use a shorter window or fewer mics")
        averages = window_average(lambda lo, hi: frame_correlations(frames_all[lo:hi], pairs, n_fft, max_lag, UPSAMPLE, band=band, taper=opts.taper),
                                  len(frames_all), ~silent, window, batch)
    n_out = 1 if window is None else len(frames_all)
    xyz, power = np.empty((n_out, opts.sources, 3)), np.empty((n_out, opts.sources))  # filled in place: no pile of small arrays
    step = max(1, SEARCH_ELEMENTS // (search.candidates * len(pairs)))
    for covered, corr in averages:
        for start, chunk in zip(range(0 if window is None else covered.start, n_out, step), corr.split(step)):
            rows = slice(start, start + len(chunk))
            for k in range(opts.sources):
                point, value = search.best(chunk)
                xyz[rows, k], power[rows, k] = point.cpu().numpy(), (value / len(pairs)).cpu().numpy()
                if k + 1 < opts.sources:
                    chunk = search.suppress(chunk, point)
        if on_progress:
            on_progress(covered.stop, len(frames_all))
    times, silent = frame_times(len(frames_all), opts.frame, opts.hop, fs), silent.cpu().numpy()
    if window is None:
        times, silent = np.array([times[~silent].mean() if (~silent).any() else times.mean()]), np.array([silent.all()])
    xyz[silent] = np.nan
    power[silent] = 0.0
    return {"times": times, "xyz": xyz, "power": power, "silent": silent}


def locate_srp(rec: Recording, opts: SrpOptions, on_progress=None) -> PositionTrack:
    """Positions per hop by SRP-PHAT over all mic pairs; with ``dims`` 2 the search is the plane at
    ``height``; with ``far_field`` directions seen from the mics' centroid (positions NaN), with
    ``dims`` 2 horizontal ones, on the side of the array's unheard mirror that ``bounds`` give."""
    opts = replace(at_rate(opts, rec.fs), max_freq=phat_max_freq(rec, opts.max_freq), taper=phat_taper(rec.audio, rec.fs, opts.taper, rec.path))
    pairs = mic_pairs("all", rec.n_mics)
    if opts.far_field:
        bounds = None if opts.bounds is None else search_bounds(rec, opts.bounds)
        warning = check_array_geometry(rec.mics, opts.dims, bounds, rec.path, far_field=True)
        srp = srp_phat(rec.audio, rec.fs, rec.mics, pairs, None, opts, on_progress)
        power = srp["power"]
        notes = [n for n in (warning, near_field_warning(rec, opts.bounds)) if n]
        return PositionTrack.from_directions(srp["times"], on_known_side(srp["xyz"], rec.mics, opts.dims, bounds), np.clip(power, 0, 1),
                                             np.full(power.shape, len(pairs)), "; ".join(notes) or None, horizontal=opts.dims == 2)
    bounds = search_bounds(rec, opts.bounds)
    if opts.dims == 2:
        bounds = bounds.copy()
        bounds[:, 2] = plane_height(rec.mics, bounds, opts.height)
    warning = check_array_geometry(rec.mics, opts.dims, bounds if opts.bounds is not None else None, rec.path)
    srp = srp_phat(rec.audio, rec.fs, rec.mics, pairs, bounds, opts, on_progress)
    power = srp["power"]
    notes = [n for n in (warning, range_warning(rec.mics, bounds)) if n]
    return PositionTrack.from_hops(srp["times"], srp["xyz"], np.clip(power, 0, 1), np.full(power.shape, len(pairs)), "; ".join(notes) or None)
