"""SELD metrics of the DCASE2024 challenge: location-dependent F-score, DOA error, relative distance
error, the SELD score, error rate and localization recall.

Events are compared frame by frame (100 ms label frames) and class by class. Within a frame and
class, predictions are matched to references one to one by the Hungarian algorithm on their angle.
A matched pair is a true positive when its angle is at most ``doa_threshold`` degrees and its
relative distance error |d̂ − d| / d at most ``reldist_threshold``; otherwise it is a false positive
and a false negative. Unmatched predictions are false positives, unmatched references false
negatives. Per class c:

- F_c = TP / (TP + (FP + FN) / 2), with every prediction that is not a TP a false positive and every
  reference that is not a TP a false negative;
- DOAE_c and RDE_c: the mean angle and relative distance error of all matched pairs (none: undefined);
- LR_c = matched pairs / references (localization recall);
- SELD_c = mean of 1 − F_c, DOAE_c / 180° and RDE_c, over those that are defined.

ER is one error rate over all frames: per frame S = min(FP, FN), D = max(0, FN − FP), I = max(0,
FP − FN) over classes, ER = Σ(S + D + I) / references (undefined when no reference is scored).

Two protocols (``PROTOCOLS``):

- ``dcase2024`` reproduces the official scorer: classes are averaged over all ``n_classes`` (a
  class absent from the references and the predictions counts F = 0 and LR = 0); a clip's frames are
  0 … its largest reference frame − 1 (the official scorer takes that index as the frame count, so
  its last annotated frame and any later predictions are not scored); directions are normalised as
  v / √(‖v‖² + 10⁻¹⁰), so an exact match scores about 0.0008°; undefined DOAE and RDE are left out
  of their averages (NaN when no class has a match).
- ``strict`` scores every frame that holds a reference or a prediction, averages over the classes
  present in the references, uses exact angles, and reports DOAE 180° and RDE 1 when nothing matches.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from sslkit.errors import UserError
from sslkit.seld import SeldEvents, angular_distance, unit_vectors

PROTOCOLS = ("dcase2024", "strict")
DOA_THRESHOLD_DEG = 20.0
RELDIST_THRESHOLD = 1.0
OFFICIAL_NORM_TERM = 1e-10
"""The official scorer normalises direction vectors by √(‖v‖² + this)."""
EPS = np.finfo(float).eps
"""The official scorer's guard against division by zero."""


def directions(events: SeldEvents, index: np.ndarray, official: bool) -> np.ndarray:
    """Unit vectors (n, 3) of the indexed events; shrunk as the official scorer does when ``official``."""
    vec = unit_vectors(events.azimuth[index], events.elevation[index])
    return vec / np.sqrt((vec**2).sum(-1, keepdims=True) + OFFICIAL_NORM_TERM) if official else vec


def scored(events: SeldEvents, truth: SeldEvents, protocol: str) -> np.ndarray:
    """Which of one clip's ``events`` (n,) the protocol scores: dcase2024 those in the frames before
    the reference's last one (as the official scorer counts), strict every frame either side has."""
    if protocol == "dcase2024":
        return events.frame < (truth.frame.max() if len(truth.frame) else 0)
    return np.ones(len(events.frame), dtype=bool)


class Counts:
    """Per-class accumulators (arrays of ``n_classes``) and the error-rate terms."""

    def __init__(self, n_classes: int):
        self.tp, self.fp, self.fn, self.matched, self.refs = (np.zeros(n_classes) for _ in range(5))
        self.angle_sum, self.reldist_sum = np.zeros(n_classes), np.zeros(n_classes)
        self.substitutions = self.deletions = self.insertions = 0.0

    def add_frame(self, pred: SeldEvents, truth: SeldEvents, p_rows: np.ndarray, t_rows: np.ndarray, protocol: str,
                  doa_threshold: float, reldist_threshold: float) -> None:
        """Count one frame: ``p_rows`` and ``t_rows`` index its predictions and references."""
        frame_fp = frame_fn = 0
        for c in np.union1d(pred.cls[p_rows], truth.cls[t_rows]).astype(int):
            pi, ti = p_rows[pred.cls[p_rows] == c], t_rows[truth.cls[t_rows] == c]
            self.refs[c] += len(ti)
            extra, missed = max(0, len(pi) - len(ti)), max(0, len(ti) - len(pi))
            bad = 0
            if len(pi) and len(ti):
                official = protocol == "dcase2024"
                angles = angular_distance(directions(truth, ti, official), directions(pred, pi, official))  # (refs, preds)
                rows, cols = linear_sum_assignment(angles)
                ref_d, pred_d = truth.distance[ti[rows]], pred.distance[pi[cols]]
                reldist = np.abs(ref_d - pred_d) / (ref_d + EPS)
                bad = int(np.sum((angles[rows, cols] > doa_threshold) | (reldist > reldist_threshold)))
                self.matched[c] += len(rows)
                self.angle_sum[c] += angles[rows, cols].sum()
                self.reldist_sum[c] += reldist.sum()
                self.tp[c] += len(rows) - bad
            self.fp[c] += extra + bad if len(ti) else len(pi)
            self.fn[c] += missed + bad if len(pi) else len(ti)
            frame_fp += extra + bad if len(ti) else len(pi)
            frame_fn += missed if len(pi) else len(ti)
        self.substitutions += min(frame_fp, frame_fn)
        self.deletions += max(0, frame_fn - frame_fp)
        self.insertions += max(0, frame_fp - frame_fn)


