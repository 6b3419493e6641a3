"""SELD training on recording folders (e.g. ``sslkit simulate --preset tetra-seld --count N``):
log-mel + GCC-PHAT or NGCC-PHAT features, SELDnet CRNN, Multi-ACCDOA with distance, any ADPIT variant.

Features are computed once per clip; each step cuts chunks and applies a channel swap by
rearranging them. The loss measures distances in ``distance_unit`` metres so that the distance
term does not swamp the unit DOA vectors; with ``distance_weight = "reciprocal"`` each distance
term is also divided by the event's distance (in those units), as Paper VI does.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from sslkit.errors import InputFileError, SslkitWarning, UserError
from sslkit.files import read_yaml, write_yaml
from sslkit.models.adpit import ADPITLoss, events_to_target
from sslkit.models.channel_swap import channel_swaps, swap_targets
from sslkit.models.seld_features import NgccSeldFeatures, SeldFeatures, swap_channel_features, swap_pair_features
from sslkit.models.seldnet import SeldNet
from sslkit.models.training import (
    RunRecord,
    check_batch_inputs,
    check_model_fits,
    check_training_config,
    distributed,
    optimizer_step,
    parameter_count,
    run_folder,
    stage_progress,
    warmup_cosine,
)
from sslkit.options import check_choice
from sslkit.recording import recording_folders, resample_audio
from sslkit.seld import SeldEvents, load_seld_model, predict_clip
from sslkit.seld_metrics import seld_metrics

DEFAULT_CLASSES = ["speech", "music", "clapping", "telephone", "footsteps", "knock", "bell", "alarm", "water"]
LABEL_HOP = 0.1
STARSS_TETRAHEDRON = 0.042 * np.array([
    [np.cos(np.radians(el)) * np.cos(np.radians(az)), np.cos(np.radians(el)) * np.sin(np.radians(az)), np.sin(np.radians(el))]
    for az, el in ((45, 35), (-45, -35), (135, -35), (-135, 35))
])
"""The MIC-format array of STARSS23 (metres), assumed for DCASE-layout data that carries no mics.csv."""
NGCC_FEATURE_TRACKS = 3
"""Output tracks of the shipped NGCC-PHAT that gives ``logmel+ngcc`` features (sources per frame, as DCASE's 3)."""
EPOCH_METRICS = ("f_ld", "doae_deg", "rde", "seld_score")
"""Validation metrics recorded each epoch in metrics.csv (NaN: undefined, or nothing to validate on)."""
DISTANCE_WEIGHTS = {"none": "mse", "reciprocal": "mse-reciprocal-distance"}
"""The ADPIT pair loss of each ``distance_weight``."""
FEATURES = ("logmel+gcc", "logmel+ngcc", "logmel")
"""The input features: log-mel spectrograms with GCC-PHAT or NGCC-PHAT pair features, or alone."""
LOSSES = ("baseline", "overlay", "distance-first", "bradpit")
"""The ADPIT variants training takes (``baseline`` is the DCASE2024 baseline's ADPIT; the CLI calls it ``adpit``)."""


def read_class_names(path: str | os.PathLike) -> list[str]:
    """The class names of a YAML file holding a list of distinct names (InputFileError otherwise)."""
    names = read_yaml(path)
    if not (isinstance(names, list) and names and all(isinstance(n, (str, int)) for n in names)):
        raise InputFileError(Path(path), "expected a YAML list of class names, e.g. [speech, music]")
    names = [str(n) for n in names]
    if len(set(names)) < len(names):
        raise InputFileError(Path(path), "class names repeat")
    return names


@dataclass
class SeldTrainConfig:
    data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    features: str = "logmel+gcc"
    loss: str = "bradpit"
    epochs: int = 50
    batch_size: int = 32
    chunk_s: float = 5.0
    lr: float = 1e-3
    filters: int = 64
    rnn_size: int = 128
    channel_swap: bool = True
    distance_unit: float = 4.0
    distance_weight: str = "none"
    """``none`` or ``reciprocal`` (each event's distance term divided by its distance)."""
    ngcc: str | None = None
    device: str = "cpu"
    seed: int = 0


@dataclass
class Clip:
    """One training/validation clip: audio (samples, mics), labels with distances in metres."""

    name: str
    audio: np.ndarray
    fs: int
    labels: SeldEvents
    mics: np.ndarray = field(default_factory=lambda: STARSS_TETRAHEDRON.copy())

    @property
    def n_frames(self) -> int:
        return int(np.floor(len(self.audio) / self.fs / LABEL_HOP + 1e-9))


def load_clips(data: list[str], classes: list[str]) -> list[Clip]:
    """Recording folders (labels from their ground truth), or DCASE/STARSS23 pairs: a folder with
    ``mic_dev``/``metadata_dev`` (any sub-folders) holding ``<name>.wav`` and ``<name>.csv``."""
    from sslkit.errors import InputFileError
    from sslkit.recording import read_audio, read_recording
    from sslkit.seld import read_dcase_csv
    from sslkit.sims.seld_labels import dcase_labels

    clips = []
    for item in map(Path, data):
        if (item / "audio.wav").is_file():
            rec = read_recording(item)
            clips.append(Clip(item.name, rec.audio, rec.fs, dcase_labels(rec, classes, LABEL_HOP), rec.mics))
            continue
        for wav in sorted((item / "mic_dev").rglob("*.wav")):
            meta = next((item / "metadata_dev").rglob(wav.stem + ".csv"), None)
            if meta is None:
                raise InputFileError(wav, "no metadata CSV with the same name under metadata_dev")
            audio, fs = read_audio(wav)
            labels, _ = read_dcase_csv(meta, len(classes))
            if np.isnan(labels.distance).any():
                raise InputFileError(meta, "has no distance column: SELD with distance needs DCASE2024 metadata (6 columns)")
            clip = Clip(wav.stem, audio, fs, labels)
            if len(labels.frame) and labels.frame.max() >= clip.n_frames + 1:
                raise InputFileError(meta, f"labels reach frame {labels.frame.max()} but {wav.name} has {clip.n_frames} frames")
            clips.append(clip)
    if len(clips) < 2:
        raise InputFileError(data[0] if data else "--data", "need at least 2 clips (recording folders or mic_dev/metadata_dev pairs)")
    return clips


def clip_targets(clip: Clip, n_classes: int, n_tracks: int = 3) -> np.ndarray:
    """Dummy-track targets (T, N(N+1)/2, 1+4, C): unit DOA vector and distance (m) per event."""
    labels, n_frames = clip.labels, clip.n_frames
    az, el = np.radians(labels.azimuth), np.radians(labels.elevation)
    vec = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el), labels.distance], 1)
    per_frame: list[list] = [[] for _ in range(n_frames)]
    for f, c, v in zip(labels.frame, labels.cls, vec):
        if f < n_frames and len([e for e in per_frame[f] if e[0] == c]) < n_tracks:
            per_frame[f].append((int(c), v))
    return events_to_target(per_frame, n_classes, n_tracks, n_axes=vec.shape[1])


