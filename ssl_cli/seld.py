"""SELD in one place: the events of a clip (:class:`SeldEvents`), DCASE CSV files, and inference
with a train-seld checkpoint (the model, its features, events per clip, predictions for folders).

DCASE convention: 100 ms label frames; azimuth counter-clockwise from +x in the x-y plane and
elevation up from it, in degrees, seen from the array centre; distances in the files in
centimetres, in :class:`SeldEvents` in metres.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sslkit.errors import InputFileError, UserError
from sslkit.files import atomic_file, read_text
from sslkit.geometry import UNIT_RATIO

if TYPE_CHECKING:
    import torch

    from sslkit.models.seld_features import NgccSeldFeatures, SeldFeatures
    from sslkit.models.seldnet import SeldNet

ACTIVITY_THRESHOLD = 0.5
"""A Multi-ACCDOA track is active where its vector is longer than this."""
MERGE_DEG = 20.0
"""Active tracks of one class and frame closer than this (degrees) are one event."""


DCASE_FORMATS = {
    "polar": ("frame", "class", "track", "azimuth", "elevation", "distance_cm"),
    "cartesian": ("frame", "class", "track", "x", "y", "z", "distance_m"),
}
"""The DCASE CSV formats (no header): DCASE2024 metadata's 6-column polar one (degrees, distance in
centimetres; 5 columns without distance) and the baseline's 7-column Cartesian output (unit vector,
distance in metres)."""
CM_PER_M = 100.0
MAX_FRAME = 2**31
"""Frame indices must fit a 32-bit integer (a day of 100 ms frames is under a million)."""


@dataclass
class SeldEvents:
    """Events of one clip: arrays of equal length (frame index, class index, azimuth°, elevation°,
    distance m; NaN where the file gives none)."""

    frame: np.ndarray
    cls: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    distance: np.ndarray


def unit_vectors(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit direction vectors (n, 3) from azimuth and elevation in degrees."""
    az, el = np.radians(azimuth), np.radians(elevation)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def angular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles in degrees between every row of unit vectors a (n, 3) and b (m, 3) → (n, m)."""
    return np.degrees(np.arccos(np.clip(a @ b.T, -1.0, 1.0)))


def dcase_format(n_columns: int) -> str:
    """The DCASE format of rows with ``n_columns`` cells."""
    return "cartesian" if n_columns == 7 else "polar"


def read_dcase_csv(path: str | os.PathLike, n_classes: int) -> tuple[SeldEvents, str]:
    """Read a DCASE CSV in either format (see ``DCASE_FORMATS``), detected from its rows; returns the
    events (distances in metres) and the format's name (``empty`` for a file without rows). One file
    holds one format."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    rows, widths = [], set()
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip() or line.startswith("frame"):
            continue
        cells = line.split(",")
        try:
            values = [float(v) for v in cells]
        except ValueError:
            raise InputFileError(path, f"line {number}: expected numbers, got {line[:80]}") from None
        if len(values) not in (5, 6, 7) or not np.all(np.isfinite(values)):
            raise InputFileError(path, f"line {number}: expected frame,class,track,azimuth,elevation[,distance_cm] or "
                                       "frame,class,track,x,y,z,distance_m as finite numbers")
        if not 0 <= values[0] < MAX_FRAME or values[0] != int(values[0]):
            raise InputFileError(path, f"line {number}: frame {cells[0][:20]} is not an integer from 0 to {MAX_FRAME - 1}")
        if not 0 <= values[1] < n_classes or values[1] != int(values[1]):
            raise InputFileError(path, f"line {number}: class {cells[1][:20]} is not one of 0..{n_classes - 1}")
        if len(values) > 5 and values[-1] < 0:
            raise InputFileError(path, f"line {number}: distance {cells[-1].strip()[:20]} is negative")
        if len(values) < 7 and abs(values[4]) > 90:
            raise InputFileError(path, f"line {number}: elevation {cells[4].strip()[:20]} is outside −90..90 degrees")
        widths.add(dcase_format(len(values)))
        if len(widths) > 1:
            raise InputFileError(path, f"line {number}: mixes the polar and the Cartesian format")
        rows.append(values + [np.nan] * (7 - len(values)))
    data = np.array(rows, dtype=float).reshape(-1, 7)
    fmt = widths.pop() if widths else "empty"
    if fmt == "cartesian":
        x, y, z = data[:, 3], data[:, 4], data[:, 5]
        if np.any((x == 0) & (y == 0) & (z == 0)):
            raise InputFileError(path, "a Cartesian row has the zero vector as its direction")
        azimuth, elevation, distance = np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(z, np.hypot(x, y))), data[:, 6]
    else:
        azimuth, elevation, distance = data[:, 3], data[:, 4], data[:, 5] / CM_PER_M
    return SeldEvents(data[:, 0].astype(int), data[:, 1].astype(int), azimuth, elevation, distance), fmt


