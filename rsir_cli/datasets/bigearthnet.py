"""BigEarthNet-S2 v1.0: 120 x 120 px patches, one folder per patch, one GeoTIFF per band.

On disk (as extracted from ``BigEarthNet-S2-v1.0.tar.gz``)::

    <root>/BigEarthNet-v1.0/<patch>/<patch>_B01.tif ... _B12.tif, _B8A.tif (no B10)
    <root>/BigEarthNet-v1.0/<patch>/<patch>_labels_metadata.json
    <root>/splits/{train,val,test}.csv       (official splits; column 1: S2 patch name)

Preprocessing equals the official pipeline (torchgeo's reader, as the paper's code runs it): every
band is brought to 120 x 120 with GDAL's bilinear resampling (``read(out_shape=...)``) and kept as
integers. The band files are read and upsampled by ``patchbands.py`` (shared with reBEN), which
equals rasterio bit for bit at a small fraction of its cost and refuses a band whose size, band
count, CRS or bounds is not what BigEarthNet stores.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsir_cli import suggest
from rsir_cli.bands import RESOLUTION_M
from rsir_cli.datasets.base import DatasetDefinition, LabelSet, Sample, SplitReader, identity_label_set
from rsir_cli.datasets.patchbands import (  # noqa: F401  (read_band*, upsample*: this module's API too)
    BANDS,
    PATCH_SIZE,
    check_same_footprint,
    read_band,
    read_band_gdal,
    read_patch_band,
    stack_bands,
    upsample2x_bilinear,
    upsample_bilinear,
)
from rsir_cli.datasets.sources import DOWNLOADS, GB, MB, DatasetSource, RemoteFile
from rsir_cli.errors import CorruptDataError, DataNotFoundError

log = logging.getLogger(__name__)

_FIX = "re-extract BigEarthNet-S2-v1.0.tar.gz (rsir download bigearthnet does it)"

# The 43 labels in the official order (label_indices.json of the BigEarthNet-S2 19-classes models).
LABELS_43: tuple[str, ...] = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)

LABELS_19: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)

# The official 43 -> 19 conversion (label_conversion of label_indices.json): 19-label index ->
# 43-label indexes. The 11 labels that appear nowhere are dropped.
_CONVERSION_19: tuple[tuple[int, ...], ...] = (
    (0, 1),
    (2,),
    (11, 12, 13),
    (14, 15, 16, 18),
    (17,),
    (19,),
    (20,),
    (21,),
    (22,),
    (23,),
    (24,),
    (25, 31),
    (26, 27),
    (28,),
    (29,),
    (33, 34),
    (35, 36),
    (38, 39),
    (40, 41, 42),
)


def _mapping_19() -> tuple[int, ...]:
    mapping = [-1] * len(LABELS_43)
    for target, sources in enumerate(_CONVERSION_19):
        for source in sources:
            mapping[source] = target
    return tuple(mapping)


LABEL_SETS = {
    "43": identity_label_set("43", LABELS_43),
    "19": LabelSet("19", LABELS_19, _mapping_19()),
}
_LABEL_INDEX = {name: i for i, name in enumerate(LABELS_43)}


_PRODUCT_DATE = re.compile(r"^S2[AB]_MSI(?:L1C|L2A)_(\d{4})(\d{2})(\d{2})T")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def date_from_product_name(name: str) -> str:
    """``YYYY-MM-DD`` from a Sentinel-2 product or patch name (``S2A_MSIL2A_20170613T101031_...``), or ""."""
    match = _PRODUCT_DATE.match(name)
    return "-".join(match.groups()) if match else ""


@functools.lru_cache(maxsize=64)
def _crs_string(projection: str | int) -> str:
    """The labels JSON's ``projection`` (WKT or an EPSG code) -> ``EPSG:xxxx`` where possible.

    Raises:
        ValueError: the text names no CRS.
    """
    if projection in ("", None):
        return ""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        crs = CRS.from_user_input(projection)
    except CRSError as error:
        raise ValueError(str(error)) from None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


@dataclass(frozen=True)
class PatchMetadata:
    """What a patch's ``_labels_metadata.json`` says: labels, footprint, acquisition date."""

    labels: np.ndarray  # 43 multi-hot, uint8
    crs: str  # "" when the JSON names none
    bounds: tuple[float, float, float, float]  # NaN when the JSON has no coordinates
    date: str  # YYYY-MM-DD, "" when unknown