def train_seld(cfg: SeldTrainConfig, run_dir: str | Path, on_status: Callable[[str, int, int], None] | None = None,
               resume: bool = False, overwrite: bool = False) -> dict:
    """Train a SELD model in the run folder ``run_dir`` (see :func:`~sslkit.models.training.run_folder` for
    ``resume`` and ``overwrite``); returns the final epoch's metrics."""
    check_training_config(cfg)
    check_choice("--loss", cfg.loss, LOSSES, ["adpit (baseline)", *LOSSES[1:]])
    check_choice("--distance-weight", cfg.distance_weight, list(DISTANCE_WEIGHTS))
    check_choice("--features", cfg.features, FEATURES)
    with run_folder(run_dir, resume, overwrite, cfg) as folder:
        return run_train_seld(cfg, folder, on_status, resume)


def run_train_seld(cfg: SeldTrainConfig, run_dir: str | Path, on_status: Callable[[str, int, int], None] | None = None,
               resume: bool = False) -> dict:
    """Train and validate each epoch (DCASE F_LD, DOAE, RDE); writes best.pt, last.pt, metrics.csv, PNG.

    Mixed precision on CUDA; under ``torchrun`` every process draws its own batches (seeded by
    rank), DistributedDataParallel averages gradients and rank 0 validates and writes.
    """
    rank, world = distributed()
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.device == "cuda" and world > 1 else cfg.device
    cfg = replace(cfg, device=device)
    torch.manual_seed(cfg.seed)
    train, val = train_val_clips(cfg)
    if not any(len(c.labels.frame) for c in train):
        raise UserError(f"{cfg.data[0]}: the training clips hold no event labels (SELD learns from labelled sources: "
                        "give sources a signal class or label, or DCASE metadata)")
    unseen = [name for k, name in enumerate(cfg.classes) if not any(np.any(c.labels.cls == k) for c in train)]
    if unseen:
        warnings.warn(SslkitWarning(f"no training event has the class {', '.join(unseen)}: is the class list right?"), stacklevel=2)
    validated = any(len(c.labels.frame) for c in val)
    if not validated:
        warnings.warn(SslkitWarning("the validation clips hold no events: F, DOA error and distance error are not measured "
                                    "(best.pt is the last epoch); give --val data with labelled events"), stacklevel=2)
    train, val = same_array_and_rate(train, val)
    clips = train + val
    fs = clips[0].fs
    features = SeldFeatures(fs, gcc=cfg.features == "logmel+gcc").to(cfg.device)
    ngcc = ngcc_features(cfg, fs)
    status = stage_progress(on_status, rank)
    chunk_frames = int(cfg.chunk_s / LABEL_HOP)
    # log-mels, GCC-PHAT and the frozen NGCC-PHAT run once per clip; channel swaps rearrange them
    train_feats = clip_input_features(features, train, int(chunk_frames * LABEL_HOP * fs), cfg.device,
                                      status("log-mel features, training", len(train)))
    train_extra = clip_ngcc_features(ngcc, train, cfg.device, status("NGCC-PHAT features, training", len(train)))
    val_extra = clip_ngcc_features(ngcc, val, cfg.device, status("NGCC-PHAT features, validation", len(val)))
    n_mics = clips[0].audio.shape[1]
    extra_channels = ngcc.n_channels * n_mics * (n_mics - 1) // 2 if ngcc is not None else 0

    def build() -> SeldNet:
        return SeldNet(features.channels(n_mics), len(cfg.classes), filters=cfg.filters, rnn_size=cfg.rnn_size, extra_channels=extra_channels,
                       extra_lags=ngcc.ngcc.n_lags if ngcc is not None else 0)

    check_model_fits(parameter_count(build), "SELDnet", "lower --filters or --rnn-size")
    item_bytes = 4 * chunk_frames * 5 * (sum(f.shape[0] * f.shape[-1] for f in train_feats[0] if f is not None)
                                         + (train_extra[0].shape[-1] if train_extra is not None else 0))
    check_batch_inputs(cfg.batch_size * world, item_bytes)
    model = build().to(cfg.device)
    loss_fn = ADPITLoss(cfg.loss, DISTANCE_WEIGHTS[cfg.distance_weight])
    targets = [torch.as_tensor(clip_targets(c, len(cfg.classes))) for c in train]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    steps = max(1, math.ceil(sum(t.shape[0] for t in targets) / chunk_frames / (cfg.batch_size * world)))
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    amp = cfg.device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rng = np.random.default_rng([cfg.seed, rank])
    swaps = channel_swaps(train[0].mics) if cfg.channel_swap else [(np.arange(n_mics), np.eye(3))]
    write_yaml(run_dir / "config.yaml", {**asdict(cfg), "network": model.config})
    row: dict = {}
    record = RunRecord(run_dir, model, "seldnet", ("train_loss",), "f_ld", higher_is_better=True)
    if resume:
        record.resume(optimizer, scheduler, cfg.device, rng)
    for epoch in range(record.start_epoch, cfg.epochs):
        net.train()
        t0, losses = time.perf_counter(), []
        for step in range(steps):
            feats, target, extra = [], [], []
            for _ in range(cfg.batch_size):
                k = rng.integers(len(train))
                start = rng.integers(max(1, targets[k].shape[0] - chunk_frames + 1))
                perm, rotation = swaps[rng.integers(len(swaps))]  # channel-swap augmentation
                frames = slice(start * 5, (start + chunk_frames) * 5)
                feats.append(swap_channel_features(*(None if f is None else f[:, frames] for f in train_feats[k]), perm))
                tgt = torch.as_tensor(swap_targets(targets[k][start : start + chunk_frames].numpy(), rotation))
                target.append(torch.nn.functional.pad(tgt, (0, 0, 0, 0, 0, 0, 0, chunk_frames - len(tgt))))
                if train_extra is not None:
                    e = swap_pair_features(train_extra[k][start * 5 : (start + chunk_frames) * 5], perm, ngcc.ngcc.n_lags)
                    extra.append(torch.nn.functional.pad(e, (0, 0, 0, chunk_frames * 5 - len(e))))
            batch_extra = torch.stack(extra).to(cfg.device).float() if extra else None
            with torch.autocast("cuda", enabled=amp):
                output = net(torch.stack(feats).to(cfg.device).float(), batch_extra)
            loss = loss_fn(*in_distance_units(output.float(), torch.stack(target).to(cfg.device), cfg.distance_unit))
            optimizer_step(loss, optimizer, scaler, scheduler)
            losses.append(loss.item())
            if on_status and rank == 0:
                on_status(f"epoch {epoch + 1}/{cfg.epochs}", step + 1, steps)
        if rank != 0:
            continue
        metrics = evaluate_clips(model, features, val, cfg, val_extra) if validated else {}
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
               **{key: float("nan") if metrics.get(key) is None else metrics[key] for key in EPOCH_METRICS}, "seconds": time.perf_counter() - t0}
        meta = {"metrics": row, "classes": cfg.classes, "features": cfg.features, "fs": fs, "n_mics": n_mics,
                "ngcc": None if ngcc is None else {"config": ngcc.ngcc.config, "state_dict": ngcc.ngcc.state_dict()}}
        record.end_epoch(row, meta, optimizer, scheduler, rng, keep_as_best=not validated)
    return row


