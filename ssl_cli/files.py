"""Files sslkit reads and writes, and the rule that protects the user's own files.

Writes are atomic: a temporary name beside the target, renamed onto it when complete, so an
interrupted or failed command never leaves a half-written file or folder behind.

sslkit never deletes or overwrites what it did not write. Every folder it writes into holds a
manifest, ``.sslkit-outputs``, to which the name of each file or folder it writes there is
appended. An existing file may be replaced only when its folder's manifest lists it; an existing
folder only when it is empty, or, with ``overwrite``, when every entry in it is listed in its own
manifest, and never the current folder, one of its parents, or a folder holding an input.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import yaml

from sslkit.errors import InputFileError, OutputError

MANIFEST = ".sslkit-outputs"
"""Per-folder list of the names sslkit wrote there (one per line, appended)."""


# ---------------------------------------------------------------------------------------------
# Ownership: which files and folders sslkit wrote
# ---------------------------------------------------------------------------------------------
def written_here(folder: Path) -> set[str]:
    """Names of the entries of ``folder`` that sslkit wrote (its manifest)."""
    try:
        return set((folder / MANIFEST).read_text().split("\n")) - {""}
    except OSError:
        return set()


def register_output(path: Path) -> None:
    """Append ``path``'s name to its folder's manifest (appends are atomic, so workers may share it)."""
    if path.name not in written_here(path.parent):
        with open(path.parent / MANIFEST, "a") as f:
            f.write(path.name + "\n")


def foreign_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` that sslkit did not write, sorted."""
    ours = written_here(folder) | {MANIFEST}
    return sorted(p.name for p in folder.iterdir() if p.name not in ours)


def check_only_ours(folder: Path, consequence: str = "choose another --out (nothing was changed)") -> None:
    """OutputError naming the first entry of ``folder`` that sslkit did not write, if any."""
    foreign = foreign_entries(folder)
    if foreign:
        raise OutputError(f"{folder}: holds '{foreign[0]}', which sslkit did not write; {consequence}")


# ---------------------------------------------------------------------------------------------
# Checks made before any work, so a bad --out fails in a second and not after minutes
# ---------------------------------------------------------------------------------------------
def check_place(path: Path) -> None:
    """``path`` (which need not exist) can be created: no file on its way, and its nearest
    existing folder accepts new files."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{path}: cannot write there, {ancestor} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sslkit-probe.", dir=ancestor)
    except OSError as err:
        raise OutputError(f"{path}: cannot write in {ancestor} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: Path) -> Path:
    """Check before work that ``path`` can be written: writable place, and not an existing folder
    or a file sslkit did not write. Returns ``path``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    check_place(path)
    check_replaceable_file(path)
    return path


def check_replaceable_file(path: Path) -> None:
    """OutputError when ``path`` exists and sslkit did not write it."""
    if path.exists() and path.name not in written_here(path.parent):
        raise OutputError(f"{path}: exists and was not written by sslkit; choose another --out (nothing was changed)")


def output_file(out: str | os.PathLike | None, source: Path, default_name: str) -> Path:
    """Where a command writes the file ``default_name``, checked before work.

    ``out`` None: inside the recording folder ``source`` (or beside the audio file it names); a
    name with the extension of ``default_name``: that file; anything else (an existing folder, a
    name ending in a slash or without that extension): inside that folder.
    """
    if out is None:
        path = Path(source) / default_name if Path(source).is_dir() else Path(source).parent / default_name
    elif str(out).endswith(("/", os.sep)) or Path(out).is_dir() or Path(out).suffix.lower() != Path(default_name).suffix.lower():
        path = Path(out) / default_name
    else:
        path = Path(out)
    return check_output_file(path)


