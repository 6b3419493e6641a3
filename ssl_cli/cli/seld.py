"""``sslkit train-seld``, ``evaluate-seld`` and ``predict-seld``: sound event localization and detection."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sslkit.cli.app import Device, Overwrite, Resume, Seed, app, console, labelled_progress, progress_bar, summary_table, user_errors
from sslkit.errors import UserError
from sslkit.resources import resolve_device


@app.command("train-seld")
@user_errors
def train_seld_command(
    data: Path = typer.Option(..., "--data", help="Folder of recording folders (simulate --preset tetra-seld --count N), or a DCASE folder with mic_dev/ and metadata_dev/."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation data in the same layout (default: the first fifth of --data)."),
    out: Path = typer.Option(Path("runs/seld"), "--out", "-o", help="Run folder."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="YAML list of class names (default: the 9 synthesized classes)."),
    features: str = typer.Option("logmel+gcc", "--features", help="logmel+gcc, logmel+ngcc (with --ngcc) or logmel."),
    ngcc: Optional[Path] = typer.Option(None, "--ngcc", help="Multi-target NGCC-PHAT for logmel+ngcc (default: the shipped tetrahedral-array one)."),
    loss: str = typer.Option("bradpit", "--loss", help="adpit (baseline), overlay, distance-first or bradpit: same loss, different speed."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    filters: int = typer.Option(64, "--filters", min=1, help="Convolution channels of the CRNN."),
    rnn_size: int = typer.Option(128, "--rnn-size", min=1, help="GRU width of the CRNN."),
    channel_swap: bool = typer.Option(True, "--channel-swap/--no-channel-swap", help="Augment with the array's channel-swap symmetries."),
    distance_unit: float = typer.Option(4.0, "--distance-unit", min=0.01, help="Metres per unit of the distance term in the loss (larger: less weight than the DOA)."),
    device: Device = "auto",
    seed: Seed = 0,
    resume: Resume = False,
    overwrite: Overwrite = False,
) -> None:
    """Train a SELDnet CRNN with Multi-ACCDOA (+ distance) output; validates DCASE F_LD, DOAE, RDE each epoch.

    [bold]Example[/]

      sslkit simulate --preset tetra-seld --count 200 --out seld-data && sslkit train-seld --data seld-data --loss bradpit

    Multi-GPU: torchrun --nproc_per_node 4 -m sslkit train-seld --device cuda ...
    """
    import yaml

    from sslkit.models.adpit import VARIANTS
    from sslkit.models.train_seld import DEFAULT_CLASSES, SeldTrainConfig, seld_data_folders, train_seld

    variant = "baseline" if loss == "adpit" else loss
    if variant not in VARIANTS or variant == "brute-force":
        raise UserError(f"--loss must be adpit, overlay, distance-first or bradpit, got '{loss}'")
    if features not in ("logmel+gcc", "logmel+ngcc", "logmel"):
        raise UserError(f"--features must be logmel+gcc, logmel+ngcc or logmel, got '{features}'")
    names = yaml.safe_load(classes.read_text()) if classes else DEFAULT_CLASSES
    cfg = SeldTrainConfig(seld_data_folders(data), seld_data_folders(val) if val else [], list(names), features, variant, epochs,
                          batch_size, lr=lr, filters=filters, rnn_size=rnn_size, channel_swap=channel_swap, distance_unit=distance_unit,
                          ngcc=str(ngcc) if ngcc else None, device=resolve_device(device), seed=seed)
    with labelled_progress() as status:
        final = train_seld(cfg, out, status, resume, overwrite=overwrite)
    measured = final["f_ld"] == final["f_ld"]  # NaN: no events to validate on
    console.print(summary_table(f"SELD training → {out}/", {
        "epochs": final["epoch"],
        "F_LD (20°, rel. dist. 1.0)": f"{final['f_ld'] * 100:.1f} %" if measured else "not measured (no validation events)",
        "DOA error": f"{final['doae_deg']:.1f}°" if measured else "–",
        "relative distance error": f"{final['rde']:.2f}" if measured else "–",
    }))


@app.command("evaluate-seld")
@user_errors
def evaluate_seld_command(
    run: Optional[Path] = typer.Argument(None, help="A train-seld run folder: score its best.pt on its validation data."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="DCASE output CSV, or a folder of them (instead of RUN)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="DCASE metadata CSV, or a folder with the same file names."),
    n_classes: int = typer.Option(13, "--classes", min=1, help="Number of classes (with --pred)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="metrics JSON, or a folder for seld_metrics.json (default: in RUN or beside --pred)."),
    device: Device = "auto",
) -> None:
    """DCASE2024 SELD metrics: F-score (20°, relative distance 1.0), DOA error, relative distance error.

    [bold]Examples[/]

      sslkit evaluate-seld runs/seld
      sslkit evaluate-seld --pred outputs/ --truth metadata_dev/ --classes 13
    """
    import json

    from sslkit.files import atomic_file, output_file
    from sslkit.seld_metrics import read_dcase_csv, seld_metrics

    if run is None and (pred is None or truth is None):
        raise UserError("give a train-seld run folder, or both --pred and --truth")
    out = output_file(out, run if run is not None else (pred if pred.is_dir() else pred.parent), "seld_metrics.json")
    if run is not None:
        from sslkit.models.train_seld import evaluate_run

        metrics = evaluate_run(run, resolve_device(device))
    else:
        pred_files = sorted(pred.glob("*.csv")) if pred.is_dir() else [pred]
        truth_files = [truth / p.name for p in pred_files] if truth.is_dir() else [truth]
        if not pred_files:
            raise UserError(f"{pred}: no CSV files")
        metrics = seld_metrics([read_dcase_csv(p, n_classes) for p in pred_files], [read_dcase_csv(t, n_classes) for t in truth_files], n_classes)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    table = Table(title=f"SELD metrics → {out}", title_justify="left")
    for col in ("class", "F", "DOAE °", "RDE", "TP", "FP", "FN"):
        table.add_column(col, justify="right")
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    for c in metrics["per_class"]:
        table.add_row(str(c["class"]), fmt(c["f"], ".3f"), fmt(c["doae_deg"], ".1f"), fmt(c["rde"], ".2f"), str(c["tp"]), str(c["fp"]), str(c["fn"]))
    table.add_row("macro", f"{metrics['f_ld']:.3f}", f"{metrics['doae_deg']:.1f}", f"{metrics['rde']:.2f}", "", "", "", style="bold")
    console.print(table)


@app.command("predict-seld")
@user_errors
def predict_seld_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="best.pt of a train-seld run."),
    recordings: Path = typer.Argument(..., help="A recording folder, or a folder of them."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for DCASE output CSVs (default: <recordings>/seld-output)."),
    device: Device = "auto",
) -> None:
    """Write DCASE-format SELD predictions (frame,class,source,azimuth,elevation,distance) per recording.

    [bold]Example[/]

      sslkit predict-seld --checkpoint runs/seld/best.pt seld-test/ --out seld-output/
    """

    import torch

    from sslkit.files import check_folder_to_fill
    from sslkit.models.train_seld import load_seld_model, predict_clip
    from sslkit.recording import load_recording
    from sslkit.sims.seld_labels import write_dcase_csv

    folders = [recordings] if (recordings / "audio.wav").is_file() else sorted(p for p in recordings.glob("*") if (p / "audio.wav").is_file())
    if not folders:
        raise UserError(f"{recordings}: no recording folders")
    out = check_folder_to_fill(out or recordings / "seld-output", [f"{folder.name}.csv" for folder in folders])
    dev = resolve_device(device)
    model, meta, features, ngcc = load_seld_model(checkpoint, dev)
    with progress_bar() as progress:
        task = progress.add_task("predicting", total=len(folders))
        for folder in folders:
            rec = load_recording(folder)
            if rec.fs != meta["fs"]:
                raise UserError(f"{folder}: sample rate {rec.fs} Hz, the checkpoint expects {meta['fs']} Hz")
            extra = ngcc(torch.as_tensor(rec.audio.T[None], device=dev))[0] if ngcc is not None else None
            events = predict_clip(model, features, rec.audio, dev, extra)
            write_dcase_csv(out / f"{folder.name}.csv", events)
            progress.advance(task)
    console.print(f"{len(folders)} prediction files → {out}/ (classes: {', '.join(meta['classes'])})")
