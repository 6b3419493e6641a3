"""Training NGCC-PHAT as regression via classification on simulated rooms (Paper V set-up)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sslkit.errors import UserError
from sslkit.files import write_yaml
from sslkit.geometry import lag_classes, pair_lag_bounds, speed_of_sound
from sslkit.models.adpit import VARIANTS, adpit_loss, check_track_count
from sslkit.models.ngcc import DESIGNS, NGCCPHAT, SIZES, lag_targets, multi_lag_targets
from sslkit.models.training import (
    VAL_SEED_OFFSET,
    RunRecord,
    check_batch_inputs,
    check_simulated_rooms,
    check_training_config,
    run_folder,
    stage_progress,
    warmup_cosine,
)
from sslkit.options import check_choice
from sslkit.sims.tdoa_windows import WindowBank
from sslkit.tdoa import TDOA_ACCURACY_M

MODEL_SIZES = SIZES



@dataclass
class NgccTrainConfig:
    """Everything that defines a training run (written to ``config.yaml`` in the run folder)."""

    scene: str = "ngcc-train"
    scenes: int = 2000
    val_scenes: int = 200
    windows_per_scene: int = 1
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    sigma: float = 0.0
    targets: int = 1
    adpit: str = "bradpit"
    window: int = 2048
    size: str = "small"
    design: str | None = None
    """NGCC-PHAT design (``DESIGNS``); None: ``reference`` for the paper size, else ``circular``."""
    model: dict = field(default_factory=dict)
    c: float | None = None
    """Speed of sound (m/s) of the labels; None: each scene's own."""
    device: str = "cpu"
    seed: int = 0
    workers: int | None = None
    audio_dir: str | None = None


def pair_max_tau(bank: WindowBank, fs: int, c: float | None) -> int:
    """τmax (samples, :func:`~sslkit.geometry.lag_classes`) that covers every mic pair of the bank's recordings (``c`` None: each scene's own)."""
    return lag_classes(max(pair_lag_bounds(r.mics, p, fs, speed_of_sound(r.scene, c)).max() for r, p in zip(bank.recordings, bank.pairs)))


def tdoa_errors_m(logits: torch.Tensor, tau: torch.Tensor, max_tau: int, fs: int, c: float) -> torch.Tensor:
    """Error (m) of each active source against the closest track's argmax lag.

    logits (B, K, 2τmax+1), tau (B, S) samples with NaN for inactive sources → (n_active,).
    """
    pred = (logits.argmax(dim=-1) - max_tau).float()  # (B, K)
    err = (pred[:, None, :] - tau[:, :, None]).abs().amin(dim=-1)  # (B, S)
    return err[~torch.isnan(tau)] * c / fs


def ngcc_loss(logits: torch.Tensor, tau: torch.Tensor, max_tau: int, sigma: float, adpit: str) -> torch.Tensor:
    """Cross-entropy over lags (one track), or ADPIT with cross-entropy pairs (K tracks, Paper VI).

    logits (B, K, L); tau (B, S) in samples, NaN = inactive source.
    """
    if logits.shape[1] == 1:
        keep = ~torch.isnan(tau[:, 0])
        target = lag_targets(tau[keep, 0], max_tau, sigma)
        return -(target * F.log_softmax(logits[keep, 0], dim=-1)).sum(dim=-1).mean()
    target = multi_lag_targets(tau, max_tau, logits.shape[1], sigma)
    return adpit_loss(logits[:, None, :, :, None], target, adpit, pair_loss="ce")


def build_banks(cfg: NgccTrainConfig, template: dict, on_status: Callable[[str, int, int], None] | None) -> tuple[WindowBank, WindowBank]:
    from sslkit.sims.dataset import simulate_many

    progress = stage_progress(on_status, rank=0)
    train = simulate_many(template, list(range(cfg.scenes)), cfg.seed, cfg.workers, cfg.audio_dir, progress("simulating training rooms", cfg.scenes))
    val_idx = list(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg.val_scenes))
    val = simulate_many(template, val_idx, cfg.seed, cfg.workers, cfg.audio_dir, progress("simulating validation rooms", cfg.val_scenes))
    return WindowBank.from_recordings(train, cfg.window), WindowBank.from_recordings(val, cfg.window)


def train_ngcc(cfg: NgccTrainConfig, run_dir: str | Path, resume: bool = False, on_status: Callable[[str, int, int], None] | None = None, overwrite: bool = False) -> dict:
    """Train NGCC-PHAT in the run folder ``run_dir`` (see :func:`~sslkit.models.training.run_folder` for
    ``resume`` and ``overwrite``); returns the final epoch's metrics."""
    check_ngcc_config(cfg)
    with run_folder(run_dir, resume, overwrite, cfg) as folder:
        return run_train_ngcc(cfg, folder, resume, on_status)


