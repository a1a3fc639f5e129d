"""Result tables that fit the width they are printed at (a terminal, or a pipe's 80 columns).

Every column has a kind, which says how it may give way:

- ``id``, ``name``, ``url``, ``path``: never wrapped or cut (a sample id, a model name, a link);
- ``number``: right-aligned, never wrapped;
- ``labels``: one line, shortened with an ellipsis (``--json`` has the labels whole);
- ``text`` (the default): wraps between words, never inside one.

The layout is chosen when the table is printed, for that width, trying in turn:

1. the framed table at its natural widths, or with its ``text`` and ``labels`` columns narrowed;
2. the same without frame lines (two spaces between columns);
3. where key columns are named (the evaluate table's model and method), several tables one below
   the other, each with the key columns and as many column groups as fit;
4. one block per row, with a ``column  value`` line per cell; a value too long for its line goes on
   the next line, and one longer than the whole width stands alone on a line, unsplit (a terminal
   folds it as one unit; a pipe gets it whole).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult

UNBREAKABLE = frozenset({"id", "name", "url", "path", "number"})
KINDS = UNBREAKABLE | {"labels", "text"}
LABELS_MIN = 12  # a labels column narrower than this says too little; the table gives way instead
RECORD_KEY_MAX = 20  # in the block layout, longer column names go on a line of their own
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class _Style:
    """How a table is drawn, and how many cells that costs beyond its columns' widths."""

    framed: bool

    def overhead(self, columns: int) -> int:
        # Framed: an edge and a rule around every column plus one space of padding each side.
        # Compact: two spaces between columns, nothing at the edges.
        return 3 * columns + 1 if self.framed else 2 * max(0, columns - 1)

    def table(self) -> Table:
        if self.framed:
            return Table(box=box.HEAVY_HEAD, header_style="bold", padding=(0, 1))
        return Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False, collapse_padding=True)


FRAMED = _Style(framed=True)
COMPACT = _Style(framed=False)


def _as_text(cell: Any) -> Text:
    if isinstance(cell, Text):
        return cell.copy()
    return Text("" if cell is None else str(cell))


def _line_widths(text: Text) -> list[int]:
    return [cell_len(line) for line in text.plain.split("\n")] or [0]


def _longest_word(text: Text) -> int:
    return max((cell_len(word) for word in text.plain.split()), default=0)


def wrap_words(text: Text, width: int) -> list[Text]:
    """Wrap ``text`` between words (Rich's own wrapping folds a word that is too long).

    Args:
        text: the text; its newlines are kept.
        width: cells per line.

    Returns:
        The lines; a word longer than ``width`` stands whole on a line of its own.
    """
    lines: list[Text] = []
    for line in text.split("\n", allow_blank=True):
        offsets, column = [], 0
        for match in _WORD.finditer(line.plain):
            if column and column + cell_len(match.group().rstrip()) > width:
                offsets.append(match.start())
                column = 0
            column += cell_len(match.group())
        for piece in line.divide(offsets):
            piece.rstrip()
            lines.append(piece)
    return lines


def _field(key: str, kind: str, cell: Text, key_width: int, width: int) -> Iterator[Text]:
    """The lines of one ``key  value`` field of the block layout."""
    indent = key_width + 2
    inline = cell_len(key) <= key_width
    room = max(1, width - (indent if inline else 2))
    if kind == "labels":
        cell = cell.copy()
        cell.truncate(room, overflow="ellipsis")
        lines = [cell]
    elif kind in UNBREAKABLE:
        lines = cell.split("\n", allow_blank=True)
    else:
        lines = wrap_words(cell, room)
    longest = max(line.cell_len for line in lines)
    if inline and indent + longest <= width:
        for i, line in enumerate(lines):
            yield Text.assemble(((key if i == 0 else "").ljust(indent), "bold"), line)
        return
    yield Text(key, style="bold")
    pad = "  " if 2 + longest <= width else ""  # a value wider than that stands alone, unsplit
    for line in lines:
        yield Text.assemble(pad, line)


