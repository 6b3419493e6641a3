"""Pieces shared by sslkit's training loops: schedules, metrics files, learning curves, resume."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from sslkit.errors import InputFileError, Interrupted, OutputError, UserError, describe
from sslkit.files import MANIFEST, atomic_file, check_folder_to_fill, check_only_ours, first_difference, plain, read_yaml, remove_sslkit_folder
from sslkit.models.checkpoint import save_checkpoint
from sslkit.resources import check_memory

VAL_SEED_OFFSET = 1_000_000
"""Simulated validation rooms use scene indices from here on, disjoint from the training rooms'."""


def check_simulated_rooms(scenes: int, val_scenes: int, bytes_per_scene: float, change: str = "lower --scenes or --val-scenes") -> None:
    """Before simulating: training rooms must stay below ``VAL_SEED_OFFSET`` (else they would be
    validation rooms too), and what is kept of the rooms (``bytes_per_scene`` each) must fit in
    memory, else ResourceError suggesting ``change``. UserError otherwise."""
    if scenes > VAL_SEED_OFFSET:
        raise UserError(f"--scenes {scenes}: at most {VAL_SEED_OFFSET} training rooms (validation rooms are numbered from there)")
    check_memory((scenes + val_scenes) * bytes_per_scene, f"{scenes + val_scenes} simulated rooms held in memory", change)


def check_batch_inputs(batch_size: int, bytes_per_item: float) -> None:
    """ResourceError before any work when a batch's input windows alone (``bytes_per_item`` each) would not fit in memory."""
    check_memory(batch_size * bytes_per_item, f"a batch of {batch_size} windows", "lower --batch-size")


