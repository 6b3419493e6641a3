"""Paper V's TDOA test protocol: GCC-PHAT and NGCC-PHAT side by side over an SNR × T60 grid."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sslkit.gcc import gcc, pick_peaks
from sslkit.geometry import SPEED_OF_SOUND, lag_classes, pair_lag_bounds, range_differences
from sslkit.recording import Recording
from sslkit.sims.scene import load_template
from sslkit.sims.tdoa_windows import active_window_starts
from sslkit.tdoa import TDOA_ACCURACY_M

WINDOW = 2048
"""Samples per TDOA estimate (Paper V: N = 2048 at 16 kHz)."""
TEST_SEED_OFFSET = 2_000_000
"""Test snippets use scene indices from here on, disjoint from training and validation draws."""
FIRST_PAIR = np.array([[0, 1]])
"""The protocol measures the TDOA of mics 1 and 2."""
CELLS_FILE = "cells.csv"
SUMMARY_FILE = "summary.csv"


@dataclass
class GridCell:
    rt60: float
    snr_db: float


def protocol_grid(template: dict) -> tuple[list[float], list[float]]:
    """The T60 and SNR values of a template's ``grid`` entries (ngcc-test: 5 × 6)."""
    rt60 = template["room"]["rt60"]
    snr = template["noise"]["snr_db"]
    if not (isinstance(rt60, dict) and "grid" in rt60 and isinstance(snr, dict) and "grid" in snr):
        raise ValueError("the test scene needs room.rt60 and noise.snr_db given as {grid: [...]}")
    return [float(v) for v in rt60["grid"]], [float(v) for v in snr["grid"]]


def cell_template(template: dict, cell: GridCell) -> dict:
    """The template with the grid replaced by one cell: same random draws (positions, signals) per index."""
    return {**template, "room": {**template["room"], "rt60": cell.rt60}, "noise": {**template["noise"], "snr_db": cell.snr_db}}


def snippet_windows(rec: Recording, window: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping non-silent windows of mics 1–2 (W, 2, window) and true τ₁₂ in samples (W,)."""
    starts = active_window_starts(rec.audio, window, window)
    frames = np.stack([rec.audio[s : s + window, :2].T for s in starts])
    pos = rec.sources.held_positions((starts + window / 2) / rec.fs)
    return frames, range_differences(pos, rec.mics, FIRST_PAIR)[:, 0] / c * rec.fs


def gcc_predict(frames: torch.Tensor, max_tau: int) -> torch.Tensor:
    """GCC-PHAT TDOA (samples) of windows (W, 2, N) with parabolic refinement."""
    corr = gcc(frames, np.array([[0, 1]]), max_tau)[:, 0]
    return pick_peaks(corr, 1, 1)[0][:, 0]


def ngcc_predict(model, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = torch.cat([model(f[:, 0], f[:, 1])[:, 0] for f in frames.split(128)])
    return pick_peaks(torch.softmax(logits, dim=-1), 1, 1)[0][:, 0]


def evaluate_tdoa_protocol(
    model,
    scene: str = "ngcc-test",
    snippets: int = 40,
    seed: int = 0,
    device: str = "cpu",
    workers: int | None = None,
    c: float = SPEED_OF_SOUND,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """MAE (cm) and accuracy at 10 cm of GCC-PHAT and NGCC-PHAT in every grid cell.

    Every cell replays the same ``snippets`` source positions and signals (held-out test voices in
    ``ngcc-test``) under its T60 and SNR; each 2 s snippet gives its non-silent 2048-sample windows.
    Returns one row per (method, T60, SNR) with n, mae_cm, acc_10cm.
    """
    from sslkit.resources import check_memory
    from sslkit.sims.dataset import dataset_bytes, simulate_many

    template = load_template(scene)
    check_memory(snippets * dataset_bytes(template, seed, None), f"{snippets} snippets of {scene} held in memory per grid cell", "lower --snippets")
    rt60s, snrs = protocol_grid(template)
    cells = [GridCell(r, s) for r, s in itertools.product(rt60s, snrs)]
    indices = list(range(TEST_SEED_OFFSET, TEST_SEED_OFFSET + snippets))
    rows = []
    for k, cell in enumerate(cells):
        recs = simulate_many(cell_template(template, cell), indices, seed, workers)
        frames, tau = zip(*(snippet_windows(r, WINDOW, c) for r in recs))
        frames_t = torch.as_tensor(np.concatenate(frames), device=device)
        tau_t = torch.as_tensor(np.concatenate(tau), device=device)
        fs = recs[0].fs
        max_tau = lag_classes(pair_lag_bounds(recs[0].mics, FIRST_PAIR, fs, c)[0])
        predictions = {"gcc-phat": gcc_predict(frames_t, max_tau)}
        if model is not None:
            predictions["ngcc-phat"] = ngcc_predict(model, frames_t)
        for method, pred in predictions.items():
            err = ((pred - tau_t).abs() * c / fs).cpu().numpy()
            rows.append({"method": method, "rt60": cell.rt60, "snr_db": cell.snr_db, "n": len(err),
                         "mae_cm": float(err.mean() * 100), "acc_10cm": float((err < TDOA_ACCURACY_M).mean() * 100)})
        if on_progress:
            on_progress(k + 1, len(cells))
    return rows


def summarize_by_rt60(rows: list[dict]) -> list[dict]:
    """Average the cell rows over SNR for each method and T60, plus an 'all' row per method."""
    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    rt60s = sorted({r["rt60"] for r in rows})
    for method in methods:
        for rt60 in [*rt60s, None]:
            sel = [r for r in rows if r["method"] == method and (rt60 is None or r["rt60"] == rt60)]
            n = sum(r["n"] for r in sel)
            out.append({
                "method": method, "rt60": "all" if rt60 is None else rt60,
                "mae_cm": sum(r["mae_cm"] * r["n"] for r in sel) / n, "acc_10cm": sum(r["acc_10cm"] * r["n"] for r in sel) / n, "n": n,
            })
    return out


def evaluate_tdoa_files(out: str | Path, checkpoint: str | Path | None = None, scene: str = "ngcc-test", snippets: int = 40, seed: int = 0,
                        device: str = "cpu", workers: int | None = None, on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run the protocol (see :func:`evaluate_tdoa_protocol`) with an NGCC-PHAT checkpoint (None: the
    shipped default) and write ``cells.csv`` and ``summary.csv`` into the folder ``out``; returns the summary rows."""
    from sslkit.files import check_folder_to_fill, write_csv
    from sslkit.models.checkpoint import load_model
    from sslkit.resources import resolve_device

    out = check_folder_to_fill(Path(out), (CELLS_FILE, SUMMARY_FILE))
    device = resolve_device(device)
    model, _, _ = load_model(checkpoint, "ngcc-phat", device)
    rows = evaluate_tdoa_protocol(model, scene, snippets, seed, device, workers, on_progress=on_progress)
    summary = summarize_by_rt60(rows)
    write_csv(out / CELLS_FILE, list(rows[0]), ([r[k] for k in rows[0]] for r in rows))
    write_csv(out / SUMMARY_FILE, list(summary[0]), ([r[k] for k in summary[0]] for r in summary))
    return summary
