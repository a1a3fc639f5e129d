"""ForestNet: 332 x 332 px Landsat-8 composites (15 m) of forest-loss events in Indonesia.

On disk (``ForestNetDataset.zip`` holds ``deep/downloads/ForestNetDataset/``; `rsir download`
moves that folder up to ``<root>/ForestNetDataset``, as the official download script does)::

    <root>/ForestNetDataset/{train,val,test}.csv   label, merged_label, latitude, longitude, year, example_path
    <root>/ForestNetDataset/<example_path>/images/visible/composite.png    RGB, uint8
    <root>/ForestNetDataset/<example_path>/images/infrared/composite.npy   (332, 332, 3): NIR, SWIR1, SWIR2

A copy unzipped by hand is found too: ``--data-dir`` may name the folder the zip was unpacked in
(``<dir>/deep/downloads/ForestNetDataset``), ``deep/``, ``deep/downloads/`` or ``ForestNetDataset/``.

As in the official code, the visible composite is reordered to blue, green, red, the infrared one
appended, and all six scaled by 10000 / 255 (float32, in that order of operations) to the
reflectance x 10000 range of HLS. rsir names the six channels by their role with Sentinel-2 / HLS
band names: B02, B03, B04 (visible), B8A, B11, B12 (infrared).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rsir_cli import suggest
from rsir_cli.datasets.base import DatasetDefinition, LabelSet, Sample, SplitReader, identity_label_set
from rsir_cli.datasets.sources import DOWNLOADS, GB, DatasetSource, RemoteFile
from rsir_cli.dates import iso_date
from rsir_cli.errors import CorruptDataError, DataNotFoundError

PATCH_SIZE = 332
PIXEL_SIZE_M = 15.0
VISIBLE_BANDS = ("B02", "B03", "B04")  # blue, green, red (the PNG holds red, green, blue)
INFRARED_BANDS = ("B8A", "B11", "B12")  # NIR, SWIR1, SWIR2 (the .npy channel order)
BANDS = VISIBLE_BANDS + INFRARED_BANDS

# The official label order and merge (the paper's code, after Irvin et al. 2020).
LABELS_12: tuple[str, ...] = (
    "Oil palm plantation",
    "Timber plantation",
    "Other large-scale plantations",
    "Grassland shrubland",
    "Small-scale agriculture",
    "Small-scale mixed plantation",
    "Small-scale oil palm plantation",
    "Mining",
    "Fish pond",
    "Logging",
    "Secondary forest",
    "Other",
)
LABELS_4: tuple[str, ...] = ("Plantation", "Grassland shrubland", "Smallholder agriculture", "Other")
MERGE_12_TO_4: tuple[int, ...] = (0, 0, 0, 1, 2, 2, 2, 3, 3, 3, 3, 3)

LABEL_SETS = {
    "12": identity_label_set("12", LABELS_12),
    "4": LabelSet("4", LABELS_4, MERGE_12_TO_4),
}
_LABEL_INDEX = {name: i for i, name in enumerate(LABELS_12)}
_REQUIRED_COLUMNS = ("label", "merged_label", "latitude", "longitude", "example_path")


# Where the zip puts the dataset folder, relative to the folder it was unpacked in.
ARCHIVE_FOLDER = "deep/downloads"

# No checksum or exact size is published: the sha256 of the first download that verifies (zip
# CRCs, a clean extraction) is recorded and every later download must match it.
# https, not the http:// URL the project page and the official script print: the same host serves
# https for the same /deep/ folder (e.g. https://download.cs.stanford.edu/deep/MRNet-v1.0.zip in
# public READMEs). The project cannot reach it to confirm; `--mirror http://download.cs.stanford.edu`
# fetches the original http URL.
SOURCE = DatasetSource(
    name="forestnet",
    description="ForestNet (Stanford ML Group); no checksum is published: trusted on first use",
    files=(
        RemoteFile(
            name="ForestNetDataset.zip",
            url="https://download.cs.stanford.edu/deep/ForestNetDataset.zip",
            dest=f"{DOWNLOADS}/ForestNetDataset.zip",
            approx_size=3 * GB,  # "about 3 GB"; the exact size is not published
            produces=("ForestNetDataset",),
            inside=(ARCHIVE_FOLDER, ""),  # the real layout first; a flat repack is accepted too
            extracted_size=4 * GB,  # an estimate (PNG and .npy composites compress little)
        ),
    ),
)


def _holds_splits(folder: Path) -> bool:
    return any((folder / f"{split}.csv").is_file() for split in ("train", "val", "test"))


def find_root(root: Path) -> Path:
    """The ``ForestNetDataset`` folder under ``root``: as `rsir download` leaves it, or as unzipped by hand."""
    candidates = (
        root / "ForestNetDataset",
        root / ARCHIVE_FOLDER / "ForestNetDataset",  # root is the folder the zip was unpacked in
        root / "downloads" / "ForestNetDataset",  # root is deep/
        root,  # root is ForestNetDataset/ itself
    )
    for candidate in candidates:
        if _holds_splits(candidate):
            return candidate
    raise DataNotFoundError(
        f"no ForestNet split files (train.csv, val.csv, test.csv) under {root}; run {suggest.download('forestnet', root)} "
        "or pass --data-dir pointing at the folder ForestNetDataset.zip was unpacked in"
    )


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone that holds (lon, lat)."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def read_split(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CorruptDataError(f"{path} lacks column(s) {', '.join(missing)}; is it a ForestNet split file?")
        return list(reader)


class ForestNetSplit(SplitReader):
    """One split of ForestNet, labels from the CSV and checked against the official merge."""

    def __init__(self, root: Path, split: str, *, dataset: str = "forestnet") -> None:
        root = Path(root)
        if not root.exists():
            raise DataNotFoundError(
                f"data directory {root} does not exist; run {suggest.download('forestnet', root)} or pass --data-dir"
            )
        self.root = find_root(root)
        self.dataset = dataset
        self.split = split
        self.label_names = LABELS_12
        self.patch_size = PATCH_SIZE
        path = self.root / f"{split}.csv"
        if not path.is_file():
            raise DataNotFoundError(f"ForestNet split file {path} is missing")
        rows = read_split(path)
        self._ids: list[str] = []
        self._paths: list[Path] = []
        self._labels = np.zeros((len(rows), len(LABELS_12)), dtype=np.uint8)
        self._lonlat = np.zeros((len(rows), 2), dtype=np.float64)
        self._years = [iso_date((row.get("year") or "").strip()) for row in rows]  # the year only: "YYYY"
        for i, row in enumerate(rows):
            label = row["label"].strip()
            if label not in _LABEL_INDEX:
                raise CorruptDataError(f"{path}, row {i + 2}: unknown ForestNet label {label!r}")
            index = _LABEL_INDEX[label]
            merged = row["merged_label"].strip()
            if merged != LABELS_4[MERGE_12_TO_4[index]]:
                raise CorruptDataError(
                    f"{path}, row {i + 2}: merged_label {merged!r} disagrees with the official merge of "
                    f"{label!r} ({LABELS_4[MERGE_12_TO_4[index]]!r})"
                )
            self._labels[i, index] = 1
            try:
                self._lonlat[i] = (float(row["longitude"]), float(row["latitude"]))
            except ValueError:
                self._lonlat[i] = (np.nan, np.nan)
            example = row["example_path"].strip()
            self._ids.append(example.split("/")[-1] or example)
            self._paths.append(self.root / example)

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def available_bands(self) -> tuple[str, ...]:
        return BANDS

    def footprint(self, index: int) -> tuple[str, tuple[float, float, float, float]]:
        """The 4,980 m square (332 px x 15 m) centred on the example's latitude/longitude."""
        lon, lat = self._lonlat[index]
        if not (np.isfinite(lon) and np.isfinite(lat)):
            return "", (np.nan, np.nan, np.nan, np.nan)
        from rasterio.warp import transform

        epsg = utm_epsg(lon, lat)
        xs, ys = transform("EPSG:4326", f"EPSG:{epsg}", [lon], [lat])
        half = PATCH_SIZE * PIXEL_SIZE_M / 2
        return f"EPSG:{epsg}", (xs[0] - half, ys[0] - half, xs[0] + half, ys[0] + half)

    def load(self, index: int, bands: Sequence[str]) -> Sample:
        folder = self._paths[index]
        channels: dict[str, np.ndarray] = {}
        if any(b in VISIBLE_BANDS for b in bands):
            channels.update(zip(VISIBLE_BANDS, self._read_visible(folder), strict=True))
        if any(b in INFRARED_BANDS for b in bands):
            channels.update(zip(INFRARED_BANDS, self._read_infrared(folder), strict=True))
        stacked = np.stack([channels[b] for b in bands]).astype(np.int64)
        # As the official code: integer data / 255 * 10000 in float32.
        image = stacked.astype(np.float32) / np.float32(255) * np.float32(10000)
        crs, bounds = self.footprint(index)
        return Sample(index, image, self._labels[index].copy(), crs, bounds, self._years[index])

    @staticmethod
    def _read_visible(folder: Path) -> list[np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        path = folder / "images" / "visible" / "composite.png"
        try:
            with Image.open(path) as image:
                array = np.asarray(image)
        except FileNotFoundError:
            raise DataNotFoundError(f"visible composite {path} is missing") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise CorruptDataError(f"cannot read {path} as a PNG: {error}") from None
        if array.ndim != 3 or array.shape[2] < 3:
            raise CorruptDataError(f"{path} is not an RGB image (shape {array.shape})")
        return [array[:, :, 2], array[:, :, 1], array[:, :, 0]]  # blue, green, red

    @staticmethod
    def _read_infrared(folder: Path) -> list[np.ndarray]:
        path = folder / "images" / "infrared" / "composite.npy"
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataNotFoundError(f"infrared composite {path} is missing") from None
        except (ValueError, OSError, EOFError) as error:
            raise CorruptDataError(f"cannot read {path} as a .npy array: {error}") from None
        if array.ndim != 3 or array.shape[2] != 3:
            raise CorruptDataError(f"{path} should hold (H, W, 3) NIR, SWIR1, SWIR2; it holds {array.shape}")
        return [array[:, :, 0], array[:, :, 1], array[:, :, 2]]

    def labels(self) -> np.ndarray:
        return self._labels


class ForestNetDefinition(DatasetDefinition):
    def open(self, root: Path, split: str, **options: object) -> SplitReader:
        return ForestNetSplit(root, split)


DEFINITION = ForestNetDefinition(
    name="forestnet",
    description="ForestNet: 2,756 Landsat-8 composites of deforestation drivers in Indonesia, 12 (or 4) labels",
    splits=("train", "val", "test"),
    default_splits=("val", "test"),
    label_sets=LABEL_SETS,
    download_hint="rsir download forestnet",
    source=SOURCE,
)
