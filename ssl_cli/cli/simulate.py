"""``sslkit simulate``: rooms to recording folders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sslkit.cli.app import Overwrite, Seed, Workers, app, console, progress_bar, summary_table, user_errors
from sslkit.errors import UserError


@app.command()
@user_errors
def simulate(
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Shipped scene preset (see --list-presets)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Scene or dataset YAML (a scene.yaml re-simulates it)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: ./<preset>, or next to the YAML)."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Simulate a random dataset of N scenes."),
    seed: Seed = 0,
    duration: Optional[float] = typer.Option(None, "--duration", min=0.01, help="Override the scene duration (s)."),
    audio_dir: Optional[Path] = typer.Option(None, "--audio-dir", help="Your own audio: speech in speaker sub-folders, and/or class sub-folders (DIR/dog/*.wav) used by any signal named after them."),
    save_rirs: bool = typer.Option(False, "--save-rirs", help="Also write rirs.npz."),
    workers: Workers = None,
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="With --count: run the scenes on a Dask cluster at this address "
                                            "(tcp://host:8786), or 'local' for a local one; same files as a local run."),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the shipped presets and exit."),
    overwrite: Overwrite = False,
) -> None:
    """Simulate rooms into LuViRA-style recording folders (audio.wav, mics.csv, sources.csv, scene.yaml).

    [bold]Examples[/]

      sslkit simulate --preset luvira-sim --out rec/

      sslkit simulate --config dataset.yaml --count 500 --out data/ --seed 1

      sslkit simulate --preset tetra-seld --count 20000 --out data/ --scheduler tcp://scheduler:8786
    """
    from sslkit.sims import scene as scenes

    if list_presets:
        table = Table(title="Scene presets", title_justify="left")
        table.add_column("name", style="bold cyan")
        table.add_column("description")
        for name, desc in scenes.list_presets().items():
            table.add_row(name, desc)
        console.print(table)
        return
    if (preset is None) == (config is None):
        raise UserError("give exactly one of --preset or --config (or --list-presets)")
    for flag, value in (("--scheduler", scheduler), ("--workers", workers)):
        if value is not None and count is None:
            raise UserError(f"{flag} runs datasets: give --count N")
    if out is None:
        out = Path(preset) if preset else config.with_suffix("")
        if config is not None and config.name == "scene.yaml":
            out = config.parent.with_name(config.parent.name + "-resim")
    start = time.perf_counter()
    if count is None:
        simulate_single(preset or config, out, seed, duration, audio_dir, save_rirs, overwrite, start)
    else:
        simulate_many(preset or config, count, out, seed, duration, audio_dir, save_rirs, workers, overwrite, start, scheduler)


def simulate_single(scene, out: Path, seed: int, duration, audio_dir, save_rirs: bool, overwrite: bool, start: float) -> None:
    from sslkit.sims.simulate import simulate as run_simulation

    with console.status("simulating"):
        _, resolved = run_simulation(scene, out, seed=seed, duration=duration, audio_dir=audio_dir, save_rirs=save_rirs, overwrite=overwrite)
    elapsed = time.perf_counter() - start
    room = resolved.room
    console.print(summary_table(f"Simulated recording → {out}/", {
        "room": f"{' × '.join(f'{d:g}' for d in room.dimensions)} m",
        "RT60": f"{room.rt60:.2f} s" if room.rt60 else "from materials",
        "SNR": f"{resolved.snr_db:.1f} dB ({resolved.noise_kind})" if resolved.snr_db is not None else "noise-free",
        "channels": f"{len(resolved.mic_ids)}" + (" (last: near-source)" if resolved.near_source else ""),
        "sources": ", ".join(f"{s.signal.split(':')[0]} ({'moving' if s.moving else 'static'})" for s in resolved.sources),
        "duration": f"{resolved.duration:g} s",
        "time": f"{elapsed:.1f} s ({elapsed / resolved.duration:.2f} s per simulated second)",
    }))


def simulate_many(scene, count: int, out: Path, seed: int, duration, audio_dir, save_rirs: bool, workers, overwrite: bool, start: float,
                  scheduler: str | None) -> None:
    from sslkit.sims.dataset import check_dataset_folder, simulate_dataset
    from sslkit.sims.scene import errors_naming
    from sslkit.sims.simulate import scene_template

    audio = str(audio_dir) if audio_dir else None
    with errors_naming(scene):
        template = scene_template(scene, duration)
        present = check_dataset_folder(out, template, seed, audio, count, overwrite)
        if present:
            console.print(f"resuming: {present} of {count} scenes present in {out}/")
        with progress_bar() as progress:
            task = progress.add_task("simulating scenes", total=count)
            index = simulate_dataset(template, count, out, seed, workers, audio, save_rirs,
                                     on_progress=lambda done: progress.update(task, completed=done), overwrite=overwrite,
                                     scheduler=scheduler)
    console.print(summary_table(f"Simulated dataset → {out}/", {
        "scenes": count, "index": index, "time": f"{time.perf_counter() - start:.1f} s",
    }))
