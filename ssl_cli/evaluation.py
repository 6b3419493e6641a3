"""Localization metrics: errors matched by time, MAE, median, accuracy at a threshold, bootstrap CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sslkit.errors import InputFileError, UserError
from sslkit.geometry import check_same_units, in_far_field
from sslkit.localization.track import PositionTrack
from sslkit.recording import SourceTrack

TRUNCATE_M = 3.0
"""Errors are capped at this many metres, and a missing estimate counts this much (as the papers do)."""
THRESHOLD_M = 0.3
"""Default accuracy threshold (m)."""
ANGLE_THRESHOLD_DEG = 5.0
"""Default angular accuracy threshold (degrees)."""
METRICS_FILE = "metrics.json"
CDF_FILE = "error_cdf.png"


def evaluate_positions(pred: PositionTrack, truth: SourceTrack, threshold: float = THRESHOLD_M, truncate: float | None = TRUNCATE_M,
                       n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics of estimated positions against the truth: ``n``, ``mae_m``, ``median_m``,
    ``accuracy`` (share of errors below ``threshold`` m) with 95 % bootstrap CIs, ``coverage``
    (share of rows with a position) and, with several sources, the same per source in ``per_source``.
    Estimates are matched to the sources active at each hop (see :func:`matched_errors`); ``n`` is 0
    when no hop falls in a source's active time."""
    return position_metrics(pred, *matched_errors(pred, truth, truncate), threshold, n_boot, seed)


def position_metrics(pred: PositionTrack, errors: np.ndarray, sources: np.ndarray, threshold: float, n_boot: int, seed: int) -> dict:
    """:func:`evaluate_positions`' metrics from the matched errors (N,) and their source ids (N,)."""
    coverage = float(np.mean(pred.located)) if len(pred.xyz) else 0.0
    metrics = summarize_errors(errors, threshold, n_boot, seed, coverage)
    if len(np.unique(sources)) > 1:
        metrics["per_source"] = {int(sid): summarize_errors(errors[sources == sid], threshold, n_boot, seed) for sid in np.unique(sources)}
    return metrics


def matched_errors(pred: PositionTrack, truth: SourceTrack, truncate: float | None = TRUNCATE_M) -> tuple[np.ndarray, np.ndarray]:
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
    check_same_units(pred.xyz, truth.xyz, "predictions vs ground truth")
    distance = lambda true, found: np.linalg.norm(true[:, None] - found[None], axis=-1)  # noqa: E731
    errors, sources = hungarian_errors(pred.times, pred.xyz, truth, distance, np.inf if truncate is None else truncate)
    return (np.minimum(errors, truncate) if truncate is not None else errors), sources


