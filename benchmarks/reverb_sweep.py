"""Localization across reverberation and noise: T60 × SNR cells of random rooms, every method against
a textbook SRP reference. Prints JSON; writes benchmarks/results/reverb_sweep.json and a heatmap PNG.

Scenes: random shoebox 8 × 6 × 3 m, 10 random mics, 4 s, held-out test speech; per cell ``--rooms``
rooms (seeds) of each kind: one static talker, one talker moving at 0.5–1 m/s, two static talkers.
Methods (sslkit.locate): multilat and srp-phat per hop with no integration window, with the
default window and (moving talkers) other windows; ``--static`` for static talkers; ``--sources 2``
for two talkers. Reference: PHAT cross-spectra averaged over all non-silent frames, exhaustive
5 cm grid over the room, refined on a 1 cm grid around the best point (numpy, independent of
sslkit's search). Errors are matched to the active talkers hop by hop (Hungarian), capped at 3 m.

    python benchmarks/reverb_sweep.py --rooms 4 --workers 2
    python benchmarks/reverb_sweep.py --rooms 4 --workers 2 --frames rectangular --out benchmarks/results/reverb_sweep_rectangular.json
    python benchmarks/reverb_sweep.py --rooms 4 --workers 2 --frames hann --out benchmarks/results/reverb_sweep_taper.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from sslkit import locate
from sslkit.evaluation import matched_errors
from sslkit.options import DEFAULT_WINDOW_S
from sslkit.resources import machine_description
from sslkit.sims.room import simulate
from sslkit.sims.scene import resolve_scene

T60S = (0.3, 0.45, 0.6, 0.8, 1.0)
SNRS = (20.0, 10.0, 5.0)
ROOM = [8.0, 6.0, 3.0]
MOVING_WINDOWS = (0.0, 0.25, 0.5, 1.0)
RESULTS = Path(__file__).parent / "results"


def scene(kind: str, rt60: float, snr: float) -> dict:
    talker = {"signal": "speech/test", "position": {"random": {"min_wall_distance": 0.5}}}
    if kind == "moving":
        talker = {"signal": "speech/test", "trajectory": {"random": {"speed": {"uniform": [0.5, 1.0]}, "waypoints": 3, "min_wall_distance": 0.7}}}
    return {"fs": 16000, "duration": 4.0, "room": {"dimensions": ROOM, "rt60": rt60}, "mics": {"random": {"count": 10, "min_wall_distance": 0.3}},
            "sources": [talker] * (2 if kind == "two" else 1), "noise": {"snr_db": snr}}


def reference_static(rec) -> np.ndarray:
    """Textbook SRP-PHAT of a static source: mean PHAT cross-spectrum over the non-silent frames,
    exhaustive 5 cm grid, then a 1 cm grid ±5 cm around the best point. (3,) metres."""
    frame, hop, up, c = 2048, 1024, 4, 343.0
    n = (len(rec.audio) - frame) // hop + 1
    frames = np.stack([rec.audio[k * hop : k * hop + frame].T for k in range(n)])  # (F, M, L)
    power = (frames**2).mean(axis=(1, 2))
    frames = frames[power >= power.max() * 1e-4]
    n_fft = 2 * frame
    spec = np.fft.rfft(frames, n_fft)
    spec /= np.abs(spec) + 1e-20
    i, j = np.triu_indices(rec.n_mics, 1)
    cross = (spec[:, i] * np.conj(spec[:, j])).mean(0)  # (P, K)
    corr = np.fft.irfft(cross, n_fft * up)  # (P, n_fft·up), lag m at index m mod N
    size = corr.shape[1]

    def power_at(points: np.ndarray) -> np.ndarray:
        dist = np.linalg.norm(points[:, None] - rec.mics[None], axis=-1)
        lag = (dist[:, i] - dist[:, j]) / c * rec.fs * up  # (G, P)
        low = np.floor(lag).astype(int)
        frac = lag - low
        rows = np.arange(len(i))
        return ((1 - frac) * corr[rows, low % size] + frac * corr[rows, (low + 1) % size]).sum(1)

    def grid(lo, hi, step):
        axes = [np.arange(a, b + 1e-9, step) for a, b in zip(lo, hi)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    coarse = grid(np.full(3, 0.025), np.array(ROOM) - 0.025, 0.05)
    values = np.concatenate([power_at(coarse[k : k + 100_000]) for k in range(0, len(coarse), 100_000)])
    best = coarse[values.argmax()]
    fine = grid(best - 0.05, best + 0.05, 0.01)
    return fine[power_at(fine).argmax()]


def summary(errors: np.ndarray) -> dict:
    return {"median_m": float(np.median(errors)), "mae_m": float(np.mean(errors)), "acc_30cm": float(np.mean(errors < 0.3)), "n": int(len(errors))}


FRAMES = {"default": None, "rectangular": False, "hann": True}
"""--frames: `locate`'s frames as it cuts them by default (tapered at their edges), rectangular
(--no-taper) or Hann-windowed (--taper)."""


def run_one(job: tuple[str, float, float, int, bool | None]) -> dict:
    kind, rt60, snr, seed, taper = job
    rec = simulate(resolve_scene(scene(kind, rt60, snr), seed))[0]
    runs: dict[str, dict] = {}
    if kind == "static":
        variants = {f"{m} static": (m, {"static": True}) for m in ("multilat", "srp-phat")}
        variants |= {f"{m} per hop, no window": (m, {"window": 0.0}) for m in ("multilat", "srp-phat")}
        variants |= {f"{m} per hop, default window": (m, {}) for m in ("multilat", "srp-phat")}
    elif kind == "moving":
        variants = {f"{m} window {w:g} s": (m, {"window": w}) for m in ("multilat", "srp-phat") for w in MOVING_WINDOWS}
    else:
        variants = {f"{m} --sources 2, default window": (m, {"sources": 2}) for m in ("multilat", "srp-phat")}
    for name, (method, kw) in variants.items():
        start = time.perf_counter()
        track = locate(rec, method, taper=taper, **kw)
        seconds = time.perf_counter() - start
        runs[name] = {"errors": matched_errors(track, rec.sources)[0].tolist(), "rtf": seconds / rec.duration}
    if kind == "static":
        start = time.perf_counter()
        error = float(np.linalg.norm(reference_static(rec) - rec.sources.xyz[0]))
        runs["reference (textbook SRP, static)"] = {"errors": [min(error, 3.0)], "rtf": (time.perf_counter() - start) / rec.duration}
    return {"kind": kind, "rt60": rt60, "snr_db": snr, "seed": seed, "runs": runs}


def aggregate(records: list[dict]) -> list[dict]:
    """Per (kind, T60, SNR, method): errors of all rooms pooled, and the mean real-time factor."""
    cells: dict[tuple, dict] = {}
    for r in records:
        for name, run in r["runs"].items():
            cell = cells.setdefault((r["kind"], r["rt60"], r["snr_db"], name), {"errors": [], "rtf": []})
            cell["errors"] += run["errors"]
            cell["rtf"].append(run["rtf"])
    return [{"kind": k, "rt60": t, "snr_db": s, "method": m, **summary(np.array(v["errors"])), "rtf": float(np.mean(v["rtf"]))}
            for (k, t, s, m), v in sorted(cells.items())]


def heatmap(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [("static", "reference (textbook SRP, static)"), ("static", "srp-phat static"), ("static", "multilat static"),
             ("static", "multilat per hop, default window"), ("static", "srp-phat per hop, default window"),
             ("moving", f"multilat window {DEFAULT_WINDOW_S:g} s"), ("two", "srp-phat --sources 2, default window")]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.2))
    for ax, (kind, method) in zip(axes, shown):
        grid = np.full((len(T60S), len(SNRS)), np.nan)
        for r in rows:
            if r["kind"] == kind and r["method"] == method:
                grid[T60S.index(r["rt60"]), SNRS.index(r["snr_db"])] = r["acc_30cm"] * 100
        ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for (a, b), v in np.ndenumerate(grid):
            ax.text(b, a, "–" if np.isnan(v) else f"{v:.0f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(SNRS)), [f"{s:g}" for s in SNRS])
        ax.set_yticks(range(len(T60S)), [f"{t:g}" for t in T60S])
        ax.set_xlabel("SNR dB")
        ax.set_title(f"{kind}: {method}\nacc@30 cm %", fontsize=7)
    axes[0].set_ylabel("T60 s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(rows: list[dict], kind: str, methods: list[str], key: str = "acc_30cm") -> str:
    """A T60 × SNR table of one figure per method (rows: cells; columns: methods)."""
    scale, unit = (100, "%") if key == "acc_30cm" else (100, "cm")
    lines = ["| T60 s / SNR dB | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t in T60S:
        for s in SNRS:
            by = {r["method"]: r for r in rows if r["kind"] == kind and r["rt60"] == t and r["snr_db"] == s}
            if by:
                lines.append(f"| {t:g} / {s:g} | " + " | ".join(f"{by[m][key] * scale:.1f}" if m in by else "–" for m in methods) + " |")
    return f"{kind}, {key} ({unit})\n" + "\n".join(lines)


def comparison(runs: dict[str, list[dict]]) -> str:
    """Per kind and method, the mean over the T60 × SNR cells of the accuracy at 30 cm, one column per run."""
    names = list(runs)
    lines = ["| talkers | method | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    first = runs[names[0]]
    for kind, method in sorted({(r["kind"], r["method"]) for r in first}):
        means = [np.mean([r["acc_30cm"] for r in rows if r["kind"] == kind and r["method"] == method]) * 100 for rows in runs.values()]
        lines.append(f"| {kind} | {method} | " + " | ".join(f"{m:.1f} %" for m in means) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=4, help="Rooms per cell and kind.")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--kinds", default="static,moving,two")
    parser.add_argument("--out", type=Path, default=RESULTS / "reverb_sweep.json")
    parser.add_argument("--frames", choices=FRAMES, default="default", help="Every sslkit method's frames (default: as locate cuts them).")
    parser.add_argument("--tables", action="store_true", help="Print markdown tables of an earlier --out and exit.")
    parser.add_argument("--against", type=Path, help="With --tables: compare --out with this earlier run, means over the cells.")
    args = parser.parse_args()
    if args.tables and args.against:
        print(comparison({path.name: json.loads(path.read_text())["cells"] for path in (args.out, args.against)}))
        return
    if args.tables:
        rows = json.loads(args.out.read_text())["cells"]
        for kind in ("static", "moving", "two"):
            methods = sorted({r["method"] for r in rows if r["kind"] == kind})
            for key in ("median_m", "acc_30cm"):
                print(markdown(rows, kind, methods, key), end="\n\n")
        return
    jobs = [(kind, t, s, seed, FRAMES[args.frames]) for kind in args.kinds.split(",") for t in T60S for s in SNRS for seed in range(args.rooms)]
    start, load = time.perf_counter(), os.getloadavg()
    with Pool(args.workers) as pool:
        records = pool.map(run_one, jobs, chunksize=1)
    rows = aggregate(records)
    result = {"machine": f"{machine_description()}, {args.workers} workers",
              "load_average_at_start": load, "seconds": time.perf_counter() - start, "rooms_per_cell": args.rooms, "frames": args.frames,
              "cells": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    heatmap(rows, args.out.with_suffix(".png"))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
