"""``sslkit train-ngcc``, ``evaluate-tdoa`` and ``train-wav2pos``: the learned TDOA and localization models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sslkit.cli.app import Device, Overwrite, Resume, Seed, Workers, app, console, labelled_progress, progress_bar, summary_table, user_errors
from sslkit.resources import resolve_device


@app.command("train-ngcc")
@user_errors
def train_ngcc_command(
    scene: str = typer.Option("ngcc-train", "--scene", help="Preset or scene/dataset YAML to draw training rooms from."),
    out: Path = typer.Option(Path("runs/ngcc"), "--out", "-o", help="Run folder (checkpoints, metrics.csv, learning_curve.png)."),
    scenes: int = typer.Option(2000, "--scenes", min=1, help="Training rooms simulated (one window each per epoch)."),
    val_scenes: int = typer.Option(200, "--val-scenes", min=1, help="Validation rooms (disjoint draws)."),
    windows_per_scene: int = typer.Option(1, "--windows-per-scene", min=1, help="Windows drawn from each room per epoch."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (cosine schedule)."),
    sigma: float = typer.Option(0.0, "--sigma", min=0, help="Gaussian label smoothing width in samples (0: one-hot)."),
    size: str = typer.Option("small", "--size", help="small (CPU-friendly), compact (8 channels: fast inference on a CPU), seld (Paper VI: C = 16 feature channels) or paper (Paper V: 128 sinc filters of 1023 taps)."),
    design: Optional[str] = typer.Option(None, "--design", help="circular (shift-equivariant, sslkit's) or reference (the authors' layers); default: reference for --size paper, else circular."),
    targets: int = typer.Option(1, "--targets", min=1, help="Output tracks K; K > 1 trains multi-target TDOA with ADPIT (Paper VI)."),
    adpit: str = typer.Option("bradpit", "--adpit", help="ADPIT implementation for --targets > 1."),
    audio_dir: Optional[Path] = typer.Option(None, "--audio-dir", help="Your own speech corpus instead of the bundled clips."),
    device: Device = "auto",
    workers: Workers = None,
    seed: Seed = 0,
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Train NGCC-PHAT on simulated rooms (regression via classification over lags).

    [bold]Example[/]

      sslkit train-ngcc --scene ngcc-train --epochs 30 --out runs/ngcc --device auto

      sslkit train-ngcc --scene tetra-seld --targets 3 --out runs/ngcc-multi
    """
    from sslkit.models.train_ngcc import NgccTrainConfig, train_ngcc

    cfg = NgccTrainConfig(scene, scenes, val_scenes, windows_per_scene, epochs, batch_size, lr, sigma, targets, adpit, size=size, design=design, device=resolve_device(device),
                          seed=seed, workers=workers, audio_dir=str(audio_dir) if audio_dir else None)
    with labelled_progress() as status:
        final = train_ngcc(cfg, out, resume, status, overwrite=overwrite)
    console.print(summary_table(f"NGCC-PHAT training → {out}/", {
        "epochs": int(final.get("epoch", epochs)),
        "val accuracy @10 cm": f"{final.get('val_acc_10cm', float('nan')) * 100:.1f} %",
        "val MAE": f"{final.get('val_mae_cm', float('nan')):.2f} cm",
        "best checkpoint": out / "best.pt",
    }))


