"""One typed view over the provenance attributes a store file records (docs/store.md).

The store keeps provenance as a flat mapping of attributes (that is what HDF5 holds); every step
that needs one of them reads it through :class:`Provenance`, so that the ~20 attribute names and
their defaults are spelled in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the one spelling of the random-weights warning
RANDOM_WEIGHTS = "RANDOM WEIGHTS"

#: ground pixel size of the built-in datasets, which their store files do not record
_PIXEL_SIZE_M = {"bigearthnet": 10.0, "reben": 10.0, "forestnet": 15.0}


def random_weights_notice(what: str) -> str:
    """``RANDOM WEIGHTS: <what> come from a smoke run with random weights; they mean nothing``."""
    return f"{RANDOM_WEIGHTS}: {what} come from a smoke run with random weights; they mean nothing"


@dataclass(frozen=True)
class Provenance:
    """What made a store split: the model and its weights, the dataset and how it was read."""

    model: str = ""
    dataset: str = ""
    split: str = ""
    dataset_type: str = ""
    dataset_root: str = ""
    dataset_options: dict[str, Any] = field(default_factory=dict)
    label_names: tuple[str, ...] = ()
    embedding_dim: int = 0
    patch_size: int = 120
    pixel_size_m: float | None = None
    precision: str = "fp32"
    random_weights: bool = False
    weights_sha256: str = ""
    weights_source: str = ""
    model_config: dict[str, Any] | None = None
    imported: bool = False

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Provenance:
        options = attrs.get("dataset_options")
        config = attrs.get("model_config")
        try:
            pixel = float(attrs.get("pixel_size_m") or 0) or None
        except (TypeError, ValueError):
            pixel = None
        dataset = str(attrs.get("dataset") or "")
        kind = str(attrs.get("dataset_type") or dataset)
        return cls(
            model=str(attrs.get("model") or ""),
            dataset=dataset,
            split=str(attrs.get("split") or ""),
            dataset_type=kind,
            dataset_root=str(attrs.get("dataset_root") or ""),
            dataset_options=dict(options) if isinstance(options, dict) else {},
            label_names=tuple(attrs.get("label_names") or ()),
            embedding_dim=int(attrs.get("embedding_dim") or 0),
            patch_size=int(attrs.get("patch_size") or 120),
            pixel_size_m=pixel or _PIXEL_SIZE_M.get(kind),
            precision=str(attrs.get("precision") or "fp32"),
            random_weights=bool(attrs.get("random_weights")),
            weights_sha256=str(attrs.get("weights_sha256") or ""),
            weights_source=str(attrs.get("weights_source") or ""),
            model_config=dict(config) if isinstance(config, dict) else None,
            imported=bool(attrs.get("imported")),
        )
