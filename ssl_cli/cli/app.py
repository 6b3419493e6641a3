"""The Typer application every command registers on, how commands report (one-line errors and
warnings, progress bars, summary tables), and the options many commands share.

Any :class:`~sslkit.errors.UserError` becomes a one-line ``error:`` message and exit code 2. Heavy
imports (torch, pyroomacoustics) happen inside the commands so that ``sslkit --help`` is fast.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sslkit import __version__
from sslkit.errors import SslkitWarning, UserError


class OneLineUsageErrors(typer.core.TyperGroup):
    """Usage errors (unknown command or option, out-of-range value) as one ``error:`` line with
    exit code 2, like every other bad input."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            sys.exit(130)
        except Exception as err:
            if not hasattr(err, "format_message"):  # click's (or typer's vendored click's) exceptions have it
                raise
            if type(err).__name__ == "NoArgsIsHelpError":  # plain `sslkit`: the help, as --help gives it
                console.print(err.ctx.get_help(), highlight=False, markup=False)
                sys.exit(0)
            ctx = getattr(err, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            err_console.print(f"[bold red]error:[/] {escape(err.format_message())}{escape(where)}", highlight=False, soft_wrap=True)
            sys.exit(getattr(err, "exit_code", 2))
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="sslkit",
    help="Sound source localization on ad-hoc microphone arrays: simulate, TDOA, locate, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EMFILE}
"""Operating-system errors that are the machine's state, not a bug: a full disk or quota, a read-only
or forbidden place, too many open files. They end in one line, as user errors do."""


def user_errors(fn):
    """Run a command the way users see it: a UserError, or an OSError of ``MACHINE_ERRNOS`` (a full
    disk), becomes one line on stderr and exit code 2, Ctrl-C one line saying what was kept and
    exit code 130, an sslkit warning one line, and other warnings (numpy's NaN arithmetic the
    library handles, libraries' notes) nothing."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's NaN arithmetic and libraries' notes are not the user's business
            warnings.simplefilter("always", SslkitWarning)
            warnings.showwarning = show_warning
            try:
                return fn(*args, **kwargs)
            except UserError as err:
                err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except OSError as err:
                if err.errno not in MACHINE_ERRNOS:
                    raise
                err_console.print(f"[bold red]error:[/] {escape(str(err.filename or ''))}: {escape(err.strerror or str(err))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt as err:
                kept = str(err) or "nothing half written: every file is complete or absent"
                err_console.print(f"[bold red]interrupted:[/] {escape(kept)}", highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None

    return wrapper


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """One line per warning on stderr, without the source location."""
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"sslkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Sound source localization on ad-hoc microphone arrays."""
    from sslkit.allocator import keep_freed_memory

    keep_freed_memory()


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
    )


@contextlib.contextmanager
def labelled_progress():
    """A progress display whose callback ``status(label, done, total)`` keeps one bar per label."""
    with progress_bar() as progress:
        tasks: dict[str, int] = {}

        def status(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        yield status


def summary_table(title: str, rows: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table




def parse_int_list(text: str, option: str) -> list[int]:
    """Comma-separated integers of ``option``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} takes comma-separated integers, got '{text}'") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


def parse_floats(text: str, option: str, count: int, what: str) -> list[float]:
    """``count`` comma-separated numbers of ``option`` (``what`` says what they are)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise UserError(f"{option} takes {what}, got '{text}'")
    return values


# Options shared by many commands, declared once.
Device = Annotated[str, typer.Option("--device", help="auto (a GPU when torch sees one), cpu or cuda[:N].")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=1, help="Processes (default: all cores).")]
SpeedOfSound = Annotated[Optional[float], typer.Option("--c", help="Speed of sound in m/s (default: the recording's scene.yaml, else 343).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an earlier sslkit output at --out (never a folder holding other files).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")]
Mics = Annotated[Optional[Path], typer.Option("--mics", help="mics.csv (default: the one in the recording folder).")]
