"""Import LOCATA challenge recordings (Evers et al., IEEE/ACM TASLP 2020) into sslkit recording folders.

The challenge's layout: ``<task>/<recording>/<array>/`` folders (``task1/recording1/dicit/``),
each holding

- ``audio_array_<array>.wav``: the array's channels;
- ``audio_array_timestamps_<array>.txt``: a header ``year month day hour minute second`` (tab
  separated) and the time of each audio sample, so its first row is when the audio starts;
- ``position_array_<array>.txt``: the same time columns, the array's ``x y z``, ``ref_vec_*``,
  ``rotation_11`` … ``rotation_33`` and every mic's ``mic<k>_x mic<k>_y mic<k>_z`` (metres, room frame);
- ``position_source_<name>.txt`` (development set): the time columns and the source's ``x y z``.

Positions become seconds from the start of the audio. sslkit's mics are static: a recording whose
mics move (tasks 5 and 6) is refused.
"""

from __future__ import annotations

import datetime
import re
import warnings
from pathlib import Path

import numpy as np

from sslkit.errors import InputFileError, SslkitWarning
from sslkit.geometry import check_geometry
from sslkit.recording import Recording, SourceTrack, read_audio

TIME_COLUMNS = ("year", "month", "day", "hour", "minute", "second")
MOVING_MIC_M = 0.05
"""Mics whose recorded positions spread over more than this (m) move: sslkit cannot take them."""


def read_locata_table(path: Path) -> tuple[list[str], np.ndarray]:
    """A tab-separated LOCATA table with a header row → (column names, float rows)."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        raise InputFileError(path, "needs a header row and at least one data row")
    names = lines[0].split()
    try:
        values = np.array([[float(v) for v in line.split()] for line in lines[1:]])
    except ValueError as err:
        raise InputFileError(path, f"non-numeric value ({err})") from None
    if values.ndim != 2 or values.shape[1] != len(names):
        raise InputFileError(path, f"rows do not have the header's {len(names)} columns")
    missing = [c for c in TIME_COLUMNS if c not in names]
    if missing:
        raise InputFileError(path, f"no '{missing[0]}' column")
    return names, values


def date_ordinal(year: float, month: float, day: float, path: Path, line: int) -> int:
    """The ordinal of a date read from ``line`` of ``path``; an error naming them when it is no calendar date."""
    try:
        return datetime.date(int(year), int(month), int(day)).toordinal()
    except (ValueError, OverflowError):
        raise InputFileError(path, f"line {line}: year {year:g}, month {month:g}, day {day:g} is not a date") from None


def seconds(names: list[str], values: np.ndarray, day0: int, path: Path) -> np.ndarray:
    """Times (s) of the rows of the LOCATA table ``path`` since the start of day ``day0`` (a date
    ordinal), from its year … second columns (counted from a nearby day, so that float64 keeps
    microseconds)."""
    year, month, day, hour, minute, second = (values[:, names.index(c)] for c in TIME_COLUMNS)
    unique, first, inverse = np.unique(np.stack([year, month, day], axis=1), axis=0, return_index=True, return_inverse=True)
    days = np.array([date_ordinal(*date, path, line=row + 2) - day0 for date, row in zip(unique, first)], dtype=float)  # line 1 is the header
    return days[inverse.ravel()] * 86400 + hour * 3600 + minute * 60 + second


def audio_start(path: Path) -> tuple[int, float]:
    """The date (ordinal) and time of day (s) of the first audio sample, from the first row of the audio timestamps."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    with open(path, errors="replace") as f:
        head = [next(f, ""), next(f, "")]
    names, row = head[0].split(), head[1].split()
    try:
        values = np.array([[float(v) for v in row]])
    except ValueError:
        raise InputFileError(path, "the first data row is not numeric") from None
    if values.shape[1] != len(names) or any(c not in names for c in TIME_COLUMNS):
        raise InputFileError(path, "expected a year month day hour minute second header and one row per sample")
    day0 = date_ordinal(*(values[0, names.index(c)] for c in TIME_COLUMNS[:3]), path, line=2)
    return day0, float(seconds(names, values, day0, path)[0])


def array_mics(path: Path) -> np.ndarray:
    """Static mic positions (M, 3): the median over the rows of ``position_array_<array>.txt``."""
    names, values = read_locata_table(path)
    numbers = sorted({int(m.group(1)) for n in names if (m := re.fullmatch(r"mic(\d+)_x", n))})
    if not numbers or numbers != list(range(1, len(numbers) + 1)):
        raise InputFileError(path, "no mic1_x … micM_x columns numbered 1..M")
    xyz = np.stack([values[:, [names.index(f"mic{k}_{a}") for a in "xyz"]] for k in numbers], axis=1)  # (rows, M, 3)
    spread = float(np.max(xyz.max(axis=0) - xyz.min(axis=0)))
    if spread > MOVING_MIC_M:
        raise InputFileError(path, f"the mics move ({spread:.2f} m over the recording); sslkit localizes with static mics only")
    return np.median(xyz, axis=0)


