"""wav2pos inference time per frame, batched, 11 mics with NGCC-PHAT features (Paper VII: 5.9 ms
per frame on an A100 with the pairs in a Python loop). For each batch size: the whole forward pass
in float32 (one pass, ``locate --views 0``; on CUDA also under float16 autocast), with ``locate``'s
default 8 confidence views, the share of the NGCC-PHAT over the 55 pairs, and the refinement on
its lag distributions (``sslkit.localization.lagfit``, as ``locate`` runs it). ``--paper-size`` also times an
untrained model of the paper's size and design (``Wav2Pos.from_size("paper")``) with the same NGCC-PHAT. Prints JSON.

    python benchmarks/wav2pos_speed.py [--checkpoint ckpt.pt] [--device cuda] [--batch 1,16,64]
"""

import argparse
import json
import os
import time

import torch

from sslkit.allocator import keep_freed_memory
from sslkit.localization.lagfit import LagFitOptions, fit_lag_distributions
from sslkit.models.checkpoint import load_checkpoint, resolve_checkpoint
from sslkit.models.wav2pos import Wav2Pos, predict_with_views, upper_pairs
from sslkit.resources import machine_description

keep_freed_memory()  # as the CLI does
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--checkpoint", default=None, help="wav2pos checkpoint (default: the shipped one)")
parser.add_argument("--device", default="cpu")
parser.add_argument("--batch", default="16", help="comma-separated batch sizes")
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--mics", type=int, default=11)
parser.add_argument("--paper-size", action="store_true", help="also time Wav2Pos.from_size(\"paper\") (the reference design, d = 256, D = 4)")
parser.add_argument("--views", type=int, default=8, help="also time locate's confidence passes (predict_with_views)")
parser.add_argument("--refine-radius", type=float, default=1.0, help="also time the refinement on the lag distributions (0: skip)")
args = parser.parse_args()
cuda = args.device.startswith("cuda")


def best_seconds(fn, half: bool = False) -> tuple[float, float]:
    """Best and median wall time of ``fn`` over the repeats, after one warm-up call (``half``: under
    CUDA float16 autocast; otherwise float32, as ``sslkit locate`` runs)."""
    def timed() -> float:
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast("cuda", enabled=half):
            fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()
    times = sorted(timed() for _ in range(args.repeats))
    return times[0], times[len(times) // 2]


def time_model(model: Wav2Pos, batch: int) -> dict:
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(batch, 1 + args.mics, model.n_samples, generator=g).to(args.device)
    coords = (torch.rand(batch, 1 + args.mics, 3, generator=g) * torch.tensor([7.0, 8.0, 2.0])).to(args.device)
    known = torch.ones(batch, 1 + args.mics, dtype=torch.bool, device=args.device)
    known[:, 0] = False
    best, median = best_seconds(lambda: model(audio, coords, known, known))
    row = {"batch": batch, "ms_per_frame": 1000 * best / batch, "median_ms_per_frame": 1000 * median / batch}
    if model.ngcc is not None:
        row["ngcc_ms_per_frame"] = 1000 * best_seconds(lambda: model.pair_features(audio))[0] / batch
        if args.refine_radius:
            with torch.no_grad():
                probs = model.pair_features(audio).float()
            row["refinement_ms_per_frame"] = 1000 * best_seconds(lambda: refine(probs, coords, model.fs))[0] / batch
    if args.views:
        views = lambda: predict_with_views(model, audio, coords, known, known, args.views, torch.Generator().manual_seed(0))  # noqa: E731
        row[f"with_{args.views}_views_ms_per_frame"] = 1000 * best_seconds(views)[0] / batch
    if cuda:
        row["fp16_autocast_ms_per_frame"] = 1000 * best_seconds(lambda: model(audio, coords, known, known), half=True)[0] / batch
    return row


def refine(probs: torch.Tensor, coords: torch.Tensor, fs: int) -> torch.Tensor:
    """The lag-distribution fit alone (from the room's centre) on pair distributions (B, P, L)."""
    bounds = torch.tensor([[0.0, 0.0, 0.0], [7.0, 8.0, 2.0]], device=probs.device)
    start = bounds.mean(0).expand(len(probs), 3)
    return fit_lag_distributions(start, coords[0, 1:], upper_pairs(args.mics, probs.device) - 1, probs, fs, bounds,
                                 LagFitOptions(radius=args.refine_radius))


def time_all(model: Wav2Pos) -> list[dict]:
    model.eval()
    return [time_model(model, int(b)) for b in args.batch.split(",")]


shipped, _ = load_checkpoint(args.checkpoint or resolve_checkpoint("wav2pos"), args.device)
load_before = os.getloadavg()
result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "machine": machine_description(),
          "threads": torch.get_num_threads(), "mics": args.mics,
          "ngcc_features": shipped.ngcc is not None, "model": {k: shipped.config[k] for k in ("dim", "depth", "heads")},
          "timings": time_all(shipped)}
if args.paper_size:
    paper = Wav2Pos.from_size("paper", shipped.n_samples, shipped.fs, ngcc=shipped.config["ngcc"]).to(args.device)
    if shipped.ngcc is not None:
        paper.ngcc.load_state_dict(shipped.ngcc.state_dict())
    result["paper_size"] = {"model": {k: paper.config[k] for k in ("dim", "depth", "heads", "design")}, "timings": time_all(paper)}
result.update(load_average_before=load_before, load_average_after=os.getloadavg())
print(json.dumps(result, indent=2))