@app.command("evaluate-tdoa")
@user_errors
def evaluate_tdoa_command(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="NGCC-PHAT checkpoint (default: the shipped one)."),
    scene: str = typer.Option("ngcc-test", "--scene", help="Test preset or YAML with grid T60 and SNR values."),
    snippets: int = typer.Option(40, "--snippets", min=1, help="Source position/signal draws replayed in every grid cell."),
    device: Device = "auto",
    workers: Workers = None,
    seed: Seed = 0,
    out: Path = typer.Option(Path("tdoa-eval"), "--out", "-o", help="Folder for cells.csv and summary.csv."),
) -> None:
    """Paper V's test protocol: GCC-PHAT vs NGCC-PHAT over the SNR × T60 grid (MAE, accuracy at 10 cm).

    [bold]Example[/]

      sslkit evaluate-tdoa --snippets 40 --out tdoa-eval
    """
    from sslkit.models.eval_tdoa import evaluate_tdoa_files

    with progress_bar() as progress:
        task = progress.add_task("grid cells", total=None)
        summary = evaluate_tdoa_files(out, checkpoint, scene, snippets, seed, device, workers,
                                      on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    table = Table(title=f"TDOA test protocol ({scene}, {snippets} snippets per cell) → {out}/", title_justify="left")
    for col in ("T60 (s)", "GCC-PHAT MAE cm", "GCC-PHAT acc@10cm %", "NGCC-PHAT MAE cm", "NGCC-PHAT acc@10cm %", "windows"):
        table.add_column(col, justify="right")
    by_key = {(r["method"], r["rt60"]): r for r in summary}
    for rt60 in dict.fromkeys(r["rt60"] for r in summary):
        g, n = by_key[("gcc-phat", rt60)], by_key[("ngcc-phat", rt60)]
        table.add_row(str(rt60), f"{g['mae_cm']:.2f}", f"{g['acc_10cm']:.1f}", f"{n['mae_cm']:.2f}", f"{n['acc_10cm']:.1f}", str(g["n"]))
    console.print(table)


@app.command("train-wav2pos")
@user_errors
def train_wav2pos_command(
    data: Optional[list[Path]] = typer.Option(None, "--data", help="Recording folders with ground truth, or datasets of them (repeatable); default: simulate --scene."),
    scene: str = typer.Option("luvira-frames", "--scene", help="Preset or YAML to simulate training rooms from (without --data)."),
    out: Path = typer.Option(Path("runs/wav2pos"), "--out", "-o", help="Run folder."),
    scenes: int = typer.Option(8000, "--scenes", min=1),
    val_scenes: int = typer.Option(400, "--val-scenes", min=1),
    windows_per_scene: int = typer.Option(1, "--windows-per-scene", min=1),
    min_mics: int = typer.Option(5, "--min-mics", min=2, help="Train on random mic subsets of this many mics up to all."),
    rotate: bool = typer.Option(False, "--rotate/--no-rotate", help="Turn and mirror each training scene at random (exact: distances are kept)."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(5e-4, "--lr"),
    masking: str = typer.Option("random", "--masking", help="source-only (fixed mics) or random (Paper VII rules)."),
    dim: int = typer.Option(256, "--dim", min=8, help="Embedding dimension d."),
    depth: int = typer.Option(4, "--depth", min=1, help="Transformer blocks D in encoder and decoder."),
    heads: int = typer.Option(4, "--heads", min=1, help="Attention heads (must divide --dim)."),
    design: str = typer.Option("reference", "--design", help="reference (the authors' layers, Paper VII's network) or sslkit (the shipped checkpoint's variant)."),
    ngcc: Optional[Path] = typer.Option(None, "--ngcc", help="Frozen NGCC-PHAT checkpoint for the TDOA module (none: raw audio only)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Fine-tune this wav2pos checkpoint (keeps its size, design and NGCC-PHAT: --dim, --depth, --heads, --design and --ngcc do not apply)."),
    device: Device = "auto",
    workers: Workers = None,
    seed: Seed = 0,
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Train wav2pos (masked-autoencoder localization) on simulated rooms or your recordings.

    Multi-GPU: torchrun --nproc_per_node 4 -m sslkit train-wav2pos --device cuda ...

    [bold]Example[/]

      sslkit train-wav2pos --scene luvira-frames --ngcc runs/ngcc-luvira/best.pt --out runs/wav2pos

      sslkit train-wav2pos --data rec1 --data rec2 --init runs/wav2pos/best.pt --lr 1e-4 --out runs/wav2pos-real
    """
    from sslkit.models.train_wav2pos import Wav2PosTrainConfig, train_wav2pos

    cfg = Wav2PosTrainConfig(scene=scene, data=[str(p) for p in data or []], scenes=scenes, val_scenes=val_scenes,
                             windows_per_scene=windows_per_scene, min_mics=min_mics, rotate=rotate, epochs=epochs, batch_size=batch_size, lr=lr, masking=masking,
                             dim=dim, depth=depth, heads=heads, design=design, ngcc=str(ngcc) if ngcc else None, init=str(init) if init else None,
                             device=resolve_device(device), seed=seed, workers=workers)
    with labelled_progress() as status:
        final = train_wav2pos(cfg, out, resume, status, overwrite=overwrite)
    console.print(summary_table(f"wav2pos training → {out}/", {
        "epochs": int(final.get("epoch", epochs)), "val MAE": f"{final.get('val_mae_cm', float('nan')):.1f} cm",
        "best checkpoint": out / "best.pt",
    }))


