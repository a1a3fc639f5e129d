"""Pixel geometry: windows of a raster and the grid of chips a region is cut into."""

from __future__ import annotations

from dataclasses import dataclass

from rsir_cli.errors import UsageError


@dataclass(frozen=True)
class PixelWindow:
    """A window in pixels of a raster's reference grid (integers)."""

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    def intersection(self, other: PixelWindow) -> PixelWindow | None:
        col0, row0 = max(self.col_off, other.col_off), max(self.row_off, other.row_off)
        col1, row1 = min(self.col_end, other.col_end), min(self.row_end, other.row_end)
        if col1 <= col0 or row1 <= row0:
            return None
        return PixelWindow(col0, row0, col1 - col0, row1 - row0)

    def contains(self, other: PixelWindow) -> bool:
        return self.intersection(other) == other

    def as_list(self) -> list[int]:
        return [self.col_off, self.row_off, self.width, self.height]

    def __str__(self) -> str:
        return f"{self.col_off},{self.row_off},{self.width},{self.height}"


@dataclass(frozen=True)
class Chip:
    """One chip of a grid: its grid position and its window in reference pixels."""

    row: int
    col: int
    window: PixelWindow


def chip_grid(region: PixelWindow, chip: int) -> tuple[int, int, list[Chip]]:
    """Cut ``region`` into ``chip`` x ``chip`` windows, row by row; partial edge chips are dropped.

    An axis shorter than one chip gives one chip of the axis's full length.

    Returns:
        (rows, cols, chips)
    """
    if chip < 1:
        raise UsageError(f"the chip size must be at least 1 pixel, got {chip}")
    cols = region.width // chip if region.width >= chip else 1
    rows = region.height // chip if region.height >= chip else 1
    width = chip if region.width >= chip else region.width
    height = chip if region.height >= chip else region.height
    chips = [
        Chip(r, c, PixelWindow(region.col_off + c * width, region.row_off + r * height, width, height))
        for r in range(rows)
        for c in range(cols)
    ]
    return rows, cols, chips
