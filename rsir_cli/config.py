"""Default locations, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE = "rsir-store"


def data_root() -> Path:
    """Where datasets live: ``$RSIR_DATA`` or ``./rsir-data``."""
    return Path(os.environ.get("RSIR_DATA", "rsir-data"))


def dataset_dir(dataset: str) -> Path:
    """Default root of one dataset: ``<data root>/<dataset>``."""
    return data_root() / dataset


def cache_dir() -> Path:
    """Where weights and sample data are cached: ``$RSIR_CACHE`` or ``~/.cache/rsir``."""
    env = os.environ.get("RSIR_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rsir"


def weights_dir() -> Path:
    """Where `rsir download` places model weights (and their recorded checksums)."""
    return cache_dir() / "weights"