def seld_metrics(pred: list[SeldEvents], truth: list[SeldEvents], n_classes: int, protocol: str = "dcase2024",
                 doa_threshold: float = DOA_THRESHOLD_DEG, reldist_threshold: float = RELDIST_THRESHOLD) -> dict:
    """F (``f_ld``), DOAE (``doae_deg``), RDE (``rde``), ``seld_score``, ``er`` and ``lr`` over the
    clips (pred[i] against truth[i], distances in metres), macro-averaged as the protocol says, and
    the same per class in ``per_class`` (with tp, fp, fn). Undefined values are None."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown SELD protocol '{protocol}' (choose from {', '.join(PROTOCOLS)})")
    for events in (*pred, *truth):
        if len(events.distance) and np.isnan(events.distance).any():
            raise UserError("the DCASE2024 metrics need distances, and some events have none (5-column rows)")
    counts = Counts(n_classes)
    for p, t in zip(pred, truth, strict=True):
        p_keep, t_keep = scored(p, t, protocol), scored(t, t, protocol)
        for frame in np.union1d(p.frame[p_keep], t.frame[t_keep]):
            counts.add_frame(p, t, np.flatnonzero(p_keep & (p.frame == frame)), np.flatnonzero(t_keep & (t.frame == frame)),
                             protocol, doa_threshold, reldist_threshold)
    return summarize(counts, protocol)


def summarize(counts: Counts, protocol: str) -> dict:
    """Per-class and macro-averaged metrics of the counts (see the module docstring)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        f = counts.tp / (EPS + counts.tp + 0.5 * (counts.fp + counts.fn))
        doae = np.where(counts.matched > 0, counts.angle_sum / (counts.matched + EPS), np.nan)
        rde = np.where(counts.matched > 0, counts.reldist_sum / (counts.matched + EPS), np.nan)
        lr = counts.matched / (EPS + counts.refs)
        seld = np.nanmean(np.stack([1 - f, doae / 180.0, rde]), axis=0)
    used = np.ones(len(f), bool) if protocol == "dcase2024" else counts.refs > 0
    errors = counts.substitutions + counts.deletions + counts.insertions
    er = errors / (counts.refs.sum() + EPS) if counts.refs.sum() else np.nan  # no reference scored: no rate
    doae_avg, rde_avg = nan_mean(doae[used]), nan_mean(rde[used])
    if protocol == "strict" and np.isnan(doae_avg):
        doae_avg, rde_avg = 180.0, 1.0
    per_class = [{"class": c, "f": plain(f[c]) if used[c] else None, "doae_deg": plain(doae[c]), "rde": plain(rde[c]),
                  "lr": plain(lr[c]) if used[c] else None, "seld_score": plain(seld[c]) if used[c] else None,
                  "tp": int(counts.tp[c]), "fp": int(counts.fp[c]), "fn": int(counts.fn[c])} for c in range(len(f))]
    return {
        "protocol": protocol,
        "f_ld": plain(np.mean(f[used])) if used.any() else 0.0,
        "doae_deg": plain(doae_avg),
        "rde": plain(rde_avg),
        "seld_score": plain(np.mean(seld[used])) if used.any() else None,
        "er": plain(er),
        "lr": plain(np.mean(lr[used])) if used.any() else 0.0,
        "per_class": per_class,
    }


def nan_mean(values: np.ndarray) -> float:
    """Mean of the defined values; NaN when there are none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def plain(value: float) -> float | None:
    """A float for JSON: None for NaN."""
    return None if np.isnan(value) else float(value)