def source_track(paths: list[Path], start: tuple[int, float], duration: float) -> SourceTrack | None:
    """Ground truth from ``position_source_<name>.txt`` files (ids in their name order), times from
    ``start`` (the audio's date ordinal and time of day). Rows without a position (a tracking
    dropout: NaN) are left out with a warning; a file none of whose times falls within the
    ``duration`` seconds of audio is an error."""
    times, ids, xyz = [], [], []
    for sid, path in enumerate(paths):
        names, values = read_locata_table(path)
        if any(c not in names for c in "xyz"):
            raise InputFileError(path, "no x, y, z columns")
        t, position = seconds(names, values, start[0], path) - start[1], values[:, [names.index(c) for c in "xyz"]]
        known = np.isfinite(position).all(axis=1) & np.isfinite(t)
        if not known.all():
            warnings.warn(SslkitWarning(f"{path}: {int((~known).sum())} of {len(t)} rows have no position and are left out"), stacklevel=2)
        if not np.any((t[known] >= 0) & (t[known] <= duration)):
            raise InputFileError(path, f"none of its times falls within the {duration:.3g} s of audio (they run from {np.nanmin(t):.6g} "
                                       f"to {np.nanmax(t):.6g} s after its first sample)")
        times.append(t[known])
        ids.append(np.full(int(known.sum()), sid))
        xyz.append(position[known])
    if not paths:
        return None
    return SourceTrack(np.concatenate(times), np.concatenate(ids), np.concatenate(xyz))


def import_locata(folder: str | Path, fs: int | None = None) -> Recording:
    """One LOCATA ``<task>/<recording>/<array>/`` folder as a recording (resampled to ``fs`` Hz when given)."""
    folder = Path(folder)
    array = folder.name
    mics = array_mics(folder / f"position_array_{array}.txt")
    check_geometry(mics, folder / f"position_array_{array}.txt")
    audio, rate = read_audio(folder / f"audio_array_{array}.wav")
    if len(mics) != audio.shape[1]:
        raise InputFileError(folder / f"audio_array_{array}.wav", f"has {audio.shape[1]} channels but position_array_{array}.txt lists {len(mics)} mics")
    start = audio_start(folder / f"audio_array_timestamps_{array}.txt")
    source_files = sorted(folder.glob("position_source_*.txt"))
    names = [p.stem.removeprefix("position_source_") for p in source_files]
    scene = {"imported_from": str(folder.resolve()), "dataset": "LOCATA", "array": array, "source_names": names, "source_fs": rate, "fs": fs or rate}
    rec = Recording(audio, rate, [str(k + 1) for k in range(len(mics))], mics, source_track(source_files, start, len(audio) / rate), scene, folder)
    return rec.resampled(fs) if fs else rec


def locata_folders(root: str | Path) -> list[Path]:
    """The ``<array>`` folders (those holding an ``audio_array_<array>.wav``) under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(root, "no such folder" if not root.exists() else "is a file; a LOCATA folder is needed")
    found = sorted(p.parent for p in root.rglob("audio_array_*.wav") if p.name == f"audio_array_{p.parent.name}.wav")
    if not found:
        raise InputFileError(root, "no LOCATA recordings (<task>/<recording>/<array>/audio_array_<array>.wav)")
    return found


def import_locata_folders(root: str | Path, out: str | Path, fs: int | None = None, overwrite: bool = False, on_progress=None) -> list[Path]:
    """Every LOCATA ``<array>`` folder under ``root`` as a recording folder ``out/<task>-<recording>-<array>``;
    all places are checked before any is written, and a failure removes the folders already
    written. Returns the folders written."""
    from sslkit.files import check_new_folder, remove_sslkit_folder
    from sslkit.recording import save_recording

    folders = locata_folders(root)
    targets = [Path(out) / "-".join(folder.parts[-3:]) for folder in folders]
    for target in targets:
        check_new_folder(target, overwrite, [Path(root)])
    written, out_existed = [], Path(out).exists()
    try:
        for done, (folder, target) in enumerate(zip(folders, targets), 1):
            save_recording(target, import_locata(folder, fs), overwrite=overwrite)
            written.append(target)
            if on_progress:
                on_progress(done, len(folders))
    except BaseException:  # a later folder failed (or Ctrl-C): take back what this run wrote, so that nothing is half imported
        for target in [Path(out)] if not out_existed and Path(out).is_dir() else written:  # a folder this run made is all its own
            remove_sslkit_folder(target)
        raise
    return targets
