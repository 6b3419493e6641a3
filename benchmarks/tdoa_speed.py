"""Time frames × pairs GCC-PHAT TDOA: sslkit's batched path against a per-pair numpy loop.

11 mics (55 pairs), 60 s at 16 kHz, frame 2048, hop 1024, 4 peaks. Prints JSON.

    python benchmarks/tdoa_speed.py [--seconds 60] [--device cuda]
"""

import argparse
import json
import time

import numpy as np
import torch

from sslkit.gcc import frame_audio, mic_pairs
from sslkit.recording import Recording
from sslkit.tdoa import estimate_tdoa

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--device", default="cpu")
args = parser.parse_args()
fs, n_mics, frame, hop, max_lag = 16000, 11, 2048, 1024, 330
rng = np.random.default_rng(0)
audio = rng.standard_normal((int(args.seconds * fs), n_mics)).astype(np.float32)
mics = rng.uniform(0, 7, (n_mics, 3))
rec = Recording(audio, fs, [str(i + 1) for i in range(n_mics)], mics)


def loop_baseline() -> None:
    """Straightforward per-frame, per-pair GCC-PHAT with numpy and argmax peak picking."""
    frames = frame_audio(torch.as_tensor(audio), frame, hop).numpy()
    for f in range(len(frames)):
        for i, j in mic_pairs("all", n_mics):
            cross = np.fft.rfft(frames[f, i], 2 * frame) * np.conj(np.fft.rfft(frames[f, j], 2 * frame))
            r = np.fft.irfft(cross / (np.abs(cross) + 1e-12))
            r = np.concatenate([r[-max_lag:], r[: max_lag + 1]])
            np.argsort(r)[-4:]


def timed(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


vectorized = timed(lambda: estimate_tdoa(rec, "gcc-phat", frame=frame, hop=hop, peaks=4, max_tau=str(max_lag / fs), device=args.device))
loop = timed(loop_baseline, repeats=1)
print(json.dumps({
    "audio_seconds": args.seconds, "mics": n_mics, "pairs": 55, "device": args.device,
    "vectorized_s": vectorized, "per_pair_loop_s": loop, "speedup": loop / vectorized,
    "real_time_factor": vectorized / args.seconds, "torch_threads": torch.get_num_threads(),
}, indent=2))
