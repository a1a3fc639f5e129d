"""`rsir evaluate` (being written)."""

from __future__ import annotations

from rsir_cli.cli.app import command
from rsir_cli.errors import UsageError


@command("evaluate", "Evaluate retrieval (mAP@k, P@k) like the paper.")
def evaluate() -> None:
    """Evaluate retrieval (mAP@k, P@k) like the paper."""
    raise UsageError("rsir evaluate is not implemented yet")