def parse_labels_json(path: Path) -> PatchMetadata:
    """Labels (43 multi-hot), footprint (CRS, bounds) and date of one patch's ``_labels_metadata.json``.

    Raises:
        DataNotFoundError: the file is missing.
        CorruptDataError: not JSON, an unknown label, or a ``projection`` that names no CRS.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except FileNotFoundError:
        raise DataNotFoundError(f"labels file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptDataError(f"{path} is not valid JSON: {error}") from None
    labels = np.zeros(len(LABELS_43), dtype=np.uint8)
    for name in meta.get("labels", []):
        if name not in _LABEL_INDEX:
            raise CorruptDataError(f"{path}: unknown BigEarthNet label {name!r}")
        labels[_LABEL_INDEX[name]] = 1
    coords = meta.get("coordinates") or {}
    try:
        bounds = (float(coords["ulx"]), float(coords["lry"]), float(coords["lrx"]), float(coords["uly"]))
    except (KeyError, TypeError, ValueError):
        bounds = (np.nan, np.nan, np.nan, np.nan)
    try:
        crs = _crs_string(meta.get("projection") or "")
    except ValueError as error:
        raise CorruptDataError(f"{path}: its projection names no CRS ({error}); {_FIX}") from None
    match = _ISO_DATE.match(str(meta.get("acquisition_date") or ""))
    date = "-".join(match.groups()) if match else date_from_product_name(path.parent.name)
    return PatchMetadata(labels, crs, bounds, date)


def read_split_csv(path: Path) -> list[str]:
    """Patch names from an official split CSV (no header; first column the S2 patch).

    Raises:
        CorruptDataError: a patch is listed twice.
    """
    names: list[str] = []
    lines: dict[str, int] = {}
    # utf-8-sig: a CSV saved by a spreadsheet starts with a byte-order mark that would stick to the first name
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if row and row[0].strip() and not row[0].startswith("#"):
                name = row[0].strip()
                if name in lines:
                    raise CorruptDataError(
                        f"{path}: patch {name} is listed twice (lines {lines[name]} and {line}); remove the duplicate"
                    )
                lines[name] = line
                names.append(name)
    if names and names[0].lower() in ("patch_id", "name", "s2_name", "patch"):
        names = names[1:]
    return names


def find_patch_dir(root: Path) -> Path:
    """The folder holding the patch folders, under ``root`` as downloaded or pointed at directly."""
    for candidate in (root / "BigEarthNet-v1.0", root / "BigEarthNet-S2-v1.0", root / "BigEarthNet-S2", root):
        if candidate.is_dir() and any(p.is_dir() and p.name.startswith("S2") for p in _first_entries(candidate)):
            return candidate
    raise DataNotFoundError(
        f"no BigEarthNet-S2 patches found under {root}; run {suggest.download('bigearthnet', root)} or pass "
        "--data-dir pointing at the folder that holds BigEarthNet-v1.0/"
    )


def _first_entries(folder: Path, limit: int = 50) -> list[Path]:
    entries = []
    for i, entry in enumerate(folder.iterdir()):
        if i >= limit:
            break
        entries.append(entry)
    return entries


def find_split_file(root: Path, split: str) -> Path:
    for candidate in (root / "splits" / f"{split}.csv", root / f"{split}.csv"):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"no {split}.csv split file under {root} (looked in {root / 'splits'} and {root}); run "
        "`rsir download bigearthnet`, which fetches the official splits"
    )


class BigEarthNetSplit(SplitReader):
    """One official split of BigEarthNet-S2 v1.0 (or a split file of your own)."""

    def __init__(self, root: Path, split: str, *, exact_gdal: bool = False, dataset: str = "bigearthnet") -> None:
        root = Path(root)
        if not root.exists():
            raise DataNotFoundError(
                f"data directory {root} does not exist; run {suggest.download('bigearthnet', root)} or pass --data-dir"
            )
        self.root = root
        self.dataset = dataset
        self.split = split
        self.label_names = LABELS_43
        self.patch_size = PATCH_SIZE
        self.patch_dir = find_patch_dir(root)
        self._patch_prefix = f"{self.patch_dir}{os.sep}"  # plain string joins: pathlib costs show at 10k patches/s
        self.split_file = find_split_file(root, split)
        self._ids = read_split_csv(self.split_file)
        if not self._ids:
            raise CorruptDataError(f"split file {self.split_file} lists no patches")
        self.exact_gdal = exact_gdal

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def available_bands(self) -> tuple[str, ...]:
        return BANDS

    def band_path(self, patch: str, band: str) -> Path:
        return Path(f"{self._patch_prefix}{patch}/{patch}_{band}.tif")

    def load(self, index: int, bands: Sequence[str]) -> Sample:
        patch = self._ids[index]
        folder = self.patch_dir / patch
        if not folder.is_dir():
            raise DataNotFoundError(f"patch folder {folder} (listed in {self.split_file.name}) is missing")
        reads = [
            read_patch_band(
                f"{self._patch_prefix}{patch}/{patch}_{band}.tif", band, exact_gdal=self.exact_gdal, fix=_FIX
            )
            for band in bands
        ]
        check_same_footprint(patch, tuple(bands), reads, fix=_FIX)
        image = stack_bands(reads)
        meta = parse_labels_json(folder / f"{patch}_labels_metadata.json")
        crs, bounds = meta.crs, meta.bounds
        if reads and crs.startswith("EPSG:") and reads[0].crs.startswith("EPSG:") and crs != reads[0].crs:
            raise CorruptDataError(
                f"patch {patch}: its labels JSON says {crs} but its band files are in {reads[0].crs}; {_FIX}"
            )
        if reads and not crs:  # the band files know where the patch lies when the JSON does not
            crs = reads[0].crs
            if np.isnan(bounds).any():
                bounds = reads[0].bounds
        return Sample(index, image, meta.labels, crs, bounds, meta.date)

    def band_sources(self, bands: Sequence[str]) -> list[dict[str, str]]:
        return [
            {
                "input": band,
                "from": f"<patch>_{band}.tif ({RESOLUTION_M[band]} m"
                + (f", bilinear to {PATCH_SIZE} px)" if RESOLUTION_M[band] != 10 else ")"),
            }
            for band in bands
        ]

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "split_file": str(self.split_file),
            "band_resolution_m": {b: RESOLUTION_M[b] for b in BANDS},
        }


# The official BigEarthNet-19 splits, as torchgeo pins them (torchgeo/datasets/bigearthnet.py,
# BigEarthNet.splits_metadata): the rsim/BigEarthNet-MM_19-classes_models repository on
# git.tu-berlin.de at commit 9a5be07346ab0884b2d9517475c27ef9db9b5104, with torchgeo's md5s.
_SPLITS_COMMIT = "9a5be07346ab0884b2d9517475c27ef9db9b5104"
_SPLITS_MD5 = {
    "train": "623e501b38ab7b12fe44f0083c00986d",
    "val": "22efe8ed9cbd71fa10742ff7df2b7978",
    "test": "697fb90677e30571b9ac7699b7e5b432",
}
# Split sizes are not published; rows x ~82 bytes (269,695 / 123,723 / 125,866 rows).
_SPLITS_APPROX = {"train": 22 * MB, "val": 11 * MB, "test": 11 * MB}

SOURCE = DatasetSource(
    name="bigearthnet",
    description="BigEarthNet-S2 v1.0 (Zenodo record 12687186) and the official train/val/test splits",
    files=(
        *(
            RemoteFile(
                name=f"{split}.csv",
                url=(
                    "https://git.tu-berlin.de/rsim/BigEarthNet-MM_19-classes_models/-/raw/"
                    f"{_SPLITS_COMMIT}/splits/{split}.csv?inline=false"
                ),
                dest=f"splits/{split}.csv",
                approx_size=_SPLITS_APPROX[split],
                md5=_SPLITS_MD5[split],
            )
            for split in ("train", "val", "test")
        ),
        RemoteFile(
            name="BigEarthNet-S2-v1.0.tar.gz",
            url="https://zenodo.org/records/12687186/files/BigEarthNet-S2-v1.0.tar.gz?download=1",
            dest=f"{DOWNLOADS}/BigEarthNet-S2-v1.0.tar.gz",
            # Zenodo lists "66.0 GB"; the exact byte count is not published.
            approx_size=66 * GB,
            md5="5a64e9ce38deb036a435a7b59494924c",
            produces=("BigEarthNet-v1.0",),
            # 590,326 patches x 165.5 kB of files (4 x 29,192 + 6 x 7,560 + 2 x 1,160 bytes of
            # uncompressed GeoTIFF + ~1 kB JSON, measured on the real sample patches) = 97.7 GB of
            # data; 196.6 kB per patch on a 4 KiB-block file system = 116 GB on disk.
            extracted_size=117 * GB,
        ),
    ),
)


class BigEarthNetDefinition(DatasetDefinition):
    def open(self, root: Path, split: str, **options: object) -> SplitReader:
        return BigEarthNetSplit(root, split, exact_gdal=bool(options.get("exact_gdal", False)))


DEFINITION = BigEarthNetDefinition(
    name="bigearthnet",
    description="BigEarthNet-S2 v1.0: 590,326 Sentinel-2 patches, 43 (or 19) multi-labels",
    splits=("train", "val", "test"),
    default_splits=("val", "test"),
    label_sets=LABEL_SETS,
    download_hint="rsir download bigearthnet",
    source=SOURCE,
)
