"""``folder``: a directory of GeoTIFF chips of your own, with an optional labels CSV.

Every ``*.tif`` / ``*.tiff`` below the folder (searched recursively, sorted by path) is one sample;
its id is its path below the folder without the suffix (``forest/chip_0007``). Bands come from
each file's band descriptions, or from ``--bands`` (1-based band numbers, one per model band);
values follow :mod:`rsir_cli.raster` (scale, offset, ``--units``; nodata filled with the band's
valid mean). The chips should share one size; a chip of another size is resampled (bilinear) to
the size of the first one, so that every sample has the same shape. Footprints are each file's
bounds in its CRS. The dataset has one split, ``all``.

Labels (``--labels labels.csv``), a CSV with a header row. The id column is the one named ``id``,
``name``, ``file``, ``filename``, ``chip``, ``sample``, ``patch`` or ``path`` (else the first
column); its values are sample ids or file names (with or without the suffix). Then either

- a ``labels`` (or ``label``) column listing each sample's labels separated by ``;`` or ``|``
  (label names: the sorted set of all names used), or
- one 0/1 column per label (label names: those columns, in order).

Every sample needs a row; rows for files that are not in the folder are ignored.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli.datasets.base import DatasetDefinition, Sample, SplitReader
from rsir_cli.dates import iso_date
from rsir_cli.errors import CorruptDataError, DataNotFoundError, UsageError
from rsir_cli.raster import open_raster

log = logging.getLogger(__name__)

SPLIT = "all"
CHIP_SUFFIXES = (".tif", ".tiff")
_ID_COLUMNS = ("id", "name", "file", "filename", "chip", "sample", "patch", "path")
_LIST_COLUMNS = ("labels", "label")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


def dataset_name(path: Path, name: str | None) -> str:
    """The name the store files the dataset under: ``name``, or the file/folder stem made safe."""
    if name:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
            raise UsageError(
                f"--name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit)"
            )
        return name
    stem = path.resolve().stem if path.is_file() else path.resolve().name
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem).lstrip("._-")
    return safe or "archive"


def band_options(options: Mapping[str, object]) -> tuple[dict[str, int] | None, str]:
    """``band_indexes`` and ``units`` from the options `rsir embed` passes through ``open_split``."""
    raw = options.get("band_indexes")
    band_indexes = {str(k): int(v) for k, v in dict(raw).items()} if raw else None  # type: ignore[call-overload]
    return band_indexes, str(options.get("units") or "auto")


def archive_arguments(options: Mapping[str, object]) -> dict[str, Any]:
    """Reader arguments of a user archive (folder, scene) from the options of ``open_split``."""
    band_indexes, units = band_options(options)
    labels = options.get("labels")
    return {
        "name": options.get("dataset_name") or None,
        "band_indexes": band_indexes,
        "units": units,
        "labels": Path(str(labels)) if labels else None,
        "date": iso_date(options.get("date")) if options.get("date") else "",
    }


def recorded_options(reader: Any) -> dict[str, object]:
    """The options that reopen a user archive, as the store records them (``dataset_options``)."""
    return {
        "dataset_name": reader.dataset,
        "band_indexes": reader.band_indexes,
        "units": reader.units,
        "labels": str(reader.labels_path) if reader.labels_path else None,
        "date": reader.date or None,
    }


def read_labels_csv(path: Path, ids: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Label names and multi-hot labels (len(ids), C) from a labels CSV (format: module docstring).

    Raises:
        DataNotFoundError: the file is missing.
        CorruptDataError: no header, unreadable values, duplicate rows, or samples without a row.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise DataNotFoundError(f"labels file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorruptDataError(f"cannot read labels file {path}: {error}") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise CorruptDataError(f"{path} needs a header row and one row per sample")
    header = [cell.strip() for cell in rows[0]]
    lower = [cell.lower() for cell in header]
    id_column = next((lower.index(name) for name in _ID_COLUMNS if name in lower), 0)
    list_column = next((lower.index(name) for name in _LIST_COLUMNS if name in lower), None)
    index = {sample_id: i for i, sample_id in enumerate(ids)}
    found: dict[int, list[str] | list[int]] = {}
    unknown = 0
    for line, row in enumerate(rows[1:], start=2):
        key = row[id_column].strip().replace("\\", "/") if id_column < len(row) else ""
        position = index.get(key)
        if position is None:
            position = index.get(Path(key).with_suffix("").as_posix()) if key else None
        if position is None:
            unknown += 1
            continue
        if position in found:
            raise CorruptDataError(f"{path}, line {line}: a second row for {ids[position]!r}")
        if list_column is not None:
            text = row[list_column] if list_column < len(row) else ""
            found[position] = [name.strip() for name in re.split(r"[;|]", text) if name.strip()]
        else:
            values = []
            for column, cell in enumerate(row):
                if column == id_column:
                    continue
                value = cell.strip().lower()
                if value not in _TRUE | _FALSE:
                    raise CorruptDataError(
                        f"{path}, line {line}, column {header[column]!r}: {cell!r} is not 0 or 1 (a labels column "
                        "of names needs the header 'labels')"
                    )
                values.append(1 if value in _TRUE else 0)
            found[position] = values
    missing = [ids[i] for i in range(len(ids)) if i not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise CorruptDataError(f"{path} has no row for {len(missing)} of {len(ids)} samples: {shown}")
    if unknown:
        log.warning("%s: ignored %d row(s) whose id names no sample", path, unknown)
    if list_column is not None:
        names = tuple(sorted({name for labels in found.values() for name in labels}))  # type: ignore[misc]
        position_of = {name: j for j, name in enumerate(names)}
        labels = np.zeros((len(ids), len(names)), dtype=np.uint8)
        for i, sample_labels in found.items():
            for name in sample_labels:
                labels[i, position_of[name]] = 1  # type: ignore[index]
        return names, labels
    names = tuple(header[c] for c in range(len(header)) if c != id_column)
    labels = np.zeros((len(ids), len(names)), dtype=np.uint8)
    for i, values in found.items():
        labels[i, : len(values)] = values
    return names, labels


class FolderSplit(SplitReader):
    """All GeoTIFF chips below a folder, as one split (``all``)."""

    def __init__(
        self,
        root: Path,
        split: str = SPLIT,
        *,
        name: str | None = None,
        band_indexes: Mapping[str, int] | None = None,
        units: str = "auto",
        labels: Path | None = None,
        date: str = "",
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataNotFoundError(
                f"{root} is not a folder; pass --data-dir pointing at a folder of GeoTIFF chips "
                "(or use --dataset scene for one large image)"
            )
        self.root = root.resolve()
        self.split = split
        self.dataset = dataset_name(root, name)
        self.band_indexes = dict(band_indexes) if band_indexes else None
        self.units = units
        self.labels_path = Path(labels).resolve() if labels else None
        self.date = date  # --date: the acquisition date of every chip (else the file's own)
        self._files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in CHIP_SUFFIXES)
        if not self._files:
            raise DataNotFoundError(f"{root} holds no GeoTIFF chips (*.tif, *.tiff)")
        self._ids = [p.relative_to(self.root).with_suffix("").as_posix() for p in self._files]
        with open_raster(self._files[0], self.band_indexes, units) as first:
            self._first = first
            self._shape = (first.region.height, first.region.width)
            self._bands = first.available_bands
        self.patch_size = max(self._shape)
        if self.labels_path is not None:
            self.label_names, self._labels = read_labels_csv(self.labels_path, self._ids)
        else:
            self.label_names, self._labels = (), np.zeros((len(self._ids), 0), dtype=np.uint8)

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def available_bands(self) -> tuple[str, ...]:
        return self._bands

    def check(self, bands: Sequence[str]) -> None:
        self._first.require(bands)

    def path_of(self, index: int) -> Path:
        return self._files[index]

    def load(self, index: int, bands: Sequence[str]) -> Sample:
        with open_raster(self._files[index], self.band_indexes, self.units) as raster:
            raster.require(bands)
            image, _ = raster.read(raster.region, bands, size=self._shape)
            bounds = raster.window_bounds(raster.region) if raster.crs else (np.nan,) * 4
            date = self.date or raster.date
            return Sample(index, image, self._labels[index].copy(), raster.crs, tuple(bounds), date)  # type: ignore[arg-type]

    def band_sources(self, bands: Sequence[str]) -> list[dict[str, str]]:
        return self._first.band_sources(bands)

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "dataset_type": "folder",
            "dataset_options": recorded_options(self),
            "pixel_size_m": self._first.pixel_size_m() or "",
            "chip_shape": list(self._shape),
        }


class FolderDefinition(DatasetDefinition):
    def open(self, root: Path, split: str, **options: object) -> SplitReader:
        return FolderSplit(root, split, **archive_arguments(options))


DEFINITION = FolderDefinition(
    name="folder",
    description="your own GeoTIFF chips: a folder of files (optional labels CSV), one split 'all'",
    splits=(SPLIT,),
    default_splits=(SPLIT,),
    download_hint="pass --data-dir pointing at a folder of GeoTIFF chips",
)
