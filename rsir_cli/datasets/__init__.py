"""Dataset registry: one module per dataset, each exposing a ``DEFINITION``."""

from __future__ import annotations

import importlib
from pathlib import Path

from rsir_cli import config
from rsir_cli.datasets.base import DatasetDefinition, LabelSet, Sample, SplitReader
from rsir_cli.errors import UsageError

__all__ = ["DatasetDefinition", "LabelSet", "Sample", "SplitReader", "get_dataset", "dataset_names", "open_split"]

# name -> module holding DEFINITION; imported on first use so `rsir --help` stays fast.
_MODULES = {
    "bigearthnet": "rsir_cli.datasets.bigearthnet",
    "reben": "rsir_cli.datasets.reben",
    "forestnet": "rsir_cli.datasets.forestnet",
    "folder": "rsir_cli.datasets.folder",
    "scene": "rsir_cli.datasets.scene",
}


def dataset_names() -> list[str]:
    return list(_MODULES)


def get_dataset(name: str) -> DatasetDefinition:
    """The registered dataset ``name``; a UsageError listing the known ones otherwise."""
    key = name.strip().lower()
    if key not in _MODULES:
        raise UsageError(f"unknown dataset {name!r}; known datasets: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[key]).DEFINITION


def label_sets_for(dataset: str) -> dict[str, LabelSet]:
    """Label sets of a dataset name as stored (empty for datasets rsir does not know)."""
    key = dataset.strip().lower()
    return get_dataset(key).label_sets if key in _MODULES else {}


def open_split(name: str, split: str, data_dir: Path | None = None, **options: object) -> SplitReader:
    """Open ``split`` of dataset ``name`` under ``data_dir`` (default: where `rsir download` puts it)."""
    definition = get_dataset(name)
    if split not in definition.splits:
        raise UsageError(f"dataset {definition.name} has splits {', '.join(definition.splits)}, not {split!r}")
    root = Path(data_dir) if data_dir is not None else config.dataset_dir(definition.name)
    return definition.open(root, split, **options)
