"""Rendering: results to stdout (a Rich table or JSON), progress and logs to stderr."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from rsir_cli.progress import NULL_PROGRESS, ProgressTask

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)

_quiet = False
#: the verbosity set so far (-v counts up, -q down), before or after the subcommand
verbosity = 0


def configure_logging(level_count: int) -> None:
    """Set the log level from -v / -q counts: -q errors only, default warnings+info, -v debug."""
    global _quiet, verbosity
    verbosity = level_count
    _quiet = level_count < 0
    level = logging.ERROR if level_count < 0 else logging.DEBUG if level_count > 0 else logging.INFO
    root = logging.getLogger("rsir_cli")
    root.handlers.clear()
    handler = _LogLines(show_path=level_count > 0)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


class _LogLines(logging.Handler):
    """Log records as single lines on stderr (``WARNING message``): never wrapped by rsir, so paths,
    ids and suggested commands stay whole (the terminal folds long lines); tracebacks under -v."""

    _STYLES = {"DEBUG": "dim", "INFO": "cyan", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}

    def __init__(self, show_path: bool = False) -> None:
        super().__init__()
        self.show_path = show_path

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            where = f" ({record.module}.py:{record.lineno})" if self.show_path else ""
            line = Text.assemble(
                (f"{record.levelname:<8}", self._STYLES.get(record.levelname, "")), " ", message, where
            )
            stderr.print(line, soft_wrap=True, highlight=False)
        except Exception:  # a logging failure must never end the command
            self.handleError(record)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (plain, no colour, one document)."""
    sys.stdout.write(json.dumps(_finite(data), indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def make_table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: Sequence[str] = ()
) -> Table:
    """A plain result table; the ``numeric`` columns are right-aligned."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
    return table


def print_table(table: Table) -> None:
    stdout.print(table)


def note(message: str) -> None:
    """A short human message on stderr (hidden by -q)."""
    if not _quiet:  # never wrapped by rsir (paths and ids stay whole); the terminal folds long lines
        stderr.print(message, soft_wrap=True, markup=False, highlight=False)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "items")
        if speed is None:
            return Text(f"? {unit}/s", style="progress.data.speed")
        if unit == "B":
            return Text(f"{_human_bytes(speed)}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {unit}/s", style="progress.data.speed")


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "B":
            total = _human_bytes(task.total) if task.total is not None else "?"
            return Text(f"{_human_bytes(task.completed)}/{total}", style="progress.download")
        return MofNCompleteColumn().render(task)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task_id, amount)

    def close(self) -> None:
        self._progress.stop_task(self._task_id)


class RichProgress:
    """The CLI's progress reporter: bars with counts, rate and ETA on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def task(self, description: str, total: float | None, unit: str = "items", completed: float = 0) -> ProgressTask:
        task_id = self._progress.add_task(description, total=total, unit=unit, completed=completed)
        return _RichTask(self._progress, task_id)


@contextmanager
def progress_bars() -> Iterator[Any]:
    """Yield a progress reporter that draws on stderr, or a silent one under -q or without a terminal."""
    if _quiet:
        yield NULL_PROGRESS
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        _CountColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
        refresh_per_second=4,
    )
    with progress:
        yield RichProgress(progress)
