"""How often SRP-PHAT's coarse-to-fine cell search reaches the maximum of an exhaustive search, per
hop, in reverberant rooms, for several beam widths; and why an exact branch and bound is no cheaper
than the exhaustive search.

Scenes: those of ``reverb_sweep.py`` (shoebox 8 × 6 × 3 m, 10 random mics, one static talker),
2 s. Per hop, as ``locate`` computes them, the GCC-PHAT correlations (2048-sample frames, hop 1024, 4×
upsampled) are averaged over the default window. For each hop the script reports:

- the maximum of the steered power over an exhaustive 5 cm grid of the room (read exactly as
  the search reads it at its leaves);
- for each beam, the share of hops where the search's leaf power is at least that maximum, the share
  within 30 cm of the talker, and the search's seconds; the same for the default beam with the
  answers of the hops within ``SEED_SPAN_S`` lent to each hop, as ``locate`` searches;
- the share of first-level (10 cm) cells whose upper bound exceeds the exhaustive maximum. An
  exact branch and bound would have to split every one of these cells.

    python benchmarks/srp_search.py > benchmarks/results/srp_search_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from reverb_sweep import ROOM, scene

from sslkit.gcc import correlation, cross_spectra, frame_audio, gcc_fft_length, mic_pairs, silent_frames, window_average, window_frames
from sslkit.localization.srp import BEAM, SEED_SPAN_S, UPSAMPLE, CellSearch, pooled_over_cells, steered_power
from sslkit.options import DEFAULT_WINDOW_S, SrpOptions
from sslkit.resources import machine_description
from sslkit.sims.room import simulate
from sslkit.sims.scene import resolve_scene

FRAME, HOP, C = 2048, 1024, 343.0
GRID_STEP = 0.05
GRID_CHUNK = 50_000
"""Grid points whose power is computed at once (bounds memory at 10 mics)."""


def windowed_correlations(rec) -> tuple[torch.Tensor, np.ndarray, float]:
    """The active hops' correlations (F, P, L), averaged over the default window, as locate's SRP-PHAT computes them."""
    pairs = mic_pairs("all", rec.n_mics)
    bounds = np.linalg.norm(rec.mics[pairs[:, 0]] - rec.mics[pairs[:, 1]], axis=1) / C * rec.fs
    max_lag = int(np.ceil(bounds.max())) + 2
    frames = frame_audio(torch.as_tensor(rec.audio, dtype=torch.float32), FRAME, HOP)
    n_fft = gcc_fft_length(FRAME, max_lag)
    active = ~silent_frames(frames)
    window = window_frames(DEFAULT_WINDOW_S, HOP, rec.fs, len(frames))
    averaged = torch.cat([a for _, a in window_average(lambda lo, hi: cross_spectra(frames[lo:hi], pairs, n_fft), len(frames), active, window, 16)])
    return correlation(averaged[active], n_fft, max_lag, UPSAMPLE).float(), pairs, rec.fs * UPSAMPLE / C


def exhaustive_maximum(search: CellSearch, corr: torch.Tensor, bins_per_m: float) -> torch.Tensor:
    """Per hop, the highest steered power over a 5 cm grid of the room: (F,)."""
    axes = [np.arange(GRID_STEP / 2, side, GRID_STEP) for side in ROOM]
    grid = torch.as_tensor(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3), dtype=torch.float32)
    best = torch.full((len(corr),), -torch.inf)
    for chunk in grid.split(GRID_CHUNK):
        for f in range(len(corr)):
            best[f] = max(best[f], steered_power(corr[f : f + 1], chunk[None], search.mics, search.pairs, bins_per_m)[0].max())
    return best


def coarse_bounds(search: CellSearch, corr: torch.Tensor, bins_per_m: float) -> torch.Tensor:
    """Upper bounds (F, G) of the steered power in each first-level cell, as the search computes them."""
    return (search.steer @ pooled_over_cells(corr, search.coarse_side, bins_per_m).flatten(1).T).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="0.6:10,0.8:5", help="T60:SNR cells, comma-separated")
    parser.add_argument("--rooms", type=int, default=3)
    parser.add_argument("--beams", default="16,64,256,1024")
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    beams = [int(b) for b in args.beams.split(",")]
    bounds = np.array([[0.0, 0.0, 0.0], ROOM])
    rows = []
    for cell in args.cells.split(","):
        rt60, snr = (float(v) for v in cell.split(":"))
        for seed in range(args.rooms):
            rec = simulate(resolve_scene({**scene("static", rt60, snr), "duration": args.duration}, seed))[0]
            talker = torch.as_tensor(rec.sources.xyz[0], dtype=torch.float32)
            corr, pairs, bins_per_m = windowed_correlations(rec)
            row = {"t60_s": rt60, "snr_db": snr, "seed": seed, "hops": len(corr)}
            lent = round(SEED_SPAN_S * rec.fs / HOP)
            searches = {f"beam_{beam}": (beam, 0) for beam in beams} | {f"beam_{BEAM}_with_neighbours": (BEAM, lent)}
            for name, (beam, seed_frames) in searches.items():
                search = CellSearch(rec.mics, pairs, bounds, corr.shape[-1], bins_per_m, SrpOptions(beam=beam), seed_frames)
                start = time.perf_counter()
                points, power = search.best(corr)
                row[name] = {"seconds": time.perf_counter() - start, "power": power,
                             "within_30_cm": float(((points - talker).norm(dim=-1) < 0.3).float().mean())}
            maximum = exhaustive_maximum(search, corr, bins_per_m)
            for name in searches:
                found = row[name].pop("power")
                row[name]["reaches_exhaustive"] = float((found >= maximum - 1e-3).float().mean())
            row["coarse_cells_above_maximum"] = float((coarse_bounds(search, corr, bins_per_m) > maximum[:, None]).float().mean())
            row["peak_power_per_pair_median"] = float(maximum.median() / len(pairs))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    print(json.dumps({"machine": machine_description(), "load_average": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
