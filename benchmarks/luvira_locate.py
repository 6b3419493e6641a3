"""Localization on held-out `luvira-test` recordings: multilat (GCC-PHAT), multilat (NGCC-PHAT), SRP-PHAT.

Simulates --recordings held-out recordings (test voices and melodies, scene indices disjoint from
any training draw), locates every hop with each method and prints MAE (errors capped at 3 m, as in
Paper VII), accuracy at 30 cm and the real-time factor on this machine, as JSON.

    python benchmarks/luvira_locate.py --recordings 10 --ngcc runs/ngcc-luvira/best.pt
"""

import argparse
import json
import time

import numpy as np

from sslkit.evaluation import position_errors, summarize_errors
from sslkit.localize import LocateOptions, locate
from sslkit.recording import room_channels
from sslkit.sims.dataset import simulate_many
from sslkit.sims.scene import load_template

TEST_INDEX_OFFSET = 3_000_000

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--recordings", type=int, default=10)
parser.add_argument("--duration", type=float, default=10.0)
parser.add_argument("--ngcc", default=None, help="NGCC-PHAT checkpoint for the LuViRA array")
parser.add_argument("--device", default="cpu")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

template = {**load_template("luvira-test"), "duration": args.duration}
recordings = [room_channels(r) for r in simulate_many(template, list(range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + args.recordings)), args.seed)]
methods = {"multilat (GCC-PHAT)": ("multilat", LocateOptions(device=args.device)),
           "SRP-PHAT": ("srp-phat", LocateOptions(device=args.device))}
if args.ngcc:
    methods["multilat (NGCC-PHAT)"] = ("multilat", LocateOptions(tdoa_method="ngcc", checkpoint=args.ngcc, device=args.device))
results = {}
for name, (method, opts) in methods.items():
    errors, seconds = [], 0.0
    for rec in recordings:
        start = time.perf_counter()
        track = locate(rec, method, opts)
        seconds += time.perf_counter() - start
        errors.append(position_errors(track, rec.sources, truncate=3.0))
    summary = summarize_errors(np.concatenate(errors), threshold=0.3)
    results[name] = {"mae_cm": summary["mae_m"] * 100, "mae_ci_cm": [v * 100 for v in summary["mae_ci_m"]],
                     "acc_30cm": summary["accuracy"] * 100, "frames": summary["n"],
                     "real_time_factor": seconds / sum(r.duration for r in recordings)}
print(json.dumps({"recordings": args.recordings, "duration_s": args.duration, "mics": 11, "results": results}, indent=2))
