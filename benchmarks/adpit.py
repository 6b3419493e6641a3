"""Benchmark the ADPIT variants (forward + backward, interleaved rounds; see
``sslkit.models.adpit_bench``) and print JSON with the machine's load.

    python benchmarks/adpit.py --tracks 3,4 --device cpu > benchmarks/results/adpit_cpu.json
"""

import argparse
import json
import os

import torch

from sslkit.models.adpit_bench import benchmark_adpit
from sslkit.resources import machine_description

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--tracks", default="3,4,5,6")
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--repeats", type=int, default=9)
parser.add_argument("--overlap", type=float, default=0.05)
args = parser.parse_args()
load = os.getloadavg()
rows = benchmark_adpit([int(n) for n in args.tracks.split(",")], device=args.device, repeats=args.repeats, overlap=args.overlap)
print(json.dumps({"machine": machine_description(), "load_average_before": load, "load_average_after": os.getloadavg(),
                  "torch_threads": torch.get_num_threads(), "results": rows}, indent=2))
