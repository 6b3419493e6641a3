"""Benchmark the ADPIT variants (forward + backward) and print JSON.

    python benchmarks/adpit.py --tracks 3,4,5,6 --device cuda
"""

import argparse
import json

import torch

from sslkit.models.adpit_bench import benchmark_adpit

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--tracks", default="3,4,5,6")
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--overlap", type=float, default=0.05)
args = parser.parse_args()
rows = benchmark_adpit([int(n) for n in args.tracks.split(",")], device=args.device, repeats=args.repeats, overlap=args.overlap)
print(json.dumps(rows, indent=2))
