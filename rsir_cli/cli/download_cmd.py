"""`rsir download` (being written)."""

from __future__ import annotations

from rsir_cli.cli.app import command
from rsir_cli.errors import UsageError


@command("download", "Download datasets and model weights.")
def download() -> None:
    """Download datasets and model weights."""
    raise UsageError("rsir download is not implemented yet")
