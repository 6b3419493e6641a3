"""Localization metrics: errors matched by time, MAE, median, accuracy at a threshold, bootstrap CIs."""

from __future__ import annotations

import numpy as np

from sslkit.geometry import check_same_units
from sslkit.localize import PositionTrack
from sslkit.recording import SourceTrack


def position_errors(pred: PositionTrack, truth: SourceTrack, truncate: float | None = 3.0) -> np.ndarray:
    """3D error (m) for every hop of ``pred`` and every source active then (see :func:`matched_errors`)."""
    return matched_errors(pred, truth, truncate)[0]


def matched_errors(pred: PositionTrack, truth: SourceTrack, truncate: float | None = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Errors (m) of the estimates matched to the active sources, hop by hop, and their source ids.

    At each hop time of ``pred`` the sources active then (:meth:`SourceTrack.active_span`; truth
    interpolated linearly in time) are matched one to one to that hop's estimates (rows of any
    track) by the Hungarian algorithm on their distances, as the papers' metrics do. A source
    left without an estimate (none, NaN, or fewer estimates than sources) counts ``truncate``
    metres (inf without truncation), and errors are capped at ``truncate`` (the papers cap at 3 m);
    hops where no source is active are left out, and so are estimates beyond the sources' count.
    Estimates in other units than the truth (mm against m) are a GeometryError.
    Returns errors (N,) and source ids (N,), one per (hop, active source).
    """
    from scipy.optimize import linear_sum_assignment

    check_same_units(pred.xyz, truth.xyz, "predictions vs ground truth")
    hops, row_hop = np.unique(pred.times, return_inverse=True)
    ids = np.unique(truth.source_id)
    spans = np.array([truth.active_span(sid) for sid in ids])  # (S, 2)
    active = (hops[:, None] >= spans[:, 0] - 1e-9) & (hops[:, None] <= spans[:, 1] + 1e-9)  # (H, S)
    true_xyz = np.stack([np.stack([np.interp(hops, own.time, own.xyz[:, k]) for k in range(3)], 1)
                         for own in (truth.of_source(sid) for sid in ids)], 1)  # (H, S, 3)
    missing = np.inf if truncate is None else truncate
    errors, sources = [], []
    for h in np.flatnonzero(active.any(1)):
        estimates = pred.xyz[row_hop == h]
        estimates = estimates[np.isfinite(estimates).all(1)]
        here = np.flatnonzero(active[h])
        err = np.full(len(here), missing)
        if len(estimates):
            dist = np.linalg.norm(true_xyz[h, here][:, None] - estimates[None], axis=-1)  # (sources, estimates)
            rows, cols = linear_sum_assignment(dist)
            err[rows] = dist[rows, cols]
        errors.append(err)
        sources.append(ids[here])
    if not errors:
        return np.zeros(0), np.zeros(0, dtype=int)
    errors, sources = np.concatenate(errors), np.concatenate(sources)
    return (np.minimum(errors, truncate) if truncate is not None else errors), sources


def bootstrap_ci(values: np.ndarray, stat, rng: np.random.Generator, n_boot: int = 1000) -> tuple[float, float]:
    """95 % percentile bootstrap interval of ``stat`` over ``values``."""
    idx = rng.integers(len(values), size=(n_boot, len(values)))
    stats = stat(values[idx], axis=1)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def summarize_errors(errors: np.ndarray, threshold: float = 0.3, n_boot: int = 1000, seed: int = 0, coverage: float | None = None) -> dict:
    """MAE, median and accuracy at ``threshold`` (fraction of errors below it), with 95 % CIs."""
    if len(errors) == 0:
        return {"n": 0}
    rng = np.random.default_rng(seed)
    hits = (errors < threshold).astype(float)
    finite = np.isfinite(errors)
    return {
        "n": int(len(errors)),
        "mae_m": float(np.mean(errors)) if finite.all() else float("inf"),
        "mae_ci_m": bootstrap_ci(errors, np.mean, rng, n_boot) if finite.all() else None,
        "median_m": float(np.median(errors)),
        "threshold_m": threshold,
        "accuracy": float(hits.mean()),
        "accuracy_ci": bootstrap_ci(hits, np.mean, rng, n_boot),
        "coverage": coverage,
    }
