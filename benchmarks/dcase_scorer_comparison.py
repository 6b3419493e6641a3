"""sslkit's ``dcase2024`` SELD protocol against the official DCASE2024 scorer, on 9 synthetic sets
(4 clips each, 13 classes of which 4 never occur, overlapping events, misses, wrong classes, angle
and distance errors, predictions after the last reference frame).

The official scorer is not part of sslkit: clone the DCASE2024 task 3 baseline
(github.com/partha2409/DCASE2024_seld_baseline) and pass its folder:

    python benchmarks/dcase_scorer_comparison.py --official ~/DCASE2024_seld_baseline > benchmarks/results/dcase_scorer_comparison.json

Prints JSON: per set the official ER, F, DOAE, RDE, LR and SELD score, and sslkit's largest
absolute difference from them. Only the scorer's file reading, format conversion, frame
organisation and metric classes are used; the modules it imports for feature extraction are stubbed.
"""

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--official", type=Path, required=True, help="folder of the DCASE2024 SELD baseline")
args = parser.parse_args()
np.NaN = np.nan  # the official scorer predates numpy 2
sys.modules["IPython"] = types.SimpleNamespace(embed=lambda: None, get_ipython=lambda: None)
sys.path.insert(0, str(args.official))
for _m in ("cls_vid_features", "librosa", "cv2", "sklearn", "joblib"):
    sys.modules.setdefault(_m, types.SimpleNamespace(VideoFeatures=None, Image=None, preprocessing=None))
import cls_feature_class  # noqa: E402
import SELD_evaluation_metrics as official  # noqa: E402

from sslkit.seld import SeldEvents, read_dcase_csv, write_dcase_csv  # noqa: E402
from sslkit.seld_metrics import seld_metrics  # noqa: E402

feat = object.__new__(cls_feature_class.FeatureClass)  # only its file and format helpers are used
N_CLASSES = 13


def random_set(rng, kind):
    refs, preds = [], []
    for clip in range(4):
        rows_t, rows_p = [], []
        n_frames = rng.integers(40, 80)
        for ev in range(rng.integers(2, 6)):
            c = int(rng.integers(0, 9))  # classes 9..12 never occur
            start = int(rng.integers(0, n_frames - 5))
            length = int(rng.integers(3, n_frames - start))
            az, el, d = rng.uniform(-180, 180), rng.uniform(-40, 40), rng.uniform(0.5, 5)
            for f in range(start, start + length):
                rows_t.append([f, c, ev, round(az), round(el), round(d * 100)])
                if rng.random() < 0.1 * (kind % 3):  # missed
                    continue
                pc = c if rng.random() > 0.05 * (kind % 4) else int(rng.integers(0, N_CLASSES))
                dang = rng.normal(0, 3 + 8 * (kind % 3))
                dd = d * (1 + rng.normal(0, 0.2 + 0.3 * (kind % 2)))
                rows_p.append([f, pc, 0, az + dang, el + rng.normal(0, 3), max(dd, 0.05)])
            if kind >= 6 and rng.random() < 0.5:  # spurious extra predictions after the clip's last reference frame
                rows_p.append([n_frames + 3, c, 0, az, el, d])
        refs.append(rows_t)
        preds.append(rows_p)
    return refs, preds


def official_scores(ref_files, pred_files):
    ev = official.SELDMetrics(nb_classes=N_CLASSES, doa_threshold=20, eval_dist=True, dist_threshold=float("inf"), reldist_threshold=1.0, average="macro")
    for rf, pf in zip(ref_files, pred_files):
        gt = feat.convert_output_format_polar_to_cartesian(feat.load_output_format_file(str(rf), cm2m=True))
        n = max(list(gt.keys()))
        pr = feat.convert_output_format_polar_to_cartesian(feat.load_output_format_file(str(pf)))
        ev.update_seld_scores(feat.organize_labels(pr, n), feat.organize_labels(gt, n), eval_dist=True)
    ER, F, AngE, DistE, RelDistE, LR, SELD, _ = ev.compute_seld_scores()
    return dict(er=ER, f_ld=F, doae_deg=AngE, rde=RelDistE, lr=LR, seld_score=SELD)


out = Path(tempfile.mkdtemp())
report = []
for kind in range(9):
    rng = np.random.default_rng(kind)
    refs, preds = random_set(rng, kind)
    d = out / f"set{kind}"
    (d / "ref").mkdir(parents=True)
    (d / "pred").mkdir()
    rf, pf = [], []
    for i, (t, p) in enumerate(zip(refs, preds)):
        (d / "ref" / f"c{i}.csv").write_text("".join(",".join(map(str, r)) + "\n" for r in t))
        a = np.array(p, float).reshape(-1, 6)
        write_dcase_csv(d / "pred" / f"c{i}.csv", SeldEvents(a[:, 0].astype(int), a[:, 1].astype(int), a[:, 3], a[:, 4], a[:, 5]), "cartesian")
        rf.append(d / "ref" / f"c{i}.csv"); pf.append(d / "pred" / f"c{i}.csv")
    theirs = official_scores(rf, pf)
    mine = seld_metrics([read_dcase_csv(p, N_CLASSES)[0] for p in pf], [read_dcase_csv(r, N_CLASSES)[0] for r in rf], N_CLASSES)
    diff = {k: abs(float(theirs[k]) - float(mine[k])) for k in theirs}
    report.append({"set": kind, "official": {k: float(v) for k, v in theirs.items()}, "sslkit_max_abs_diff": diff})
print(json.dumps({"sets": report, "largest_difference": max(max(r["sslkit_max_abs_diff"].values()) for r in report)}, indent=1))
