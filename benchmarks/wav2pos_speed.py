"""wav2pos inference time per frame, batched, 11 mics with NGCC-PHAT features (Paper VII: 5.9 ms
per frame on an A100 with the pairs in a Python loop). Prints JSON.

    python benchmarks/wav2pos_speed.py [--checkpoint ckpt.pt] [--device cuda] [--batch 16]
"""

import argparse
import json
import time

import torch

from sslkit.allocator import keep_freed_memory
from sslkit.models.checkpoint import load_checkpoint, shipped_checkpoint

keep_freed_memory()  # as the CLI does
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--checkpoint", default=None, help="wav2pos checkpoint (default: the shipped one)")
parser.add_argument("--device", default="cpu")
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--mics", type=int, default=11)
args = parser.parse_args()

model, _ = load_checkpoint(args.checkpoint or shipped_checkpoint("wav2pos"), args.device)
model.eval()
g = torch.Generator().manual_seed(0)
audio = torch.randn(args.batch, 1 + args.mics, model.n_samples, generator=g).to(args.device)
coords = (torch.rand(args.batch, 1 + args.mics, 3, generator=g) * torch.tensor([7.0, 8.0, 2.0])).to(args.device)
known = torch.ones(args.batch, 1 + args.mics, dtype=torch.bool, device=args.device)
known[:, 0] = False


def run() -> None:
    with torch.no_grad(), torch.autocast("cuda", enabled=args.device.startswith("cuda")):
        model(audio, coords, known, known)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


run()  # warm-up
times = []
for _ in range(args.repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
best = min(times)
print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "mics": args.mics, "batch": args.batch,
                  "ngcc_features": model.ngcc is not None, "ms_per_frame": 1000 * best / args.batch,
                  "median_ms_per_frame": 1000 * sorted(times)[len(times) // 2] / args.batch}, indent=2))
