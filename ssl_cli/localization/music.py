"""Broadband MUSIC and NormMUSIC directions of arrival (far field), vectorized over frequencies,
hops and directions.

For each hop the spatial covariance of every analysed frequency bin is averaged over the
short-time spectra ("snapshots") in the integration window centred on it; its K strongest
eigenvectors span the signal subspace Eₛ. A direction u has steering vector aₖ(u) with entries
exp(−iωₖτₘ(u)), τₘ(u) = −(rₘ − r̄)·u / c (a plane wave from u reaches mics farther along u first),
and pseudo-spectrum 1 / (M − ‖Eₛᴴaₖ(u)‖²) (the noise-subspace projection, as ‖aₖ‖² = M). MUSIC sums
the bins' pseudo-spectra; NormMUSIC first divides each bin's by its maximum over directions, so
that no bin dominates. Peaks (local maxima, at least 10° apart) are found on a Fibonacci grid (in 2D, around the
horizontal circle) and refined on a finer local grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from sslkit.errors import UserError
from sslkit.gcc import frame_audio, frame_times, silent_frames
from sslkit.geometry import check_array_geometry, on_known_side
from sslkit.localization.directions import circle_directions, fibonacci_directions, turned
from sslkit.localization.region import near_field_warning, search_bounds
from sslkit.localization.track import PositionTrack
from sslkit.options import MusicOptions, at_rate
from sslkit.recording import Recording

GRID_DIRECTIONS = 2562
"""Directions of the first grid (about 4° apart)."""
CIRCLE_DIRECTIONS = 360
"""Directions of the first grid in 2D (1° apart around the horizontal circle)."""
REFINE_POINTS = 9
"""The local grid around each peak has REFINE_POINTS² directions, in two rounds."""
BAND_HZ = (500.0, 8000.0)
"""Frequencies analysed (capped below the Nyquist frequency)."""
MAX_BINS = 64
"""Frequency bins analysed at most (evenly spread over the band)."""
MIN_SEPARATION_DEG = 10.0
"""Peaks closer than this to a stronger one are the same source."""
GRID_NEIGHBOURS = 8
"""A direction of the first grid is a peak when its value is at least that of its nearest GRID_NEIGHBOURS (2 in 2D)."""
HOP_BATCH = 8
"""Hops whose covariances are decomposed at once."""
SNAPSHOT_BATCH = 2048
"""Snapshots transformed at once."""


def analysed_bins(snapshot: int, fs: int) -> np.ndarray:
    """Indices of the rfft bins of ``snapshot``-sample frames that MUSIC analyses."""
    freqs = np.fft.rfftfreq(snapshot, 1 / fs)
    band = np.flatnonzero((freqs >= BAND_HZ[0]) & (freqs <= min(BAND_HZ[1], 0.45 * fs)))
    return band[np.linspace(0, len(band) - 1, min(MAX_BINS, len(band))).round().astype(int)] if len(band) else band


def steering(u: torch.Tensor, mics: torch.Tensor, omega: torch.Tensor, c: float) -> torch.Tensor:
    """Steering vectors (..., K, M, G) for directions u (..., G, 3), mics (M, 3) relative to their
    centroid, ω (K,) rad/s."""
    phase = omega[:, None, None] * (mics @ u.transpose(-1, -2)).unsqueeze(-3) / c  # −ω·τ with τ = −(r·u)/c
    return torch.polar(torch.ones_like(phase), phase)


def pseudo_spectrum(subspace: torch.Tensor, u: torch.Tensor, mics: torch.Tensor, omega: torch.Tensor, c: float, normalize: bool) -> torch.Tensor:
    """Broadband (Norm)MUSIC pseudo-spectrum at directions u (G, 3), or per hop (H, G, 3), for signal
    subspaces (H, K, M, S) → (H, G)."""
    a = steering(u, mics, omega, c)  # (K, M, G) or (H, K, M, G)
    projected = (subspace.conj().transpose(-1, -2) @ a).abs().square().sum(-2)  # (H, K, G): ‖Eₛᴴa‖²
    per_bin = 1.0 / (mics.shape[0] - projected).clamp(min=1e-6)
    if normalize:
        per_bin = per_bin / per_bin.amax(dim=-1, keepdim=True)
    return per_bin.sum(1)


def hop_covariances(spectra_of: Callable[[int, int], torch.Tensor], centres: np.ndarray, snapshot_centres: np.ndarray,
                    half_window: float) -> torch.Tensor:
    """Spatial covariances (H, K, M, M) of the snapshots whose centres (T,) lie within ``half_window``
    seconds of each hop centre (H,), at least the nearest snapshot. ``spectra_of(lo, hi)`` gives the
    spectra (hi − lo, K, M) of snapshots lo…hi−1; they are taken ``SNAPSHOT_BATCH`` at a time, each
    once for all the hops, so memory does not grow with the window (``static``: the recording)."""
    ranges = [snapshot_range(snapshot_centres, centre, half_window) for centre in centres]
    first, last = min(lo for lo, _ in ranges), max(hi for _, hi in ranges)
    totals = None
    for start in range(first, last, SNAPSHOT_BATCH):
        x = spectra_of(start, min(start + SNAPSHOT_BATCH, last))
        if totals is None:
            totals = x.new_zeros(len(centres), x.shape[1], x.shape[2], x.shape[2])
        for h, (lo, hi) in enumerate(ranges):
            part = x[max(lo - start, 0) : max(0, min(hi - start, len(x)))]
            if len(part):
                totals[h] += torch.einsum("nkm,nkl->kml", part, part.conj())
    counts = torch.as_tensor([hi - lo for lo, hi in ranges], dtype=totals.real.dtype)
    return totals / counts[:, None, None, None]


def snapshot_range(snapshot_centres: np.ndarray, centre: float, half_window: float) -> tuple[int, int]:
    """Indices lo, hi of the (sorted) snapshots within ``half_window`` s of ``centre``; the nearest one when none is."""
    lo = int(np.searchsorted(snapshot_centres, centre - half_window, side="left"))
    hi = int(np.searchsorted(snapshot_centres, centre + half_window, side="right"))
    if lo < hi:
        return lo, hi
    nearest = int(np.abs(snapshot_centres - centre).argmin())
    return nearest, nearest + 1


def find_peaks(power: torch.Tensor, grid: torch.Tensor, neighbours: torch.Tensor, count: int) -> torch.Tensor:
    """Up to ``count`` directions (H, count, 3) of the highest local maxima of the values (H, G) at
    the directions of ``grid`` (G, 3) (no lower than at their ``neighbours`` (G, k)), each at least ``MIN_SEPARATION_DEG`` from the stronger ones (NaN when
    fewer exist): repeatedly the best, then its neighbourhood removed. Only local maxima: the best
    value left beside a removed neighbourhood is most often the flank of the peak just taken."""
    cos_limit = math.cos(math.radians(MIN_SEPARATION_DEG))
    power = power.masked_fill(power < power[:, neighbours].amax(dim=-1), -torch.inf)
    peaks = []
    for _ in range(count):
        best = power.argmax(dim=-1)  # (H,)
        found = torch.isfinite(power.gather(-1, best[:, None]))[:, 0]
        u = grid[best]  # (H, 3)
        peaks.append(torch.where(found[:, None], u, torch.nan))
        power = power.masked_fill(u @ grid.T >= cos_limit, -torch.inf)
    return torch.stack(peaks, dim=1)


def grid_neighbours(grid: torch.Tensor, dims: int) -> torch.Tensor:
    """Indices (G, k) of the nearest other directions of each direction of ``grid`` (G, 3):
    ``GRID_NEIGHBOURS`` of them, or in 2D the one on either side around the circle."""
    closeness = (grid @ grid.T).fill_diagonal_(-2.0)
    return closeness.topk(2 if dims == 2 else GRID_NEIGHBOURS, dim=-1).indices


def first_grid(dims: int) -> tuple[torch.Tensor, float]:
    """The directions (G, 3) of the first grid and their spacing (rad): over the sphere, or in 2D around the horizontal circle."""
    if dims == 2:
        return torch.as_tensor(circle_directions(CIRCLE_DIRECTIONS), dtype=torch.float32), 2 * math.pi / CIRCLE_DIRECTIONS
    return torch.as_tensor(fibonacci_directions(GRID_DIRECTIONS), dtype=torch.float32), math.sqrt(4 * math.pi / GRID_DIRECTIONS)


def local_grid(u: torch.Tensor, radius: float, dims: int = 3) -> torch.Tensor:
    """REFINE_POINTS² unit vectors (..., R, 3) on a square tangent-plane grid of half-width ``radius`` (rad) around u (..., 3);
    in 2D, REFINE_POINTS turns of u about the z axis within ``radius``."""
    if dims == 2:
        return torch.stack([turned(u, float(a)) for a in np.linspace(-radius, radius, REFINE_POINTS)], dim=-2)
    helper = torch.where(u[..., 2:].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0], dtype=u.dtype), torch.tensor([1.0, 0.0, 0.0], dtype=u.dtype))
    e1 = torch.nn.functional.normalize(torch.cross(u, helper.expand_as(u), dim=-1), dim=-1)
    e2 = torch.cross(u, e1, dim=-1)
    steps = torch.linspace(-radius, radius, REFINE_POINTS, dtype=u.dtype)
    a, b = torch.meshgrid(steps, steps, indexing="ij")
    points = u[..., None, :] + a.reshape(-1, 1) * e1[..., None, :] + b.reshape(-1, 1) * e2[..., None, :]
    return torch.nn.functional.normalize(points, dim=-1)


def locate_music(rec: Recording, opts: MusicOptions, on_progress=None, normalize: bool = False) -> PositionTrack:
    """Directions per hop (per recording with ``static``) of up to ``sources`` sources by broadband
    MUSIC (``normalize``: NormMUSIC), with ``dims`` 2 horizontal ones, on the side of the array's
    unheard mirror that ``bounds`` give (:func:`~sslkit.geometry.on_known_side`); positions are left NaN."""
    opts = at_rate(opts, rec.fs)
    if opts.sources >= rec.n_mics:
        raise UserError(f"{rec.path or 'the recording'}: MUSIC finds at most M − 1 = {rec.n_mics - 1} sources with {rec.n_mics} microphones "
                        f"(its noise subspace must not be empty), not {opts.sources}; use srp-phat --far-field for more")
    bounds = None if opts.bounds is None else search_bounds(rec, opts.bounds)
    warning = check_array_geometry(rec.mics, opts.dims, bounds, rec.path, far_field=True)
    mics = torch.as_tensor(rec.mics - rec.mics.mean(axis=0), dtype=torch.float32)
    bins = analysed_bins(opts.snapshot, rec.fs)
    omega = torch.as_tensor(2 * np.pi * bins * rec.fs / opts.snapshot, dtype=torch.float32)
    audio = torch.as_tensor(rec.audio)
    snapshots = frame_audio(audio, opts.snapshot, opts.snapshot // 2)  # (T, M, N), a view
    window = torch.hann_window(opts.snapshot, dtype=torch.float64)

    def spectra_of(lo: int, hi: int) -> torch.Tensor:  # (hi − lo, K, M)
        return torch.fft.rfft(snapshots[lo:hi].double() * window, dim=-1)[..., bins].permute(0, 2, 1)

    snapshot_centres = frame_times(len(snapshots), opts.snapshot, opts.snapshot // 2, rec.fs)
    hops = frame_audio(audio, opts.frame, opts.hop)
    silent = silent_frames(hops).numpy()
    times = frame_times(len(hops), opts.frame, opts.hop, rec.fs)
    if opts.static:
        times, silent = np.array([times[~silent].mean() if (~silent).any() else times.mean()]), np.array([silent.all()])
        half_window = np.inf
    else:
        half_window = max(opts.window, opts.frame / rec.fs) / 2
    grid, spacing = first_grid(opts.dims)
    neighbours = grid_neighbours(grid, opts.dims)
    directions, strength = np.empty((len(times), opts.sources, 3)), np.empty((len(times), opts.sources))  # filled in place
    for start in range(0, len(times), HOP_BATCH):
        block = slice(start, start + HOP_BATCH)
        covariance = hop_covariances(spectra_of, times[block], snapshot_centres, half_window)
        _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
        subspace = vectors[..., -opts.sources :].to(torch.complex64)  # (H, K, M, S)
        peaks = find_peaks(pseudo_spectrum(subspace, grid, mics, omega, opts.c, normalize), grid, neighbours, opts.sources)
        for radius in (spacing, spacing / (REFINE_POINTS - 1)):  # two rounds of local refinement
            candidates = local_grid(torch.nan_to_num(peaks), radius, opts.dims)  # (H, S, R, 3)
            h, s, r, _ = candidates.shape
            power = pseudo_spectrum(subspace, candidates.reshape(h, s * r, 3), mics, omega, opts.c, normalize).reshape(h, s, r)
            best = power.argmax(-1)
            peaks = torch.where(peaks.isnan(), peaks, candidates.gather(2, best[..., None, None].expand(-1, -1, 1, 3))[:, :, 0])
            value = power.gather(2, best[..., None])[..., 0]
        directions[block], strength[block] = peaks.numpy(), (value / len(bins)).numpy()
        if on_progress:
            on_progress(min(start + HOP_BATCH, len(times)), len(times))
    directions[silent] = np.nan
    confidence = np.where(np.isnan(directions).any(-1), 0.0, np.clip(strength, 0, 1) if normalize else 1.0)
    notes = [n for n in (warning, near_field_warning(rec, opts.bounds)) if n]
    return PositionTrack.from_directions(times, on_known_side(directions, rec.mics, opts.dims, bounds), confidence,
                                         np.full(strength.shape, rec.n_mics), "; ".join(notes) or None, horizontal=opts.dims == 2)



def locate_normmusic(rec: Recording, opts: MusicOptions, on_progress=None) -> PositionTrack:
    """NormMUSIC: MUSIC with each frequency bin's pseudo-spectrum normalised to its maximum."""
    return locate_music(rec, opts, on_progress, normalize=True)
