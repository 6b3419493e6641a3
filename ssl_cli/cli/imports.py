"""``sslkit import-luvira`` and ``import-locata``: published datasets to recording folders."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sslkit.cli.app import Overwrite, app, console, progress_bar, summary_table, user_errors
from sslkit.errors import UserError


@app.command("import-luvira")
@user_errors
def import_luvira_command(
    folder: Path = typer.Argument(..., help="Folder with 'Track 1.wav' … 'Track N.wav'."),
    mic_positions: Path = typer.Option(..., "--mic-positions", help="Mic positions in mm (static table or motion capture)."),
    truth: Path = typer.Option(..., "--truth", help="Speaker motion capture in mm (time + x/y/z columns)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Recording folder (default: <folder>-sslkit beside it)."),
    fs: int = typer.Option(16000, "--fs", min=1000, help="Output sample rate."),
    column_map: Optional[str] = typer.Option(None, "--map", help="Truth columns, e.g. time=Time,x=Speaker X,y=Speaker Y,z=Speaker Z."),
    rate: float = typer.Option(100.0, "--rate", help="Motion-capture rate (Hz) when the table has no time column."),
    shift: str = typer.Option("0,0,0", "--shift", help="Add this (x,y,z) in metres to every position."),
    overwrite: Overwrite = False,
) -> None:
    """Convert a LuViRA-layout folder into an sslkit recording folder.

    [bold]Example[/]

      sslkit import-luvira speech3/ --mic-positions microphone_locations.txt --truth speech3_mocap.csv --shift 3.5,4,0
    """
    import numpy as np

    from sslkit.files import check_new_folder
    from sslkit.luvira import LuviraColumns, import_luvira
    from sslkit.recording import save_recording

    columns = LuviraColumns()
    for item in (column_map.split(",") if column_map else []):
        key, _, name = item.partition("=")
        if key not in ("time", "x", "y", "z") or not name:
            raise UserError(f"--map entries are time=…, x=…, y=…, z=…; got '{item}'")
        setattr(columns, key, name)
    try:
        offset = np.array([float(v) for v in shift.split(",")])
    except ValueError:
        offset = np.zeros(0)
    if offset.shape != (3,):
        raise UserError(f"--shift takes x,y,z in metres, got '{shift}'")
    out = out or folder.with_name(folder.name + "-sslkit")
    check_new_folder(out, overwrite, [folder, mic_positions, truth])
    rec = import_luvira(folder, mic_positions, truth, fs, columns, rate, offset)
    save_recording(out, rec, overwrite=overwrite)
    console.print(summary_table(f"Imported LuViRA recording → {out}/", {
        "channels": f"{rec.n_mics}" + (" (last: near-source)" if rec.scene["near_source"] else ""),
        "duration": f"{rec.duration:.1f} s at {fs} Hz (from {rec.scene['source_fs']} Hz)",
        "ground truth": f"{len(rec.sources.time)} rows",
    }))




@app.command("import-locata")
@user_errors
def import_locata_command(
    root: Path = typer.Argument(..., help="A LOCATA folder: the dev or eval set, a task, a recording, or one <array> folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the recording folders (<task>-<recording>-<array>)."),
    fs: Optional[int] = typer.Option(16000, "--fs", min=1000, help="Output sample rate (LOCATA records at 48 kHz)."),
    overwrite: Overwrite = False,
) -> None:
    """Convert LOCATA challenge recordings (static arrays) into sslkit recording folders.

    [bold]Example[/]

      sslkit import-locata LOCATA/dev/task1 --out locata-task1
    """
    from sslkit.locata import import_locata_folders

    with progress_bar() as progress:
        task = progress.add_task("importing", total=None)
        written = import_locata_folders(root, out, fs, overwrite, lambda done, total: progress.update(task, completed=done, total=total))
    console.print(summary_table(f"Imported LOCATA → {out}/", {"recordings": len(written), "first": written[0].name if written else "–"}))
