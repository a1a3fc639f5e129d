"""`rsir hash` (being written)."""

from __future__ import annotations

from rsir_cli.cli.app import command
from rsir_cli.errors import UsageError


@command("hash", "Hash embeddings into binary codes.")
def hash() -> None:
    """Hash embeddings into binary codes."""
    raise UsageError("rsir hash is not implemented yet")
