"""Time frames × pairs GCC-PHAT TDOA: sslkit's batched path against a per-pair numpy loop, and
against the FFTs no method can avoid (each mic's frame forward, each pair's correlation back).

11 mics (55 pairs), 60 s at 16 kHz, frame 2048, hop 1024, 4 peaks. The three are interleaved,
``--repeats`` rounds, medians reported with the machine's load. Prints JSON.

    python benchmarks/tdoa_speed.py [--seconds 60] [--device cuda] [--keep-freed-memory] > benchmarks/results/tdoa_speed_cpu.json
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from scipy.signal.windows import tukey

from sslkit.allocator import keep_freed_memory
from sslkit.gcc import correlation_batch, frame_audio, gcc_fft_length, mic_pairs
from sslkit.options import EDGE_TAPER
from sslkit.recording import Recording
from sslkit.resources import machine_description
from sslkit.tdoa import estimate_tdoa

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--device", default="cpu")
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--keep-freed-memory", action="store_true", help="call sslkit.keep_freed_memory() first, as the CLI does")
args = parser.parse_args()
if args.keep_freed_memory:
    keep_freed_memory()
fs, n_mics, frame, hop, max_lag = 16000, 11, 2048, 1024, 330
rng = np.random.default_rng(0)
audio = rng.standard_normal((int(args.seconds * fs), n_mics)).astype(np.float32)
mics = rng.uniform(0, 7, (n_mics, 3))
rec = Recording(audio, fs, [str(i + 1) for i in range(n_mics)], mics)


def loop_baseline() -> None:
    """Straightforward per-frame, per-pair GCC-PHAT with numpy and argmax peak picking, of the frames
    less their means under the default window (as sslkit's)."""
    frames = frame_audio(torch.as_tensor(audio), frame, hop).numpy()
    window = tukey(frame, EDGE_TAPER, sym=False)
    for f in range(len(frames)):
        for i, j in mic_pairs("all", n_mics):
            x, y = ((frames[f, k] - frames[f, k].mean()) * window for k in (i, j))
            cross = np.fft.rfft(x, 2 * frame) * np.conj(np.fft.rfft(y, 2 * frame))
            r = np.fft.irfft(cross / (np.abs(cross) + 1e-12))
            r = np.concatenate([r[-max_lag:], r[: max_lag + 1]])
            np.argsort(r)[-4:]


def fft_floor() -> None:
    """Only the unavoidable FFTs: every mic's frame forward, every pair's correlation back (torch,
    batched as sslkit batches them)."""
    frames = frame_audio(torch.as_tensor(audio, device=args.device), frame, hop)
    n_fft = gcc_fft_length(frame, max_lag)
    step = correlation_batch(n_pairs, n_fft, 1)
    for start in range(0, len(frames), step):
        spectra = torch.fft.rfft(frames[start : start + step], n=n_fft)
        torch.fft.irfft(spectra[:, :1].expand(-1, n_pairs, -1), n=n_fft)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


n_pairs = len(mic_pairs("all", n_mics))
runs = {"vectorized": lambda: estimate_tdoa(rec, "gcc-phat", frame=frame, hop=hop, peaks=4, max_tau=str(max_lag / fs), device=args.device),
        "per_pair_loop": loop_baseline, "fft_floor": fft_floor}
runs["vectorized"]()  # warm-up
times = {name: [] for name in runs}
load_before = os.getloadavg()
for _ in range(args.repeats):
    for name, fn in runs.items():
        times[name].append(seconds(fn))
median = {name: float(np.median(t)) for name, t in times.items()}
print(json.dumps({
    "audio_seconds": args.seconds, "mics": n_mics, "pairs": n_pairs, "device": args.device, "keep_freed_memory": args.keep_freed_memory, "torch_threads": torch.get_num_threads(),
    "machine": machine_description(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
    "median_seconds": median, "all_seconds": times, "speedup": median["per_pair_loop"] / median["vectorized"],
    "vectorized_over_fft_floor": median["vectorized"] / median["fft_floor"], "real_time_factor": median["vectorized"] / args.seconds,
}, indent=2))
