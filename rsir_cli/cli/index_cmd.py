"""`rsir index` (being written)."""

from __future__ import annotations

from rsir_cli.cli.app import command
from rsir_cli.errors import UsageError


@command("index", "Load store vectors into a Milvus collection.")
def index() -> None:
    """Load store vectors into a Milvus collection."""
    raise UsageError("rsir index is not implemented yet")
