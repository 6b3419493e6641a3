"""Training wav2pos on recording folders or simulated rooms (Paper VII set-up).

Windows of N samples are cut from recordings with ground truth (silent windows skipped); the
source is taken as static within a window. Inputs get Gaussian noise while the reconstruction
target stays clean (denoising); a random window start is the common time shift of the paper.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from sslkit.models.checkpoint import save_checkpoint
from sslkit.models.training import append_metrics, distributed, optimizer_step, plot_learning_curve, restore_run, warmup_cosine
from sslkit.models.wav2pos import Wav2Pos, random_masks, wav2pos_loss
from sslkit.recording import Recording, positions_at_times, write_yaml
from sslkit.sims.tdoa_windows import active_window_starts

MASKINGS = ("source-only", "random")
VAL_SEED_OFFSET = 1_000_000


@dataclass
class Wav2PosTrainConfig:
    """A wav2pos training run (written to config.yaml)."""

    scene: str = "luvira-sim"
    data: list[str] = field(default_factory=list)
    scenes: int = 200
    val_scenes: int = 20
    windows_per_scene: int = 20
    epochs: int = 50
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_epochs: int = 2
    masking: str = "random"
    known_source_prob: float = 0.3
    noise_std: float = 0.02
    dim: int = 256
    depth: int = 4
    heads: int = 8
    n_samples: int = 2048
    ngcc: str | None = None
    device: str = "cpu"
    seed: int = 0
    workers: int | None = None


class Wav2PosBank:
    """Windows of recordings for wav2pos: the room mics, the near-source channel (if any) as the
    source signal, and the source position at each window centre."""

    def __init__(self, recordings: list[Recording], n_samples: int):
        self.n = n_samples
        self.items = []
        for rec in recordings:
            near = bool(rec.scene.get("near_source"))
            mics = rec.mics[:-1] if near else rec.mics
            room_audio = rec.audio[:, :-1] if near else rec.audio
            starts = active_window_starts(room_audio, n_samples, n_samples // 4)
            if len(starts):
                self.items.append((rec, room_audio, rec.audio[:, -1] if near else None, mics, starts))
        if not self.items:
            raise ValueError("no recording has a non-silent window")
        self.n_mics = len(self.items[0][3])

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """audio (B, 1+M, N) peak-normalised (row 0: source signal or zeros), coords (B, 1+M, 3), source (B, 3)."""
        audio = np.zeros((batch, 1 + self.n_mics, self.n), dtype=np.float32)
        coords = np.zeros((batch, 1 + self.n_mics, 3), dtype=np.float32)
        source = np.zeros((batch, 3), dtype=np.float32)
        has_source = np.zeros(batch, dtype=bool)
        for b in range(batch):  # cutting windows: one slice per item
            rec, room, near, mics, starts = self.items[rng.integers(len(self.items))]
            s = starts[rng.integers(len(starts))]
            audio[b, 1:] = normalise(room[s : s + self.n].T)
            if near is not None:
                audio[b, 0] = normalise(near[s : s + self.n][None])[0]
                has_source[b] = True
            coords[b, 1:] = mics
            source[b] = positions_at_times(rec.sources, np.array([(s + self.n / 2) / rec.fs]))[0]
        coords[:, 0] = source
        return {"audio": audio, "coords": coords, "source": source, "has_source": has_source}


def normalise(x: np.ndarray) -> np.ndarray:
    """Scale (C, N) windows by their common peak (keeps level differences between mics)."""
    return x / (np.abs(x).max() + 1e-8)


def make_masks(cfg: Wav2PosTrainConfig, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b, m1 = batch["audio"].shape[:2]
    if cfg.masking == "random":
        audio_known, coord_known = random_masks(b, m1 - 1, generator)
    else:
        audio_known = torch.ones(b, m1, dtype=torch.bool)
        audio_known[:, 0] = False
        coord_known = audio_known.clone()
    use_source = (torch.rand(b, generator=generator) < cfg.known_source_prob) & torch.as_tensor(batch["has_source"])
    audio_known[:, 0] = use_source
    return audio_known, coord_known


def train_wav2pos(cfg: Wav2PosTrainConfig, run_dir: str | Path, resume: bool = False,
                  on_status: Callable[[str, int, int], None] | None = None) -> dict:
    """Train wav2pos; writes last.pt, best.pt, metrics.csv, learning_curve.png, config.yaml.

    Under ``torchrun --nproc_per_node K`` each process trains on its own batches (seeded by rank)
    with gradients averaged by DistributedDataParallel; rank 0 writes the files.
    """
    from sslkit.models.checkpoint import load_checkpoint
    from sslkit.sims.dataset import simulate_many
    from sslkit.sims.scene import load_template

    rank, world = distributed()
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.device == "cuda" and world > 1 else cfg.device
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.data:
        from sslkit.recording import load_recording

        recs = [load_recording(p) for p in cfg.data]
        n_val = max(1, len(recs) // 10)
        train_recs, val_recs = recs[n_val:], recs[:n_val]
    else:
        template = load_template(cfg.scene)
        status = (lambda label, total: (lambda done: on_status(label, done, total))) if on_status else (lambda *_: None)
        train_recs = simulate_many(template, list(range(cfg.scenes)), cfg.seed, cfg.workers, None, status("simulating training rooms", cfg.scenes))
        val_recs = simulate_many(template, list(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg.val_scenes)), cfg.seed, cfg.workers, None,
                                 status("simulating validation rooms", cfg.val_scenes))
    train_bank, val_bank = Wav2PosBank(train_recs, cfg.n_samples), Wav2PosBank(val_recs, cfg.n_samples)
    fs = train_recs[0].fs
    all_mics = np.concatenate([item[3] for item in train_bank.items])
    centre = tuple(float(v) for v in (all_mics.min(0) + all_mics.max(0)) / 2)
    scale = float(np.abs(all_mics - np.array(centre)).max())
    ngcc_cfg, ngcc_state = None, None
    if cfg.ngcc:
        ngcc_model, _ = load_checkpoint(cfg.ngcc)
        ngcc_cfg, ngcc_state = ngcc_model.config, ngcc_model.state_dict()
    model = Wav2Pos(cfg.n_samples, fs, cfg.dim, cfg.depth, cfg.heads, centre, scale, ngcc_cfg).to(device)
    if ngcc_state is not None:
        model.ngcc.load_state_dict(ngcc_state)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_bank.items) * cfg.windows_per_scene / (cfg.batch_size * world))
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda"))
    rng = np.random.default_rng([cfg.seed, rank])
    gen = torch.Generator().manual_seed(cfg.seed + rank)
    val = val_bank.sample(min(512, 16 * len(val_bank.items)), np.random.default_rng(cfg.seed + 1))
    start_epoch, best = 0, math.inf
    last = run_dir / "last.pt"
    state = restore_run(last, model, optimizer, scheduler, device) if resume else None
    if state is not None:
        start_epoch, best = state["epoch"], state["best_mae"]
    if rank == 0:
        write_yaml(run_dir / "config.yaml", {**asdict(cfg), "model": model.config})
    row: dict = {}
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        if model.ngcc is not None:
            model.ngcc.eval()
        t0, losses = time.perf_counter(), []
        for step in range(steps_per_epoch):
            batch = train_bank.sample(cfg.batch_size, rng)
            audio_known, coord_known = (m.to(device) for m in make_masks(cfg, batch, gen))
            clean = torch.as_tensor(batch["audio"], device=device)
            noisy = clean + cfg.noise_std * torch.rand(len(clean), 1, 1, device=device) * torch.randn(clean.shape, device=device)
            coords = torch.as_tensor(batch["coords"], device=device)
            with torch.autocast("cuda", enabled=device.startswith("cuda")):
                out = net(noisy, coords, audio_known, coord_known)
            loss = wav2pos_loss({k: v.float() for k, v in out.items()}, clean, coords[:, 0], coords[:, 1:], audio_known, coord_known)
            optimizer_step(loss, optimizer, scaler, scheduler)
            losses.append(loss.item())
            if on_status and rank == 0:
                on_status(f"epoch {epoch + 1}/{cfg.epochs}", step + 1, steps_per_epoch)
        if rank != 0:
            continue
        val_mae = validate(model, val, device)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_mae_cm": val_mae * 100,
               "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        rows = append_metrics(run_dir / "metrics.csv", row)
        plot_learning_curve(run_dir / "learning_curve.png", rows, ("train_loss",), "val_mae_cm")
        meta = {"metrics": row, "train_config": asdict(cfg)}
        if val_mae < best:
            best = val_mae
            save_checkpoint(run_dir / "best.pt", model, "wav2pos", **meta)
        save_checkpoint(last, model, "wav2pos", **meta, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        epoch=epoch + 1, best_mae=best)
    return row


def validate(model: Wav2Pos, val: dict, device: str) -> float:
    """Mean 3D source error (m) with all mics known and the source signal unknown (setup 1a)."""
    model.eval()
    audio = torch.as_tensor(val["audio"], device=device)
    coords = torch.as_tensor(val["coords"], device=device)
    known = torch.ones(audio.shape[:2], dtype=torch.bool, device=device)
    known[:, 0] = False
    with torch.no_grad():
        pred = torch.cat([model(audio[s : s + 128], coords[s : s + 128], known[s : s + 128], known[s : s + 128])["source"]
                          for s in range(0, len(audio), 128)])
    return float((pred - torch.as_tensor(val["source"], device=device)).norm(dim=-1).mean())
