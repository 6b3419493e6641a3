"""PHAT on upsampled audio: recordings made at 16 kHz and stored at 44.1 or 48 kHz.

The top of such a recording's band holds nothing but noise and the resampler's residue, which PHAT
whitening weighs as much as the speech. For held-out `luvira-test` recordings (the same draws as
`luvira_locate.py`) and the bundled demo, each upsampled with scipy's polyphase resampler, this
runs multilat (GCC-PHAT) and SRP-PHAT three ways: at 16 kHz as recorded; upsampled, as `locate`
runs by default (PHAT over the occupied band, ``sslkit.recording.phat_max_freq``); and upsampled
over the whole band (``max_freq`` = the Nyquist frequency). Frames and hops are scaled with the
rate, so every run analyses the same seconds. Prints MAE (errors capped at 3 m) and accuracy at
30 cm per method, rate and band as JSON, with the machine and its load.

    python benchmarks/upsampled_audio.py > benchmarks/results/upsampled_audio_cpu.json
"""

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from sslkit import SslkitWarning, load_recording, locate
from sslkit.evaluation import matched_errors, summarize_errors
from sslkit.recording import Recording, resample_audio, room_channels
from sslkit.sims.dataset import simulate_many
from sslkit.sims.scene import load_template

TEST_INDEX_OFFSET = 3_000_000
"""As luvira_locate.py: scene indices disjoint from any training draw."""
DEMO = Path(__file__).resolve().parents[1] / "examples" / "luvira-demo"
METHODS = ("multilat", "srp-phat")
FRAME, HOP = 2048, 1024
"""Samples at 16 kHz; scaled with the rate."""


def upsampled(rec: Recording, fs: int) -> Recording:
    return replace(rec, audio=resample_audio(rec.audio, rec.fs, fs), fs=fs)


def run(recordings: list[Recording], method: str, fs: int | None, whole_band: bool) -> dict:
    errors, seconds = [], 0.0
    for rec in recordings:
        rec = upsampled(rec, fs) if fs else rec
        scale = rec.fs / 16000
        options = dict(frame=round(FRAME * scale), hop=round(HOP * scale), max_freq=rec.fs / 2 if whole_band else None)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SslkitWarning)  # the empty band's warning, once per recording
            track = locate(rec, method, **options)
        seconds += time.perf_counter() - start
        errors.append(matched_errors(track, rec.sources, truncate=3.0)[0])
    s = summarize_errors(np.concatenate(errors), threshold=0.3)
    return {"mae_cm": round(s["mae_m"] * 100, 1), "acc_30cm": round(s["accuracy"] * 100, 1), "hops": s["n"],
            "real_time_factor": round(seconds / sum(r.duration for r in recordings), 3)}


parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--recordings", type=int, default=4)
parser.add_argument("--duration", type=float, default=10.0)
parser.add_argument("--rates", default="44100,48000")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

load_before = os.getloadavg()
template = {**load_template("luvira-test"), "duration": args.duration}
sets = {
    "luvira-test": [room_channels(r) for r in simulate_many(template, range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + args.recordings), args.seed)],
    "demo": [room_channels(load_recording(DEMO))],
}
results = {}
for name, recordings in sets.items():
    for method in METHODS:
        results[f"{name}, {method}, 16000 Hz"] = run(recordings, method, None, False)
        for fs in (int(r) for r in args.rates.split(",")):
            results[f"{name}, {method}, {fs} Hz, occupied band"] = run(recordings, method, fs, False)
            results[f"{name}, {method}, {fs} Hz, whole band"] = run(recordings, method, fs, True)
print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_average_before": load_before,
                  "load_average_after": os.getloadavg(), "recordings": args.recordings, "duration_s": args.duration,
                  "results": results}, indent=2))