def check_new_folder(path: Path, overwrite: bool = False, inputs: Iterable[Path] = ()) -> None:
    """Check before work that ``path`` can be written whole as a new folder (see module docstring)."""
    path = Path(path)
    check_place(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{path}: is a file; a folder is needed")
    check_replaceable(path, inputs)
    if not any(path.iterdir()):
        return
    check_only_ours(path)
    if not overwrite:
        raise OutputError(f"{path}: exists (an earlier sslkit output); pass --overwrite to replace it")


def check_replaceable(path: Path, inputs: Iterable[Path] = ()) -> None:
    """Refuse to replace the current folder, one of its parents, or a folder holding an input."""
    target = path.resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise OutputError(f"{path}: is the current folder or one of its parents; sslkit never replaces it")
    for item in inputs:
        resolved = Path(item).resolve()
        if target == resolved or target in resolved.parents:
            raise OutputError(f"{path}: holds the input {item}; choose another --out")


def check_folder_to_fill(path: Path, names: Iterable[str] = ()) -> Path:
    """Check before work that files can be written inside the folder ``path`` (existing or not),
    and that each of ``names`` there may be written (:func:`check_output_file`). Returns ``path``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file; a folder is needed")
    check_place(path / "x")
    for name in names:
        check_output_file(path / name)
    return path


def remove_sslkit_folder(path: Path) -> None:
    """Delete ``path`` only if sslkit wrote everything in it (else OutputError)."""
    check_replaceable(path)
    check_only_ours(path, "nothing was deleted")
    shutil.rmtree(path)


def remove_temporaries(folder: Path, prefix: str) -> None:
    """Delete the temporary files and folders of interrupted atomic writes of ``prefix*`` in ``folder``."""
    for item in folder.glob(f".{prefix}*"):
        shutil.rmtree(item) if item.is_dir() else item.unlink()


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An existing ``path`` that sslkit did not write is never replaced (OutputError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable_file(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        register_output(path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    An existing non-empty ``path`` is replaced only with ``overwrite`` and only if sslkit wrote
    everything in it (see :func:`check_new_folder`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_new_folder(path, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        (tmp / MANIFEST).touch()
        os.chmod(tmp, 0o777 & ~_umask())
        register_output(path)
        if path.exists() and any(path.iterdir()):
            remove_sslkit_folder(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# CSV and YAML
# ---------------------------------------------------------------------------------------------
def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterator | Sequence) -> None:
    """Write a CSV file atomically; floats are written with 6 significant decimals."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_format_cell(v) for v in row])


def _format_cell(value: object) -> object:
    if isinstance(value, (float, np.floating)):
        return "nan" if np.isnan(value) else f"{value:.6f}".rstrip("0").rstrip(".") or "0"
    return value


def write_yaml(path: str | os.PathLike, data: dict) -> None:
    """Write a YAML file atomically, keys in insertion order."""
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(plain(data), sort_keys=False))


def read_yaml(path: str | os.PathLike) -> object:
    """Parse a YAML file; a syntax error names the file and line (InputFileError)."""
    path = Path(path)
    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputFileError(path, f"invalid YAML ({where}{problem})") from None


def read_text(path: Path) -> str:
    """A text file's content, read as UTF-8 whatever the locale (a leading byte-order mark, as
    spreadsheets write, is dropped); unreadable or non-UTF-8 files are InputFileError."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(path, "not a text file (invalid UTF-8)") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read ({err.strerror or err})") from None


def plain(obj: object) -> object:
    """Convert numpy scalars/arrays and paths to YAML-safe builtins."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def first_difference(old: object, new: object, where: str = "") -> str | None:
    """The first place where two records (nested dicts) differ, as 'KEY.SUBKEY = OLD (not NEW)', or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in dict.fromkeys([*old, *new]):
            found = first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if old != new:
        return f"{where or 'the record'} = {_short(old)} (not {_short(new)})"
    return None


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_table(path: Path, required: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Read a CSV with a header, skipping '#' comment lines; check that ``required`` columns exist."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    lines = [ln for ln in read_text(path).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(path, "file is empty")
    try:
        rows = list(csv.reader(lines))
    except csv.Error as err:
        raise InputFileError(path, f"not a valid CSV ({err})") from None
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing and len(header) == 1 and ";" in header[0]:
        raise InputFileError(path, f"columns are separated by ';' (header {header[0][:80]}); sslkit reads comma-separated values")
    if missing:
        raise InputFileError(path, f"missing column(s) {', '.join(missing)} (header is {','.join(header)[:80]})")
    return header, rows[1:]


def read_csv_columns(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Numeric columns of a CSV by name; 'nan' and empty cells become NaN, other text is an error."""
    header, rows = read_table(path, required)
    names = [*required, *(c for c in optional if c in header)]
    columns = [header.index(n) for n in names]
    values = np.empty((len(rows), len(names)))
    for r, row in enumerate(rows):
        try:
            values[r] = [float(row[k]) if row[k].strip() else np.nan for k in columns]
        except (ValueError, IndexError):
            raise InputFileError(path, f"line {r + 2}: expected numbers in {','.join(names)}, got {','.join(row)[:80]}") from None
    return {n: values[:, i] for i, n in enumerate(names)}
