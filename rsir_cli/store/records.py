"""What the store hands out: a split as read, and a split's summary (what `rsir info` shows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli.geo import Footprints


@dataclass
class SplitData:
    """One split as read from the store (all shards joined)."""

    model: str
    dataset: str
    split: str
    attrs: dict[str, Any]
    ids: list[str]
    labels: np.ndarray
    embeddings: np.ndarray | None = None
    footprints: Footprints | None = None
    dates: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def label_names(self) -> list[str]:
        return list(self.attrs.get("label_names") or [])


@dataclass
class SplitSummary:
    """What ``rsir info`` shows for one split."""

    model: str
    dataset: str
    split: str
    rows: int
    rows_expected: int
    dim: int
    complete: bool
    codes: list[str]
    files: list[Path]
    random_weights: bool
    shards: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.rows,
            "rows_expected": self.rows_expected,
            "dim": self.dim,
            "complete": self.complete,
            "codes": self.codes,
            "files": [str(f) for f in self.files],
            "random_weights": self.random_weights,
            "shards": self.shards,
            "error": self.error,
        }
