"""Rendering: results to stdout (a Rich table or JSON), progress and logs to stderr."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
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

from rsir_cli.cli.tables import FittedTable
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
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    numeric: Sequence[str] = (),
    kinds: Mapping[str, str] | None = None,
    keys: Sequence[str] = (),
    groups: Sequence[Sequence[str]] = (),
) -> FittedTable:
    """A result table that fits the width it is printed at (see :mod:`rsir_cli.cli.tables`).

    Args:
        title: printed above the table, wrapped between words.
        columns: the column names, in order.
        rows: one sequence of cells (str, Rich ``Text`` or anything ``str()`` can show) per row.
        numeric: columns of kind ``number`` (right-aligned, never wrapped).
        kinds: column name -> ``id``, ``name``, ``url``, ``path``, ``number``, ``labels`` or ``text``
            (the default): ids, names, URLs, paths and numbers are never split, labels are shortened
            with an ellipsis, text wraps between words.
        keys: columns repeated in every part when a wide table is split into several.
        groups: columns kept together in one part when a table is split (e.g. one dataset's label sets).

    Returns:
        The table; set ``.caption`` on it for a line below, and print it with :func:`print_table`.
    """
    column_kinds = {name: "number" for name in numeric}
    column_kinds.update(kinds or {})
    return FittedTable(title, columns, rows, column_kinds, keys=keys, groups=groups)


def print_table(table: FittedTable | Table) -> None:
    """Print a result table on stdout."""
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


class _EtaColumn(ProgressColumn):
    """``ETA 0:01:23``: the time remaining, with its label (one column, so they give way together)."""

    max_refresh = 0.5  # as Rich's own remaining-time column: no jitter

    def __init__(self) -> None:
        super().__init__()
        self._remaining = TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        remaining = self._remaining.render(task)
        return Text.assemble("ETA ", remaining) if remaining.plain else remaining


BAR_MIN, BAR_MAX = 10, 40  # cells of the bar itself


class FittingProgress(Progress):
    """Progress bars that fit the terminal: the least useful columns give way first.

    Descriptions and counts stay whole; then, as room runs out, the elapsed time, the rate, the
    percentage and the ETA are left out in that order, and the bar narrows to ``BAR_MIN`` cells.
    """

    def __init__(self, console: Console) -> None:
        self.screen = console  # Rich's Live asks for the table before ``self.console`` exists
        self.bar = BarColumn(bar_width=BAR_MAX)
        self.spinner, self.description = SpinnerColumn(), TextColumn("{task.description}", markup=False)
        self.percent, self.count, self.rate = TaskProgressColumn(), _CountColumn(), _RateColumn()
        self.elapsed, self.eta = TimeElapsedColumn(), _EtaColumn()
        columns = (
            self.spinner,
            self.description,
            self.bar,
            self.percent,
            self.count,
            self.rate,
            self.elapsed,
            self.eta,
        )
        super().__init__(*columns, console=console, transient=False, refresh_per_second=4)

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        """The rows of the visible tasks, with the columns that fit the console's width."""
        shown = [task for task in tasks if task.visible]
        cells = {column: [column(task) for task in shown] for column in self.columns if column is not self.bar}
        widths = {
            column: max((self.screen.measure(cell).maximum for cell in rendered), default=0)
            for column, rendered in cells.items()
        }
        kept = [column for column in self.columns if column is self.bar or widths[column] > 0]

        def needed() -> int:  # the cells of everything but the bar, and one space between columns
            return sum(widths[c] for c in kept if c is not self.bar) + len(kept) - 1

        room = self.screen.width
        for column in (self.elapsed, self.rate, self.percent, self.eta):
            if needed() + BAR_MIN <= room:
                break
            if column in kept:
                kept.remove(column)
        if needed() + BAR_MIN > room:  # a description too long for any terminal: shorten only it
            widths[self.description] = max(8, widths[self.description] - (needed() + BAR_MIN - room))
        self.bar.bar_width = max(BAR_MIN, min(BAR_MAX, room - needed()))
        table = Table.grid(padding=(0, 1))
        for column in kept:
            if column is self.bar:
                table.add_column(no_wrap=True)
            else:
                right = column in (self.percent, self.count)
                table.add_column(
                    width=widths[column], no_wrap=True, overflow="ellipsis", justify="right" if right else "left"
                )
        for i, task in enumerate(shown):
            table.add_row(*(self.bar(task) if column is self.bar else cells[column][i] for column in kept))
        return table


@contextmanager
def progress_bars() -> Iterator[Any]:
    """Yield a progress reporter that draws on stderr, or a silent one under -q or without a terminal."""
    if _quiet:
        yield NULL_PROGRESS
        return
    with FittingProgress(stderr) as progress:
        yield RichProgress(progress)
