"""Self-describing checkpoints: one ``load_checkpoint(path)`` rebuilds any sslkit model."""

from __future__ import annotations

import os
import sys
import warnings
from importlib import resources
from pathlib import Path

import torch

from sslkit.errors import GeometryError, InputFileError, describe


def model_registry() -> dict[str, type]:
    """Model name → class; imported lazily so that loading one model does not import all."""
    from sslkit.models.ngcc import NGCCPHAT
    from sslkit.models.seldnet import SeldNet
    from sslkit.models.wav2pos import Wav2Pos

    return {"ngcc-phat": NGCCPHAT, "wav2pos": Wav2Pos, "seldnet": SeldNet}


def checkpoint_folder() -> Path:
    """The folder of the checkpoints shipped in the package."""
    return Path(str(resources.files("sslkit.models") / "checkpoints"))


def shipped_index() -> dict[str, dict]:
    """Shipped checkpoint name → its entry in ``checkpoints/index.yaml`` (kind, fs, max_tau, outputs, channels, trained_for)."""
    import yaml

    return yaml.safe_load((checkpoint_folder() / "index.yaml").read_text())


def resolve_checkpoint(checkpoint: str | os.PathLike | None, kind: str | None = None, fs: int | None = None, max_lag: int | None = None,
                       outputs: int = 1) -> Path:
    """The checkpoint file to use: ``checkpoint`` as a path or a shipped name, or else the shipped
    checkpoint of ``kind`` at ``fs`` Hz with at least ``outputs`` tracks, the smallest lag range
    that covers ``max_lag`` samples and, of those, the fewest channels (the cheapest network).
    GeometryError when no shipped checkpoint fits."""
    index = shipped_index()
    if checkpoint is not None:
        return checkpoint_folder() / f"{checkpoint}.pt" if str(checkpoint) in index else Path(checkpoint)
    fitting = [(entry.get("max_tau", 0), entry.get("channels", 0), name) for name, entry in index.items()
               if entry["kind"] == kind and fs in (None, entry["fs"]) and entry.get("outputs", 1) >= outputs
               and (max_lag is None or entry["max_tau"] >= max_lag)]
    if not fitting:
        need = f" at {fs} Hz" if fs else ""
        need += f" covering lags up to {max_lag} samples" if max_lag is not None else ""
        need += f" with {outputs} output tracks" if outputs > 1 else ""
        raise GeometryError(f"no shipped {kind} checkpoint{need}; train one for this array and give its path")
    return checkpoint_folder() / f"{min(fitting)[-1]}.pt"


def checkpoint_fs(checkpoint: str | os.PathLike | None, kind: str, fs: int) -> int:
    """The sample rate the model for a recording at ``fs`` Hz works at: that of ``checkpoint`` (a
    path or shipped name), or, for the shipped default, ``fs`` when a shipped model of ``kind`` has
    it, else the rate most shipped models of ``kind`` have."""
    index = shipped_index()
    if checkpoint is None:
        rates = [entry["fs"] for entry in index.values() if entry["kind"] == kind]
        return fs if fs in rates or not rates else max(set(rates), key=rates.count)
    if str(checkpoint) in index:
        return index[str(checkpoint)]["fs"]
    path = Path(checkpoint)
    if not path.is_file():
        return fs  # load_model names the missing file
    try:
        state = read_checkpoint_file(path)
        return int(state.get("fs") or state["config"]["fs"])
    except Exception:
        return fs  # load_model names what is wrong with the file


def at_model_rate(rec, checkpoint: str | os.PathLike | None, kind: str):
    """``rec`` resampled to the rate of the model it is about to meet (see :func:`checkpoint_fs`),
    with a one-line SslkitWarning when that changes it."""
    return resampled_for_model(rec, checkpoint_fs(checkpoint, kind, rec.fs), kind)


def resampled_for_model(rec, fs: int, kind: str):
    """``rec`` at ``fs`` Hz, the rate of a model of ``kind``, with a one-line SslkitWarning when that changes it."""
    import warnings

    from sslkit.errors import SslkitWarning

    if fs != rec.fs:
        empty = f"; nothing above {rec.fs / 2:g} Hz reaches the model, which was trained on the whole band" if fs > rec.fs else ""
        warnings.warn(SslkitWarning(f"{rec.path}: resampled from {rec.fs} to {fs} Hz, the rate of the {kind} model{empty}"), stacklevel=3)
    return rec.resampled(fs)