def check_ngcc_config(cfg: NgccTrainConfig) -> None:
    """UserError before any work: numbers (``check_training_config``), the named size, design and
    ADPIT variant (an ADPIT variant only with several output tracks), the output tracks ADPIT can
    enumerate, the simulated rooms, which are held whole in memory, and the batch."""
    from sslkit.sims.dataset import dataset_bytes
    from sslkit.sims.scene import load_template

    check_training_config(cfg)
    check_choice("--size", cfg.size, list(MODEL_SIZES))
    if cfg.design is not None:  # None: chosen by the size
        check_choice("--design", cfg.design, DESIGNS)
    check_choice("--adpit", cfg.adpit, list(VARIANTS))
    try:
        check_track_count(cfg.targets)
    except ValueError as err:
        raise UserError(f"--targets {cfg.targets}: {err}") from None
    if cfg.targets == 1 and cfg.adpit != NgccTrainConfig.adpit:
        raise UserError(f"--adpit {cfg.adpit}: ADPIT permutes the output tracks of --targets 2 or more; one track has nothing to permute")
    check_simulated_rooms(cfg.scenes, cfg.val_scenes, dataset_bytes(load_template(cfg.scene), cfg.seed, cfg.audio_dir))
    check_batch_inputs(cfg.batch_size, 2 * 4 * cfg.window)  # two float32 windows per item


def run_train_ngcc(
    cfg: NgccTrainConfig, run_dir: str | Path, resume: bool = False, on_status: Callable[[str, int, int], None] | None = None
) -> dict:
    """Train (or resume) NGCC-PHAT; writes last.pt, best.pt, metrics.csv, learning_curve.png, config.yaml.

    Each epoch draws ``windows_per_scene`` random non-silent windows and mic pairs per training
    scene (one, as in Paper V, by default).
    Returns the final epoch's metrics.
    """
    from sslkit.sims.scene import load_template

    torch.manual_seed(cfg.seed)
    template = load_template(cfg.scene)
    train_bank, val_bank = build_banks(cfg, template, on_status)
    fs = train_bank.recordings[0].fs
    c = speed_of_sound(train_bank.recordings[0].scene, cfg.c)  # reports errors in metres
    model_args = {**MODEL_SIZES[cfg.size], "design": cfg.design or ("reference" if cfg.size == "paper" else "circular"), **cfg.model, "fs": fs,
                  "max_tau": pair_max_tau(train_bank, fs, cfg.c), "n_outputs": cfg.targets}
    model = NGCCPHAT(**model_args).to(cfg.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train_bank.recordings) * cfg.windows_per_scene / cfg.batch_size)
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch)
    rng = np.random.default_rng(cfg.seed)
    val_batch = val_bank.sample(min(1024, 8 * len(val_bank.recordings)), np.random.default_rng(cfg.seed + 1), cfg.c, cfg.targets)
    record = RunRecord(run_dir, model, "ngcc-phat", ("train_loss", "val_loss"), "val_acc_10cm", higher_is_better=True)
    if resume:
        record.resume(optimizer, scheduler, cfg.device, rng)
    write_yaml(run_dir / "config.yaml", {**asdict(cfg), "network": model_args})
    row: dict = {}
    for epoch in range(record.start_epoch, cfg.epochs):
        model.train()
        t0, losses = time.perf_counter(), []
        for step in range(steps_per_epoch):
            x1, x2, tau = (torch.as_tensor(v, device=cfg.device) for v in train_bank.sample(cfg.batch_size, rng, cfg.c, cfg.targets))
            loss = ngcc_loss(model(x1, x2), tau.float(), model.max_tau, cfg.sigma, cfg.adpit)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if on_status:
                on_status(f"epoch {epoch + 1}/{cfg.epochs}", step + 1, steps_per_epoch)
        val_loss, val_err = evaluate_batch(model, val_batch, cfg, c)
        acc = float((val_err < TDOA_ACCURACY_M).float().mean())
        row = {
            "epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss, "val_acc_10cm": acc,
            "val_mae_cm": float(val_err.mean() * 100), "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0,
        }
        record.end_epoch(row, {"metrics": row, "train_config": asdict(cfg)}, optimizer, scheduler, rng)
    return row


def evaluate_batch(model: NGCCPHAT, batch: tuple[np.ndarray, ...], cfg: NgccTrainConfig, c: float) -> tuple[float, torch.Tensor]:
    """Validation cross-entropy and errors (m at speed of sound c) over fixed windows, in chunks."""
    model.eval()
    x1, x2, tau = (torch.as_tensor(v, device=cfg.device) for v in batch)
    with torch.no_grad():
        logits = torch.cat([model(x1[s : s + 128], x2[s : s + 128]) for s in range(0, len(x1), 128)])
        loss = float(ngcc_loss(logits, tau.float(), model.max_tau, 0.0, cfg.adpit))
    return loss, tdoa_errors_m(logits, tau.float(), model.max_tau, model.fs, c).cpu()
