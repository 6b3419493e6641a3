"""``sslkit locate`` and ``sslkit evaluate``: positions per hop, and their errors against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sslkit.cli.app import Device, Mics, Seed, SpeedOfSound, app, console, parse_floats, progress_bar, show_warning, summary_table, user_errors
from sslkit.errors import SslkitWarning, UserError
from sslkit.evaluation import THRESHOLD_M, TRUNCATE_M
from sslkit.options import (
    DEFAULT_FRAME_S,
    DEFAULT_HOP_S,
    DEFAULT_METHOD,
    DEFAULT_SNAPSHOT_S,
    DEFAULT_WINDOW_S,
    LOCATE_OPTIONS,
    MAX_SOURCES,
    MAX_VIEWS,
    TDOA_METHOD_NAMES,
    ArrayOptions,
    LocateOptions,
    MultilatOptions,
    SrpOptions,
    Wav2PosOptions,
    duration_help,
)

LIST_OPTIONS = ("use_mics", "unknown_mics")
"""Options given on the command line as comma-separated mic ids."""


def parse_bounds(text: str) -> list[list[float]]:
    values = parse_floats(text, "--bounds", 6, "xmin,ymin,zmin,xmax,ymax,zmax in metres")
    return [values[:3], values[3:]]


def given_options(ctx: typer.Context, values: dict) -> dict:
    """The library options of the flags given on the command line (not left at their defaults)."""
    given = {name: value for name, value in values.items() if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"}
    for name in LIST_OPTIONS:
        if name in given:
            given[name] = given[name].split(",")
    if "bounds" in given:
        given["bounds"] = parse_bounds(given["bounds"])
    if "checkpoint" in given:
        given["checkpoint"] = str(given["checkpoint"])
    return given


def method_options(method: str, given: dict) -> dict:
    """``given`` checked against the options of ``method``: a flag the method does not take is a UserError naming it."""
    from sslkit.options import option_names

    if method not in LOCATE_OPTIONS:
        raise UserError(f"unknown --method '{method}' (choose from {', '.join(LOCATE_OPTIONS)})")
    for name in given:
        if name not in option_names(LOCATE_OPTIONS[method]):
            takers = [m for m, options in LOCATE_OPTIONS.items() if name in option_names(options)]
            raise UserError(f"--{name.replace('_', '-')} does not apply to --method {method} (only to {' and '.join(takers)})")
    return given


@app.command()
@user_errors
def locate(
    ctx: typer.Context,
    recording: Path = typer.Argument(..., help="Recording folder, or a multichannel audio file with --mics."),
    mics: Mics = None,
    method: str = typer.Option(DEFAULT_METHOD, "--method", help=f"{', '.join(LOCATE_OPTIONS)}; see the README for the choice."),
    tdoa: str = typer.Option(MultilatOptions.tdoa, "--tdoa", help=f"multilat's TDOAs: {', '.join(TDOA_METHOD_NAMES)}, or a tdoa.csv file."),
    precision: str = typer.Option(MultilatOptions.precision, "--precision", help="multilat --tdoa ngcc and wav2pos: float32, or "
                                  "bfloat16 for NGCC-PHAT's convolutions (faster on CPUs with AVX-512 and recent GPUs; elsewhere emulated and much slower)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Model checkpoint (multilat --tdoa ngcc, or wav2pos; default: the shipped one)."),
    use_mics: Optional[str] = typer.Option(None, "--use-mics", help="Use only these mic ids, e.g. 1,2,3,5,8."),
    known_source: bool = typer.Option(False, "--known-source", help="wav2pos: the near-source channel gives the source signal (setup 1b)."),
    unknown_mics: Optional[str] = typer.Option(None, "--unknown-mics", help="wav2pos: mic ids whose positions are unknown; writes mics_estimated.csv."),
    peaks: int = typer.Option(MultilatOptions.peaks, "--peaks", min=1, help="multilat: TDOA peaks per pair used by RANSAC."),
    weighting: str = typer.Option(MultilatOptions.weighting, "--weighting", help="multilat: GCC weighting phat, beta-phat or cc."),
    max_freq: Optional[float] = typer.Option(None, "--max-freq", min=0.0, help="multilat (gcc-phat), srp-phat: highest frequency (Hz) of the "
                                             "PHAT cross-spectra (default: the whole band, or the occupied band of upsampled audio)."),
    taper: Optional[bool] = typer.Option(None, "--taper/--no-taper", help="multilat (gcc-phat), srp-phat: Hann-window each frame, against "
                                         "mains hum on every channel, or (--no-taper) keep it rectangular (default: a quarter of each frame "
                                         "tapered at its edges, Hann where hum is found: see docs/methods.md)."),
    beta: float = typer.Option(MultilatOptions.beta, "--beta", help="multilat: exponent of beta-phat."),
    max_tau: str = typer.Option(MultilatOptions.max_tau, "--max-tau", help="multilat: auto (from mic distances) or a TDOA bound in seconds."),
    frame: Optional[int] = typer.Option(None, "--frame", min=16, help=f"Frame length in samples (default: {duration_help(DEFAULT_FRAME_S)})."),
    hop: Optional[int] = typer.Option(None, "--hop", min=1, help=f"Hop in samples, one position per hop (default: {duration_help(DEFAULT_HOP_S)})."),
    pool: int = typer.Option(MultilatOptions.pool, "--pool", min=1, help="multilat: pool the TDOAs of N consecutive frames into one estimate."),
    dims: int = typer.Option(ArrayOptions.dims, "--dims", min=2, max=3, help="3 (x, y, z) or 2 (x, y at --height; directions: azimuths only)."),
    height: Optional[float] = typer.Option(None, "--height", help="Source height for --dims 2 (default: mean mic height)."),
    bounds: Optional[str] = typer.Option(None, "--bounds", help="Search box xmin,ymin,zmin,xmax,ymax,zmax (default: the room)."),
    final_step: float = typer.Option(SrpOptions.final_step, "--resolution", min=0.0005, help="srp-phat: side (m) of the search's finest cells."),
    beam: Optional[int] = typer.Option(None, "--beam", min=1, help="srp-phat: cells kept per search level, twice this (default 64, "
                                       "with --far-field 16; wider: closer to an exhaustive search in reverberant rooms, slower in proportion)."),
    snapshot: Optional[int] = typer.Option(None, "--snapshot", min=16, help="music, normmusic: samples per short-time spectrum (default: "
                                           f"{duration_help(DEFAULT_SNAPSHOT_S)})."),
    far_field: bool = typer.Option(False, "--far-field", help="srp-phat: directions of arrival (azimuth_deg, elevation_deg from the mics' "
                                   "centroid) for arrays small next to the sources' distance; positions are left empty."),
    threshold: float = typer.Option(MultilatOptions.threshold, "--threshold", min=0.001, help="multilat: RANSAC inlier threshold on range differences (m)."),
    hypotheses: int = typer.Option(MultilatOptions.hypotheses, "--hypotheses", min=1, help="multilat: RANSAC minimal sets per frame."),
    min_inliers: Optional[int] = typer.Option(None, "--min-inliers", min=1, help="multilat: pairs needed to accept a frame (default: max(D+2, 20 % of pairs))."),
    smooth: int = typer.Option(LocateOptions.smooth, "--smooth", min=0, help="Running-median smoothing over N frames (0: off)."),
    window: float = typer.Option(DEFAULT_WINDOW_S, "--window", min=0.0, help="average each hop's PHAT cross-spectra (music: covariances; "
                                 "wav2pos: the model's lag distributions, default 0 there) over this many seconds centred on it (0: the hop alone)."),
    static: bool = typer.Option(False, "--static", help="the source does not move; the whole recording is one window "
                                "and positions.csv has one row per source (at the mean time of the non-silent frames)."),
    sources: int = typer.Option(1, "--sources", min=1, max=MAX_SOURCES, help="multilat, srp-phat: locate up to K simultaneous sources per hop "
                                "(rows with track 0…K−1, strongest first)."),
    refine_radius: float = typer.Option(Wav2PosOptions.refine_radius, "--refine-radius", min=0.0, help="wav2pos: refine each estimate within this "
                                        "many metres by fitting the model's NGCC-PHAT lag distributions; confidence = the fit's (0: the network's estimate)."),
    start_window: int = typer.Option(Wav2PosOptions.start_window, "--start-window", min=1, help="wav2pos: the fit starts from the median of the "
                                     "network's estimates over N frames around each (1: each frame's own)."),
    views: int = typer.Option(Wav2PosOptions.views, "--views", min=0, max=MAX_VIEWS, help="wav2pos with --refine-radius 0: N extra passes that each hide 2 mics' audio; "
                              "confidence = exp(-their mean distance from the estimate / 20 cm) (0: confidence 1)."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write a PNG of the track beside the CSV."),
    c: SpeedOfSound = None,
    device: Device = "auto",
    seed: Seed = 0,
    out: Optional[str] = typer.Option(None, "--out", "-o", help="positions.csv path, or a folder for it (default: beside the input)."),
) -> None:
    """Localize the sources in every hop → positions.csv (time,x,y,z,confidence,n_inliers,track,azimuth_deg,elevation_deg) and a PNG.

    Frames without a consistent solution get NaN positions and confidence 0; far-field methods
    (--far-field, music, normmusic) give directions only.

    [bold]Examples[/]

      sslkit locate demo-rec --plot

      sslkit locate rec --method srp-phat --static --sources 2

      sslkit locate --mics mics.csv rec.wav --method srp-phat --out rec_positions.csv

      sslkit locate demo-rec --method wav2pos --known-source --unknown-mics 3,7

      sslkit locate sphere-rec --far-field --sources 4

      sslkit locate line-rec --dims 2 --height 0 --bounds 0,-1,-1,3,3,1

      sslkit locate line-rec --far-field --dims 2 --bounds 0,-1,-1,3,3,1
    """
    library = {name: value for name, value in locals().items() if name not in ("ctx", "recording", "mics", "method", "plot", "out", "device")}
    options = method_options(method, given_options(ctx, library))
    import numpy as np

    from sslkit.localization.job import locate_files

    with progress_bar() as progress:
        task = progress.add_task(f"locating ({method})", total=None)
        run = locate_files(recording, out, mics, method, plot, lambda done, total: progress.update(task, completed=done, total=total),
                           device=device, **options)
    rec, track = run.recording, run.track
    if rec.source_signal is not None:
        console.print(f"[dim]ignored channel {rec.n_mics + 1}: it is the near-source mic (moves with the source)[/]")
    for warning in track.warnings:
        show_warning(warning, SslkitWarning, "", 0)
    if run.estimated_mics:
        console.print(f"estimated positions of mics {', '.join(track.estimated_mics)} → {run.estimated_mics}")
    located = track.located
    rows = {
        ("frames located" if track.track.max(initial=0) == 0 else "estimates located (hops × sources)"): f"{located.sum()} / {len(located)}",
        "median confidence": f"{np.median(track.confidence[located]):.2f}" if located.any() else "–",
        "real-time factor": f"{run.seconds / rec.duration:.3f} ({run.seconds:.1f} s for {rec.duration:.1f} s)",
    }
    if run.metrics is not None:
        rows.update(metric_rows(run.metrics))
    if run.plot:
        rows["plot"] = str(run.plot)
    console.print(summary_table(f"Located ({method}) → {run.positions}", rows))


def angle_name(angular: dict) -> str:
    """What the angular errors of :func:`~sslkit.evaluation.evaluate_track` measure."""
    return "azimuth" if angular.get("horizontal") else "direction"


def metric_rows(metrics: dict) -> dict[str, str]:
    """Summary rows of a located track's metrics against sources.csv (:func:`~sslkit.evaluation.evaluate_track`):
    the positions' errors and the directions' where scored."""
    if not metrics["n"]:
        return {"vs sources.csv": "no hop falls in a source's active time"}
    rows = {}
    if "mae_m" in metrics:
        rows["MAE vs sources.csv (capped 3 m)"] = f"{metrics['mae_m'] * 100:.1f} cm"
        rows["accuracy @30 cm"] = f"{metrics['accuracy'] * 100:.1f} %"
    if metrics.get("angular", {}).get("n"):
        a = metrics["angular"]
        rows[f"{angle_name(a)} error vs sources.csv"] = f"median {a['median_deg']:.1f}°, {a['accuracy_deg'] * 100:.0f} % within {a['threshold_deg']:g}°"
    return rows


@app.command()
@user_errors
def evaluate(
    pred: list[Path] = typer.Option(..., "--pred", help="positions.csv to score (repeat to compare several)."),
    truth: Path = typer.Option(..., "--truth", help="Ground truth sources.csv."),
    threshold: float = typer.Option(THRESHOLD_M, "--threshold", min=0.0001, help="Accuracy threshold (m)."),
    truncate: Optional[float] = typer.Option(TRUNCATE_M, "--truncate", help="Cap errors (and count missing estimates) at this many metres."),
    no_truncate: bool = typer.Option(False, "--no-truncate", help="Do not cap errors (missing estimates count as infinite)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10, help="Bootstrap resamples for the 95 % intervals."),
    angular: Optional[bool] = typer.Option(None, "--angular/--no-angular", help="Also score directions seen from the array's centroid "
                                           "(default: when the sources are farther than 4 apertures)."),
    mics: Mics = None,
    seed: Seed = 0,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for metrics.json and error_cdf.png (default: beside the first --pred)."),
) -> None:
    """Score position estimates against ground truth: MAE, median, accuracy at a threshold, 95 % CIs.

    [bold]Example[/]

      sslkit evaluate --pred rec/positions.csv --pred rec/srp.csv --truth rec/sources.csv
    """
    from sslkit.evaluation import evaluate_files

    if no_truncate and truncate != TRUNCATE_M:
        raise UserError("--truncate and --no-truncate contradict each other: give one")
    out, results = evaluate_files(pred, truth, out, threshold, None if no_truncate else truncate, bootstrap, seed, mics, angular)
    table = Table(title=f"Localization metrics → {out / 'metrics.json'}", title_justify="left")
    for col in ("prediction", "n", "MAE cm (95 % CI)", "median cm", f"acc@{threshold * 100:.0f}cm % (95 % CI)", "located %"):
        table.add_column(col, justify="left" if col == "prediction" else "right", overflow="fold")
    for name, m in results.items():
        if "mae_m" not in m:  # directions only: scored by their directions, below
            table.add_row(name, str(m["n"]), "–", "–", "–", f"{m['coverage'] * 100:.0f}")
            continue
        mae = f"{m['mae_m'] * 100:.1f}" + (f" ({m['mae_ci_m'][0] * 100:.1f}–{m['mae_ci_m'][1] * 100:.1f})" if m["mae_ci_m"] else "")
        acc = f"{m['accuracy'] * 100:.1f} ({m['accuracy_ci'][0] * 100:.1f}–{m['accuracy_ci'][1] * 100:.1f})"
        table.add_row(name, str(m["n"]), mae, f"{m['median_m'] * 100:.1f}", acc, f"{m['coverage'] * 100:.0f}")
        for sid, ms in m.get("per_source", {}).items():
            table.add_row(f"  source {sid}", str(ms["n"]), f"{ms['mae_m'] * 100:.1f}", f"{ms['median_m'] * 100:.1f}", f"{ms['accuracy'] * 100:.1f}", "")
    console.print(table)
    for name, m in results.items():
        if m.get("angular", {}).get("n"):
            a = m["angular"]
            console.print(f"{name}: {angle_name(a)} error median {a['median_deg']:.1f}°, mean {a['mean_deg']:.1f}°, "
                          f"{a['accuracy_deg'] * 100:.0f} % within {a['threshold_deg']:g}°")
