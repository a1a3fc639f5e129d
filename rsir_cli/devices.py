"""Choosing the compute device from ``--device``."""

from __future__ import annotations

from rsir_cli.errors import UsageError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a requested CUDA device must exist."""
    device = (device or "cpu").strip().lower()
    if device == "cpu":
        return device  # no torch import needed
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available here (use --device cpu)")
        return device
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
