"""What every dataset provides: sample ids, labels, footprints and images of the bands asked for."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsir_cli.errors import DataNotFoundError, UsageError

if TYPE_CHECKING:
    from rsir_cli.datasets.sources import DatasetSource


@dataclass(frozen=True)
class LabelSet:
    """A (possibly coarser) label set derived from a dataset's full label set.

    ``mapping[j]`` is the index in this set that full label ``j`` maps to, or -1 when the label is
    dropped (BigEarthNet-19 drops 11 of the 43 labels).
    """

    name: str
    names: tuple[str, ...]
    mapping: tuple[int, ...]

    def convert(self, labels: np.ndarray) -> np.ndarray:
        """Multi-hot (N, full) -> multi-hot (N, len(names))."""
        labels = np.asarray(labels)
        if labels.shape[1] != len(self.mapping):
            raise UsageError(
                f"label set {self.name} needs {len(self.mapping)} source labels, the data has {labels.shape[1]}"
            )
        out = np.zeros((labels.shape[0], len(self.names)), dtype=np.uint8)
        for source, target in enumerate(self.mapping):
            if target >= 0:
                out[:, target] |= labels[:, source].astype(np.uint8)
        return out


def identity_label_set(name: str, names: Sequence[str]) -> LabelSet:
    return LabelSet(name, tuple(names), tuple(range(len(names))))


@dataclass
class Sample:
    """One sample as a worker reads it.

    ``image`` is (C, H, W) in the units the models' normalisation expects (surface reflectance x
    10000), bands in the order asked for: float32, or uint16 for integer data (BigEarthNet), which
    the embed step turns into float32 on the device. ``crs``/``bounds`` give the footprint in
    the sample's own CRS ("" / NaN when unknown); the embed step converts them to longitude/latitude.
    ``date`` is the acquisition date in ISO 8601: ``YYYY-MM-DD``, ``YYYY`` where only the year is
    known (ForestNet), ``""`` where it is unknown.
    """

    index: int
    image: np.ndarray
    labels: np.ndarray
    crs: str = ""
    bounds: tuple[float, float, float, float] = (np.nan, np.nan, np.nan, np.nan)
    date: str = ""


class SplitReader(abc.ABC):
    """One split of a dataset: random access to samples, safe to use from DataLoader workers."""

    #: the dataset's name in the store
    dataset: str
    split: str
    label_names: tuple[str, ...]
    #: the dataset's native patch size in pixels at its finest band (BigEarthNet: 120)
    patch_size: int
    root: Path

    @property
    @abc.abstractmethod
    def ids(self) -> list[str]:
        """The dataset's own sample names, in split order."""

    def __len__(self) -> int:
        return len(self.ids)

    @abc.abstractmethod
    def load(self, index: int, bands: Sequence[str]) -> Sample:
        """Read sample ``index`` with ``bands`` (Sentinel-2 names), labels and footprint."""

    def check(self, bands: Sequence[str]) -> None:
        """Fail early (before any work) when the split cannot provide ``bands``."""
        missing = [b for b in bands if b not in self.available_bands]
        if missing:
            raise DataNotFoundError(
                f"dataset {self.dataset} has no band(s) {', '.join(missing)}; it provides {', '.join(self.available_bands)}"
            )

    @property
    @abc.abstractmethod
    def available_bands(self) -> tuple[str, ...]:
        """Bands this dataset can provide."""

    def describe(self) -> dict[str, object]:
        """Dataset facts stored as provenance."""
        return {"dataset_root": str(self.root), "patch_size": self.patch_size}

    def band_sources(self, bands: Sequence[str]) -> list[dict[str, str]]:
        """Which band of the data feeds each model input (stored, so a B8A/B08 mix-up can be seen).

        Returns:
            One ``{"input": band, "from": where it is read}`` per band, in model order.
        """
        return [{"input": band, "from": f"the dataset's {band}"} for band in bands]


@dataclass(frozen=True)
class DatasetDefinition:
    """A registered dataset: how to open its splits, which label sets it has, where it comes from.

    ``source`` is what `rsir download NAME` fetches (see ``rsir_cli/datasets/sources.py``); None
    for datasets that are the user's own files (a GeoTIFF folder, a scene).
    """

    name: str
    description: str
    splits: tuple[str, ...]
    default_splits: tuple[str, ...]
    label_sets: dict[str, LabelSet] = field(default_factory=dict)
    download_hint: str = ""
    source: DatasetSource | None = None

    def open(self, root: Path, split: str, **options: object) -> SplitReader:
        raise NotImplementedError
