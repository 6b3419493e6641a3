"""wav2pos's two designs trained the same way: sslkit's and the authors' layers (``--design``).

Both are trained with one command line apart from ``design`` (same simulated ``luvira-frames``
rooms and windows, seed, size, schedule, frozen NGCC-PHAT), and scored on the same validation rooms
(setup 1a: all mics known, source signal unknown; the network alone). Prints JSON: per design the
parameters (the frozen NGCC-PHAT's excluded), the best and final validation MAE and the training time.

    python benchmarks/wav2pos_designs.py --work runs/wav2pos-designs > benchmarks/results/wav2pos_designs_cpu.json
"""

import argparse
import csv
import json
import os
import time
from pathlib import Path

from sslkit.models.checkpoint import load_model, resolve_checkpoint
from sslkit.models.train_wav2pos import Wav2PosTrainConfig, train_wav2pos
from sslkit.models.wav2pos import DESIGNS
from sslkit.resources import machine_description

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--work", type=Path, required=True, help="Folder for the run folders.")
parser.add_argument("--scenes", type=int, default=3000)
parser.add_argument("--val-scenes", type=int, default=300)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--dim", type=int, default=128)
parser.add_argument("--depth", type=int, default=2)
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--device", default="cpu")
parser.add_argument("--workers", type=int, default=1)
args = parser.parse_args()

ngcc = str(resolve_checkpoint("ngcc-phat-luvira"))
result = {"machine": f"{machine_description()}, load average {os.getloadavg()[0]:.1f} at start",
          "config": {k: v for k, v in vars(args).items() if k != "work"} | {"ngcc": Path(ngcc).name}, "designs": {}}
for design in DESIGNS:
    cfg = Wav2PosTrainConfig(scenes=args.scenes, val_scenes=args.val_scenes, epochs=args.epochs, dim=args.dim, depth=args.depth, heads=args.heads,
                             design=design, ngcc=ngcc, device=args.device, seed=0, workers=args.workers)
    start = time.perf_counter()
    train_wav2pos(cfg, args.work / design, overwrite=True)
    seconds = time.perf_counter() - start
    with open(args.work / design / "metrics.csv") as f:
        curve = [float(row["val_mae_cm"]) for row in csv.DictReader(f)]
    model = load_model(args.work / design / "best.pt", "wav2pos", "cpu")[0]
    own = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("ngcc."))
    result["designs"][design] = {"parameters": own, "train_seconds": round(seconds), "best_val_mae_cm": min(curve),
                                 "best_epoch": curve.index(min(curve)) + 1, "final_val_mae_cm": curve[-1]}
result["load_average_end"] = round(os.getloadavg()[0], 1)
print(json.dumps(result, indent=1))
