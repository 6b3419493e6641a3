"""NGCC-PHAT-based localization against GCC-PHAT multilateration, in one run: milliseconds per
frame and accuracy of `locate --method multilat` with GCC-PHAT, with NGCC-PHAT (the default for the
array, ``ngcc-phat-luvira-compact``, and the 32-channel ``ngcc-phat-luvira``) in float32 and with
its convolutions in bfloat16 (`--precision bfloat16`), and of `locate --method wav2pos`
(the shipped model, whose NGCC-PHAT is most of its time) in both precisions (bfloat16 only where the
CPU computes in it; where it is emulated, only its time against float32 on the first 2 s), on held-out
LuViRA-room recordings (as `luvira_locate.py`, 11 mics). All run interleaved, recording by
recording, ``--repeats`` rounds; ratios are to GCC-PHAT in the same round. Then, for each of the
two networks, where its time goes (filters f, the pair correlations, the head g, per frame) and its
arithmetic (multiply-adds per frame) against the rate this CPU reaches in those convolutions: the
time no implementation of that network can go below here; with ``--compile``, the parts again
under torch.compile. Prints JSON.

    python benchmarks/ngcc_speed.py [--compile] > benchmarks/results/ngcc_speed_cpu.json
"""

import argparse
import dataclasses
import json
import os
import time
import warnings

import numpy as np
import torch

from sslkit import locate
from sslkit.allocator import keep_freed_memory
from sslkit.evaluation import matched_errors, summarize_errors
from sslkit.gcc import frame_audio, mic_pairs
from sslkit.models.checkpoint import load_model
from sslkit.recording import room_channels
from sslkit.resources import machine_description, native_bfloat16
from sslkit.sims.dataset import simulate_many
from sslkit.sims.scene import load_template

TEST_INDEX_OFFSET = 3_000_000
FRAME, HOP = 2048, 1024

keep_freed_memory()  # as the CLI does
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--recordings", type=int, default=4)
parser.add_argument("--duration", type=float, default=10.0)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--compile", action="store_true", help="also time the network's parts under torch.compile (inductor, weights frozen)")
args = parser.parse_args()

template = {**load_template("luvira-test"), "duration": args.duration}
recordings = [room_channels(r) for r in simulate_many(template, list(range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + args.recordings)), args.seed)]
PRECISIONS = ("float32", "bfloat16") if native_bfloat16("cpu") else ("float32",)  # emulated bfloat16 is many times slower: not timed
variants = {"gcc-phat": ("multilat", {})}
for precision in PRECISIONS:
    variants[f"ngcc {precision}"] = ("multilat", {"tdoa": "ngcc", "precision": precision})
    variants[f"ngcc small {precision}"] = ("multilat", {"tdoa": "ngcc", "checkpoint": "ngcc-phat-luvira", "precision": precision})
    variants[f"wav2pos {precision}"] = ("wav2pos", {"precision": precision})


def run(rec, method: str, options: dict) -> tuple[float, np.ndarray, int]:
    """Seconds, matched errors (m, capped at 3) and frames of one locate run."""
    start = time.perf_counter()
    track = locate(rec, method, device="cpu", **options)
    seconds = time.perf_counter() - start
    return seconds, matched_errors(track, rec.sources, truncate=3.0)[0], len(track.times)


def timed_rounds() -> dict:
    """Per variant: ms per frame in each round, and the errors of the last round."""
    for method, options in variants.values():  # warm-up: model loading, caches
        run(recordings[0], method, options)
    per_frame = {name: [] for name in variants}
    errors = {name: [] for name in variants}
    for r in range(args.repeats):
        seconds, frames = dict.fromkeys(variants, 0.0), 0
        for rec in recordings:
            names = list(variants)[r % len(variants):] + list(variants)[: r % len(variants)]  # rotated order
            for name in names:
                s, err, n = run(rec, *variants[name])
                seconds[name] += s
                if name == "gcc-phat":
                    frames += n
                if r == args.repeats - 1:
                    errors[name].append(err)
        for name in variants:
            per_frame[name].append(1e3 * seconds[name] / frames)
    return {"ms_per_frame": per_frame, "errors": {name: np.concatenate(e) for name, e in errors.items()}}


