"""DCASE2024 SELD metrics: location-dependent F-score, DOA error and relative distance error.

Events are compared frame by frame (100 ms label frames) and class by class. Within a frame and
class, predictions are matched to references by the Hungarian algorithm on angular distance. A
matched pair is a true positive when its angle is at most ``doa_threshold`` degrees and its relative
distance error |d̂ − d| / d at most ``dist_threshold``; otherwise it counts as a false positive
and a false negative. Unmatched predictions are false positives, unmatched references false
negatives. DOA error and relative distance error average over matched pairs. Every metric is
computed per class, then macro-averaged over the classes that occur in the references.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from sslkit.seld import SeldEvents, angular_distance, unit_vectors


def seld_metrics(pred: list[SeldEvents], truth: list[SeldEvents], n_classes: int,
                 doa_threshold: float = 20.0, dist_threshold: float = 1.0) -> dict:
    """Macro-averaged F (location-dependent), DOAE (°) and RDE over clips, plus per-class values."""
    tp, fp, fn = (np.zeros(n_classes) for _ in range(3))
    doa_sum, rde_sum, matched = (np.zeros(n_classes) for _ in range(3))
    for p, t in zip(pred, truth, strict=True):
        for frame in np.union1d(p.frame, t.frame):
            for c in range(n_classes):
                pi = np.nonzero((p.frame == frame) & (p.cls == c))[0]
                ti = np.nonzero((t.frame == frame) & (t.cls == c))[0]
                if len(pi) == 0 or len(ti) == 0:
                    fp[c] += len(pi)
                    fn[c] += len(ti)
                    continue
                angles = angular_distance(unit_vectors(p.azimuth[pi], p.elevation[pi]), unit_vectors(t.azimuth[ti], t.elevation[ti]))
                rows, cols = linear_sum_assignment(angles)
                rel = np.abs(p.distance[pi[rows]] - t.distance[ti[cols]]) / np.maximum(t.distance[ti[cols]], 1e-9)
                good = (angles[rows, cols] <= doa_threshold) & (rel <= dist_threshold)
                tp[c] += good.sum()
                fp[c] += (~good).sum() + len(pi) - len(rows)
                fn[c] += (~good).sum() + len(ti) - len(cols)
                doa_sum[c] += angles[rows, cols].sum()
                rde_sum[c] += rel.sum()
                matched[c] += len(rows)
    present = (tp + fn) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f = 2 * tp / (2 * tp + fp + fn)
        doae = doa_sum / matched
        rde = rde_sum / matched
    per_class = [{"class": c, "f": float(f[c]) if present[c] else None, "doae_deg": None if matched[c] == 0 else float(doae[c]),
                  "rde": None if matched[c] == 0 else float(rde[c]), "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c])}
                 for c in range(n_classes)]
    used = present & (matched > 0)
    return {
        "f_ld": float(np.nanmean(np.where(present, f, np.nan))) if present.any() else 0.0,
        "doae_deg": float(np.mean(doae[used])) if used.any() else 180.0,
        "rde": float(np.mean(rde[used])) if used.any() else 1.0,
        "per_class": per_class,
    }


