"""Localization metrics: errors matched by time, MAE, median, accuracy at a threshold, bootstrap CIs."""

from __future__ import annotations

import numpy as np

from sslkit.geometry import check_same_units
from sslkit.localize import PositionTrack
from sslkit.recording import SourceTrack


def position_errors(pred: PositionTrack, truth: SourceTrack, truncate: float | None = 3.0) -> np.ndarray:
    """3D error (m) of each prediction against the nearest active true source at its time.

    Truth is interpolated linearly in time; predictions outside every source's active span
    (:meth:`SourceTrack.active_span`) are dropped. A missing prediction (NaN) counts as ``truncate`` metres (or inf without truncation),
    and errors are capped at ``truncate`` (the papers cap at 3 m). Estimates in other units than
    the truth (mm against m) are a GeometryError.
    """
    check_same_units(pred.xyz, truth.xyz, "predictions vs ground truth")
    best = np.full(len(pred.times), np.inf)
    covered = np.zeros(len(pred.times), dtype=bool)
    for sid in np.unique(truth.source_id):
        own = truth.of_source(sid)
        first, last = truth.active_span(sid)
        inside = (pred.times >= first - 1e-9) & (pred.times <= last + 1e-9)
        pos = np.stack([np.interp(pred.times, own.time, own.xyz[:, k]) for k in range(3)], 1)
        err = np.linalg.norm(pred.xyz - pos, axis=1)
        best = np.where(inside, np.fmin(best, np.where(np.isnan(err), np.inf, err)), best)
        covered |= inside
    best = best[covered]
    return np.minimum(best, truncate) if truncate is not None else best


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