def load_model(checkpoint: str | os.PathLike | None = None, kind: str | None = None, device: str = "cpu", fs: int | None = None,
               max_lag: int | None = None, outputs: int = 1) -> tuple[torch.nn.Module, dict, Path]:
    """A model (in eval mode), its metadata and its file, by path, by shipped name, or as the shipped
    default of ``kind`` (see :func:`resolve_checkpoint`), checked: of ``kind``, trained at ``fs`` Hz,
    covering lags up to ``max_lag`` samples (NGCC-PHAT)."""
    if checkpoint is None and kind is None:
        raise TypeError("load_model needs a checkpoint (path or shipped name) or a kind of model")
    path = resolve_checkpoint(checkpoint, kind, fs, max_lag, outputs)
    model, meta = load_checkpoint(path, device, kind)
    trained_fs = meta.get("fs", getattr(model, "fs", None))
    if fs is not None and trained_fs != fs:
        raise InputFileError(path, f"trained at {trained_fs} Hz, but the recording is at {fs} Hz")
    if max_lag is not None and max_lag > model.max_tau:
        raise GeometryError(f"{path}: the checkpoint covers |τ| ≤ {model.max_tau} samples but the mic geometry needs {max_lag}; "
                            "use a checkpoint trained for this array (sslkit train-ngcc), or GCC-PHAT")
    return model, meta, path


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, name: str, **meta) -> None:
    """Write weights with the model name, constructor args, versions and any metadata, atomically."""
    from sslkit import __version__
    from sslkit.files import atomic_file

    state = {
        "model": name,
        "config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "sslkit_version": __version__,
        "torch_version": str(torch.__version__),
        "command": " ".join(sys.argv),
        **meta,
    }
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint_file(path: str | os.PathLike, device: str = "cpu") -> dict:
    """The raw content of a checkpoint file, unpickled safely: tensors and plain data only, so a
    hostile file cannot run code (torch's ``weights_only``)."""
    from torch.torch_version import TorchVersion

    # TorchVersion: the torch_version of checkpoints written before it was a str
    with torch.serialization.safe_globals([TorchVersion]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)  # a damaged file: the error that follows says so
        return torch.load(path, map_location=device, weights_only=True)


NOT_SSLKIT = "not an sslkit checkpoint (no model name it knows)"
"""What a readable torch file that sslkit did not write is told."""


def read_checkpoint(path: Path, device: str = "cpu") -> dict:
    """:func:`read_checkpoint_file`, with an InputFileError saying what is wrong when the file is
    not a readable PyTorch checkpoint holding a dict."""
    try:
        state = read_checkpoint_file(path, device)
    except Exception as err:
        with open(path, "rb") as f:
            torch_file = f.read(2) in (b"PK", b"\x80\x02")  # torch's zip archive, or its legacy pickle
        raise InputFileError(path, f"not a readable checkpoint ({describe(err)})" if torch_file else "not a PyTorch checkpoint file") from None
    if not isinstance(state, dict):
        raise InputFileError(path, NOT_SSLKIT)
    return state


def load_checkpoint(path: str | os.PathLike, device: str = "cpu", kind: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved at ``path`` (in eval mode) and return it with its metadata.

    ``kind`` (a name of :func:`model_registry`) is the model the caller needs; a checkpoint of
    another kind is an InputFileError naming both.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such checkpoint")
    state = read_checkpoint(path, device)
    found = state.get("model")
    if found not in model_registry():
        raise InputFileError(path, NOT_SSLKIT)
    if kind is not None and found != kind:
        raise InputFileError(path, f"is a {found} checkpoint; a {kind} checkpoint is needed here")
    try:
        model = model_registry()[found](**state["config"])
        model.load_state_dict(state["state_dict"])
    except Exception as err:
        raise InputFileError(path, f"not a valid {found} checkpoint ({describe(err)})") from None
    meta = {k: v for k, v in state.items() if k != "state_dict"}
    return model.to(device).eval(), meta


def half_precision_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Write ``src`` for shipping: float16 weights (loaded back into float32 models), no optimizer state."""
    from sslkit.files import atomic_file

    state = read_checkpoint_file(src)
    state = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "rng")}
    state["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    with atomic_file(dst) as tmp:
        torch.save(state, tmp)