class FittedTable:
    """A table that picks the layout that fits when it is printed (see the module docstring).

    ``title`` and ``caption`` (a string or a Rich ``Text``) may be set after construction.
    """

    def __init__(
        self,
        title: str | None,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        kinds: Mapping[str, str],
        keys: Sequence[str] = (),
        groups: Sequence[Sequence[str]] = (),
    ) -> None:
        unknown = {kind for kind in kinds.values() if kind not in KINDS}
        if unknown:
            raise ValueError(f"unknown column kind(s) {sorted(unknown)}; use {sorted(KINDS)}")
        self.title = title
        self.caption: str | Text | None = None
        self.caption_justify = "left"
        self.headers = list(columns)
        self.kinds = [kinds.get(name, "text") for name in self.headers]
        self.rows = [[_as_text(cell) for cell in row] for row in rows]
        self.keys = [self.headers.index(name) for name in keys if name in self.headers]
        grouped = [[self.headers.index(name) for name in group if name in self.headers] for group in groups]
        in_a_group = {i for group in grouped for i in group}
        rest = [[i] for i in range(len(self.headers)) if i not in in_a_group and i not in self.keys]
        self.groups = [group for group in grouped if group] + rest
        self.groups.sort(key=lambda group: min(group))

    # ------------------------------------------------------------------ widths
    def _natural(self, i: int) -> int:
        cells = [max(_line_widths(row[i])) for row in self.rows]
        return max([cell_len(self.headers[i]), *cells])

    def _minimum(self, i: int) -> int:
        header = max((cell_len(word) for word in self.headers[i].split()), default=0)
        kind = self.kinds[i]
        if kind in UNBREAKABLE:
            cells = [max(_line_widths(row[i])) for row in self.rows]
        elif kind == "labels":
            cells = [min(LABELS_MIN, max(_line_widths(row[i]))) for row in self.rows]
        else:
            cells = [_longest_word(row[i]) for row in self.rows]
        return max([header, *cells, 1])

    def _widths(self, columns: Sequence[int], style: _Style, width: int) -> list[int] | None:
        """Column widths that fit ``width``, or None when even the unbreakable minimum does not."""
        natural = [self._natural(i) for i in columns]
        minimum = [self._minimum(i) for i in columns]
        room = width - style.overhead(len(columns))
        if sum(natural) <= room:
            return natural
        if sum(minimum) > room:
            return None
        # Share the room left over, the smallest wishes first, so a header that needs three more
        # cells gets them before a long labels column takes the rest.
        spare = room - sum(minimum)
        widths = list(minimum)
        wishes = sorted(range(len(columns)), key=lambda i: natural[i] - minimum[i])
        for left, i in enumerate(wishes):
            grant = min(natural[i] - minimum[i], spare // (len(wishes) - left))
            widths[i] += grant
            spare -= grant
        return widths

    # ------------------------------------------------------------------ layouts
    def _table(self, columns: Sequence[int], widths: Sequence[int], style: _Style) -> Table:
        table = style.table()
        for i, width in zip(columns, widths, strict=True):
            kind = self.kinds[i]
            table.add_column(
                Text(self.headers[i], no_wrap=False, overflow="fold"),
                justify="right" if kind == "number" else "left",
                width=width,
                no_wrap=kind != "text",
                overflow="fold" if kind == "text" else "ellipsis",
            )
        for row in self.rows:
            table.add_row(*(row[i] for i in columns))
        return table

    def _split(self, style: _Style, width: int) -> list[Table] | None:
        """Tables of the key columns plus as many column groups as fit, or None if a group alone does not fit."""

        def fits(columns: Sequence[int]) -> bool:
            return self._widths(sorted([*self.keys, *columns]), style, width) is not None

        # A group too wide for one table is taken a column at a time.
        units = [unit for group in self.groups for unit in ([group] if fits(group) else [[i] for i in group])]
        parts: list[list[int]] = []
        for unit in units:
            if parts and fits([*parts[-1], *unit]):
                parts[-1].extend(unit)
            elif fits(unit):
                parts.append(list(unit))
            else:
                return None
        tables = []
        for part in parts:
            columns = sorted([*self.keys, *part])
            widths = self._widths(columns, style, width)
            if widths is None:  # cannot happen: every part fitted while it was packed
                return None
            tables.append(self._table(columns, widths, style))
        return tables

    def _records(self, width: int) -> Iterator[Text]:
        """One block per row: a ``column  value`` line per cell (see the module docstring).

        A two-column table whose first column has no name is a list of (name, value) rows already:
        each row becomes one ``name  value`` line.
        """
        if len(self.headers) == 2 and not self.headers[0]:
            fields = [[(row[0].plain, self.kinds[1], row[1])] for row in self.rows]
        else:
            fields = [list(zip(self.headers, self.kinds, row, strict=True)) for row in self.rows]
        key_width = min(RECORD_KEY_MAX, max((cell_len(key) for block in fields for key, _, _ in block), default=0))
        for number, block in enumerate(fields):
            if number and len(block) > 1:
                yield Text("")
            for key, kind, cell in block:
                if cell.plain:
                    yield from _field(key, kind, cell, key_width, width)

    def layout(self, width: int) -> list[RenderableType]:
        """Choose the layout for ``width`` cells (see the module docstring).

        Args:
            width: the cells available per line.

        Returns:
            One Rich table, several (each with the key columns), or the lines of one block per row.
        """
        columns = list(range(len(self.headers)))
        for style in (FRAMED, COMPACT):
            widths = self._widths(columns, style, width)
            if widths is not None:
                return [self._table(columns, widths, style)]
        if self.keys and len(self.groups) > 1:
            # The fewest tables; framed ones when that costs no extra table.
            splits = [tables for style in (FRAMED, COMPACT) if (tables := self._split(style, width)) is not None]
            if splits:
                return list(min(splits, key=len))
        return list(self._records(width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        if self.title:
            yield Text(self.title, style="table.title", no_wrap=False, overflow="fold")
        body = self.layout(width)
        for i, renderable in enumerate(body):
            if isinstance(renderable, Text):
                renderable.no_wrap, renderable.overflow = True, "ignore"
            elif i:
                yield Text("")
            yield renderable
        if self.caption:
            if isinstance(body[-1], Text):
                yield Text("")
            caption = self.caption if isinstance(self.caption, Text) else Text(self.caption, style="table.caption")
            caption = caption.copy()
            caption.no_wrap, caption.overflow = False, "fold"
            caption.justify = None if self.caption_justify == "left" else self.caption_justify  # type: ignore[assignment]
            yield caption