def seconds_of(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


NETWORKS = ("ngcc-phat-luvira-compact", "ngcc-phat-luvira")


def network_parts(name: str) -> dict:
    """ms per frame of the parts of the shipped NGCC-PHAT ``name`` (32 frames of 11 mics, all 55
    pairs), float32 and bfloat16, with the multiply-adds of its convolutions and the rate they
    reach; with ``--compile`` the same under torch.compile, with the compilation's seconds and the
    largest change of a logit."""
    model, _, _ = load_model(name, "ngcc-phat", "cpu")
    frames = frame_audio(torch.as_tensor(recordings[0].audio), FRAME, HOP)[:32]
    pairs = torch.as_tensor(mic_pairs("all", frames.shape[1]))
    convs = [mod for mod in model.modules() if isinstance(mod, torch.nn.Conv1d)]
    feature_convs = [c for c in convs if any(c is mod for mod in model.features_cnn.modules())]
    head_convs = [c for c in convs if any(c is mod for mod in model.head.modules())]
    macs = {"features": frames.shape[1] * frames.shape[2] * sum(c.in_channels * c.out_channels * c.kernel_size[0] for c in feature_convs),
            "head": len(pairs) * model.n_lags * sum(c.in_channels * c.out_channels * c.kernel_size[0] for c in head_convs)}
    out = {"checkpoint_max_tau": model.max_tau, "macs_per_frame": macs, **part_times(model, frames, pairs, macs)}
    if args.compile:
        from torch._inductor import config as inductor_config

        inductor_config.freezing = True  # inference: weights are constants (BatchNorm folded into the convolutions)
        with torch.no_grad():
            eager_logits = model.pair_logits(frames, pairs)
            start = time.perf_counter()
            model.sinc_norm, model.features_cnn, model.head = (torch.compile(part) for part in (model.sinc_norm, model.features_cnn, model.head))
            compiled_logits = model.pair_logits(frames, pairs)
        out["compiled"] = {"first_call_s": time.perf_counter() - start, "max_logit_change": float((compiled_logits - eager_logits).abs().max()),
                           **part_times(model, frames, pairs, macs)}
    return out


def part_times(model, frames: torch.Tensor, pairs: torch.Tensor, macs: dict) -> dict:
    """Per precision: ms per frame of the filters f, the pair correlations and the head g, and the
    multiply-adds per second of f and g together."""
    f, m, n = frames.shape
    out = {}
    with torch.no_grad():
        corr = model.pair_correlations(frames, pairs)
        for precision in PRECISIONS:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                parts = {"features": seconds_of(lambda: model.features(frames.reshape(f * m, n))),
                         "correlations": seconds_of(lambda: model.pair_correlations(frames, pairs)),
                         "head": seconds_of(lambda: model.logits_from_correlations(corr))}
            ms = {k: 1e3 * v / f for k, v in parts.items()}
            ms["correlations"] -= ms["features"]  # pair_correlations includes the filters
            rate = (macs["features"] + macs["head"]) / (1e-3 * (ms["features"] + ms["head"]))
            out[precision] = {"ms_per_frame": ms, "convolution_gmac_per_s": rate / 1e9}
    return out


def emulated_bfloat16(seconds: float = 2.0) -> dict:
    """Where bfloat16 is only emulated: seconds of multilateration on NGCC-PHAT over the first
    seconds of the first recording in float32 and in bfloat16, and their ratio."""
    short = dataclasses.replace(recordings[0], audio=recordings[0].audio[: int(seconds * recordings[0].fs)])
    times = {}
    for precision in ("float32", "bfloat16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the note that bfloat16 is emulated here
            times[precision] = run(short, "multilat", {"tdoa": "ngcc", "precision": precision})[0]
    return {"audio_s": seconds, "seconds": times, "bfloat16_over_float32": times["bfloat16"] / times["float32"]}


load_before = os.getloadavg()
emulated = None if native_bfloat16("cpu") else emulated_bfloat16()
rounds = timed_rounds()
parts = {name: network_parts(name) for name in NETWORKS}
gcc = np.array(rounds["ms_per_frame"]["gcc-phat"])
summary = {}
for name, ms in rounds["ms_per_frame"].items():
    s = summarize_errors(rounds["errors"][name], threshold=0.3)
    ratios = np.array(ms) / gcc
    summary[name] = {"ms_per_frame": float(np.median(ms)), "ms_per_frame_all": ms, "ratio_to_gcc": float(np.median(ratios)),
                     "ratio_to_gcc_spread": [float(ratios.min()), float(ratios.max())],
                     "mae_cm": round(100 * s["mae_m"], 1), "median_cm": round(100 * float(np.median(rounds["errors"][name])), 1),
                     "acc_30cm": round(100 * s["accuracy"], 1), "frames": s["n"]}
floor_ms = {name: {precision: (p["macs_per_frame"]["features"] + p["macs_per_frame"]["head"]) / (p[precision]["convolution_gmac_per_s"] * 1e6)
                   for precision in PRECISIONS} for name, p in parts.items()}
print(json.dumps({
    "machine": machine_description(), "torch_threads": torch.get_num_threads(),
    "native_bfloat16": native_bfloat16("cpu"), "emulated_bfloat16": emulated,
    "load_average_before": load_before, "load_average_after": os.getloadavg(),
    "recordings": args.recordings, "duration_s": args.duration, "repeats": args.repeats,
    "locate": summary, "networks": parts,
    "convolutions_alone_ms_per_frame": floor_ms,
    "convolutions_alone_over_gcc_multilat": {name: {p: ms / summary["gcc-phat"]["ms_per_frame"] for p, ms in f.items()} for name, f in floor_ms.items()},
}, indent=2))
