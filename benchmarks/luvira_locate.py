"""Paper VII Tables 1–2 on held-out `luvira-test` recordings: multilat (GCC-PHAT), multilat
(NGCC-PHAT), SRP-PHAT and wav2pos (the network's estimates, and refined on its NGCC-PHAT lag
distributions as `sslkit locate --method wav2pos` does by default) with 11, 9, 7 and 5 microphones.

Simulates --recordings held-out recordings (test voices and melodies, scene indices disjoint from
any training draw). For each mic count every recording uses one random subset of its mics (the
same subset for every method, drawn from the seed and the count alone, so that counts can run in
separate processes). Prints MAE (errors capped at 3 m, as in Paper VII, a frame without an
estimate counting 3 m) with its 95 % bootstrap interval, accuracy at 30 cm and each method's
real-time factor on this machine, as JSON; `voiced` repeats MAE and accuracy without the frames
that are silent (40 dB below the loudest frame, the threshold wav2pos uses), which Paper VII
excludes from inference and evaluation.

    python benchmarks/luvira_locate.py --recordings 10 --ngcc models/checkpoints/ngcc-phat-luvira.pt --wav2pos models/checkpoints/wav2pos.pt
"""

import argparse
import json
import time

import numpy as np
import torch

from sslkit import PositionTrack, locate
from sslkit.allocator import keep_freed_memory
from sslkit.evaluation import matched_errors, summarize_errors
from sslkit.gcc import frame_audio, silent_frames
from sslkit.recording import room_channels
from sslkit.sims.dataset import simulate_many
from sslkit.sims.scene import load_template

TEST_INDEX_OFFSET = 3_000_000

keep_freed_memory()  # as the CLI does: 2x faster NGCC-PHAT on glibc
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--recordings", type=int, default=10)
parser.add_argument("--duration", type=float, default=10.0)
parser.add_argument("--mic-counts", default="11,9,7,5")
parser.add_argument("--ngcc", default=None, help="NGCC-PHAT checkpoint for the LuViRA array")
parser.add_argument("--wav2pos", default=None, help="wav2pos checkpoint")
parser.add_argument("--no-srp", action="store_true")
parser.add_argument("--window", type=float, default=0.0, help="multilat and SRP-PHAT integration window (s); 0 compares frame by frame, as Paper VII")
parser.add_argument("--device", default="cpu")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

template = {**load_template("luvira-test"), "duration": args.duration}
indices = list(range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + args.recordings))
full = simulate_many(template, indices, args.seed)
recordings = [room_channels(r) for r in full]
voiced_frames = [~silent_frames(frame_audio(torch.as_tensor(r.audio), 2048, 1024), 40.0).numpy() for r in recordings]
"""Per recording, its frames that are not silent (every method here frames 2048 samples with hop 1024)."""


def voiced(track: PositionTrack, keep: np.ndarray) -> PositionTrack:
    """The track without its silent frames."""
    assert len(keep) == len(track.times), "the method framed the audio differently"
    return PositionTrack(track.times[keep], track.xyz[keep], track.confidence[keep], track.n_inliers[keep])


methods = {"multilat (GCC-PHAT)": ("multilat", {"window": args.window})}
if args.ngcc:
    methods["multilat (NGCC-PHAT)"] = ("multilat", {"tdoa": "ngcc", "checkpoint": args.ngcc, "window": args.window})
if not args.no_srp:
    methods["SRP-PHAT"] = ("srp-phat", {"window": args.window})
if args.wav2pos:
    methods["wav2pos (network only)"] = ("wav2pos", {"checkpoint": args.wav2pos, "refine_radius": 0.0})
    methods["wav2pos"] = ("wav2pos", {"checkpoint": args.wav2pos})
results = {}
for count in (int(c) for c in args.mic_counts.split(",")):
    rng = np.random.default_rng([args.seed, count])
    subsets = [sorted(rng.choice(r.mic_ids, count, replace=False), key=int) for r in recordings]
    for name, (method, extra) in methods.items():
        errors, voiced_errors, seconds = [], [], 0.0
        for rec, subset, keep in zip(recordings, subsets, voiced_frames):
            start = time.perf_counter()
            track = locate(rec, method, device=args.device, use_mics=subset, **extra)
            seconds += time.perf_counter() - start
            errors.append(matched_errors(track, rec.sources, truncate=3.0)[0])
            voiced_errors.append(matched_errors(voiced(track, keep), rec.sources, truncate=3.0)[0])
        s = summarize_errors(np.concatenate(errors), threshold=0.3)
        sv = summarize_errors(np.concatenate(voiced_errors), threshold=0.3)
        results[f"{name}, {count} mics"] = {
            "mae_cm": round(s["mae_m"] * 100, 1), "mae_ci_cm": [round(v * 100, 1) for v in s["mae_ci_m"]],
            "acc_30cm": round(s["accuracy"] * 100, 1), "frames": s["n"],
            "real_time_factor": round(seconds / sum(r.duration for r in recordings), 3),
            "voiced": {"mae_cm": round(sv["mae_m"] * 100, 1), "mae_ci_cm": [round(v * 100, 1) for v in sv["mae_ci_m"]],
                       "acc_30cm": round(sv["accuracy"] * 100, 1), "frames": sv["n"]},
        }
print(json.dumps({"recordings": args.recordings, "duration_s": args.duration, "results": results}, indent=2))
