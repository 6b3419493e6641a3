"""Import a LuViRA-layout folder (one mono wav per mic, positions in millimetres, motion-capture
ground truth) into an sslkit recording folder.

Expected inside the folder (names are matched case-insensitively):

- ``Track 1.wav`` … ``Track N.wav``: synchronised mono recordings (96 kHz in LuViRA). With one
  more track than mic positions, the last track is the near-source mic (LuViRA's 12th).
- a mic position table in mm: either one row per mic (``x,y,z`` or ``id,x,y,z``), or a
  motion-capture table with an x/y/z column triple per mic, of which the per-recording median
  is taken.
- a ground-truth table in mm: a time column (s; or a frame column with ``rate`` Hz) and the
  speaker's x/y/z columns.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslkit.errors import InputFileError, UserError
from sslkit.files import read_text
from sslkit.geometry import check_geometry
from sslkit.recording import Recording, SourceTrack

TRACK_PATTERN = re.compile(r"^track\s*(\d+)\.wav$", re.IGNORECASE)
NAMED_LINE = re.compile(r"^\s*mic\s*\d+\s*=", re.IGNORECASE)
"""The start of a ``micK = [x, y, z]`` line, to name one that does not go on as such."""
NAMED_POSITION = re.compile(r"^\s*mic\s*(\d+)\s*=\s*\[\s*([^,\]]+),\s*([^,\]]+),\s*([^,\]]+)\]\s*$", re.IGNORECASE)
"""A line of LuViRA's published ``microphone_locations.txt``: ``mic1 =  [2446.54, 1739.80, 1153.66]`` (mm)."""
MM_PER_M = 1000.0
MAX_TRUTH_GAP_S = 0.1
"""Ground truth is interpolated between motion-capture rows at most this far apart; within a longer
dropout the speaker's path is unknown and those times get no truth."""


@dataclass
class LuviraColumns:
    """Column names of the ground-truth table (None: detect)."""

    time: str | None = None
    x: str | None = None
    y: str | None = None
    z: str | None = None


def find_tracks(folder: Path) -> list[Path]:
    """``Track k.wav`` files sorted by k; they must be numbered 1..N without gaps."""
    if not folder.is_dir():
        raise InputFileError(folder, "no such folder" if not folder.exists() else "is a file; a LuViRA folder of 'Track N.wav' files is needed")
    tracks = {int(m.group(1)): p for p in folder.iterdir() if (m := TRACK_PATTERN.match(p.name))}
    if not tracks:
        raise InputFileError(folder, "no 'Track N.wav' files")
    if sorted(tracks) != list(range(1, len(tracks) + 1)):
        raise InputFileError(folder, f"track numbers {sorted(tracks)} are not 1..{len(tracks)}")
    return [tracks[k] for k in sorted(tracks)]


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """A delimited text table (comma, semicolon, tab or spaces) with a header → (names, float rows)."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    lines = [ln for ln in read_text(path).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(path, "file is empty")
    delimiter = next((d for d in ",;\t" if d in lines[0]), None)
    rows = list(csv.reader(lines, delimiter=delimiter)) if delimiter else [ln.split() for ln in lines]
    header = rows[0]
    has_header = any(not _is_number(c) for c in header)
    names = [h.strip() for h in header] if has_header else [f"c{i}" for i in range(len(header))]
    body = rows[1:] if has_header else rows
    try:
        values = np.array([[float(c) if c.strip() else np.nan for c in row] for row in body])
    except ValueError as err:
        raise InputFileError(path, f"non-numeric value ({err})") from None
    if values.ndim != 2 or values.shape[1] != len(names):
        raise InputFileError(path, "rows have different numbers of columns")
    return names, values


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def named_positions_mm(path: Path) -> np.ndarray | None:
    """Positions (n, 3) in mm from lines ``micK = [x, y, z]`` (LuViRA's ``microphone_locations.txt``,
    whose other lines are free text), ordered by K; None when the file has no such line."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    found = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if NAMED_LINE.match(line) and not NAMED_POSITION.match(line):
            raise InputFileError(path, f"line {number}: expected micK = [x, y, z], got {line.strip()[:60]}")
        if match := NAMED_POSITION.match(line):
            try:
                found[int(match.group(1))] = [float(v) for v in match.groups()[1:]]
            except ValueError:
                raise InputFileError(path, f"line {number}: mic {match.group(1)} has a non-numeric coordinate") from None
    if not found:
        return None
    if sorted(found) != list(range(1, len(found) + 1)):
        raise InputFileError(path, f"mic numbers {sorted(found)} are not 1..{len(found)}")
    return np.array([found[k] for k in sorted(found)])


def mic_positions_mm(path: Path, n_mics: int) -> np.ndarray:
    """(n_mics, 3) positions in mm from LuViRA's ``micK = [x, y, z]`` lines, a static table, or the
    median of a motion-capture table."""
    named = named_positions_mm(path)
    if named is not None:
        if len(named) != n_mics:
            raise InputFileError(path, f"lists {len(named)} microphones, but there are {n_mics} room tracks")
        return named
    names, values = read_table(path)
    if values.shape[0] == n_mics and values.shape[1] in (3, 4):
        return values[:, -3:]
    if values.shape[1] >= 3 * n_mics:
        triples = axis_triples(names)[:n_mics] if len(axis_triples(names)) >= n_mics else None
        cols = triples if triples is not None else [(3 * k, 3 * k + 1, 3 * k + 2) for k in range(n_mics)]
        return np.stack([np.nanmedian(values[:, list(t)], axis=0) for t in cols])
    raise InputFileError(path, f"expected {n_mics} rows of x,y,z or {n_mics} x/y/z column triples")


