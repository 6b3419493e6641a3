"""What ``sslkit.keep_freed_memory()`` (which every CLI command calls first) is worth: the same
NGCC-PHAT work (the shipped LuViRA model on 32 frames of 11 mics, all 55 pairs) timed in two fresh
processes, one with the allocator left as the process starts and one after the call, interleaved
``--rounds`` times. Prints JSON with the seconds of each and their ratio per round.

    python benchmarks/allocator.py > benchmarks/results/allocator_cpu.json
"""

import argparse
import json
import os
import subprocess
import sys

from sslkit.resources import machine_description

WORK = """
import sys, time, torch, sslkit
if sys.argv[1] == "keep":
    assert sslkit.keep_freed_memory()
from sslkit.gcc import frame_audio, mic_pairs
model, _, _ = sslkit.load_model("ngcc-phat-luvira", "ngcc-phat", "cpu")
frames = frame_audio(torch.randn(16000 * 3, 11, generator=torch.Generator().manual_seed(0)), 2048, 1024)[:32]
pairs = torch.as_tensor(mic_pairs("all", 11))
with torch.no_grad():
    model.pair_logits(frames, pairs)  # warm-up
    start = time.perf_counter()
    for _ in range(3):
        model.pair_logits(frames, pairs)
print((time.perf_counter() - start) / 3)
"""

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()


def seconds(mode: str) -> float:
    return float(subprocess.run([sys.executable, "-c", WORK, mode], check=True, capture_output=True, text=True).stdout)


load_before = os.getloadavg()
times = {"as_started": [], "keep_freed_memory": []}
for _ in range(args.rounds):
    times["as_started"].append(seconds("default"))
    times["keep_freed_memory"].append(seconds("keep"))
ratios = [a / b for a, b in zip(times["as_started"], times["keep_freed_memory"])]
print(json.dumps({"machine": machine_description(), "load_average_before": load_before,
                  "load_average_after": os.getloadavg(), "seconds_per_32_frames": times, "speedup_per_round": ratios}, indent=2))
