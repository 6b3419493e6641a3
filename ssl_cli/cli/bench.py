"""``sslkit bench-adpit``: time the ADPIT loss implementations."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sslkit.cli.app import Device, Seed, app, console, parse_int_list, progress_bar, user_errors
from sslkit.errors import UserError
from sslkit.resources import machine_description, resolve_device


@app.command("bench-adpit")
@user_errors
def bench_adpit(
    tracks: str = typer.Option("3", "--tracks", help="Comma-separated numbers of tracks N, e.g. 3,4,5,6."),
    batch: int = typer.Option(128, "--batch-size", "-b", min=1, help="Batch size B."),
    frames: int = typer.Option(50, "--frames", min=1, help="Label frames T per item."),
    classes: int = typer.Option(13, "--classes", min=1, help="Classes C."),
    axes: int = typer.Option(4, "--axes", min=3, max=4, help="3 (xyz) or 4 (xyz + distance)."),
    active: float = typer.Option(0.1, "--active", min=0, max=1, help="Probability that a frame-class scope holds an event."),
    overlap: float = typer.Option(0.05, "--overlap", min=0, max=1, help="Probability that an active scope holds 2..N events."),
    device: Device = "auto",
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed runs (median reported)."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs first."),
    max_memory_gb: float = typer.Option(4.0, "--max-memory-gb", help="Skip a variant whose largest tensor would exceed this."),
    seed: Seed = 0,
    out: Path = typer.Option(Path("bench-adpit.json"), "--out", "-o", help="JSON results file."),
) -> None:
    """Time forward + backward of every ADPIT variant on STARSS23-like shapes.

    [bold]Example[/]

      sslkit bench-adpit --tracks 3,5,6 --device auto --out bench-adpit.json
    """
    import json

    from sslkit.files import atomic_file, check_output_file
    from sslkit.models.adpit import MAX_TRACKS
    from sslkit.models.adpit_bench import benchmark_adpit

    n_list = parse_int_list(tracks, "--tracks")
    if len(set(n_list)) < len(n_list):
        raise UserError(f"--tracks names a number of tracks twice: '{tracks}'")
    if min(n_list) < 2 or max(n_list) > MAX_TRACKS:
        raise UserError(f"--tracks takes numbers of tracks from 2 (one track has nothing to permute) to {MAX_TRACKS} "
                        f"(enumerating the sequences of 7 tracks does not fit in memory), got '{tracks}'")
    check_output_file(out)
    dev = resolve_device(device)
    import os

    machine, load = machine_description(), os.getloadavg()[0]
    table = Table(title=f"ADPIT forward + backward, B={batch} T={frames} A={axes} C={classes} on {dev}; medians of {repeats} interleaved "
                  f"rounds; load average {load:.1f} on {machine}; theory: the gain the pairs per scope predict", title_justify="left")
    columns = ("N", "variant", "ms", "speed-up (min–max)", "theory", "pairs") + (("peak MB",) if dev.startswith("cuda") else ())
    for col in columns:
        table.add_column(col, justify="right" if col != "variant" else "left", no_wrap=True)
    with progress_bar() as progress:
        task = progress.add_task("benchmarking", total=len(n_list) * 4)

        def show(row: dict) -> None:
            progress.advance(task)
            ms = "skipped" if row["seconds"] is None else f"{row['seconds'] * 1e3:.1f}"
            speed = "–" if row["speedup"] is None else f"{row['speedup']:.1f}× ({row['speedup_spread'][0]:.1f}–{row['speedup_spread'][1]:.1f})"
            peak = "–" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
            cells = (str(row["tracks"]), row["variant"], ms, speed, f"{row['theory_gain']:.1f}×", f"{row['pairs_per_scope']:.1f}", peak)
            table.add_row(*cells[: len(columns)])

        results = benchmark_adpit(n_list, batch, frames, classes, axes, active, overlap, dev, warmup, repeats, max_memory_gb, seed, show)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps({"machine": machine, "load_average_at_start": load, "results": results}, indent=2))
    console.print(table)
    console.print(f"results → {out}")