def axis_triples(names: list[str]) -> list[tuple[int, int, int]]:
    """Indices of consecutive columns named like '<prefix>x', '<prefix>y', '<prefix>z'."""
    low = [n.lower().strip() for n in names]
    return [(i, i + 1, i + 2) for i in range(len(low) - 2)
            if low[i].endswith("x") and low[i + 1].endswith("y") and low[i + 2].endswith("z")
            and low[i][:-1] == low[i + 1][:-1] == low[i + 2][:-1]]


def truth_mm(path: Path, columns: LuviraColumns, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and speaker positions (mm) from the ground-truth table."""
    names, values = read_table(path)
    index = {n.lower(): i for i, n in enumerate(names)}

    def col(name: str | None, what: str) -> int | None:
        if name is None:
            return None
        if name.lower() not in index:
            raise UserError(f"{path}: no column '{name}' for {what} (columns: {', '.join(names)})")
        return index[name.lower()]

    t_col = col(columns.time, "time")
    if t_col is None:
        t_col = next((i for n, i in index.items() if "time" in n), None)
    xyz = [col(columns.x, "x"), col(columns.y, "y"), col(columns.z, "z")]
    if None in xyz:
        triples = axis_triples(names)
        if not triples:
            raise UserError(f"{path}: cannot find x/y/z columns; name them with --map x=…,y=…,z=…")
        xyz = list(triples[0])
    times = values[:, t_col] if t_col is not None else np.arange(len(values)) / rate
    pos = values[:, xyz]
    keep = np.all(np.isfinite(pos), axis=1) & np.isfinite(times)
    if not keep.any():
        raise InputFileError(path, "no complete ground-truth rows")
    order = np.argsort(times[keep], kind="stable")  # rows in any order: interpolation needs them in time
    return times[keep][order], pos[keep][order]


def tracked(grid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Which ``grid`` times (s) lie on a motion-capture row's time or between two rows at most
    ``MAX_TRUTH_GAP_S`` apart (``times`` sorted). (G,) → (G,) bool."""
    after = np.clip(np.searchsorted(times, grid, side="right"), 1, len(times) - 1)
    on_row = np.isclose(grid, times[after - 1], rtol=0, atol=1e-9) | np.isclose(grid, times[after], rtol=0, atol=1e-9)
    return on_row | (times[after] - times[after - 1] <= MAX_TRUTH_GAP_S)


def import_luvira(folder: str | Path, mics_file: str | Path, truth_file: str | Path, fs: int = 16000,
                  columns: LuviraColumns | None = None, rate: float = 100.0, shift: np.ndarray | None = None,
                  truth_hop: float = 0.01) -> Recording:
    """Build a recording (audio resampled to ``fs``, metres, ground truth every ``truth_hop`` s)."""
    from sslkit.recording import read_audio, resample_audio

    folder = Path(folder)
    if not (np.isfinite(rate) and rate > 0):
        raise UserError(f"rate = {rate}: the motion capture's frame rate is a positive number of Hz")
    tracks = find_tracks(folder)
    shift = np.zeros(3) if shift is None else shift
    n_room = len(tracks)
    try:
        mics = mic_positions_mm(Path(mics_file), n_room) / MM_PER_M + shift
        near = False
    except InputFileError:
        mics = mic_positions_mm(Path(mics_file), n_room - 1) / MM_PER_M + shift
        near = True
    check_geometry(mics, mics_file)
    times, pos = truth_mm(Path(truth_file), columns or LuviraColumns(), rate)
    pos = pos / MM_PER_M + shift
    audio_in = [read_audio(p, allow_silent=True) for p in tracks]
    rates = {f for _, f in audio_in}
    if len(rates) != 1:
        raise InputFileError(folder, f"tracks have different sample rates {sorted(rates)}")
    src_fs = rates.pop()
    length = min(len(a) for a, _ in audio_in)
    stacked = np.stack([a[:length, 0] for a, _ in audio_in], axis=1)
    audio = resample_audio(stacked, src_fs, fs)
    grid = np.arange(max(0.0, times.min()), min(times.max(), length / src_fs), truth_hop)
    grid = grid[tracked(grid, times)]
    if not len(grid):
        raise InputFileError(truth_file, f"its times run from {times.min():.6g} to {times.max():.6g} s, outside the {length / src_fs:.6g} s of audio")
    track_xyz = np.stack([np.interp(grid, times, pos[:, k]) for k in range(3)], axis=1)
    truth = SourceTrack(grid, np.zeros(len(grid), int), track_xyz)
    if near:
        mics = np.vstack([mics, np.median(track_xyz, axis=0)])
    scene = {"imported_from": str(folder.resolve()), "fs": fs, "source_fs": src_fs, "near_source": near, "shift_m": shift.tolist()}
    ids = [str(k) for k in range(1, len(tracks) + 1)]
    return Recording(audio, fs, ids, mics, truth, scene)
