"""``sslkit train-seld``, ``evaluate-seld`` and ``predict-seld``: sound event localization and detection."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sslkit.cli.app import Device, Overwrite, Resume, Seed, app, console, labelled_progress, progress_bar, summary_table, user_errors
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
    distance_weight: str = typer.Option("none", "--distance-weight", help="none, or reciprocal: each event's distance term divided by its distance (Paper VI)."),
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
    from sslkit.models.train_seld import DEFAULT_CLASSES, SeldTrainConfig, read_class_names, seld_data_folders, train_seld

    variant = "baseline" if loss == "adpit" else loss
    names = read_class_names(classes) if classes else DEFAULT_CLASSES
    cfg = SeldTrainConfig(seld_data_folders(data), seld_data_folders(val) if val else [], list(names), features, variant, epochs,
                          batch_size, lr=lr, filters=filters, rnn_size=rnn_size, channel_swap=channel_swap, distance_unit=distance_unit, distance_weight=distance_weight,
                          ngcc=str(ngcc) if ngcc else None, device=resolve_device(device), seed=seed)
    with labelled_progress() as status:
        final = train_seld(cfg, out, status, resume, overwrite=overwrite)
    measured = final["f_ld"] == final["f_ld"]  # NaN: no events to validate on
    console.print(summary_table(f"SELD training → {out}/", {
        "epochs": final["epoch"],
        "F_LD (20°, rel. dist. 1.0)": f"{final['f_ld'] * 100:.1f} %" if measured else "not measured (no validation events)",
        "DOA error": show(final["doae_deg"], ".1f", "°"),
        "relative distance error": show(final["rde"], ".2f"),
        "SELD score": show(final["seld_score"], ".3f"),
    }))


def show(value: float | None, spec: str, unit: str = "") -> str:
    """A metric for a table; – when undefined (None or NaN)."""
    return "–" if value is None or value != value else format(value, spec) + unit


@app.command("evaluate-seld")
@user_errors
def evaluate_seld_command(
    run: Optional[Path] = typer.Argument(None, help="A train-seld run folder: score its best.pt on its validation data."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="DCASE output CSV, or a folder of them (instead of RUN)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="DCASE metadata CSV, or a folder with the same file names."),
    n_classes: int = typer.Option(13, "--classes", min=1, help="Number of classes (with --pred)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="metrics JSON, or a folder for seld_metrics.json (default: in RUN or beside --pred)."),
    protocol: str = typer.Option("dcase2024", "--protocol", help="dcase2024 (the official scorer's definitions) or strict "
                                 "(every annotated frame, classes present in the references); see docs/methods.md."),
    device: Device = "auto",
) -> None:
    """DCASE2024 SELD metrics: F-score (20°, relative distance 1.0), DOA error, relative distance error, SELD score, ER, LR.

    Reads both DCASE formats: 6-column polar (degrees, distance in cm) and 7-column Cartesian (unit vector, distance in m).

    [bold]Examples[/]

      sslkit evaluate-seld runs/seld
      sslkit evaluate-seld --pred outputs/ --truth metadata_dev/ --classes 13 --out results/
    """
    from sslkit.seld import evaluate_seld_files

    out, metrics = evaluate_seld_files(run, pred, truth, n_classes, out, device, protocol)
    if "prediction_format" in metrics:
        console.print(f"[dim]predictions: {metrics['prediction_format']} format; references: {metrics['reference_format']} format[/]")
    table = Table(title=f"SELD metrics ({metrics['protocol']}) → {out}", title_justify="left")
    for col in ("class", "F", "DOAE °", "RDE", "LR", "SELD", "TP", "FP", "FN"):
        table.add_column(col, justify="right")
    for c in metrics["per_class"]:
        table.add_row(str(c["class"]), show(c["f"], ".3f"), show(c["doae_deg"], ".1f"), show(c["rde"], ".2f"), show(c["lr"], ".3f"),
                      show(c["seld_score"], ".3f"), str(c["tp"]), str(c["fp"]), str(c["fn"]))
    table.add_row("macro", show(metrics["f_ld"], ".3f"), show(metrics["doae_deg"], ".1f"), show(metrics["rde"], ".2f"), show(metrics["lr"], ".3f"),
                  show(metrics["seld_score"], ".3f"), "", "", "", style="bold")
    console.print(table)
    console.print(f"ER {show(metrics['er'], '.3f')}")


@app.command("predict-seld")
@user_errors
def predict_seld_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="best.pt of a train-seld run."),
    recordings: Path = typer.Argument(..., help="A recording folder, or a folder of them."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for DCASE output CSVs (default: <recordings>/seld-output)."),
    fmt: str = typer.Option("cartesian", "--format", help="cartesian (frame,class,track,x,y,z,distance_m: what the DCASE2024 scorer "
                            "reads) or polar (frame,class,track,azimuth,elevation,distance_cm)."),
    device: Device = "auto",
) -> None:
    """Write DCASE-format SELD predictions per recording (7-column Cartesian by default).

    [bold]Example[/]

      sslkit predict-seld --checkpoint runs/seld/best.pt seld-test/ --out seld-output/
    """
    from sslkit.seld import predict_seld_files

    with progress_bar() as progress:
        task = progress.add_task("predicting", total=None)
        out, written, meta = predict_seld_files(checkpoint, recordings, out, device, lambda done, total: progress.update(task, completed=done, total=total), fmt)
    console.print(f"{len(written)} prediction files → {out}/ (classes: {', '.join(meta['classes'])})")