def write_dcase_csv(path: str | os.PathLike, events: SeldEvents, fmt: str = "cartesian") -> None:
    """Write events in a DCASE format: ``cartesian`` (frame,class,track,x,y,z,distance_m; what the
    DCASE2024 scorer reads as predictions) or ``polar`` (frame,class,track,azimuth,elevation,
    distance_cm, rounded to integers as DCASE metadata); track 0 on every row."""
    if fmt not in DCASE_FORMATS:
        raise UserError(f"unknown DCASE format '{fmt}' (choose from {', '.join(DCASE_FORMATS)})")
    head = np.stack([events.frame, events.cls, np.zeros(len(events.frame))], 1).astype(int)
    if fmt == "cartesian":
        body = np.column_stack([unit_vectors(events.azimuth, events.elevation), events.distance])
        lines = [f"{f},{c},{t}," + ",".join(f"{v:.6f}" for v in row) for (f, c, t), row in zip(head, body)]
    else:
        body = np.column_stack([events.azimuth, events.elevation, events.distance * CM_PER_M]).round().astype(int)
        lines = [",".join(map(str, [*h, *row])) for h, row in zip(head, body)]
    with atomic_file(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines))


def output_events(output: torch.Tensor) -> SeldEvents:
    """Multi-ACCDOA output of one clip (T, N, 4, C) → events: tracks whose ACCDOA norm exceeds
    ``ACTIVITY_THRESHOLD``, one event per track and class (tracks within ``MERGE_DEG`` merged)."""
    xyz, dist = output[:, :, :3].numpy(), output[:, :, 3].numpy()
    norm = np.linalg.norm(xyz, axis=2)  # (T, N, C)
    rows = []
    for t, n, c in zip(*np.nonzero(norm > ACTIVITY_THRESHOLD)):
        v = xyz[t, n, :, c] / norm[t, n, c]
        if any(r[0] == t and r[1] == c and angular_distance(v[None], r[2][None])[0, 0] < MERGE_DEG for r in rows):
            continue
        rows.append((t, c, v, dist[t, n, c]))
    if not rows:
        return SeldEvents(*(np.zeros(0) for _ in range(5)))
    frames, cls, vecs, d = zip(*rows)
    vecs = np.array(vecs)
    return SeldEvents(np.array(frames), np.array(cls), np.degrees(np.arctan2(vecs[:, 1], vecs[:, 0])),
                      np.degrees(np.arcsin(np.clip(vecs[:, 2], -1, 1))), np.array(d))


