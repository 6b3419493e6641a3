"""NGCC-PHAT's two designs trained the same way and scored on Paper V's protocol.

Both designs (``circular``: sslkit's shift-equivariant layers; ``reference``: the authors' layers)
are trained at one size with the same rooms, windows, seed and schedule (``sslkit train-ngcc``),
then evaluated with ``sslkit evaluate-tdoa`` (``ngcc-test``: every T60 × SNR cell replays the same
held-out snippets; GCC-PHAT on the same windows as the baseline). Prints JSON: per T60, MAE (cm)
and accuracy at 10 cm of GCC-PHAT and of each design, plus parameters and training time.

    python benchmarks/ngcc_designs.py --work runs/ngcc-designs > benchmarks/results/ngcc_designs_cpu.json
"""

import argparse
import json
import os
import time
from pathlib import Path

from sslkit.models.checkpoint import load_model
from sslkit.models.eval_tdoa import evaluate_tdoa_files
from sslkit.models.ngcc import DESIGNS
from sslkit.models.train_ngcc import NgccTrainConfig, train_ngcc
from sslkit.resources import machine_description

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--work", type=Path, required=True, help="Folder for the two run folders and their evaluations.")
parser.add_argument("--size", default="small")
parser.add_argument("--epochs", type=int, default=12)
parser.add_argument("--scenes", type=int, default=1000)
parser.add_argument("--snippets", type=int, default=20)
parser.add_argument("--device", default="cpu")
parser.add_argument("--workers", type=int, default=1)
args = parser.parse_args()

result = {"machine": f"{machine_description()}, load average {os.getloadavg()[0]:.1f} at start",
          "size": args.size, "epochs": args.epochs, "scenes": args.scenes, "snippets": args.snippets, "designs": {}}
for design in DESIGNS:
    run = args.work / design
    cfg = NgccTrainConfig(scenes=args.scenes, val_scenes=200, epochs=args.epochs, size=args.size, design=design,
                          device=args.device, seed=0, workers=args.workers)
    start = time.perf_counter()
    final = train_ngcc(cfg, run, overwrite=True)
    seconds = time.perf_counter() - start
    summary = evaluate_tdoa_files(args.work / f"{design}-eval", run / "best.pt", "ngcc-test", args.snippets, 0, args.device, args.workers)
    model = load_model(run / "best.pt", "ngcc-phat", "cpu")[0]
    result["designs"][design] = {
        "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": round(seconds),
        "val_acc_10cm": final["val_acc_10cm"], "by_rt60": [r for r in summary if r["method"] == "ngcc-phat"]}
    result["gcc-phat"] = [r for r in summary if r["method"] == "gcc-phat"]
result["load_average_end"] = round(os.getloadavg()[0], 1)
print(json.dumps(result, indent=1))
