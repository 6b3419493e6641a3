"""The whole localization job on files: read a recording, locate its sources, write positions.csv
(plus a plot and estimated mic positions), and score against the recording's ground truth."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslkit.errors import GeometryError, SslkitWarning
from sslkit.files import check_output_file, output_file
from sslkit.localization.methods import locate
from sslkit.localization.region import search_bounds
from sslkit.localization.track import PositionTrack, write_positions
from sslkit.options import DEFAULT_METHOD
from sslkit.recording import Recording, load_recording

POSITIONS_FILE = "positions.csv"
ESTIMATED_MICS_FILE = "mics_estimated.csv"


@dataclass
class LocateRun:
    """What :func:`locate_files` did: the files written, the recording, the track, its seconds of
    work, and its metrics against ``sources.csv`` (:func:`sslkit.evaluation.evaluate_track`; None
    without ground truth, or with a warning when the truth cannot be compared, as in other units)."""

    positions: Path
    recording: Recording
    track: PositionTrack
    seconds: float
    metrics: dict | None = None
    plot: Path | None = None
    estimated_mics: Path | None = None


def locate_files(recording: str | os.PathLike, out: str | os.PathLike | None = None, mics: str | os.PathLike | None = None,
                 method: str = DEFAULT_METHOD, plot: bool = True, on_progress: Callable[[int, int], None] | None = None,
                 **options) -> LocateRun:
    """Locate the sources of a recording folder (or audio file with ``mics``) and write
    ``positions.csv`` at ``out`` (a file, or a folder to write inside; default: beside the input),
    with ``positions.png`` beside it when ``plot`` and ``mics_estimated.csv`` when wav2pos estimated
    mic positions. ``options`` are those of the method (see :func:`sslkit.locate`). Every output
    place is checked before any work."""
    from sslkit.evaluation import evaluate_track

    path = output_file(out, Path(recording), POSITIONS_FILE)
    png = check_output_file(path.with_suffix(".png")) if plot else None
    estimated = check_output_file(path.parent / ESTIMATED_MICS_FILE) if options.get("unknown_mics") else None
    rec = load_recording(recording, mics)
    import torch  # noqa: F401  (the methods import it lazily; the real-time factor counts the work, not the import)

    start = time.perf_counter()
    track = locate(rec, method, on_progress=on_progress, **options)
    seconds = time.perf_counter() - start
    write_positions(path, track)
    run = LocateRun(path, rec, track, seconds)
    if track.estimated_mics and estimated is not None:
        from sslkit.recording import write_mics

        write_mics(estimated, list(track.estimated_mics), np.array(list(track.estimated_mics.values())))
        run.estimated_mics = estimated
    if rec.sources is not None:
        try:
            run.metrics = evaluate_track(track, rec.sources, rec.mics, n_boot=200)
        except GeometryError as err:  # the localization stands; only its comparison with the truth cannot be made
            warnings.warn(SslkitWarning(f"not scored against sources.csv: {err}"))
    if png is not None:
        from sslkit.plots import plot_track

        plot_track(png, track, rec.mics, search_bounds(rec, options.get("bounds")), rec.sources, f"{method} — {Path(recording).name}")
        run.plot = png
    return run
