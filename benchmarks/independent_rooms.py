"""Localization on rooms simulated without sslkit: pyroomacoustics' image-source method to the full
order its inverse Sabine formula gives (no diffuse tail, no sslkit simulation code), written as a
user would write them (audio.wav, mics.csv, sources.csv) and read back with ``read_recording``.

A check on scenes nobody tuned on: the reverberant sweep (``reverb_sweep.py``) simulates with
sslkit's own hybrid method. Cells are the issue's target cells: random shoebox 8 × 6 × 3 m, 10
random mics at least 0.3 m from the walls, one static talker (or two, 0.45 s / 20 dB) at least
0.5 m from the walls, 4 s of the bundled held-out speech, white noise at the SNR over the mean
signal power. Methods: srp-phat and multilat with ``--static`` and per hop with the default window,
``--sources 2`` for two talkers, and the textbook reference of ``reverb_sweep.py``. Errors matched
to the talkers per hop (Hungarian), capped at 3 m.

    python benchmarks/independent_rooms.py --rooms 6 --workers 2 > benchmarks/results/independent_rooms_cpu.json
    python benchmarks/independent_rooms.py --tables benchmarks/results/independent_rooms_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf

from sslkit import locate, read_recording
from sslkit.evaluation import matched_errors
from sslkit.resources import machine_description
from sslkit.sims.signals import bundled_speech

ROOM = np.array([8.0, 6.0, 3.0])
FS = 16000
DURATION_S = 4.0
CELLS = ((0.3, 20.0, "static"), (0.45, 20.0, "two"), (0.6, 10.0, "static"), (0.8, 5.0, "static"), (1.0, 10.0, "static"))
"""(T60 s, SNR dB, kind) of each cell: the issue's target cells and one harder room."""


def random_points(rng: np.random.Generator, count: int, margin: float) -> np.ndarray:
    return rng.uniform(margin, ROOM - margin, size=(count, 3))


def talker(index: int, rng: np.random.Generator) -> np.ndarray:
    """DURATION_S of a bundled held-out voice (looped), unit peak."""
    voice, fs = sf.read(bundled_speech("test")[index % len(bundled_speech("test"))])
    assert fs == FS, fs
    n = int(DURATION_S * FS)
    voice = np.tile(voice, int(np.ceil(n / len(voice))) + 1)
    start = rng.integers(0, len(voice) - n)
    return voice[start : start + n] / np.abs(voice).max()


def write_room(folder: Path, rt60: float, snr_db: float, n_talkers: int, seed: int) -> None:
    """Simulate one room with pyroomacoustics alone and write it as a user's recording folder."""
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, int(rt60 * 100), int(snr_db), n_talkers])
    absorption, max_order = pra.inverse_sabine(rt60, ROOM)
    room = pra.ShoeBox(ROOM, fs=FS, materials=pra.Material(absorption), max_order=max_order)
    mics, sources = random_points(rng, 10, 0.3), random_points(rng, n_talkers, 0.5)
    for k, position in enumerate(sources):
        room.add_source(position, signal=talker(seed + k, rng))
    room.add_microphone_array(mics.T)
    room.simulate()
    clean = room.mic_array.signals.T[: int(DURATION_S * FS)]
    noise = rng.standard_normal(clean.shape) * np.sqrt(np.mean(clean**2) / 10 ** (snr_db / 10))
    audio = clean + noise
    folder.mkdir(parents=True)
    sf.write(folder / "audio.wav", (audio / np.abs(audio).max()).astype(np.float32), FS, subtype="FLOAT")
    (folder / "mics.csv").write_text("mic_id,x,y,z\n" + "".join(f"{k + 1},{x:.4f},{y:.4f},{z:.4f}\n" for k, (x, y, z) in enumerate(mics)))
    (folder / "sources.csv").write_text("time,source_id,x,y,z\n" + "".join(f"0.0,{k},{x:.4f},{y:.4f},{z:.4f}\n" for k, (x, y, z) in enumerate(sources)))


def summary(errors: np.ndarray) -> dict:
    return {"median_m": float(np.median(errors)), "acc_10cm": float(np.mean(errors < 0.1)), "acc_30cm": float(np.mean(errors < 0.3)), "n": int(len(errors))}


def run_one(job: tuple[float, float, str, int]) -> dict:
    from reverb_sweep import reference_static

    rt60, snr, kind, seed = job
    with tempfile.TemporaryDirectory() as tmp:
        write_room(Path(tmp) / "rec", rt60, snr, 2 if kind == "two" else 1, seed)
        rec = read_recording(Path(tmp) / "rec")
    variants = {f"{m} --sources 2": (m, {"sources": 2}) for m in ("srp-phat", "multilat")} if kind == "two" else \
        {f"{m} {name}": (m, kw) for m in ("srp-phat", "multilat") for name, kw in (("--static", {"static": True}), ("per hop", {}))}
    runs = {}
    for name, (method, options) in variants.items():
        errors, talkers = matched_errors(locate(rec, method, **options), rec.sources)
        runs[name] = {"all": summary(errors), **{f"talker {k}": summary(errors[talkers == k]) for k in np.unique(talkers)}}
    if kind == "static":
        runs["reference (textbook SRP, static)"] = {"all": summary(np.array([min(3.0, float(np.linalg.norm(reference_static(rec) - rec.sources.xyz[0])))]))}
    return {"rt60": rt60, "snr_db": snr, "kind": kind, "seed": seed, "runs": runs}


def markdown(rooms: list[dict]) -> str:
    """Per cell and method: the median over rooms of each room's median error (cm, with the rooms'
    range) and of its share of hops within 30 cm (%, range); two talkers: within 10 cm, per talker."""
    methods = list(dict.fromkeys(name for room in rooms for name in room["runs"]))
    lines = ["| T60 s / SNR dB, talkers | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for rt60, snr, kind in CELLS:
        cell = [room["runs"] for room in rooms if (room["rt60"], room["snr_db"], room["kind"]) == (rt60, snr, kind)]
        texts = []
        for method in methods:
            runs = [r[method] for r in cell if method in r]
            if not runs:
                texts.append("–")
                continue
            median = 100 * np.array([r["all"]["median_m"] for r in runs])
            share = np.array([r[t]["acc_10cm" if kind == "two" else "acc_30cm"] for r in runs for t in r if t != "all" or kind != "two"]) * 100
            texts.append(f"{np.median(median):.1f} ({median.min():.1f}–{median.max():.1f}) / {np.median(share):.0f} ({share.min():.0f}–{share.max():.0f})")
        lines.append(f"| {rt60:g} / {snr:g}, {2 if kind == 'two' else 1} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=3, help="Rooms (seeds) per cell.")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tables", type=Path, help="Print the markdown table of an earlier run's JSON and exit.")
    args = parser.parse_args()
    if args.tables:
        print(markdown(json.loads(args.tables.read_text())["rooms"]))
        return
    jobs = [(rt60, snr, kind, seed) for rt60, snr, kind in CELLS for seed in range(args.rooms)]
    load = os.getloadavg()[0]
    with Pool(args.workers) as pool:
        rooms = pool.map(run_one, jobs)
    print(json.dumps({"machine": machine_description(),
                      "load_average_start": load, "load_average_end": os.getloadavg()[0], "rooms": rooms}, indent=1))


if __name__ == "__main__":
    main()
