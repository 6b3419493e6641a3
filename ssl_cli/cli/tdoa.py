"""``sslkit tdoa``: time differences of arrival per frame and mic pair."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sslkit.cli.app import Device, Mics, SpeedOfSound, app, console, progress_bar, summary_table, user_errors
from sslkit.options import DEFAULT_FRAME_S, DEFAULT_HOP_S, duration_help


@app.command()
@user_errors
def tdoa(
    recording: Path = typer.Argument(..., help="Recording folder, or a multichannel audio file with --mics."),
    mics: Mics = None,
    method: str = typer.Option("gcc-phat", "--method", help="gcc-phat or ngcc."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="NGCC-PHAT checkpoint (default: the shipped one that covers the array)."),
    frame: Optional[int] = typer.Option(None, "--frame", min=16, help=f"Frame length in samples (default: {duration_help(DEFAULT_FRAME_S)})."),
    hop: Optional[int] = typer.Option(None, "--hop", min=1, help=f"Hop between frames in samples (default: {duration_help(DEFAULT_HOP_S)})."),
    pairs: str = typer.Option("all", "--pairs", help="all, ref:K, or a list such as 1-2,1-3."),
    peaks: int = typer.Option(1, "--peaks", min=1, help="Peaks (TDOA candidates) per frame and pair."),
    min_separation: float = typer.Option(1e-4, "--min-separation", help="Minimum distance between peaks (s)."),
    max_tau: str = typer.Option("auto", "--max-tau", help="auto (from mic distances) or a bound in seconds."),
    weighting: str = typer.Option("phat", "--weighting", help="phat, beta-phat or cc (gcc-phat method)."),
    beta: float = typer.Option(0.7, "--beta", help="Exponent of beta-phat."),
    max_freq: Optional[float] = typer.Option(None, "--max-freq", min=0.0, help="gcc-phat: highest frequency (Hz) of the cross-spectra "
                                             "(default: the whole band, or the occupied band of upsampled audio)."),
    taper: Optional[bool] = typer.Option(None, "--taper/--no-taper", help="gcc-phat: Hann-window each frame, against mains hum on every "
                                         "channel, or (--no-taper) keep it rectangular (default: a quarter of each frame tapered at its "
                                         "edges, Hann where hum is found)."),
    upsample: int = typer.Option(1, "--upsample", min=1, help="Correlation interpolation factor (gcc-phat)."),
    silence_db: float = typer.Option(40.0, "--silence-db", help="Frames this far below the loudest are flagged silent."),
    window: float = typer.Option(0.0, "--window", min=0.0, help="Average each frame's cross-spectra (ngcc: lag probabilities) over this "
                                 "many seconds centred on it before peak picking (0: the frame alone)."),
    static: bool = typer.Option(False, "--static", help="Average the whole recording: one set of TDOAs (a static source)."),
    precision: str = typer.Option("float32", "--precision", help="ngcc: float32, or bfloat16 for the network's convolutions (faster on CPUs with AVX-512 and recent GPUs; "
                                 "elsewhere emulated and much slower)."),
    c: SpeedOfSound = None,
    device: Device = "auto",
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output CSV, or a folder for tdoa.csv (default: beside the input)."),
) -> None:
    """Time differences of arrival per frame and mic pair → tdoa.csv.

    Columns: frame,time,mic_i,mic_j,rank,tdoa_s,delta_m,score with τᵢⱼ = tᵢ − tⱼ (positive: the
    sound reaches mic i later) and delta_m = c·τᵢⱼ. Silent frames have an empty (nan) tdoa.

    [bold]Example[/]

      sslkit tdoa demo-rec --peaks 4 --method gcc-phat
    """
    from sslkit.tdoa import TDOA_ACCURACY_M, tdoa_files

    with progress_bar() as progress:
        task = progress.add_task(f"{method} TDOA", total=None)
        run = tdoa_files(recording, out, mics, method, lambda done, total: progress.update(task, completed=done, total=total),
                         checkpoint=str(checkpoint) if checkpoint else None, frame=frame, hop=hop, pairs=pairs, peaks=peaks,
                         min_separation_s=min_separation, max_tau=max_tau, weighting=weighting, beta=beta, upsample=upsample,
                         silence_db=silence_db, window=window, static=static, c=c, device=device,
                         precision=precision, max_freq=max_freq, taper=taper)
    result = run.result
    if run.recording.source_signal is not None:
        console.print(f"[dim]ignored channel {run.recording.n_mics + 1}: it is the near-source mic (moves with the source)[/]")
    rows = {
        "frames": f"{len(result.times)} ({int(result.silent.sum())} silent)",
        "pairs": len(result.pairs),
        "peaks per pair": peaks,
    }
    summary = run.error_summary()
    if summary is not None:
        rows[f"accuracy @{TDOA_ACCURACY_M * 100:g} cm (vs sources.csv)"] = f"{summary['accuracy'] * 100:.1f} %"
        rows["median |error|"] = f"{summary['median_m'] * 100:.1f} cm"
    console.print(summary_table(f"TDOA ({method}) → {run.csv}", rows))
