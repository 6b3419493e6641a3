"""Training wav2pos on recording folders or simulated rooms (Paper VII set-up).

Fixed windows of N samples are cut once from recordings with ground truth (silent windows
skipped, random starts: the common time shift of the paper); the source is taken as static within
a window. The frozen NGCC-PHAT runs once per window. Each step draws random mic subsets (between
``min_mics`` and all) and Paper VII's random masks; the audio tokens get Gaussian noise while the
reconstruction target stays clean (denoising).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from sslkit.errors import InputFileError, UserError
from sslkit.files import write_yaml
from sslkit.gcc import pair_index
from sslkit.models.checkpoint import load_checkpoint
from sslkit.models.training import (
    VAL_SEED_OFFSET,
    RunRecord,
    check_batch_inputs,
    check_model_fits,
    check_simulated_rooms,
    check_training_config,
    distributed,
    optimizer_step,
    parameter_count,
    run_folder,
    stage_progress,
    warmup_cosine,
)
from sslkit.models.wav2pos import DESIGNS, Wav2Pos, random_masks, wav2pos_frame_batch, wav2pos_loss
from sslkit.options import check_choice, options_set
from sslkit.recording import Recording
from sslkit.sims.tdoa_windows import active_window_starts

MASKINGS = ("source-only", "random")


@dataclass
class Wav2PosTrainConfig:
    """A wav2pos training run (written to config.yaml)."""

    scene: str = "luvira-frames"
    data: list[str] = field(default_factory=list)
    scenes: int = 8000
    val_scenes: int = 400
    windows_per_scene: int = 1
    min_mics: int = 5
    epochs: int = 50
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_epochs: int = 2
    masking: str = "random"
    known_source_prob: float = 0.3
    noise_std: float = 0.02
    rotate: bool = False
    dim: int = 256
    depth: int = 4
    heads: int = 4
    design: str = "reference"
    """``reference`` (the authors' layers: Paper VII's network) or ``sslkit`` (sslkit's variant, the shipped checkpoint's)."""
    n_samples: int = 2048
    ngcc: str | None = None
    init: str | None = None
    """A wav2pos checkpoint to fine-tune: it keeps its network (``INIT_KEEPS`` are refused with it)."""
    device: str = "cpu"
    seed: int = 0
    workers: int | None = None


INIT_KEEPS = ("dim", "depth", "heads", "design", "ngcc")
"""What a fine-tuned network (``init``) keeps from its checkpoint: these options do not apply to it."""


class Wav2PosBank:
    """Fixed windows of recordings for wav2pos: the room mics, the near-source channel (if any) as
    the source signal, the source position at the window centre and, once ``attach_probabilities``
    ran, the frozen NGCC-PHAT's pair features of the model (``Wav2Pos.pair_features``; computed once, not per epoch)."""

    def __init__(self, recordings: Iterable[Recording], n_samples: int, windows_per_scene: int, rng: np.random.Generator):
        audio, coords, source, has_source, rates, lengths = [], [], [], [], set(), []
        for rec in recordings:  # may be a stream: only the windows are kept
            if rec.sources is None or len(rec.sources.ids) != 1:
                found = "no sources.csv" if rec.sources is None else f"{len(rec.sources.ids)} sources in sources.csv"
                raise UserError(f"{rec.path or 'a training recording'}: wav2pos trains on recordings of one source with its position; this has {found}")
            rates.add(rec.fs)
            lengths.append(len(rec.audio))
            near = bool(rec.scene.get("near_source"))
            room = rec.audio[:, :-1] if near else rec.audio
            mics = rec.mics[:-1] if near else rec.mics
            starts = active_window_starts(room, n_samples, n_samples // 4)
            if not len(starts):
                continue
            for s in rng.choice(starts, min(windows_per_scene, len(starts)), replace=False):
                window = np.zeros((1 + room.shape[1], n_samples), dtype=np.float32)
                window[1:] = normalise(room[s : s + n_samples].T)
                if near:
                    window[0] = normalise(rec.audio[s : s + n_samples, -1][None])[0]
                position = rec.sources.held_positions(np.array([(s + n_samples / 2) / rec.fs]))[0]
                audio.append(window)
                coords.append(np.vstack([position, mics]).astype(np.float32))
                source.append(position)
                has_source.append(near)
        if not audio:
            raise UserError(f"none of the {len(lengths)} training recordings has a non-silent window of {n_samples} samples "
                            f"(the longest has {max(lengths, default=0)} samples)")
        if len({len(a) for a in audio}) > 1:
            raise UserError("the training recordings have different numbers of microphones")
        if len(rates) > 1:
            raise UserError("the training recordings have different sample rates")
        self.fs = rates.pop()
        self.audio, self.coords = torch.as_tensor(np.stack(audio)), torch.as_tensor(np.stack(coords))
        self.source, self.has_source = torch.as_tensor(np.stack(source), dtype=torch.float32), torch.as_tensor(has_source)
        self.n_mics = self.audio.shape[1] - 1
        self.probs: torch.Tensor | None = None
        self.first_pair_token = 1
        self.pair_index = torch.as_tensor(pair_index(self.n_mics))

    def __len__(self) -> int:
        return len(self.audio)

    def attach_features(self, model: Wav2Pos, device: str, on_progress: Callable[[int], None] | None = None) -> None:
        """Run the frozen NGCC-PHAT over every window once (the model's pair features, float16)."""
        from sslkit.resources import check_memory

        token_pairs = (self.n_mics + 1) * self.n_mics // 2  # the most either design keeps, in both orders
        check_memory(len(self) * token_pairs * 2 * model.ngcc.n_lags * 2, f"NGCC-PHAT features of {len(self)} windows",
                     "lower --scenes, --val-scenes or --windows-per-scene")
        chunks, frame_batch = [], wav2pos_frame_batch(device)
        for s in range(0, len(self), frame_batch):
            chunks.append(model.pair_features(self.audio[s : s + frame_batch].to(device)).half().to(self.audio.device))
            if on_progress:
                on_progress(min(s + frame_batch, len(self)))
        self.probs = torch.cat(chunks)
        self.first_pair_token = model.first_pair_token
        self.pair_index = torch.as_tensor(pair_index(self.n_mics + 1 - self.first_pair_token), device=self.pair_index.device)

    def to(self, device: str) -> Wav2PosBank:
        """Keep every window (and its pair features) on ``device``, so that a GPU draws its batches
        without copies from host memory."""
        for name in ("audio", "coords", "source", "has_source", "probs", "pair_index"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(device))
        return self

    def sample(self, batch: int, rng: np.random.Generator, n_mics: int | None = None) -> dict[str, torch.Tensor]:
        """``batch`` random windows, each with its own random subset of ``n_mics`` microphones
        (kept in file order): audio (B, 1+k, N), coords (B, 1+k, 3), source (B, 3), probs: the pair
        features of the chosen rows (see ``attach_features``)."""
        k = n_mics or self.n_mics
        on = self.audio.device
        idx = torch.as_tensor(rng.integers(len(self), size=batch), device=on)
        mics = torch.as_tensor(np.sort(np.argsort(rng.random((batch, self.n_mics)), axis=1)[:, :k], axis=1), device=on)
        rows = torch.cat([torch.zeros(batch, 1, dtype=torch.int64, device=on), mics + 1], dim=1)
        out = {"audio": self.audio[idx[:, None], rows], "coords": self.coords[idx[:, None], rows],
               "source": self.source[idx], "has_source": self.has_source[idx]}
        if self.probs is not None:
            paired = rows[:, self.first_pair_token :] - self.first_pair_token  # rows of the pair table
            a, b = torch.triu_indices(paired.shape[1], paired.shape[1], 1, device=on)
            out["probs"] = self.probs[idx[:, None], self.pair_index[paired[:, a], paired[:, b]]]
        return out

    def all_windows(self) -> dict[str, np.ndarray]:
        """Every window with all its mics (validation)."""
        out = {"audio": self.audio, "coords": self.coords, "source": self.source, "has_source": self.has_source}
        return out | ({"probs": self.probs} if self.probs is not None else {})


def rotate_scenes(coords: torch.Tensor, centre: tuple[float, float, float], rng: np.random.Generator) -> torch.Tensor:
    """Each window's source and mics (B, 1+M, 3) turned by a random angle about the vertical axis
    through ``centre``, mirrored half the time: every distance, hence the audio and its TDOAs, is
    unchanged, so the network has to use the coordinates instead of memorising one layout."""
    as_coords = dict(dtype=coords.dtype, device=coords.device)
    angle = torch.as_tensor(rng.uniform(0, 2 * np.pi, len(coords)), **as_coords)[:, None]
    mirror = torch.as_tensor(np.where(rng.random(len(coords)) < 0.5, -1.0, 1.0), **as_coords)[:, None]
    x, y = mirror * (coords[..., 0] - centre[0]), coords[..., 1] - centre[1]
    out = coords.clone()
    out[..., 0] = centre[0] + angle.cos() * x - angle.sin() * y
    out[..., 1] = centre[1] + angle.sin() * x + angle.cos() * y
    return out


def normalise(x: np.ndarray) -> np.ndarray:
    """(C, N) windows, each less its mean (as ``sslkit.gcc.centred`` at inference), scaled by their
    common peak (keeps level differences between mics)."""
    x = x - x.mean(axis=-1, keepdims=True)
    return x / (np.abs(x).max() + 1e-8)


def make_masks(cfg: Wav2PosTrainConfig, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio and coordinate masks (B, 1+k) of a batch, on the batch's device (drawn on the host)."""
    b, m1 = batch["audio"].shape[:2]
    if cfg.masking == "random":
        audio_known, coord_known = random_masks(b, m1 - 1, generator)
    else:
        audio_known = torch.ones(b, m1, dtype=torch.bool)
        audio_known[:, 0] = False
        coord_known = audio_known.clone()
    use_source = torch.rand(b, generator=generator) < cfg.known_source_prob
    on = batch["has_source"].device
    audio_known, coord_known = audio_known.to(on), coord_known.to(on)
    audio_known[:, 0] = use_source.to(on) & batch["has_source"]
    return audio_known, coord_known


def training_banks(cfg: Wav2PosTrainConfig, status: Callable) -> tuple[Wav2PosBank, Wav2PosBank]:
    """Training and validation windows: from ``cfg.data`` (a tenth for validation) or simulated rooms."""
    from sslkit.sims.dataset import simulate_stream
    from sslkit.sims.scene import load_template

    if cfg.data:
        from sslkit.recording import read_recording, recording_folders

        recs = [read_recording(folder) for path in cfg.data for folder in recording_folders(path)]
        n_val = max(1, len(recs) // 10)
        train_recs, val_recs = recs[n_val:], recs[:n_val]
    else:
        template = load_template(cfg.scene)
        train_recs = simulate_stream(template, list(range(cfg.scenes)), cfg.seed, cfg.workers, None, status("simulating training rooms", cfg.scenes))
        val_recs = simulate_stream(template, list(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg.val_scenes)), cfg.seed, cfg.workers, None,
                                   status("simulating validation rooms", cfg.val_scenes))
    window_rng = np.random.default_rng(cfg.seed)
    train_bank = Wav2PosBank(train_recs, cfg.n_samples, cfg.windows_per_scene, window_rng)
    val_bank = Wav2PosBank(val_recs, cfg.n_samples, cfg.windows_per_scene, window_rng)
    if not cfg.min_mics <= train_bank.n_mics:
        raise UserError(f"--min-mics {cfg.min_mics} exceeds the recordings' {train_bank.n_mics} microphones")
    if val_bank.n_mics != train_bank.n_mics or val_bank.fs != train_bank.fs:
        raise UserError("the validation recordings differ from the training ones in mic count or sample rate")
    return train_bank, val_bank


def train_wav2pos(cfg: Wav2PosTrainConfig, run_dir: str | Path, resume: bool = False,
                  on_status: Callable[[str, int, int], None] | None = None, overwrite: bool = False) -> dict:
    """Train wav2pos in the run folder ``run_dir`` (see :func:`~sslkit.models.training.run_folder` for
    ``resume`` and ``overwrite``); returns the final epoch's metrics."""
    check_training_config(cfg)
    check_choice("--masking", cfg.masking, MASKINGS)
    check_choice("--design", cfg.design, DESIGNS)
    kept = options_set(cfg, INIT_KEEPS) if cfg.init else []
    if kept:
        raise UserError(f"--init {cfg.init} keeps its network's size, design and NGCC-PHAT: "
                        f"{', '.join('--' + name for name in kept)} would be ignored")
    if cfg.dim % cfg.heads:
        raise UserError(f"--heads {cfg.heads} does not divide --dim {cfg.dim}")
    if not cfg.data:
        channels = simulated_channels(cfg)
        check_simulated_rooms(cfg.scenes, cfg.val_scenes, 2 * 4 * cfg.n_samples * cfg.windows_per_scene * channels,  # windows listed, then stacked
                              "lower --scenes, --val-scenes or --windows-per-scene")
        check_batch_inputs(cfg.batch_size, 4 * cfg.n_samples * channels)
    with run_folder(run_dir, resume, overwrite, cfg) as folder:
        return run_train_wav2pos(cfg, folder, resume, on_status)


def simulated_channels(cfg: Wav2PosTrainConfig) -> int:
    """Audio tokens of a window of ``cfg.scene``'s rooms: the source's and one per mic."""
    from sslkit.sims.scene import load_template, resolve_scene

    return len(resolve_scene(load_template(cfg.scene), cfg.seed, 0).mics) + 1


def run_train_wav2pos(cfg: Wav2PosTrainConfig, run_dir: str | Path, resume: bool = False,
                  on_status: Callable[[str, int, int], None] | None = None) -> dict:
    """Train wav2pos; writes last.pt, best.pt, metrics.csv, learning_curve.png, config.yaml.

    Under ``torchrun --nproc_per_node K`` each process trains on its own batches (seeded by rank)
    with gradients averaged by DistributedDataParallel; rank 0 writes the files.
    """
    rank, world = distributed()
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.device == "cuda" and world > 1 else cfg.device
    torch.manual_seed(cfg.seed)
    status = stage_progress(on_status, rank)
    pretrained = pretrained_wav2pos(cfg.init) if cfg.init else None  # a wrong checkpoint fails before the data work
    train_bank, val_bank = training_banks(cfg, status)
    fs = train_bank.fs
    all_mics = train_bank.coords[:, 1:].reshape(-1, 3).numpy()
    geometry = training_geometry(train_bank.coords[:, 1:].numpy(), cfg.rotate)
    centre = tuple(float(v) for v in (all_mics.min(0) + all_mics.max(0)) / 2)
    scale = float(np.abs(all_mics - np.array(centre)).max())
    if pretrained is not None and (pretrained.fs, pretrained.n_samples) != (fs, cfg.n_samples):
        raise InputFileError(cfg.init, f"trained on {pretrained.n_samples}-sample windows at {pretrained.fs} Hz, "
                                       f"the data has {cfg.n_samples} at {fs} Hz")
    model = (pretrained or new_wav2pos(cfg, fs, centre, scale)).to(device)
    if model.ngcc is not None:
        model.ngcc.eval()
        for bank, label in ((train_bank, "NGCC-PHAT features, training"), (val_bank, "NGCC-PHAT features, validation")):
            bank.attach_features(model, device, status(label, len(bank)))
    train_bank.to(device)
    val_bank.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_bank) / (cfg.batch_size * world))
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda"))
    rng = np.random.default_rng([cfg.seed, rank])
    gen = torch.Generator().manual_seed(cfg.seed + rank)
    val = val_bank.all_windows()
    record = RunRecord(run_dir, model, "wav2pos", ("train_loss",), "val_mae_cm", higher_is_better=False)
    if resume:
        record.resume(optimizer, scheduler, device)
    if rank == 0:
        write_yaml(run_dir / "config.yaml", {**asdict(cfg), "network": model.config})
    row: dict = {}
    for epoch in range(record.start_epoch, cfg.epochs):
        net.train()
        if model.ngcc is not None:
            model.ngcc.eval()
        t0, losses = time.perf_counter(), []
        for step in range(steps_per_epoch):
            batch = train_bank.sample(cfg.batch_size, rng, int(rng.integers(cfg.min_mics, train_bank.n_mics + 1)))
            if cfg.rotate:
                batch["coords"] = rotate_scenes(batch["coords"], centre, rng)
            audio_known, coord_known = make_masks(cfg, batch, gen)
            clean, coords, probs = batch["audio"], batch["coords"], batch.get("probs")  # on the training device
            noisy = clean + cfg.noise_std * torch.rand(len(clean), 1, 1, device=device) * torch.randn(clean.shape, device=device)
            with torch.autocast("cuda", enabled=device.startswith("cuda")):
                out = net(noisy, coords, audio_known, coord_known, probs)
            loss = wav2pos_loss({k: v.float() for k, v in out.items()}, clean, coords[:, 0], coords[:, 1:], audio_known, coord_known)
            optimizer_step(loss, optimizer, scaler, scheduler)
            losses.append(loss.detach())  # no host sync per step
            if on_status and rank == 0:
                on_status(f"epoch {epoch + 1}/{cfg.epochs}", step + 1, steps_per_epoch)
        if rank != 0:
            continue
        val_mae = validate(model, val)
        row = {"epoch": epoch + 1, "train_loss": float(torch.stack(losses).mean()), "val_mae_cm": val_mae * 100,
               "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        meta = {"metrics": row, "train_config": asdict(cfg), "mic_range": [cfg.min_mics, train_bank.n_mics], "train_geometry": geometry}
        record.end_epoch(row, meta, optimizer, scheduler)
    return row


MAX_RECORDED_LAYOUTS = 8
"""Training mic layouts recorded one by one in a checkpoint; beyond, only their bounding box."""


def training_geometry(mics: np.ndarray, rotated: bool) -> dict:
    """What a checkpoint records of the mic geometry it was trained on, from the training windows'
    mics (W, M, 3): the distinct layouts when there are few and they were not turned at random
    (``mic_layouts``), and always the box holding every training mic (``mic_box``, (2, 3))."""
    layouts = np.unique(mics.round(3), axis=0)
    record = {"mic_box": [mics.reshape(-1, 3).min(0).tolist(), mics.reshape(-1, 3).max(0).tolist()]}
    if not rotated and len(layouts) <= MAX_RECORDED_LAYOUTS:
        record["mic_layouts"] = layouts.tolist()
    return record


def new_wav2pos(cfg: Wav2PosTrainConfig, fs: int, centre: tuple[float, float, float], scale: float) -> Wav2Pos:
    """A freshly initialised wav2pos of ``cfg``'s size, with the frozen NGCC-PHAT of ``cfg.ngcc`` (if any)."""
    ngcc = load_checkpoint(cfg.ngcc, kind="ngcc-phat")[0] if cfg.ngcc else None

    def build(depth: int = cfg.depth) -> Wav2Pos:
        return Wav2Pos(cfg.n_samples, fs, cfg.dim, depth, cfg.heads, centre, scale, ngcc.config if ngcc else None, cfg.design)

    one, two = (parameter_count(lambda depth=depth: build(depth)) for depth in (1, 2))  # a deep model takes long to build even on meta
    check_model_fits(one + (cfg.depth - 1) * (two - one), "wav2pos", "lower --dim or --depth")
    model = build()
    if ngcc is not None:
        model.ngcc.load_state_dict(ngcc.state_dict())
    return model


def pretrained_wav2pos(path: str) -> Wav2Pos:
    """The wav2pos checkpoint at ``path`` to fine-tune; its size, coordinate frame and NGCC-PHAT are kept."""
    model, meta = load_checkpoint(path, kind="wav2pos")
    return model.train()


def validate(model: Wav2Pos, val: dict) -> float:
    """Mean 3D source error (m) with all mics known and the source signal unknown (setup 1a);
    ``val``: a bank's ``all_windows`` on the model's device."""
    model.eval()
    audio, coords, probs = val["audio"], val["coords"], val.get("probs")
    known = torch.ones(audio.shape[:2], dtype=torch.bool, device=audio.device)
    known[:, 0] = False
    with torch.no_grad():
        pred = torch.cat([model(audio[s : s + 128], coords[s : s + 128], known[s : s + 128], known[s : s + 128],
                                None if probs is None else probs[s : s + 128])["source"]
                          for s in range(0, len(audio), 128)])
    return float((pred - val["source"]).norm(dim=-1).mean())