def angular_errors(pred: PositionTrack, truth: SourceTrack, origin: np.ndarray, missing_deg: float = 180.0) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) between the estimated directions and those of the sources active at each
    hop, seen from ``origin`` (3,) (the array's centroid; estimates without directions are seen from
    it too), matched as :func:`matched_errors` matches positions; a source without an estimate counts ``missing_deg``.
    Horizontal directions (``pred.horizontal``) are azimuths: their errors are those of the sources'
    azimuths. Returns errors (N,) and source ids (N,), one per (hop, active source)."""
    from sslkit.localization.directions import angle_between, unit_vector

    if pred.azimuth is None:  # positions only: seen from origin
        found = pred.xyz - origin
    else:
        found = unit_vector(pred.azimuth, np.zeros_like(pred.azimuth) if pred.horizontal else pred.elevation)
    plane = np.array([1.0, 1.0, 0.0]) if pred.horizontal else np.ones(3)
    # a source straight above or below the array has every azimuth
    angle = lambda true, est: np.nan_to_num(angle_between((true[:, None] - origin) * plane, est[None]))  # noqa: E731
    return hungarian_errors(pred.times, found, truth, angle, missing_deg)


def hungarian_errors(times: np.ndarray, estimates: np.ndarray, truth: SourceTrack, cost, missing: float) -> tuple[np.ndarray, np.ndarray]:
    """At each hop of ``times`` (R,), the sources active then matched one to one to that hop's rows
    of ``estimates`` (R, 3) (NaN rows: none) by the Hungarian algorithm on ``cost(true (S, 3),
    found (E, 3)) → (S, E)``; unmatched sources count ``missing``. → errors (N,), source ids (N,)."""
    from scipy.optimize import linear_sum_assignment

    hops, row_hop = np.unique(times, return_inverse=True)
    ids = truth.ids
    true_xyz = truth.positions_at(hops)  # (H, S, 3), NaN where inactive
    active = np.isfinite(true_xyz).all(-1)  # (H, S)
    errors, sources = [], []
    for h in np.flatnonzero(active.any(1)):
        here = np.flatnonzero(active[h])
        found = estimates[row_hop == h]
        found = found[np.isfinite(found).all(1)]
        err = np.full(len(here), float(missing))
        if len(found):
            matrix = cost(true_xyz[h, here], found)
            rows, cols = linear_sum_assignment(matrix)
            err[rows] = matrix[rows, cols]
        errors.append(err)
        sources.append(ids[here])
    if not errors:
        return np.zeros(0), np.zeros(0, dtype=int)
    return np.concatenate(errors), np.concatenate(sources)


def summarize_angles(errors: np.ndarray, threshold_deg: float = ANGLE_THRESHOLD_DEG) -> dict:
    """Median and mean angular error (degrees) and the share within ``threshold_deg``."""
    if len(errors) == 0:
        return {"n": 0}
    return {"n": int(len(errors)), "median_deg": float(np.median(errors)), "mean_deg": float(np.mean(errors)),
            "threshold_deg": threshold_deg, "accuracy_deg": float(np.mean(errors < threshold_deg))}


def bootstrap_ci(values: np.ndarray, stat, rng: np.random.Generator, n_boot: int = 1000) -> tuple[float, float]:
    """95 % percentile bootstrap interval of ``stat`` over ``values``."""
    idx = rng.integers(len(values), size=(n_boot, len(values)))
    stats = stat(values[idx], axis=1)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def summarize_errors(errors: np.ndarray, threshold: float = THRESHOLD_M, n_boot: int = 1000, seed: int = 0, coverage: float | None = None) -> dict:
    """MAE, median and accuracy at ``threshold`` (fraction of errors below it), with 95 % CIs, and
    ``coverage`` as given."""
    if len(errors) == 0:
        return {"n": 0, "coverage": coverage}
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


def evaluate_files(pred: list[Path], truth: Path, out: Path | None = None, threshold: float = THRESHOLD_M, truncate: float | None = TRUNCATE_M,
                   n_boot: int = 1000, seed: int = 0, mics: Path | None = None, angular: bool | None = None) -> tuple[Path, dict[str, dict]]:
    """Score each positions.csv in ``pred`` against the sources.csv ``truth`` (see :func:`evaluate_track`;
    the array is ``mics``, default the mics.csv beside ``truth``). Writes ``metrics.json`` and
    ``error_cdf.png`` (positions' and directions' errors) into the folder ``out`` (default: that of the first prediction) and returns
    the folder and the metrics by prediction file."""
    import json

    from sslkit.files import atomic_file, check_folder_to_fill
    from sslkit.localization.track import read_positions
    from sslkit.plots import plot_error_cdf
    from sslkit.recording import read_sources

    out = check_folder_to_fill(out or Path(pred[0]).parent, (METRICS_FILE, CDF_FILE))
    true_track = read_sources(truth)
    if len(true_track.time) == 0:
        raise InputFileError(truth, "no ground-truth rows")
    array = array_beside(truth, mics, angular)
    results, errors, angles = {}, {}, {}
    for path in pred:
        metrics, err, angle_err = scored_track(read_positions(path), true_track, array, angular, threshold, truncate, n_boot, seed)
        if len(err) == 0:
            raise InputFileError(path, f"no estimate falls within the time span of {truth}")
        results[str(path)] = metrics
        if "mae_m" in metrics:
            errors[str(path)] = err
        if angle_err is not None:
            angles[str(path)] = angle_err
    with atomic_file(out / METRICS_FILE) as tmp:
        tmp.write_text(json.dumps({"truth": str(truth), "truncate_m": truncate, "results": results}, indent=2))
    plot_error_cdf(out / CDF_FILE, errors, threshold, angles)
    return out, results


def evaluate_track(track: PositionTrack, truth: SourceTrack, mics: np.ndarray | None, angular: bool | None = None, threshold: float = THRESHOLD_M,
                   truncate: float | None = TRUNCATE_M, n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`evaluate_positions`, plus, under the key ``angular``, the errors of the directions seen
    from the centroid of ``mics`` (M, 3) (:func:`angular_errors`, :func:`summarize_angles`; with
    ``horizontal`` True when they are azimuth errors) when
    ``angular`` is True; None scores directions when the track gives directions only (a far-field
    method) or every source is in the array's far field (:func:`~sslkit.geometry.in_far_field`),
    and never without ``mics``. A track of directions only that is scored by its directions has
    no position metrics (each would be a missing estimate): ``n``, ``coverage`` and ``angular``."""
    return scored_track(track, truth, mics, angular, threshold, truncate, n_boot, seed)[0]


def scored_track(track: PositionTrack, truth: SourceTrack, mics: np.ndarray | None, angular: bool | None, threshold: float,
                 truncate: float | None, n_boot: int, seed: int) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """:func:`evaluate_track`'s metrics with the errors they summarize: the positions' matched errors
    (N,) in m, and the directions' (N,) in degrees when directions are scored (else None)."""
    errors, sources = matched_errors(track, truth, truncate)
    metrics = position_metrics(track, errors, sources, threshold, n_boot, seed)
    directions = directions_only(track)
    if angular is None:
        angular = mics is not None and (directions or bool(in_far_field(truth.xyz, mics).all()))
    elif angular and mics is None:
        raise UserError("angular errors are seen from the array's centroid: give the mic positions")
    if not angular:
        return metrics, errors, None
    if directions:
        metrics = {"n": metrics["n"], "coverage": metrics["coverage"]}
    angle_errors = angular_errors(track, truth, mics.mean(axis=0))[0]
    metrics["angular"] = summarize_angles(angle_errors) | {"horizontal": track.horizontal}
    return metrics, errors, angle_errors


def directions_only(track: PositionTrack) -> bool:
    """Whether the track holds directions but no position (what far-field methods give)."""
    return track.azimuth is not None and bool(np.isfinite(track.azimuth).any()) and not np.isfinite(track.xyz).any()


def array_beside(truth: Path, mics: Path | None, angular: bool | None) -> np.ndarray | None:
    """The mic positions (M, 3) of ``mics``, default the mics.csv beside ``truth``; None when there is
    none, an error only when ``angular`` asks for directions (they are seen from the array's centroid)."""
    from sslkit.recording import read_mics

    if mics is not None and angular is False:
        raise UserError(f"{mics}: the mic positions serve the angular errors only, and angular scoring is off")
    path = Path(mics) if mics is not None else Path(truth).parent / "mics.csv"
    if not path.is_file():
        if angular:
            raise InputFileError(path, "no such mics.csv: angular errors are measured from the array's centroid")
        return None
    return read_mics(path)[1]
