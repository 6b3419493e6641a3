"""The ``sslkit`` command line: a thin Typer layer over the library.

Each command parses options, calls one library function and prints a short rich summary. Any
:class:`~sslkit.errors.UserError` becomes a one-line ``error:`` message and exit code 2. Heavy
imports (torch, pyroomacoustics) happen inside the commands so that ``sslkit --help`` is fast.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sslkit import DEFAULT_METHOD, DEFAULT_WINDOW_S, MAX_SOURCES, __version__
from sslkit.errors import SslkitWarning, UserError


class OneLineUsageErrors(typer.core.TyperGroup):
    """Usage errors (unknown command or option, out-of-range value) as one ``error:`` line with
    exit code 2, like every other bad input."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            sys.exit(130)
        except Exception as err:
            if not hasattr(err, "format_message"):  # click's (or typer's vendored click's) exceptions have it
                raise
            if type(err).__name__ == "NoArgsIsHelpError":  # plain `sslkit`: the help, as --help gives it
                console.print(err.ctx.get_help(), highlight=False, markup=False)
                sys.exit(0)
            ctx = getattr(err, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            err_console.print(f"[bold red]error:[/] {escape(err.format_message())}{escape(where)}", highlight=False, soft_wrap=True)
            sys.exit(getattr(err, "exit_code", 2))
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="sslkit",
    help="Sound source localization on ad-hoc microphone arrays: simulate, TDOA, locate, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)


def user_errors(fn):
    """Run a command the way users see it: a UserError becomes one line on stderr and exit code 2,
    Ctrl-C one line saying what was kept and exit code 130, an sslkit warning one line, and
    other warnings (numpy's NaN arithmetic the library handles, libraries' notes) nothing."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's NaN arithmetic and libraries' notes are not the user's business
            warnings.simplefilter("always", SslkitWarning)
            warnings.showwarning = show_warning
            try:
                return fn(*args, **kwargs)
            except UserError as err:
                err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt as err:
                kept = str(err) or "nothing half written: every file is complete or absent"
                err_console.print(f"[bold red]interrupted:[/] {escape(kept)}", highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None

    return wrapper


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """One line per warning on stderr, without the source location."""
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"sslkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Sound source localization on ad-hoc microphone arrays."""
    from sslkit.allocator import keep_freed_memory

    keep_freed_memory()


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
    )


