"""`rsir bench-milvus` (being written)."""

from __future__ import annotations

from rsir_cli.cli.app import command
from rsir_cli.errors import UsageError


@command("bench-milvus", "Benchmark Milvus like the paper's speed experiment.")
def bench_milvus() -> None:
    """Benchmark Milvus like the paper's speed experiment."""
    raise UsageError("rsir bench-milvus is not implemented yet")
