"""Timing of the ADPIT variants on STARSS23-like shapes and activity statistics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from sslkit.models.adpit import (
    adpit_loss,
    baseline_rows,
    distinct_pairs,
    dummy_index,
    n_dummy_tracks,
    overlay_rows,
    scope_event_counts,
)

BENCH_VARIANTS = ("baseline", "overlay", "distance-first", "bradpit")


def random_seld_target(
    shape: tuple[int, int, int], n_tracks: int, n_axes: int, p_active: float, overlap: float, generator: torch.Generator
) -> torch.Tensor:
    """Dummy-track targets with sparse activity like STARSS23, shape (B, T, N(N+1)/2, 1+A, C).

    A frame-class scope is active with probability ``p_active``; an active scope holds one event,
    or with probability ``overlap`` between 2 and N events of that class. Axes are unit DOA vectors
    (plus a distance in [0.5, 5] m when A = 4).
    """
    b, t, c = shape
    active = torch.rand(b, t, c, generator=generator) < p_active
    many = torch.rand(b, t, c, generator=generator) < overlap
    m = torch.where(many, torch.randint(2, n_tracks + 1, (b, t, c), generator=generator), torch.ones(b, t, c, dtype=torch.long))
    m = torch.where(active, m, torch.zeros_like(m)) if n_tracks > 1 else active.long()
    target = torch.zeros(b, t, n_dummy_tracks(n_tracks), 1 + n_axes, c)
    for group in range(1, n_tracks + 1):
        mask = (m == group)[:, :, None, :].float()  # (B, T, 1, C)
        for e in range(group):
            doa = torch.nn.functional.normalize(torch.randn(b, t, 3, c, generator=generator), dim=2)
            axes = doa if n_axes == 3 else torch.cat([doa, 0.5 + 4.5 * torch.rand(b, t, 1, c, generator=generator)], 2)
            d = dummy_index(group, e)
            target[:, :, d, 0] = mask[:, :, 0]
            target[:, :, d, 1:] = axes * mask
    return target


def theoretical_pairs(variant: str, n_tracks: int, m_scope: torch.Tensor) -> float:
    """Token–event pair evaluations per scope (the paper's N_pairs), averaged over the scopes given."""
    if variant == "baseline":
        return len(baseline_rows(n_tracks)) * n_tracks
    if variant == "overlay":
        return len(overlay_rows(n_tracks)) * n_tracks
    if variant == "distance-first":
        return float(len(distinct_pairs(overlay_rows(n_tracks), n_dummy_tracks(n_tracks))[0]))
    per_scope = torch.where(m_scope <= 1, n_tracks, n_tracks * m_scope).double()
    return float(per_scope.mean())


def largest_intermediate_bytes(variant: str, n_tracks: int, shape: Sequence[int], n_axes: int, element_size: int) -> int:
    """Size of the largest tensor a variant materialises (the per-row targets for baseline/overlay)."""
    b, t, c = shape
    rows = {"baseline": len(baseline_rows(n_tracks)), "overlay": len(overlay_rows(n_tracks))}
    if variant in rows:
        return b * t * rows[variant] * n_tracks * n_axes * c * element_size
    if variant == "distance-first":
        return b * t * len(distinct_pairs(overlay_rows(n_tracks), n_dummy_tracks(n_tracks))[0]) * n_axes * c * element_size
    return b * t * n_tracks * n_axes * c * element_size * 2


def forward_backward(variant: str, output: torch.Tensor, target: torch.Tensor) -> float:
    """Seconds of one forward + backward of ``variant``."""
    cuda = output.device.type == "cuda"
    start = time.perf_counter()
    out = output.detach().requires_grad_(True)
    adpit_loss(out, target, variant).backward()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_times(variants: Sequence[str], output: torch.Tensor, target: torch.Tensor, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each variant in each of ``repeats`` rounds; every round runs all variants, in an
    order rotated from round to round, so that a change of machine load touches them alike."""
    for _ in range(warmup):
        for variant in variants:
            forward_backward(variant, output, target)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(repeats if variants else 0):  # every variant skipped: nothing to time
        shift = r % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            times[variant].append(forward_backward(variant, output, target))
    return times


def peak_memory_mb(variant: str, output: torch.Tensor, target: torch.Tensor) -> float | None:
    """Peak GPU memory (MB) of one forward + backward; None on the CPU."""
    if output.device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    forward_backward(variant, output, target)
    return torch.cuda.max_memory_allocated() / 2**20


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def benchmark_adpit(
    tracks: Sequence[int] = (3,),
    batch: int = 128,
    frames: int = 50,
    classes: int = 13,
    axes: int = 4,
    p_active: float = 0.1,
    overlap: float = 0.05,
    device: str = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    max_memory_gb: float = 4.0,
    seed: int = 0,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Time every variant for each N in ``tracks``; one result dict per (N, variant).

    The variants run interleaved (:func:`interleaved_times`); ``seconds`` is the median over the
    rounds and ``speedup`` the median over rounds of the baseline's time over the variant's in the
    same round, with their spread (min, max). A variant whose largest intermediate tensor would
    exceed ``max_memory_gb`` is skipped and reported as such (the baseline's row count explodes with
    N: 4683 rows for N = 6).
    """
    from sslkit.errors import UserError
    from sslkit.resources import check_memory

    if not max_memory_gb > 0 or max_memory_gb == float("inf"):
        raise UserError(f"max_memory_gb = {max_memory_gb}: the largest tensor a variant may build, a positive number of GB")
    results = []
    for n in tracks:
        check_memory(4 * batch * frames * classes * (n * axes + n_dummy_tracks(n) * (1 + axes)),
                     f"ADPIT inputs of {batch} × {frames} frames, {n} tracks, {classes} classes", "lower --batch-size or --frames")
        g = torch.Generator().manual_seed(seed)
        shape = (batch, frames, classes)
        target = random_seld_target(shape, n, axes, p_active, overlap, g).to(device)
        output = torch.randn(batch, frames, n, axes, classes, generator=g).to(device)
        m_scope = scope_event_counts(target)
        base_pairs = theoretical_pairs("baseline", n, m_scope)
        rows = {}
        for variant in BENCH_VARIANTS:
            row = {
                "tracks": n, "variant": variant, "device": device, "shape": [batch, frames, n, axes, classes],
                "pairs_per_scope": theoretical_pairs(variant, n, m_scope),
            }
            row["theory_gain"] = base_pairs / row["pairs_per_scope"]
            needed = largest_intermediate_bytes(variant, n, shape, axes, output.element_size())
            row["largest_tensor_mb"] = needed / 2**20
            if needed > max_memory_gb * 2**30:
                row.update(seconds=None, peak_memory_mb=None, speedup=None, skipped=f"needs {needed / 2**30:.1f} GB > {max_memory_gb} GB")
            rows[variant] = row
        runnable = [v for v, row in rows.items() if "skipped" not in row]
        times = interleaved_times(runnable, output, target, warmup, repeats)
        for variant in runnable:
            ratios = [b / t for b, t in zip(times["baseline"], times[variant])] if "baseline" in times else []
            rows[variant].update(seconds=median(times[variant]), seconds_spread=[min(times[variant]), max(times[variant])],
                                 speedup=median(ratios) if ratios else None, speedup_spread=[min(ratios), max(ratios)] if ratios else None,
                                 peak_memory_mb=peak_memory_mb(variant, output, target))
        for row in rows.values():
            results.append(row)
            if on_result:
                on_result(row)
    return results
