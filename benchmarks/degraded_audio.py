"""PHAT on degraded real-world audio: upsampled recordings, DC offsets and mains hum.

Held-out `luvira-test` recordings (the same draws as `luvira_locate.py`) and the bundled demo,
each degraded one way:

- ``upsampled``: made at 16 kHz, stored at 48 kHz (scipy's polyphase resampler). Frames and hops
  scale with the rate, as `locate`'s defaults do, so every run analyses the same seconds; and with
  frames of 2048 samples every 1024 (the defaults at 16 kHz, and before they were durations). Run as `locate` runs (PHAT over the
  occupied band, ``sslkit.recording.phat_max_freq``) and over the whole band (``max_freq`` = the
  Nyquist frequency).
- ``dc``: 0.5 added to every channel (several times the speech's RMS).
- ``hum -40 dB`` … ``hum 0 dB``: 50 Hz and its 2nd, 3rd and 5th harmonics (amplitudes 1, 1/2,
  1/3, 1/5), the same on every channel as wiring picks it up, scaled to that level against the
  recording's RMS.

Each runs multilat (GCC-PHAT) and SRP-PHAT with `locate`'s defaults (rectangular frames, or
Hann-windowed where ``sslkit.hum.mains_hum`` finds hum), with ``--no-taper`` (rectangular) and with
``--taper`` (Hann-windowed), on the degraded recordings and on the clean ones. Prints
MAE (errors capped at 3 m) and accuracy at 30 cm as JSON, with the machine and its load.

    python benchmarks/degraded_audio.py > benchmarks/results/degraded_audio_cpu.json
    python benchmarks/degraded_audio.py --tables benchmarks/results/degraded_audio_cpu.json
"""

import argparse
import functools
import json
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from sslkit import SslkitWarning, load_recording, locate
from sslkit.evaluation import matched_errors, summarize_errors
from sslkit.recording import Recording, resample_audio, room_channels
from sslkit.resources import machine_description
from sslkit.sims.dataset import simulate_many
from sslkit.sims.scene import load_template

TEST_INDEX_OFFSET = 3_000_000
"""As luvira_locate.py: scene indices disjoint from any training draw."""
DEMO = Path(__file__).resolve().parents[1] / "examples" / "luvira-demo"
METHODS = ("srp-phat", "multilat")
FRAMES = {"default": None, "rectangular": False, "hann": True}
"""Frames as `locate` cuts them by default (Hann-windowed where it finds mains hum), with --no-taper and with --taper."""
UPSAMPLED_FS = 48000
DC_OFFSET = 0.5
HUM_HZ, HUM_HARMONICS = 50.0, (1, 2, 3, 5)
HUM_DB = (-40.0, -30.0, -20.0, -10.0, 0.0)


def with_hum(rec: Recording, level_db: float) -> Recording:
    t = np.arange(len(rec.audio)) / rec.fs
    hum = sum(np.sin(2 * np.pi * HUM_HZ * k * t + k) / k for k in HUM_HARMONICS)
    scale = np.sqrt(np.mean(rec.audio**2)) / np.sqrt(np.mean(hum**2)) * 10 ** (level_db / 20)
    return replace(rec, audio=(rec.audio + scale * hum[:, None]).astype(np.float32))


def conditions() -> dict[str, tuple]:
    """Name → (degrade(rec) → rec, extra locate options)."""
    upsample = lambda rec: replace(rec, audio=resample_audio(rec.audio, rec.fs, UPSAMPLED_FS), fs=UPSAMPLED_FS)  # noqa: E731
    found = {
        "clean": (lambda rec: rec, {}),
        "upsampled 48 kHz": (upsample, {}),  # frames and hops of as many seconds as at 16 kHz
        "upsampled 48 kHz, whole band": (upsample, {"max_freq": UPSAMPLED_FS / 2}),
        "upsampled 48 kHz, 2048-sample frames": (upsample, dict(frame=2048, hop=1024)),
        f"dc {DC_OFFSET:g}": (lambda rec: replace(rec, audio=rec.audio + np.float32(DC_OFFSET)), {}),
    }
    for level in HUM_DB:
        found[f"hum {level:g} dB"] = (functools.partial(with_hum, level_db=level), {})
    return found


def run(recordings: list[Recording], method: str, degrade, options: dict) -> dict:
    errors = []
    for rec in recordings:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SslkitWarning)  # the empty band's warning, once per recording
            track = locate(degrade(rec), method, **options)
        errors.append(matched_errors(track, rec.sources, truncate=3.0)[0])
    s = summarize_errors(np.concatenate(errors), threshold=0.3)
    return {"mae_cm": round(s["mae_m"] * 100, 1), "acc_30cm": round(s["accuracy"] * 100, 1), "hops": s["n"]}


def tables(path: Path) -> None:
    result = json.loads(path.read_text())
    for recordings in ("luvira-test", "demo"):
        print(f"\n{recordings}: MAE cm / accuracy at 30 cm\n")
        print("| audio | " + " | ".join(f"{method}{flag}" for method in METHODS for flag in ("", " --no-taper", " --taper")) + " |\n|" + "---|" * 7)
        for condition in conditions():
            cells = [result["results"][f"{recordings}, {condition}, {method}, {frames}"] for method in METHODS for frames in FRAMES]
            print(f"| {condition} | " + " | ".join(f"{c['mae_cm']} / {c['acc_30cm']} %" for c in cells) + " |")


parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--recordings", type=int, default=4)
parser.add_argument("--duration", type=float, default=10.0)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--tables", type=Path, help="print markdown tables of a saved run and stop")
args = parser.parse_args()
if args.tables:
    tables(args.tables)
    sys.exit()

load_before = os.getloadavg()
template = {**load_template("luvira-test"), "duration": args.duration}
sets = {
    "luvira-test": [room_channels(r) for r in simulate_many(template, range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + args.recordings), args.seed)],
    "demo": [room_channels(load_recording(DEMO))],
}
results = {}
for frames, taper in FRAMES.items():
    for name, recordings in sets.items():
        for condition, (degrade, options) in conditions().items():
            for method in METHODS:
                results[f"{name}, {condition}, {method}, {frames}"] = run(recordings, method, degrade, {**options, "taper": taper})
print(json.dumps({"machine": machine_description(), "load_average_before": load_before,
                  "load_average_after": os.getloadavg(), "recordings": args.recordings, "duration_s": args.duration,
                  "results": results}, indent=2))