def clip_output(model: SeldNet, features: SeldFeatures, audio: np.ndarray, device: str, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-ACCDOA output (label frames, N, 4, C) for a whole clip (samples, mics), on the CPU;
    ``extra``: its NGCC-PHAT features, if the model uses them."""
    import torch

    with torch.no_grad():
        feats = features(torch.as_tensor(audio.T[None], device=device))
        n = (feats.shape[2] // 5) * 5
        return model(feats[:, :, :n], None if extra is None else extra[None].to(device))[0].cpu()


def predict_clip(model: SeldNet, features: SeldFeatures, audio: np.ndarray, device: str, extra: torch.Tensor | None = None) -> SeldEvents:
    """Events predicted for a whole clip (samples, mics); ``extra``: its NGCC-PHAT features, if the model uses them."""
    return output_events(clip_output(model, features, audio, device, extra))


def load_seld_model(path: str | Path, device: str) -> tuple[SeldNet, dict, SeldFeatures, NgccSeldFeatures | None]:
    """A train-seld checkpoint: the model, its metadata and the feature extractors it was trained with."""
    from sslkit.models.checkpoint import load_checkpoint
    from sslkit.models.seld_features import SeldFeatures

    model, meta = load_checkpoint(path, device, kind="seldnet")
    features = SeldFeatures(meta["fs"], gcc=meta["features"] == "logmel+gcc").to(device)
    return model, meta, features, checkpoint_ngcc_features(meta, device)


def checkpoint_ngcc_features(meta: dict, device: str) -> NgccSeldFeatures | None:
    """The frozen NGCC-PHAT feature extractor stored in a train-seld checkpoint's metadata (None for logmel+gcc)."""
    if not meta.get("ngcc"):
        return None
    from sslkit.models.ngcc import NGCCPHAT
    from sslkit.models.seld_features import NgccSeldFeatures

    net = NGCCPHAT(**meta["ngcc"]["config"])
    net.load_state_dict(meta["ngcc"]["state_dict"])
    return NgccSeldFeatures(net, meta["fs"]).to(device)




def predict_seld_files(checkpoint: str | os.PathLike, recordings: str | os.PathLike, out: str | os.PathLike | None = None, device: str = "cpu",
                       on_progress: Callable[[int, int], None] | None = None, fmt: str = "cartesian") -> tuple[Path, list[Path], dict]:
    """DCASE output CSVs (one ``<recording>.csv`` per recording folder in ``recordings``, in the DCASE
    format ``fmt``) written into the folder ``out`` (default: ``<recordings>/seld-output``); returns
    the folder, the files and the checkpoint's metadata."""
    import torch

    from sslkit.files import check_folder_to_fill
    from sslkit.models.checkpoint import resampled_for_model
    from sslkit.recording import MICS_FILE, read_mics, read_recording, recording_folders
    from sslkit.resources import resolve_device

    if fmt not in DCASE_FORMATS:
        raise UserError(f"unknown DCASE format '{fmt}' (choose from {', '.join(DCASE_FORMATS)})")
    folders = recording_folders(recordings)
    out = check_folder_to_fill(Path(out) if out else Path(recordings) / "seld-output", [f"{folder.name}.csv" for folder in folders])
    device = resolve_device(device)
    model, meta, features, ngcc = load_seld_model(checkpoint, device)
    for folder in folders:  # every folder before any work: nothing is half written
        n_mics = len(read_mics(folder / MICS_FILE)[0])
        if features.channels(n_mics) != model.config["in_channels"]:
            raise InputFileError(folder, f"{n_mics} microphones, but {checkpoint} was trained on {meta.get('n_mics', 'another number')}")
    written = []
    for done, folder in enumerate(folders, 1):
        rec = resampled_for_model(read_recording(folder), meta["fs"], "SELD")
        extra = ngcc(torch.as_tensor(rec.audio.T[None], device=device))[0] if ngcc is not None else None
        written.append(out / f"{folder.name}.csv")
        write_dcase_csv(written[-1], predict_clip(model, features, rec.audio, device, extra), fmt)
        if on_progress:
            on_progress(done, len(folders))
    return out, written, meta


SELD_METRICS_FILE = "seld_metrics.json"


def check_distance_units(pred: list[SeldEvents], truth: list[SeldEvents], where: object) -> None:
    """UserError when the predictions' distances are typically ``UNIT_RATIO`` times larger or smaller
    than the references' (a polar file holds centimetres, a Cartesian one metres)."""
    p = np.concatenate([e.distance for e in pred]) if pred else np.zeros(0)
    t = np.concatenate([e.distance for e in truth]) if truth else np.zeros(0)
    p, t = p[np.isfinite(p) & (p > 0)], t[np.isfinite(t) & (t > 0)]
    if len(p) and len(t):
        ratio = float(np.median(p) / np.median(t))
        if not 1 / UNIT_RATIO < ratio < UNIT_RATIO:
            raise UserError(f"{where}: the predicted distances are about {ratio:.3g}× the references': polar files hold "
                            "centimetres and Cartesian files metres; is one of them in the other unit?")


def read_dcase_files(paths: list[Path], n_classes: int) -> tuple[list[SeldEvents], str]:
    """The events of each file and the format(s) they were in (``polar``, ``cartesian`` or both)."""
    read = [read_dcase_csv(path, n_classes) for path in paths]
    return [events for events, _ in read], "+".join(sorted({fmt for _, fmt in read}))


def evaluate_seld_files(run: str | os.PathLike | None = None, pred: str | os.PathLike | None = None, truth: str | os.PathLike | None = None,
                        n_classes: int = 13, out: str | os.PathLike | None = None, device: str = "cpu",
                        protocol: str = "dcase2024") -> tuple[Path, dict]:
    """DCASE metrics (see :mod:`sslkit.seld_metrics` for the ``protocol``) of a train-seld run
    folder's best.pt on its validation data, or of DCASE CSVs ``pred`` (a file or a folder) against
    references ``truth`` (a file, or a folder with the same file names), in either DCASE format;
    written to ``seld_metrics.json`` at ``out`` (a file or a folder; default: in the run folder or
    beside the predictions). Returns the file and the metrics, with the formats that were read."""
    import json

    from sslkit.files import atomic_file, output_file
    from sslkit.seld_metrics import seld_metrics

    if run is None and (pred is None or truth is None):
        raise UserError("give a train-seld run folder, or both predictions and references")
    where = Path(run) if run is not None else (Path(pred) if Path(pred).is_dir() else Path(pred).parent)
    path = output_file(out, where, SELD_METRICS_FILE)
    if run is not None:
        from sslkit.models.train_seld import evaluate_run
        from sslkit.resources import resolve_device

        metrics = evaluate_run(run, resolve_device(device), protocol)
    else:
        pred, truth = Path(pred), Path(truth)
        pred_files = sorted(pred.glob("*.csv")) if pred.is_dir() else [pred]
        if not pred_files:
            raise InputFileError(pred, "no CSV files")
        if len(pred_files) > 1 and not truth.is_dir():
            raise InputFileError(truth, f"{pred} holds {len(pred_files)} prediction files: give a folder of references with the same file names")
        truth_files = [truth / p.name for p in pred_files] if truth.is_dir() else [truth]
        predictions, pred_format = read_dcase_files(pred_files, n_classes)
        references, truth_format = read_dcase_files(truth_files, n_classes)
        for file, events in zip(pred_files + truth_files, predictions + references):
            if np.isnan(events.distance).any():
                raise InputFileError(file, "has rows without a distance (5 columns); the DCASE2024 metrics need distances")
        check_distance_units(predictions, references, pred)
        metrics = {**seld_metrics(predictions, references, n_classes, protocol), "prediction_format": pred_format, "reference_format": truth_format}
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    return path, metrics
