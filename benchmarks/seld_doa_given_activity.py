"""DOA error of trained SELD models where the truth says a class is active (a diagnostic for
short runs whose outputs are not yet confident enough to pass the 0.5 detection threshold, so that
F_LD and DOAE are still undefined). Per run: mean angle between the truth and, for each active
frame and class with one event, the output track of largest norm; also that norm. Prints JSON.

    python benchmarks/seld_doa_given_activity.py runs/seld-compare/logmel-gcc runs/seld-compare/logmel-ngcc --test seld-test
"""

import argparse
import json
from pathlib import Path

import numpy as np

from sslkit.allocator import keep_freed_memory
from sslkit.models.train_seld import clip_ngcc_features, clip_targets, load_clips, seld_data_folders
from sslkit.seld import clip_output, load_seld_model

keep_freed_memory()
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("runs", type=Path, nargs="+")
parser.add_argument("--test", type=Path, required=True)
parser.add_argument("--checkpoint", default="last.pt")
args = parser.parse_args()

results = {}
for run in args.runs:
    model, meta, features, ngcc = load_seld_model(run / args.checkpoint, "cpu")
    clips = load_clips(seld_data_folders(args.test), meta["classes"])
    extras = clip_ngcc_features(ngcc, clips, "cpu")
    angles, norms = [], []
    for i, clip in enumerate(clips):
        target = clip_targets(clip, len(meta["classes"]))  # (T, 6, 5, C); dummy track 0 holds single events
        out = clip_output(model, features, clip.audio, "cpu", None if extras is None else extras[i]).numpy()  # (T, N, 4, C)
        t = min(len(out), len(target))
        active = target[:t, 0, 0, :] > 0  # (T, C)
        xyz = out[:t, :, :3, :]  # (T, N, 3, C)
        norm = np.linalg.norm(xyz, axis=2)  # (T, N, C)
        best = np.take_along_axis(xyz, norm.argmax(1)[:, None, None, :], axis=1)[:, 0]  # (T, 3, C)
        truth = target[:t, 0, 1:4, :]
        cos = (best * truth).sum(1) / (np.linalg.norm(best, axis=1) * np.linalg.norm(truth, axis=1) + 1e-9)
        angles.append(np.degrees(np.arccos(np.clip(cos[active], -1, 1))))
        norms.append(norm.max(1)[active])
    angles, norms = np.concatenate(angles), np.concatenate(norms)
    results[run.name] = {"frames_classes": int(len(angles)), "doa_error_given_activity_deg": float(angles.mean()),
                         "median_deg": float(np.median(angles)), "mean_output_norm": float(norms.mean()),
                         "share_above_threshold": float((norms > 0.5).mean())}
print(json.dumps(results, indent=2))