@contextlib.contextmanager
def labelled_progress():
    """A progress display whose callback ``status(label, done, total)`` keeps one bar per label."""
    with progress_bar() as progress:
        tasks: dict[str, int] = {}

        def status(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        yield status


def summary_table(title: str, rows: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


# ---------------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------------
@app.command()
@user_errors
def simulate(
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Shipped scene preset (see --list-presets)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Scene or dataset YAML (a scene.yaml re-simulates it)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: ./<preset>, or next to the YAML)."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Simulate a random dataset of N scenes."),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.01, help="Override the scene duration (s)."),
    audio_dir: Optional[Path] = typer.Option(None, "--audio-dir", help="Your own audio: speech in speaker sub-folders, and/or class sub-folders (DIR/dog/*.wav) used by any signal named after them."),
    save_rirs: bool = typer.Option(False, "--save-rirs", help="Also write rirs.npz."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes for datasets (default: all cores)."),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the shipped presets and exit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier sslkit output at --out (never a folder holding other files)."),
) -> None:
    """Simulate rooms into LuViRA-style recording folders (audio.wav, mics.csv, sources.csv, scene.yaml).

    [bold]Examples[/]

      sslkit simulate --preset luvira-sim --out rec/

      sslkit simulate --config dataset.yaml --count 500 --out data/ --seed 1
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
    template = scenes.load_template(preset or config)
    if duration is not None:
        template["duration"] = duration
    if out is None:
        out = Path(preset) if preset else config.with_suffix("")
        if config is not None and config.name == "scene.yaml":
            out = config.parent.with_name(config.parent.name + "-resim")
    audio = str(audio_dir) if audio_dir else None
    start = time.perf_counter()
    with scenes.errors_naming(preset or config):
        if count is None:
            _simulate_single(template, out, seed, audio, save_rirs, start, overwrite, [p for p in (config, audio_dir) if p])
        else:
            _simulate_dataset(template, count, out, seed, audio, save_rirs, workers, start, overwrite)


def _simulate_single(template: dict, out: Path, seed: int, audio_dir, save_rirs: bool, start: float, overwrite: bool, inputs: list[Path]) -> None:
    from sslkit.files import check_new_folder
    from sslkit.recording import save_recording
    from sslkit.sims.room import simulate as run_simulation
    from sslkit.sims.scene import resolve_scene

    check_new_folder(out, overwrite, inputs)
    scene = resolve_scene(template, seed, audio_dir=audio_dir)
    with console.status(f"simulating {scene.duration:g} s with {len(scene.mic_ids)} channels"):
        rec, rirs = run_simulation(scene, save_rirs)
        save_recording(out, rec, {"rirs.npz": rirs} if save_rirs else None, overwrite)
    elapsed = time.perf_counter() - start
    room = scene.room
    console.print(summary_table(f"Simulated recording → {out}/", {
        "room": f"{' × '.join(f'{d:g}' for d in room.dimensions)} m",
        "RT60": f"{room.rt60:.2f} s" if room.rt60 else "from materials",
        "SNR": f"{scene.snr_db:.1f} dB ({scene.noise_kind})" if scene.snr_db is not None else "noise-free",
        "channels": f"{len(scene.mic_ids)}" + (" (last: near-source)" if scene.near_source else ""),
        "sources": ", ".join(f"{s.signal.split(':')[0]} ({'moving' if len(s.waypoints) > 1 else 'static'})" for s in scene.sources),
        "duration": f"{scene.duration:g} s",
        "time": f"{elapsed:.1f} s ({elapsed / scene.duration:.2f} s per simulated second)",
    }))


def _simulate_dataset(template: dict, count: int, out: Path, seed: int, audio_dir, save_rirs: bool, workers, start: float, overwrite: bool) -> None:
    from sslkit.sims.dataset import check_dataset_folder, simulate_dataset

    present = check_dataset_folder(out, template, seed, audio_dir, count, overwrite)
    if present:
        console.print(f"resuming: {present} of {count} scenes present in {out}/")
    with progress_bar() as progress:
        task = progress.add_task("simulating scenes", total=count)
        index = simulate_dataset(
            template, count, out, seed, workers, audio_dir, save_rirs,
            on_progress=lambda done: progress.update(task, completed=done), overwrite=overwrite,
        )
    console.print(summary_table(f"Simulated dataset → {out}/", {
        "scenes": count, "index": index, "time": f"{time.perf_counter() - start:.1f} s",
    }))


# ---------------------------------------------------------------------------------------------
# bench-adpit
# ---------------------------------------------------------------------------------------------
def parse_int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} takes comma-separated integers, got '{text}'") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


def resolve_device(device: str) -> str:
    """``auto`` → cuda when available, else cpu; an unavailable cuda is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available (use --device cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda[:N], got '{device}'")
    return device


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
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed runs (median reported)."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs first."),
    max_memory_gb: float = typer.Option(4.0, "--max-memory-gb", help="Skip a variant whose largest tensor would exceed this."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random outputs and targets."),
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
    if min(n_list) < 2 or max(n_list) > MAX_TRACKS:
        raise UserError(f"--tracks takes numbers of tracks from 2 (one track has nothing to permute) to {MAX_TRACKS} "
                        f"(enumerating the sequences of 7 tracks does not fit in memory), got '{tracks}'")
    check_output_file(out)
    dev = resolve_device(device)
    table = Table(title=f"ADPIT forward + backward, B={batch} T={frames} A={axes} C={classes} on {dev}", title_justify="left")
    for col in ("N", "variant", "ms", "speed-up", "theory gain", "pairs/scope", "peak MB"):
        table.add_column(col, justify="right" if col != "variant" else "left", no_wrap=True)
    with progress_bar() as progress:
        task = progress.add_task("benchmarking", total=len(n_list) * 4)

        def show(row: dict) -> None:
            progress.advance(task)
            ms = "skipped" if row["seconds"] is None else f"{row['seconds'] * 1e3:.1f}"
            speed = "–" if row["speedup"] is None else f"{row['speedup']:.1f}×"
            peak = "–" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
            table.add_row(str(row["tracks"]), row["variant"], ms, speed, f"{row['theory_gain']:.1f}×", f"{row['pairs_per_scope']:.1f}", peak)

        results = benchmark_adpit(n_list, batch, frames, classes, axes, active, overlap, dev, warmup, repeats, max_memory_gb, seed, show)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    console.print(table)
    console.print(f"results → {out}")


# ---------------------------------------------------------------------------------------------
# tdoa
# ---------------------------------------------------------------------------------------------
def load_input(recording: Path, mics: Optional[Path]):
    """Read a recording once; return it whole and without its near-source channel (announced)."""
    from sslkit.recording import load_recording, room_channels

    full = load_recording(recording, mics)
    room = room_channels(full)
    if room.n_mics != full.n_mics:
        console.print(f"[dim]ignoring channel {full.mic_ids[-1]}: it is the near-source mic (moves with the source)[/]")
    return full, room


@app.command()
@user_errors
def tdoa(
    recording: Path = typer.Argument(..., help="Recording folder, or a multichannel audio file with --mics."),
    mics: Optional[Path] = typer.Option(None, "--mics", help="mics.csv (default: the one in the recording folder)."),
    method: str = typer.Option("gcc-phat", "--method", help="gcc-phat or ngcc."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="NGCC-PHAT checkpoint (default: the shipped one that covers the array)."),
    frame: int = typer.Option(2048, "--frame", min=16, help="Frame length in samples."),
    hop: int = typer.Option(1024, "--hop", min=1, help="Hop between frames in samples."),
    pairs: str = typer.Option("all", "--pairs", help="all, ref:K, or a list such as 1-2,1-3."),
    peaks: int = typer.Option(1, "--peaks", min=1, help="Peaks (TDOA candidates) per frame and pair."),
    min_separation: float = typer.Option(1e-4, "--min-separation", help="Minimum distance between peaks (s)."),
    max_tau: str = typer.Option("auto", "--max-tau", help="auto (from mic distances) or a bound in seconds."),
    weighting: str = typer.Option("phat", "--weighting", help="phat, beta-phat or cc (gcc-phat method)."),
    beta: float = typer.Option(0.7, "--beta", help="Exponent of beta-phat."),
    upsample: int = typer.Option(1, "--upsample", min=1, help="Correlation interpolation factor (gcc-phat)."),
    silence_db: float = typer.Option(40.0, "--silence-db", help="Frames this far below the loudest are flagged silent."),
    window: float = typer.Option(0.0, "--window", min=0.0, help="Average each frame's cross-spectra (ngcc: lag probabilities) over this "
                                 "many seconds centred on it before peak picking (0: the frame alone)."),
    static: bool = typer.Option(False, "--static", help="Average the whole recording: one set of TDOAs (a static source)."),
    c: float = typer.Option(343.0, "--c", help="Speed of sound (m/s)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output CSV, or a folder for tdoa.csv (default: beside the input)."),
) -> None:
    """Time differences of arrival per frame and mic pair → tdoa.csv.

    Columns: frame,time,mic_i,mic_j,rank,tdoa_s,delta_m,score with τᵢⱼ = tᵢ − tⱼ (positive: the
    sound reaches mic i later) and delta_m = c·τᵢⱼ. Silent frames have an empty (nan) tdoa.

    [bold]Example[/]

      sslkit tdoa demo-rec --peaks 4 --method gcc-phat
    """
    import numpy as np

    from sslkit.files import output_file
    from sslkit.recording import positions_at_times
    from sslkit.tdoa import TdoaOptions, estimate_tdoa, true_tdoa, write_tdoa_csv

    out = output_file(out, recording, "tdoa.csv")
    _, rec = load_input(recording, mics)
    opts = TdoaOptions(frame, hop, pairs, peaks, min_separation, max_tau, weighting, beta, upsample, silence_db, c,
                       resolve_device(device), str(checkpoint) if checkpoint else None, window=window, static=static)
    with progress_bar() as progress:
        task = progress.add_task(f"{method} TDOA", total=None)
        result = estimate_tdoa(rec, method, opts, on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    write_tdoa_csv(out, result, c)
    rows = {
        "frames": f"{len(result.times)} ({int(result.silent.sum())} silent)",
        "pairs": len(result.pairs),
        "peaks per pair": peaks,
    }
    if rec.sources is not None and not result.silent.all():
        truth = true_tdoa(positions_at_times(rec.sources, result.times), rec.mics, result.pairs, c)
        err = np.abs(result.tdoa[~result.silent, :, 0] - truth[~result.silent]) * c
        rows["accuracy @10 cm (vs sources.csv)"] = f"{np.mean(err < 0.1) * 100:.1f} %"
        rows["median |error|"] = f"{np.median(err) * 100:.1f} cm"
    console.print(summary_table(f"TDOA ({method}) → {out}", rows))


# ---------------------------------------------------------------------------------------------
# train-ngcc
# ---------------------------------------------------------------------------------------------
@app.command("train-ngcc")
@user_errors
def train_ngcc_command(
    scene: str = typer.Option("ngcc-train", "--scene", help="Preset or scene/dataset YAML to draw training rooms from."),
    out: Path = typer.Option(Path("runs/ngcc"), "--out", "-o", help="Run folder (checkpoints, metrics.csv, learning_curve.png)."),
    scenes: int = typer.Option(2000, "--scenes", min=1, help="Training rooms simulated (one window each per epoch)."),
    val_scenes: int = typer.Option(200, "--val-scenes", min=1, help="Validation rooms (disjoint draws)."),
    windows_per_scene: int = typer.Option(1, "--windows-per-scene", min=1, help="Windows drawn from each room per epoch."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine schedule)."),
    sigma: float = typer.Option(0.0, "--sigma", min=0, help="Gaussian label smoothing width in samples (0: one-hot)."),
    size: str = typer.Option("small", "--size", help="small (CPU-friendly), seld (Paper VI: C = 16 feature channels) or paper (Paper V: 128 sinc filters of 1023 taps)."),
    targets: int = typer.Option(1, "--targets", min=1, help="Output tracks K; K > 1 trains multi-target TDOA with ADPIT (Paper VI)."),
    adpit: str = typer.Option("bradpit", "--adpit", help="ADPIT implementation for --targets > 1."),
    audio_dir: Optional[Path] = typer.Option(None, "--audio-dir", help="Your own speech corpus instead of the bundled clips."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Simulation processes (default: all cores)."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an earlier sslkit run folder (deletes it)."),
) -> None:
    """Train NGCC-PHAT on simulated rooms (regression via classification over lags).

    [bold]Example[/]

      sslkit train-ngcc --scene ngcc-train --epochs 30 --out runs/ngcc --device auto

      sslkit train-ngcc --scene tetra-seld --targets 3 --out runs/ngcc-multi
    """
    from sslkit.models.train_ngcc import MODEL_SIZES, NgccTrainConfig, train_ngcc

    if size not in MODEL_SIZES:
        raise UserError(f"--size must be one of {', '.join(MODEL_SIZES)}, got '{size}'")
    from sslkit.models.adpit import VARIANTS

    if adpit not in VARIANTS:
        raise UserError(f"--adpit must be one of {', '.join(VARIANTS)}, got '{adpit}'")
    cfg = NgccTrainConfig(scene, scenes, val_scenes, windows_per_scene, epochs, batch_size, lr, sigma, targets, adpit, size=size, device=resolve_device(device),
                          seed=seed, workers=workers, audio_dir=str(audio_dir) if audio_dir else None)
    with labelled_progress() as status:
        final = train_ngcc(cfg, out, resume, status, overwrite=overwrite)
    console.print(summary_table(f"NGCC-PHAT training → {out}/", {
        "epochs": int(final.get("epoch", epochs)),
        "val accuracy @10 cm": f"{final.get('val_acc_10cm', float('nan')) * 100:.1f} %",
        "val MAE": f"{final.get('val_mae_cm', float('nan')):.2f} cm",
        "best checkpoint": out / "best.pt",
    }))


# ---------------------------------------------------------------------------------------------
# evaluate-tdoa
# ---------------------------------------------------------------------------------------------
@app.command("evaluate-tdoa")
@user_errors
def evaluate_tdoa_command(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="NGCC-PHAT checkpoint (default: the shipped one)."),
    scene: str = typer.Option("ngcc-test", "--scene", help="Test preset or YAML with grid T60 and SNR values."),
    snippets: int = typer.Option(40, "--snippets", min=1, help="Source position/signal draws replayed in every grid cell."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Simulation processes (default: all cores)."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("tdoa-eval"), "--out", "-o", help="Folder for cells.csv and summary.csv."),
) -> None:
    """Paper V's test protocol: GCC-PHAT vs NGCC-PHAT over the SNR × T60 grid (MAE, accuracy at 10 cm).

    [bold]Example[/]

      sslkit evaluate-tdoa --snippets 40 --out tdoa-eval
    """
    from sslkit.files import check_folder_to_fill, write_csv
    from sslkit.models.checkpoint import load_checkpoint, shipped_checkpoint
    from sslkit.models.eval_tdoa import evaluate_tdoa_protocol, summarize_by_rt60

    check_folder_to_fill(out, ("cells.csv", "summary.csv"))
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint or shipped_checkpoint("ngcc-phat"), dev, kind="ngcc-phat")
    with progress_bar() as progress:
        task = progress.add_task("grid cells", total=None)
        rows = evaluate_tdoa_protocol(model, scene, snippets, seed, dev, workers,
                                      on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    summary = summarize_by_rt60(rows)
    write_csv(out / "cells.csv", list(rows[0]), ([r[k] for k in rows[0]] for r in rows))
    write_csv(out / "summary.csv", list(summary[0]), ([r[k] for k in summary[0]] for r in summary))
    table = Table(title=f"TDOA test protocol ({scene}, {snippets} snippets per cell) → {out}/", title_justify="left")
    for col in ("T60 (s)", "GCC-PHAT MAE cm", "GCC-PHAT acc@10cm %", "NGCC-PHAT MAE cm", "NGCC-PHAT acc@10cm %", "windows"):
        table.add_column(col, justify="right")
    by_key = {(r["method"], r["rt60"]): r for r in summary}
    for rt60 in dict.fromkeys(r["rt60"] for r in summary):
        g, n = by_key[("gcc-phat", rt60)], by_key[("ngcc-phat", rt60)]
        table.add_row(str(rt60), f"{g['mae_cm']:.2f}", f"{g['acc_10cm']:.1f}", f"{n['mae_cm']:.2f}", f"{n['acc_10cm']:.1f}", str(g["n"]))
    console.print(table)


# ---------------------------------------------------------------------------------------------
# locate
# ---------------------------------------------------------------------------------------------
def parse_bounds(text: Optional[str]):
    import numpy as np

    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6 or any(lo >= hi for lo, hi in zip(values[:3], values[3:])):
        raise UserError(f"--bounds takes xmin,ymin,zmin,xmax,ymax,zmax with min < max, got '{text}'")
    return np.array([values[:3], values[3:]])


@app.command()
@user_errors
def locate(
    recording: Path = typer.Argument(..., help="Recording folder, or a multichannel audio file with --mics."),
    mics: Optional[Path] = typer.Option(None, "--mics", help="mics.csv (default: the one in the recording folder)."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", help="srp-phat (steered response power), multilat (robust RANSAC multilateration) "
                               "or wav2pos; see the README for the choice."),
    tdoa_source: str = typer.Option("gcc-phat", "--tdoa", help="multilat's TDOAs: gcc-phat, ngcc, or a tdoa.csv (ngcc and a file need --method multilat)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Model checkpoint (--tdoa ngcc, or --method wav2pos)."),
    use_mics: Optional[str] = typer.Option(None, "--use-mics", help="Use only these mic ids, e.g. 1,2,3,5,8."),
    known_source: bool = typer.Option(False, "--known-source", help="wav2pos: the near-source channel gives the source signal (setup 1b)."),
    unknown_mics: Optional[str] = typer.Option(None, "--unknown-mics", help="wav2pos: mic ids whose positions are unknown; writes mics_estimated.csv."),
    peaks: int = typer.Option(4, "--peaks", min=1, help="TDOA peaks per pair used by RANSAC."),
    frame: int = typer.Option(2048, "--frame", min=16, help="Frame length in samples."),
    hop: int = typer.Option(1024, "--hop", min=1, help="Hop in samples (one position per hop)."),
    pool: int = typer.Option(1, "--pool", min=1, help="Pool the TDOAs of N consecutive frames into one estimate."),
    dims: int = typer.Option(3, "--dims", min=2, max=3, help="3 (x, y, z) or 2 (x, y at --height)."),
    height: Optional[float] = typer.Option(None, "--height", help="Source height for --dims 2 (default: mean mic height)."),
    bounds: Optional[str] = typer.Option(None, "--bounds", help="Search box xmin,ymin,zmin,xmax,ymax,zmax (default: the room)."),
    threshold: float = typer.Option(0.1, "--threshold", min=0.001, help="RANSAC inlier threshold on range differences (m)."),
    hypotheses: int = typer.Option(400, "--hypotheses", min=1, help="RANSAC minimal sets per frame."),
    min_inliers: Optional[int] = typer.Option(None, "--min-inliers", min=1, help="Pairs needed to accept a frame (default: max(D+2, 20 % of pairs))."),
    smooth: int = typer.Option(0, "--smooth", min=0, help="Running-median smoothing over N frames (0: off)."),
    window: float = typer.Option(DEFAULT_WINDOW_S, "--window", min=0.0, help="multilat, srp-phat: average each hop's PHAT cross-spectra over "
                                 "this many seconds centred on it before peak picking or steering (0: the hop alone)."),
    static: bool = typer.Option(False, "--static", help="multilat, srp-phat: the source does not move; the whole recording is one window "
                                "and positions.csv has one row per source (at the mean time of the non-silent frames)."),
    sources: int = typer.Option(1, "--sources", min=1, max=MAX_SOURCES, help="multilat, srp-phat: locate up to K simultaneous sources per hop "
                                "(rows with track 0…K−1, strongest first)."),
    refine_radius: float = typer.Option(1.0, "--refine-radius", min=0.0, help="wav2pos: refine each estimate within this many metres by "
                                        "fitting the model's NGCC-PHAT lag distributions; confidence = the fit's (0: the network's estimate)."),
    start_window: int = typer.Option(9, "--start-window", min=1, help="wav2pos: the fit starts from the median of the network's estimates "
                                     "over N frames around each (1: each frame's own)."),
    views: int = typer.Option(8, "--views", min=0, help="wav2pos with --refine-radius 0: N extra passes that each hide 2 mics' audio; "
                                                       "confidence = exp(-their mean distance from the estimate / 20 cm) (0: confidence 1)."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write a PNG of the track beside the CSV."),
    c: float = typer.Option(343.0, "--c", help="Speed of sound (m/s)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of the RANSAC sampling and of wav2pos's views."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="positions.csv path, or a folder for it (default: beside the input)."),
) -> None:
    """Localize the sources in every hop → positions.csv (time,x,y,z,confidence,n_inliers,track) and a PNG.

    Frames without a consistent solution get NaN positions and confidence 0.

    [bold]Examples[/]

      sslkit locate demo-rec --plot

      sslkit locate rec --method srp-phat --static --sources 2

      sslkit locate --mics mics.csv rec.wav --method srp-phat --out rec_positions.csv

      sslkit locate demo-rec --method wav2pos --known-source --unknown-mics 3,7
    """
    import numpy as np

    from sslkit.evaluation import position_errors, summarize_errors
    from sslkit.files import check_output_file, output_file
    from sslkit.localize import LOCATE_METHODS, LocateOptions, default_bounds, write_positions
    from sslkit.localize import locate as run_locate
    from sslkit.plots import plot_track

    if method not in LOCATE_METHODS:
        raise UserError(f"unknown --method '{method}' (choose from {', '.join(LOCATE_METHODS)})")
    from sslkit.tdoa import TDOA_METHODS

    tdoa_csv = tdoa_source if tdoa_source not in TDOA_METHODS else None
    if tdoa_csv is not None and not tdoa_csv.endswith(".csv"):
        raise UserError(f"--tdoa must be one of {', '.join(TDOA_METHODS)} or a tdoa.csv file, got '{tdoa_source}'")
    out = output_file(out, recording, "positions.csv")
    for sibling in ([out.with_suffix(".png")] if plot else []) + ([out.parent / "mics_estimated.csv"] if unknown_mics else []):
        check_output_file(sibling)
    full, rec = load_input(recording, mics)
    if (known_source or unknown_mics) and method != "wav2pos":
        raise UserError("--known-source and --unknown-mics need --method wav2pos")
    if known_source and full.n_mics == rec.n_mics:
        raise UserError(f"{recording}: --known-source needs a near-source channel (scene.yaml near_source), and there is none")
    opts = LocateOptions(
        tdoa_method=tdoa_source if tdoa_csv is None else "gcc-phat", tdoa_csv=tdoa_csv, checkpoint=str(checkpoint) if checkpoint else None,
        frame=frame, hop=hop, peaks=peaks, pool=pool, dims=dims, height=height, bounds=parse_bounds(bounds), threshold=threshold,
        hypotheses=hypotheses, min_inliers=min_inliers, smooth=smooth, c=c, device=resolve_device(device), seed=seed,
        use_mics=use_mics.split(",") if use_mics else None, unknown_mics=unknown_mics.split(",") if unknown_mics else [],
        source_audio=full.audio[:, -1] if known_source else None, views=views, refine_radius=refine_radius, start_window=start_window,
        window=window, static=static, sources=sources,
    )
    start = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task(f"locating ({method})", total=None)
        track = run_locate(rec, method, opts, on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    elapsed = time.perf_counter() - start
    for warning in track.warnings:
        show_warning(warning, SslkitWarning, "", 0)
    write_positions(out, track)
    if track.estimated_mics:
        from sslkit.recording import write_mics

        estimated_path = out.parent / "mics_estimated.csv"
        write_mics(estimated_path, list(track.estimated_mics), np.array(list(track.estimated_mics.values())))
        console.print(f"estimated positions of mics {', '.join(track.estimated_mics)} → {estimated_path}")
    located = ~np.isnan(track.xyz).any(1)
    rows = {
        ("frames located" if track.track.max(initial=0) == 0 else "estimates located (hops × sources)"): f"{located.sum()} / {len(located)}",
        "median confidence": f"{np.median(track.confidence[located]):.2f}" if located.any() else "–",
        "real-time factor": f"{elapsed / rec.duration:.3f} ({elapsed:.1f} s for {rec.duration:.1f} s)",
    }
    if rec.sources is not None:
        metrics = summarize_errors(position_errors(track, rec.sources), 0.3, n_boot=200)
        if metrics["n"]:
            rows["MAE vs sources.csv (capped 3 m)"] = f"{metrics['mae_m'] * 100:.1f} cm"
            rows["accuracy @30 cm"] = f"{metrics['accuracy'] * 100:.1f} %"
        else:
            rows["vs sources.csv"] = "no hop falls in a source's active time"
    if plot:
        png = out.with_suffix(".png")
        plot_track(png, track, rec.mics, opts.bounds if opts.bounds is not None else default_bounds(rec), rec.sources, f"{method} — {recording.name}")
        rows["plot"] = str(png)
    console.print(summary_table(f"Located ({method}) → {out}", rows))


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------
@app.command()
@user_errors
def evaluate(
    pred: list[Path] = typer.Option(..., "--pred", help="positions.csv to score (repeat to compare several)."),
    truth: Path = typer.Option(..., "--truth", help="Ground truth sources.csv."),
    threshold: float = typer.Option(0.3, "--threshold", min=0.0001, help="Accuracy threshold (m)."),
    truncate: Optional[float] = typer.Option(3.0, "--truncate", help="Cap errors (and count missing estimates) at this many metres."),
    no_truncate: bool = typer.Option(False, "--no-truncate", help="Do not cap errors (missing estimates count as infinite)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10, help="Bootstrap resamples for the 95 % intervals."),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for metrics.json and error_cdf.png (default: beside the first --pred)."),
) -> None:
    """Score position estimates against ground truth: MAE, median, accuracy at a threshold, 95 % CIs.

    [bold]Example[/]

      sslkit evaluate --pred rec/positions.csv --pred rec/srp.csv --truth rec/sources.csv
    """
    import json

    import numpy as np

    from sslkit.evaluation import matched_errors, summarize_errors
    from sslkit.files import atomic_file, check_folder_to_fill
    from sslkit.localize import read_positions
    from sslkit.plots import plot_error_cdf
    from sslkit.recording import read_sources

    cap = None if no_truncate else truncate
    out = check_folder_to_fill(out or pred[0].parent, ("metrics.json", "error_cdf.png"))
    true_track = read_sources(truth)
    if len(true_track.time) == 0:
        raise UserError(f"{truth}: no ground-truth rows")
    results, errors = {}, {}
    for path in pred:
        track = read_positions(path)
        err, source = matched_errors(track, true_track, cap)
        if len(err) == 0:
            raise UserError(f"{path}: no estimate falls within the time span of {truth}")
        name = str(path)
        errors[name] = err
        results[name] = summarize_errors(err, threshold, bootstrap, seed, coverage=float(np.mean(~np.isnan(track.xyz).any(1))))
        if len(np.unique(source)) > 1:
            results[name]["per_source"] = {int(sid): summarize_errors(err[source == sid], threshold, bootstrap, seed) for sid in np.unique(source)}
    with atomic_file(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps({"truth": str(truth), "truncate_m": cap, "results": results}, indent=2))
    plot_error_cdf(out / "error_cdf.png", errors, threshold)
    table = Table(title=f"Localization metrics → {out / 'metrics.json'}", title_justify="left")
    for col in ("prediction", "n", "MAE cm (95 % CI)", "median cm", f"acc@{threshold * 100:.0f}cm % (95 % CI)", "located %"):
        table.add_column(col, justify="left" if col == "prediction" else "right", overflow="fold")
    for name, m in results.items():
        mae = f"{m['mae_m'] * 100:.1f}" + (f" ({m['mae_ci_m'][0] * 100:.1f}–{m['mae_ci_m'][1] * 100:.1f})" if m["mae_ci_m"] else "")
        acc = f"{m['accuracy'] * 100:.1f} ({m['accuracy_ci'][0] * 100:.1f}–{m['accuracy_ci'][1] * 100:.1f})"
        table.add_row(name, str(m["n"]), mae, f"{m['median_m'] * 100:.1f}", acc, f"{m['coverage'] * 100:.0f}")
        for sid, ms in m.get("per_source", {}).items():
            table.add_row(f"  source {sid}", str(ms["n"]), f"{ms['mae_m'] * 100:.1f}", f"{ms['median_m'] * 100:.1f}", f"{ms['accuracy'] * 100:.1f}", "")
    console.print(table)


# ---------------------------------------------------------------------------------------------
# train-wav2pos
# ---------------------------------------------------------------------------------------------
@app.command("train-wav2pos")
@user_errors
def train_wav2pos_command(
    data: Optional[list[Path]] = typer.Option(None, "--data", help="Recording folders with ground truth (repeatable); default: simulate --scene."),
    scene: str = typer.Option("luvira-frames", "--scene", help="Preset or YAML to simulate training rooms from (without --data)."),
    out: Path = typer.Option(Path("runs/wav2pos"), "--out", "-o", help="Run folder."),
    scenes: int = typer.Option(8000, "--scenes", min=1),
    val_scenes: int = typer.Option(400, "--val-scenes", min=1),
    windows_per_scene: int = typer.Option(1, "--windows-per-scene", min=1),
    min_mics: int = typer.Option(5, "--min-mics", min=2, help="Train on random mic subsets of this many mics up to all."),
    rotate: bool = typer.Option(False, "--rotate/--no-rotate", help="Turn and mirror each training scene at random (exact: distances are kept)."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(5e-4, "--lr"),
    masking: str = typer.Option("random", "--masking", help="source-only (fixed mics) or random (Paper VII rules)."),
    dim: int = typer.Option(256, "--dim", min=8, help="Embedding dimension d."),
    depth: int = typer.Option(4, "--depth", min=1, help="Transformer blocks D in encoder and decoder."),
    heads: int = typer.Option(8, "--heads", min=1, help="Attention heads (must divide --dim)."),
    ngcc: Optional[Path] = typer.Option(None, "--ngcc", help="Frozen NGCC-PHAT checkpoint for the TDOA module (none: raw audio only)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Fine-tune this wav2pos checkpoint (keeps its size and NGCC-PHAT; --dim/--depth/--heads/--ngcc unused)."),
    device: str = typer.Option("auto", "--device"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an earlier sslkit run folder (deletes it)."),
) -> None:
    """Train wav2pos (masked-autoencoder localization) on simulated rooms or your recordings.

    Multi-GPU: torchrun --nproc_per_node 4 -m sslkit train-wav2pos --device cuda ...

    [bold]Example[/]

      sslkit train-wav2pos --scene luvira-frames --ngcc runs/ngcc-luvira/best.pt --out runs/wav2pos

      sslkit train-wav2pos --data rec1 --data rec2 --init runs/wav2pos/best.pt --lr 1e-4 --out runs/wav2pos-real
    """
    from sslkit.models.train_wav2pos import MASKINGS, Wav2PosTrainConfig, train_wav2pos

    if masking not in MASKINGS:
        raise UserError(f"--masking must be one of {', '.join(MASKINGS)}")
    if dim % heads:
        raise UserError(f"--heads {heads} does not divide --dim {dim}")
    cfg = Wav2PosTrainConfig(scene=scene, data=[str(p) for p in data or []], scenes=scenes, val_scenes=val_scenes,
                             windows_per_scene=windows_per_scene, min_mics=min_mics, rotate=rotate, epochs=epochs, batch_size=batch_size, lr=lr, masking=masking,
                             dim=dim, depth=depth, heads=heads, ngcc=str(ngcc) if ngcc else None, init=str(init) if init else None,
                             device=resolve_device(device), seed=seed, workers=workers)
    with labelled_progress() as status:
        final = train_wav2pos(cfg, out, resume, status, overwrite=overwrite)
    console.print(summary_table(f"wav2pos training → {out}/", {
        "epochs": int(final.get("epoch", epochs)), "val MAE": f"{final.get('val_mae_cm', float('nan')):.1f} cm",
        "best checkpoint": out / "best.pt",
    }))


# ---------------------------------------------------------------------------------------------
# import-luvira
# ---------------------------------------------------------------------------------------------
@app.command("import-luvira")
@user_errors
def import_luvira_command(
    folder: Path = typer.Argument(..., help="Folder with 'Track 1.wav' … 'Track N.wav'."),
    mic_positions: Path = typer.Option(..., "--mic-positions", help="Mic positions in mm (static table or motion capture)."),
    truth: Path = typer.Option(..., "--truth", help="Speaker motion capture in mm (time + x/y/z columns)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Recording folder (default: <folder>-sslkit beside it)."),
    fs: int = typer.Option(16000, "--fs", min=1000, help="Output sample rate."),
    column_map: Optional[str] = typer.Option(None, "--map", help="Truth columns, e.g. time=Time,x=Speaker X,y=Speaker Y,z=Speaker Z."),
    rate: float = typer.Option(100.0, "--rate", help="Motion-capture rate (Hz) when the table has no time column."),
    shift: str = typer.Option("0,0,0", "--shift", help="Add this (x,y,z) in metres to every position."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier sslkit output at --out."),
) -> None:
    """Convert a LuViRA-layout folder into an sslkit recording folder.

    [bold]Example[/]

      sslkit import-luvira speech3/ --mic-positions microphone_locations.txt --truth speech3_mocap.csv --shift 3.5,4,0
    """
    import numpy as np

    from sslkit.files import check_new_folder
    from sslkit.luvira import LuviraColumns, import_luvira
    from sslkit.recording import save_recording

    columns = LuviraColumns()
    for item in (column_map.split(",") if column_map else []):
        key, _, name = item.partition("=")
        if key not in ("time", "x", "y", "z") or not name:
            raise UserError(f"--map entries are time=…, x=…, y=…, z=…; got '{item}'")
        setattr(columns, key, name)
    try:
        offset = np.array([float(v) for v in shift.split(",")])
    except ValueError:
        offset = np.zeros(0)
    if offset.shape != (3,):
        raise UserError(f"--shift takes x,y,z in metres, got '{shift}'")
    out = out or folder.with_name(folder.name + "-sslkit")
    check_new_folder(out, overwrite, [folder, mic_positions, truth])
    rec = import_luvira(folder, mic_positions, truth, fs, columns, rate, offset)
    save_recording(out, rec, overwrite=overwrite)
    console.print(summary_table(f"Imported LuViRA recording → {out}/", {
        "channels": f"{rec.n_mics}" + (" (last: near-source)" if rec.scene["near_source"] else ""),
        "duration": f"{rec.duration:.1f} s at {fs} Hz (from {rec.scene['source_fs']} Hz)",
        "ground truth": f"{len(rec.sources.time)} rows",
    }))


# ---------------------------------------------------------------------------------------------
# train-seld / evaluate-seld
# ---------------------------------------------------------------------------------------------
@app.command("train-seld")
@user_errors
def train_seld_command(
    data: Path = typer.Option(..., "--data", help="Folder of recording folders (simulate --preset tetra-seld --count N), or a DCASE folder with mic_dev/ and metadata_dev/."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation data in the same layout (default: the first fifth of --data)."),
    out: Path = typer.Option(Path("runs/seld"), "--out", "-o", help="Run folder."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="YAML list of class names (default: the 9 synthesized classes)."),
    features: str = typer.Option("logmel+gcc", "--features", help="logmel+gcc, logmel+ngcc (with --ngcc) or logmel."),
    ngcc: Optional[Path] = typer.Option(None, "--ngcc", help="Multi-target NGCC-PHAT for logmel+ngcc (default: the shipped tetrahedral-array one)."),
    loss: str = typer.Option("bradpit", "--loss", help="adpit (baseline), overlay, distance-first or bradpit: same loss, different speed."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    filters: int = typer.Option(64, "--filters", min=1, help="Convolution channels of the CRNN."),
    rnn_size: int = typer.Option(128, "--rnn-size", min=1, help="GRU width of the CRNN."),
    channel_swap: bool = typer.Option(True, "--channel-swap/--no-channel-swap", help="Augment with the array's channel-swap symmetries."),
    distance_unit: float = typer.Option(4.0, "--distance-unit", min=0.01, help="Metres per unit of the distance term in the loss (larger: less weight than the DOA)."),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an earlier sslkit run folder (deletes it)."),
) -> None:
    """Train a SELDnet CRNN with Multi-ACCDOA (+ distance) output; validates DCASE F_LD, DOAE, RDE each epoch.

    [bold]Example[/]

      sslkit simulate --preset tetra-seld --count 200 --out seld-data && sslkit train-seld --data seld-data --loss bradpit

    Multi-GPU: torchrun --nproc_per_node 4 -m sslkit train-seld --device cuda ...
    """
    import yaml

    from sslkit.models.adpit import VARIANTS
    from sslkit.models.train_seld import DEFAULT_CLASSES, SeldTrainConfig, seld_data_folders, train_seld

    variant = "baseline" if loss == "adpit" else loss
    if variant not in VARIANTS or variant == "brute-force":
        raise UserError(f"--loss must be adpit, overlay, distance-first or bradpit, got '{loss}'")
    if features not in ("logmel+gcc", "logmel+ngcc", "logmel"):
        raise UserError(f"--features must be logmel+gcc, logmel+ngcc or logmel, got '{features}'")
    names = yaml.safe_load(classes.read_text()) if classes else DEFAULT_CLASSES
    cfg = SeldTrainConfig(seld_data_folders(data), seld_data_folders(val) if val else [], list(names), features, variant, epochs,
                          batch_size, lr=lr, filters=filters, rnn_size=rnn_size, channel_swap=channel_swap, distance_unit=distance_unit,
                          ngcc=str(ngcc) if ngcc else None, device=resolve_device(device), seed=seed)
    with labelled_progress() as status:
        final = train_seld(cfg, out, status, resume, overwrite=overwrite)
    measured = final["f_ld"] == final["f_ld"]  # NaN: no events to validate on
    console.print(summary_table(f"SELD training → {out}/", {
        "epochs": final["epoch"],
        "F_LD (20°, rel. dist. 1.0)": f"{final['f_ld'] * 100:.1f} %" if measured else "not measured (no validation events)",
        "DOA error": f"{final['doae_deg']:.1f}°" if measured else "–",
        "relative distance error": f"{final['rde']:.2f}" if measured else "–",
    }))


@app.command("evaluate-seld")
@user_errors
def evaluate_seld_command(
    run: Optional[Path] = typer.Argument(None, help="A train-seld run folder: score its best.pt on its validation data."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="DCASE output CSV, or a folder of them (instead of RUN)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="DCASE metadata CSV, or a folder with the same file names."),
    n_classes: int = typer.Option(13, "--classes", min=1, help="Number of classes (with --pred)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="metrics JSON, or a folder for seld_metrics.json (default: in RUN or beside --pred)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (with RUN)."),
) -> None:
    """DCASE2024 SELD metrics: F-score (20°, relative distance 1.0), DOA error, relative distance error.

    [bold]Examples[/]

      sslkit evaluate-seld runs/seld
      sslkit evaluate-seld --pred outputs/ --truth metadata_dev/ --classes 13
    """
    import json

    from sslkit.files import atomic_file, output_file
    from sslkit.seld_metrics import read_dcase_csv, seld_metrics

    if run is None and (pred is None or truth is None):
        raise UserError("give a train-seld run folder, or both --pred and --truth")
    out = output_file(out, run if run is not None else (pred if pred.is_dir() else pred.parent), "seld_metrics.json")
    if run is not None:
        from sslkit.models.train_seld import evaluate_run

        metrics = evaluate_run(run, resolve_device(device))
    else:
        pred_files = sorted(pred.glob("*.csv")) if pred.is_dir() else [pred]
        truth_files = [truth / p.name for p in pred_files] if truth.is_dir() else [truth]
        if not pred_files:
            raise UserError(f"{pred}: no CSV files")
        metrics = seld_metrics([read_dcase_csv(p, n_classes) for p in pred_files], [read_dcase_csv(t, n_classes) for t in truth_files], n_classes)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    table = Table(title=f"SELD metrics → {out}", title_justify="left")
    for col in ("class", "F", "DOAE °", "RDE", "TP", "FP", "FN"):
        table.add_column(col, justify="right")
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    for c in metrics["per_class"]:
        table.add_row(str(c["class"]), fmt(c["f"], ".3f"), fmt(c["doae_deg"], ".1f"), fmt(c["rde"], ".2f"), str(c["tp"]), str(c["fp"]), str(c["fn"]))
    table.add_row("macro", f"{metrics['f_ld']:.3f}", f"{metrics['doae_deg']:.1f}", f"{metrics['rde']:.2f}", "", "", "", style="bold")
    console.print(table)


@app.command("predict-seld")
@user_errors
def predict_seld_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="best.pt of a train-seld run."),
    recordings: Path = typer.Argument(..., help="A recording folder, or a folder of them."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for DCASE output CSVs (default: <recordings>/seld-output)."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Write DCASE-format SELD predictions (frame,class,source,azimuth,elevation,distance) per recording.

    [bold]Example[/]

      sslkit predict-seld --checkpoint runs/seld/best.pt seld-test/ --out seld-output/
    """

    import torch

    from sslkit.files import check_folder_to_fill
    from sslkit.models.train_seld import load_seld_model, predict_clip
    from sslkit.recording import load_recording
    from sslkit.sims.seld_labels import write_dcase_csv

    folders = [recordings] if (recordings / "audio.wav").is_file() else sorted(p for p in recordings.glob("*") if (p / "audio.wav").is_file())
    if not folders:
        raise UserError(f"{recordings}: no recording folders")
    out = check_folder_to_fill(out or recordings / "seld-output", [f"{folder.name}.csv" for folder in folders])
    dev = resolve_device(device)
    model, meta, features, ngcc = load_seld_model(checkpoint, dev)
    with progress_bar() as progress:
        task = progress.add_task("predicting", total=len(folders))
        for folder in folders:
            rec = load_recording(folder)
            if rec.fs != meta["fs"]:
                raise UserError(f"{folder}: sample rate {rec.fs} Hz, the checkpoint expects {meta['fs']} Hz")
            extra = ngcc(torch.as_tensor(rec.audio.T[None], device=dev))[0] if ngcc is not None else None
            events = predict_clip(model, features, rec.audio, dev, extra)
            write_dcase_csv(out / f"{folder.name}.csv", events)
            progress.advance(task)
    console.print(f"{len(folders)} prediction files → {out}/ (classes: {', '.join(meta['classes'])})")
