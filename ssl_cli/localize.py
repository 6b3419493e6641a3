"""Source localization of a recording by any registered method, and the ``positions.csv`` format.

Methods (``LOCATE_METHODS``): ``multilat`` (robust RANSAC multilateration over TDOA peaks) and
``srp-phat`` (steered response power on a grid); more register here by name.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslkit.errors import InputFileError, UserError
from sslkit.recording import Recording, read_csv_columns, write_csv

POSITION_COLUMNS = ["time", "x", "y", "z", "confidence", "n_inliers"]
BOUNDS_MARGIN_M = 1.0


@dataclass
class PositionTrack:
    """Estimated positions per hop: times (F,), xyz (F, 3) (NaN = no solution), confidence (F,), n_inliers (F,)."""

    times: np.ndarray
    xyz: np.ndarray
    confidence: np.ndarray
    n_inliers: np.ndarray
    warnings: list[str] = field(default_factory=list)


@dataclass
class LocateOptions:
    """Options of ``sslkit locate`` (see its --help)."""

    tdoa_method: str = "gcc-phat"
    tdoa_csv: str | None = None
    checkpoint: str | None = None
    frame: int = 2048
    hop: int = 1024
    peaks: int = 4
    pool: int = 1
    dims: int = 3
    height: float | None = None
    bounds: np.ndarray | None = None
    threshold: float = 0.1
    hypotheses: int = 400
    min_inliers: int | None = None
    smooth: int = 0
    c: float = 343.0
    device: str = "cpu"
    seed: int = 0


def default_bounds(rec: Recording) -> np.ndarray:
    """Search box (2, 3): the room of scene.yaml when known, else the mics' box grown by 1 m (z ≥ 0)."""
    room = rec.scene.get("room", {}).get("dimensions") if rec.scene else None
    if room:
        return np.array([[0.0, 0.0, 0.0], room])
    lo, hi = rec.mics.min(axis=0) - BOUNDS_MARGIN_M, rec.mics.max(axis=0) + BOUNDS_MARGIN_M
    lo[2] = max(lo[2], 0.0)
    return np.stack([lo, hi])


def pool_frames(times: np.ndarray, tdoa: np.ndarray, score: np.ndarray, pool: int):
    """Merge each ``pool`` consecutive frames into one measurement set (peaks stacked), for a
    quasi-static source. (F, P, K) → (F // pool, P, K·pool); times are averaged."""
    if pool <= 1:
        return times, tdoa, score
    n = len(times) // pool
    if n == 0:
        raise UserError(f"--pool {pool} is longer than the recording's {len(times)} frames")

    def merge(a: np.ndarray) -> np.ndarray:
        f, p, k = a[: n * pool].shape
        return a[: n * pool].reshape(n, pool, p, k).transpose(0, 2, 1, 3).reshape(n, p, pool * k)
    return times[: n * pool].reshape(n, pool).mean(1), merge(tdoa), merge(score)


def locate_multilat(rec: Recording, opts: LocateOptions, on_progress=None) -> PositionTrack:
    from sslkit.multilateration import MultilatOptions, check_array_geometry, ransac_multilaterate
    from sslkit.tdoa import TdoaOptions, estimate_tdoa, read_tdoa_csv

    warning = check_array_geometry(rec.mics, opts.dims)
    if opts.tdoa_csv:
        result = read_tdoa_csv(opts.tdoa_csv, rec.mic_ids)
    else:
        tdoa_opts = TdoaOptions(frame=opts.frame, hop=opts.hop, peaks=opts.peaks, c=opts.c, device=opts.device, checkpoint=opts.checkpoint)
        result = estimate_tdoa(rec, opts.tdoa_method, tdoa_opts, on_progress)
    times, tdoa, score = pool_frames(result.times, result.tdoa, result.score, opts.pool)
    ml = MultilatOptions(opts.hypotheses, opts.threshold, opts.min_inliers, dims=opts.dims, height=opts.height,
                         bounds=opts.bounds if opts.bounds is not None else default_bounds(rec), c=opts.c, seed=opts.seed)
    out = ransac_multilaterate(rec.mics, result.pairs, tdoa, ml, score)
    return PositionTrack(times, out["xyz"], out["confidence"], out["n_inliers"], [warning] if warning else [])


def locate_srp(rec: Recording, opts: LocateOptions, on_progress=None) -> PositionTrack:
    from sslkit.gcc import frame_times, mic_pairs
    from sslkit.srp import SrpOptions, srp_phat

    bounds = opts.bounds if opts.bounds is not None else default_bounds(rec)
    if opts.dims == 2:
        z = opts.height if opts.height is not None else float(rec.mics[:, 2].mean())
        bounds = bounds.copy()
        bounds[:, 2] = z
    pairs = mic_pairs("all", rec.n_mics)
    srp = srp_phat(rec.audio, rec.fs, rec.mics, pairs, SrpOptions(bounds=bounds, frame=opts.frame, hop=opts.hop, c=opts.c, device=opts.device), on_progress)
    times = frame_times(len(srp["xyz"]), opts.frame, opts.hop, rec.fs)
    return PositionTrack(times, srp["xyz"], np.clip(srp["power"], 0, 1), np.full(len(times), len(pairs)))


LOCATE_METHODS: dict[str, Callable[[Recording, LocateOptions, Callable | None], PositionTrack]] = {
    "multilat": locate_multilat,
    "srp-phat": locate_srp,
}


def locate(rec: Recording, method: str = "multilat", opts: LocateOptions | None = None, on_progress=None) -> PositionTrack:
    """Positions of the source over time with the named method (see ``LOCATE_METHODS``)."""
    if method not in LOCATE_METHODS:
        raise UserError(f"unknown --method '{method}' (choose from {', '.join(LOCATE_METHODS)})")
    opts = opts or LocateOptions()
    track = LOCATE_METHODS[method](rec, opts, on_progress)
    if opts.smooth > 1:
        track.xyz = smooth_track(track.xyz, opts.smooth)
    return track


def smooth_track(xyz: np.ndarray, window: int) -> np.ndarray:
    """Running median over ``window`` frames that ignores NaN; frames without a solution stay NaN."""
    half = window // 2
    padded = np.pad(xyz, ((half, half), (0, 0)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (F, 3, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: the result is NaN, as wanted
        smoothed = np.nanmedian(windows, axis=-1)
    return np.where(np.isnan(xyz), np.nan, smoothed)


def write_positions(path: str | os.PathLike, track: PositionTrack) -> None:
    rows = ([t, *xyz, conf, int(n)] for t, xyz, conf, n in zip(track.times, track.xyz, track.confidence, track.n_inliers))
    write_csv(path, POSITION_COLUMNS, rows)


def read_positions(path: str | os.PathLike) -> PositionTrack:
    """Read a ``positions.csv`` (time,x,y,z[,confidence,n_inliers]); empty/nan cells are NaN."""
    cols = read_csv_columns(Path(path), ["time", "x", "y", "z"], ["confidence", "n_inliers"])
    n = len(cols["time"])
    if n == 0:
        raise InputFileError(path, "no rows")
    conf = cols.get("confidence", np.ones(n))
    n_in = cols.get("n_inliers", np.zeros(n))
    return PositionTrack(cols["time"], np.stack([cols["x"], cols["y"], cols["z"]], 1), conf, np.nan_to_num(n_in).astype(int))
