"""`rsir search` (being written)."""

from __future__ import annotations

from rsir_cli.cli.app import command
from rsir_cli.errors import UsageError


@command("search", "Search the store with a GeoTIFF tile or a stored sample.")
def search() -> None:
    """Search the store with a GeoTIFF tile or a stored sample."""
    raise UsageError("rsir search is not implemented yet")