def same_array_and_rate(train: list[Clip], val: list[Clip]) -> tuple[list[Clip], list[Clip]]:
    """The clips, each at the first training clip's sample rate (resampled with a one-line warning);
    UserError naming a clip with another number of mics."""
    first = train[0]
    odd = next((c for c in train + val if c.audio.shape[1] != first.audio.shape[1]), None)
    if odd is not None:
        raise UserError(f"clip {odd.name}: {odd.audio.shape[1]} microphones, but clip {first.name} has {first.audio.shape[1]}: "
                        "every training and validation clip needs the same array")

    def at_rate(clip: Clip) -> Clip:
        if clip.fs == first.fs:
            return clip
        warnings.warn(SslkitWarning(f"clip {clip.name}: resampled from {clip.fs} to {first.fs} Hz, the rate of clip {first.name}"),
                      stacklevel=3)
        return replace(clip, audio=resample_audio(clip.audio, clip.fs, first.fs), fs=first.fs)

    return [at_rate(c) for c in train], [at_rate(c) for c in val]


def train_val_clips(cfg: SeldTrainConfig) -> tuple[list[Clip], list[Clip]]:
    """Training and validation clips: ``val_data`` when given, else the first fifth of ``data`` validates."""
    clips = load_clips(cfg.data, cfg.classes)
    if cfg.val_data:
        return clips, load_clips(cfg.val_data, cfg.classes)
    n_val = max(1, len(clips) // 5)
    return clips[n_val:], clips[:n_val]


def evaluate_run(run_dir: str | Path, device: str, protocol: str = "dcase2024") -> dict:
    """DCASE metrics (``protocol``: see :mod:`sslkit.seld_metrics`) of a train-seld run's best.pt on
    the validation clips its config.yaml names."""
    run_dir = Path(run_dir)
    for name in ("best.pt", "config.yaml"):
        if not (run_dir / name).is_file():
            raise InputFileError(run_dir, f"has no {name}: not a train-seld run folder")
    model, _, features, ngcc = load_seld_model(run_dir / "best.pt", device)
    config = read_yaml(run_dir / "config.yaml")
    settings = {item.name for item in fields(SeldTrainConfig)}  # not the network it resolved to
    cfg = replace(SeldTrainConfig(**{k: v for k, v in config.items() if k in settings}), device=device)
    val = load_clips(cfg.val_data, cfg.classes) if cfg.val_data else train_val_clips(cfg)[1]  # no training audio read when not needed
    return evaluate_clips(model, features, val, cfg, clip_ngcc_features(ngcc, val, device, None), protocol)


def in_distance_units(output: torch.Tensor, target: torch.Tensor, unit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Output (..., 4, C) and dummy-track target (..., 1+4, C) with distances in units of ``unit``
    metres: weights the distance term of the MSE by 1/unit² against the unit DOA vectors."""
    return (torch.cat([output[..., :3, :], output[..., 3:, :] / unit], dim=-2),
            torch.cat([target[..., :4, :], target[..., 4:, :] / unit], dim=-2))


def ngcc_features(cfg: SeldTrainConfig, fs: int) -> NgccSeldFeatures | None:
    """The frozen NGCC-PHAT feature extractor for ``logmel+ngcc`` (None otherwise)."""
    if cfg.features != "logmel+ngcc":
        return None
    from sslkit.models.checkpoint import load_model

    model, meta, _ = load_model(cfg.ngcc, "ngcc-phat", cfg.device, fs=fs, outputs=NGCC_FEATURE_TRACKS)
    return NgccSeldFeatures(model, fs).to(cfg.device)


def seld_data_folders(data: str | Path) -> list[str]:
    """A DCASE folder (with mic_dev/) as is, or the recording folders inside ``data``."""
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"{data}: not a folder")
    return [str(data)] if (data / "mic_dev").is_dir() else [str(p) for p in recording_folders(data)]


def clip_input_features(features: SeldFeatures, clips: list[Clip], min_samples: int, device: str,
                        on_progress: Callable[[int], None] | None = None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``features.with_mirror_lag`` of whole clips (zero-padded to ``min_samples``), float16 on the CPU."""
    out = []
    for done, clip in enumerate(clips, 1):
        audio = np.pad(clip.audio, ((0, max(0, min_samples - len(clip.audio))), (0, 0)))
        with torch.no_grad():
            logmel, lags = features.with_mirror_lag(torch.as_tensor(audio.T[None], device=device))
        out.append((logmel[0].half().cpu(), None if lags is None else lags[0].half().cpu()))
        if on_progress:
            on_progress(done)
    return out


def clip_ngcc_features(ngcc: NgccSeldFeatures | None, clips: list[Clip], device: str,
                       on_progress: Callable[[int], None] | None = None) -> list[torch.Tensor] | None:
    """NGCC-PHAT pair features of whole clips, (frames, P·C·lags) each (None without NGCC features)."""
    if ngcc is None:
        return None
    out = []
    for done, clip in enumerate(clips, 1):
        out.append(ngcc(torch.as_tensor(clip.audio.T[None], device=device))[0].cpu())
        if on_progress:
            on_progress(done)
    return out


def evaluate_clips(model: SeldNet, features: SeldFeatures, clips: list[Clip], cfg: SeldTrainConfig,
                   extras: list[torch.Tensor] | None = None, protocol: str = "dcase2024") -> dict:
    """DCASE metrics of the model's events on whole clips."""
    model.eval()
    preds = [predict_clip(model, features, clip.audio, cfg.device, None if extras is None else extras[i]) for i, clip in enumerate(clips)]
    return seld_metrics(preds, [c.labels for c in clips], len(cfg.classes), protocol)