def parameter_count(build: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the model ``build`` makes, built on the meta device (which allocates nothing)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def check_model_fits(n_parameters: int, what: str, change: str) -> None:
    """ResourceError before allocating when a model of ``n_parameters`` would not fit in memory with
    its gradients and Adam's two moments (four float32 copies)."""
    check_memory(16 * n_parameters, f"{what} of {n_parameters} parameters, with gradients and optimizer state", change)


def check_training_config(cfg: object) -> None:
    """UserError, before any work, for a training config (a dataclass with ``lr``) whose learning
    rate is not positive or any of whose numbers is NaN or infinite."""
    for item in dataclasses.fields(cfg):
        value = getattr(cfg, item.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{item.name.replace('_', '-')} is {value}: give a finite number")
    if not cfg.lr > 0:
        raise UserError(f"--lr is {cfg.lr}: the learning rate must be positive")


RESUME_MAY_CHANGE = ("epochs", "device", "workers")
"""Settings a resumed run may change: train longer, elsewhere, with other data workers."""


def check_same_run(saved: Path, config: object) -> None:
    """UserError when the settings ``config`` (a dataclass) differ from the run's ``saved``
    config.yaml (if any) in more than ``RESUME_MAY_CHANGE``: resuming would mix two runs."""
    if not saved.is_file():
        return
    before = read_yaml(saved)
    if not isinstance(before, dict):
        raise InputFileError(saved, "holds no run settings (a YAML mapping of them is expected)")
    now = {key: value for key, value in plain(dataclasses.asdict(config)).items() if key not in RESUME_MAY_CHANGE}
    # the settings it records (a run of an older sslkit may lack newer ones)
    before, now = {key: before[key] for key in now if key in before}, {key: now[key] for key in now if key in before}
    difference = first_difference(before, now)
    if difference:
        raise UserError(f"{saved.parent}: --resume continues the run as it was set up, with {difference}: "
                        "drop the change, or train into another --out")


@contextlib.contextmanager
def run_folder(path: str | os.PathLike, resume: bool = False, overwrite: bool = False, config: object = None) -> Iterator[Path]:
    """A training run's folder, checked before any work; removed again if the run fails before
    writing anything into it.

    A non-empty folder must be an earlier sslkit run: ``resume`` continues it (it needs its
    ``last.pt``, and ``config``, the run's settings as a dataclass, must be those of its
    ``config.yaml`` but for ``RESUME_MAY_CHANGE``), ``overwrite`` starts over (deleting it), neither
    is an error.
    """
    path = check_folder_to_fill(Path(path))
    existing = path.is_dir() and any(path.iterdir())
    if existing:
        check_only_ours(path)
    if resume and not (path / "last.pt").is_file():
        raise OutputError(f"{path}: nothing to resume (no last.pt); run without --resume to start")
    if resume and config is not None:
        check_same_run(path / "config.yaml", config)
    if existing and not resume:
        if not overwrite:
            raise OutputError(f"{path}: holds an earlier run; --resume continues it, --overwrite starts over")
        remove_sslkit_folder(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException as err:
        if created and set(p.name for p in path.iterdir()) <= {MANIFEST}:
            shutil.rmtree(path)
        if isinstance(err, KeyboardInterrupt) and (path / "last.pt").is_file():
            raise Interrupted(f"{path} keeps the last complete epoch in last.pt; --resume continues from it") from None
        raise


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero over ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def append_metrics(path: str | os.PathLike, row: dict) -> list[dict]:
    """Append one epoch's metrics to a CSV (rewritten atomically) and return all rows."""
    path = Path(path)
    rows = read_metrics(path) + [row]
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def read_metrics(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_learning_curve(path: str | os.PathLike, rows: list[dict], loss_keys: tuple[str, ...], metric_key: str | None = None) -> None:
    """PNG with the losses per epoch (left) and one validation metric (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2 if metric_key else 1, figsize=(10 if metric_key else 5, 3.5), squeeze=False)
    for key in loss_keys:
        axes[0, 0].plot(epochs, [r[key] for r in rows], marker=".", label=key)
    axes[0, 0].set_xlabel("epoch")
    axes[0, 0].set_ylabel("loss")
    axes[0, 0].legend()
    if metric_key:
        axes[0, 1].plot(epochs, [r[metric_key] for r in rows], marker=".", color="tab:green")
        axes[0, 1].set_xlabel("epoch")
        axes[0, 1].set_ylabel(metric_key)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, initialising the process group once; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world


def stage_progress(on_status: Callable[[str, int, int], None] | None, rank: int) -> Callable[[str, int], Callable[[int], None]]:
    """``stage(label, total)`` → a ``done``-count callback reporting to ``on_status`` on rank 0 (no-op otherwise)."""
    if on_status is None or rank != 0:
        return lambda label, total: (lambda done: None)
    return lambda label, total: (lambda done: on_status(label, done, total))


def restore_run(last: Path, model: torch.nn.Module, optimizer, scheduler, device: str, rng: np.random.Generator | None = None) -> dict | None:
    """Load ``last.pt`` (written by a previous run) into model, optimizer, scheduler and rng.

    Returns the saved state (its ``epoch`` and best-metric entries tell where to continue) or None
    when there is nothing to resume.
    """
    if not last.is_file():
        return None
    from sslkit.models.checkpoint import read_checkpoint

    state = read_checkpoint(last, device)
    missing = [key for key in ("state_dict", "optimizer", "scheduler", "epoch", "best_metric") + (("rng",) if rng is not None else ()) if key not in state]
    if missing:
        raise InputFileError(last, f"cannot resume from it: it has no {', '.join(missing)} (a training run's last.pt has)")
    try:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if rng is not None:
            rng.bit_generator.state = state["rng"]
    except Exception as err:
        raise InputFileError(last, f"cannot resume from it ({describe(err)})") from None
    return state


def optimizer_step(loss: torch.Tensor, optimizer, scaler: torch.amp.GradScaler, scheduler) -> None:
    """Backward through the (mixed-precision) scaler, step, and advance the schedule."""
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


class RunRecord:
    """How every trainer ends an epoch and resumes: ``metrics.csv`` and ``learning_curve.png`` grow by
    one row, ``best.pt`` is written when the monitored metric improves, and ``last.pt`` keeps the
    optimizer, schedule and random state for ``--resume``.

    ``loss_keys`` are the row's losses to plot; ``metric`` the monitored validation metric, better
    when higher if ``higher_is_better``.
    """

    def __init__(self, run_dir: Path, model: torch.nn.Module, name: str, loss_keys: tuple[str, ...], metric: str, higher_is_better: bool):
        self.run_dir, self.model, self.name = Path(run_dir), model, name
        self.loss_keys, self.metric, self.sign = loss_keys, metric, 1.0 if higher_is_better else -1.0
        self.best = -math.inf
        self.start_epoch = 0

    def resume(self, optimizer, scheduler, device: str, rng: np.random.Generator | None = None) -> None:
        """Continue from ``last.pt``: model, optimizer, schedule, rng, the epoch to start at and the best metric so far."""
        state = restore_run(self.run_dir / "last.pt", self.model, optimizer, scheduler, device, rng)
        if state is not None:
            self.start_epoch, self.best = state["epoch"], state["best_metric"]

    def end_epoch(self, row: dict, meta: dict, optimizer, scheduler, rng: np.random.Generator | None = None, keep_as_best: bool = False) -> None:
        """Record the epoch's ``row`` (with ``epoch`` and the monitored metric); ``meta`` goes into both
        checkpoints; ``keep_as_best`` writes best.pt whatever the metric (nothing to compare)."""
        rows = append_metrics(self.run_dir / "metrics.csv", row)
        plot_learning_curve(self.run_dir / "learning_curve.png", rows, self.loss_keys, self.metric)
        score = self.sign * row[self.metric]
        if score > self.best or keep_as_best:
            self.best = score
            save_checkpoint(self.run_dir / "best.pt", self.model, self.name, **meta)
        resume_state = {"rng": rng.bit_generator.state} if rng is not None else {}
        save_checkpoint(self.run_dir / "last.pt", self.model, self.name, **meta, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        epoch=int(row["epoch"]), best_metric=self.best, **resume_state)
