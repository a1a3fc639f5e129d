"""BigEarthNet v2.0 (reBEN): 480,038 recommended Sentinel-2 patches with 19-class multi-labels.

On disk (Zenodo record 10891137, ``BigEarthNet-S2.tar.zst`` extracted beside ``metadata.parquet``)::

    <root>/metadata.parquet
    <root>/metadata_for_patches_with_snow_cloud_or_shadow.parquet    (optional, see below)
    <root>/BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_B01.tif ... _B12.tif, _B8A.tif (no B10)

``<tile>`` is the patch id without its last two ``_`` fields: patch
``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57`` lies in
``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP/``. ``metadata.parquet`` has one row per patch:
``patch_id``, ``labels`` (list of 19-class names, sorted), ``split`` (train / validation / test),
``country``, ``s1_name``, ``s2v1_name`` and the booleans ``contains_seasonal_snow`` and
``contains_cloud_or_shadow``. rsir's splits are ``train``, ``val`` (the parquet's ``validation``:
the queries) and ``test`` (the database), in the parquet's row order, as torchgeo's
``BigEarthNetV2`` reads them.

Snow, cloud and shadow: the reBEN authors recommend leaving those patches out, and publish them
apart. The archive holds all 549,488 patches, ``metadata.parquet`` only the 480,038 without snow,
cloud or shadow (every flag in it is false), and the 69,450 others are listed in
``metadata_for_patches_with_snow_cloud_or_shadow.parquet``. rsir follows the recommendation: it
drops any row whose flags are set (none in the official file; rows of a metadata file of your
own). ``include_flagged=True`` keeps them and also reads the second parquet when it lies beside
the first, for all 549,488.

Bands are the files' own sizes (120 / 60 / 20 px for 10 / 20 / 60 m, uint16, nodata 0, UTM), read
and brought to 120 x 120 exactly as torchgeo does (GDAL bilinear) by ``patchbands.py``; the
footprint is the band files' own georeferencing and the acquisition date comes from the product
name in the patch id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsir_cli import suggest
from rsir_cli.bands import RESOLUTION_M
from rsir_cli.datasets.base import DatasetDefinition, Sample, SplitReader, identity_label_set
from rsir_cli.datasets.bigearthnet import LABELS_19, date_from_product_name
from rsir_cli.datasets.patchbands import BANDS, PATCH_SIZE, check_same_footprint, read_patch_band, stack_bands
from rsir_cli.datasets.sources import DOWNLOADS, GB, DatasetSource, RemoteFile
from rsir_cli.errors import CorruptDataError, DataNotFoundError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

METADATA = "metadata.parquet"
FLAGGED_METADATA = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
PATCH_FOLDER = "BigEarthNet-S2"
#: rsir's split name -> the parquet's
SPLITS = {"train": "train", "val": "validation", "test": "test"}
FLAG_COLUMNS = ("contains_seasonal_snow", "contains_cloud_or_shadow")
# The 19 classes in the order of the BigEarthNet-19 nomenclature (Sumbul et al. 2021), which is
# torchgeo's BigEarthNetV2 order and rsir's BigEarthNet v1 "19" label set.
LABELS = LABELS_19
LABEL_SETS = {"19": identity_label_set("19", LABELS)}
_LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}
_FIX = "re-extract BigEarthNet-S2.tar.zst (rsir download reben does it)"
_REFETCH = "download it again (rsir download reben does it)"


def tile_of(patch_id: str) -> str:
    """The tile folder of a patch: its id without the last two ``_`` fields."""
    return patch_id.rsplit("_", 2)[0]


def read_metadata(path: Path, split: str, *, include_flagged: bool = False) -> tuple[list[str], np.ndarray]:
    """Patch ids and 19-class multi-hot labels of one parquet split (``train``/``validation``/``test``).

    Args:
        path: a ``metadata.parquet`` (or a file of the same columns).
        split: the parquet's split value.
        include_flagged: keep rows flagged with seasonal snow, cloud or shadow.

    Returns:
        The ids in file order and a (N, 19) uint8 array.

    Raises:
        DataNotFoundError: the file is missing.
        CorruptDataError: not a parquet file, a needed column missing or of the wrong type, an
            unknown label, an empty or duplicated patch id.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataNotFoundError(
            f"no {path.name} at {path}; run {suggest.download('reben', path.parent)} or pass --data-dir pointing at the "
            f"folder that holds {METADATA} and {PATCH_FOLDER}/"
        )
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise CorruptDataError(f"{path} is not a readable parquet file ({error}); {_REFETCH}") from None
    needed = ["patch_id", "labels", "split", *([] if include_flagged else FLAG_COLUMNS)]
    for name in needed:
        if name not in schema.names:
            raise CorruptDataError(
                f"{path} has no column {name!r} (it has {', '.join(schema.names)}); it is not reBEN's {METADATA}; {_REFETCH}"
            )
    _check_types(path, schema, needed)
    try:
        table = pq.read_table(path, columns=needed)
    except (pa.ArrowException, OSError) as error:
        raise CorruptDataError(f"cannot read {path} ({error}); {_REFETCH}") from None
    _refuse_duplicate_ids(path, _as_string(table["patch_id"]))
    keep = pc.fill_null(pc.equal(_as_string(table["split"]), split), False)
    if not include_flagged:
        flagged = pc.or_(*(pc.fill_null(table[name], False) for name in FLAG_COLUMNS))
        keep = pc.and_(keep, pc.invert(flagged))
    table = table.filter(keep)
    patch_ids = _as_string(table["patch_id"])
    if patch_ids.null_count:
        raise CorruptDataError(f"{path}: a row of split {split!r} has no patch_id; {_REFETCH}")
    ids = patch_ids.to_pylist()
    return ids, _multi_hot(path, ids, table["labels"])


def _refuse_duplicate_ids(path: Path, patch_ids: pa.ChunkedArray) -> None:
    """A patch listed twice (in one split or two) would be embedded twice, or leak queries into the database."""
    import pyarrow.compute as pc

    if pc.count_distinct(patch_ids).as_py() == len(patch_ids) - patch_ids.null_count:
        return
    counts = pc.value_counts(patch_ids)
    twice = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    raise CorruptDataError(f"{path} lists patch {twice[0].as_py()} more than once; {_REFETCH}")


def _check_types(path: Path, schema: pa.Schema, names: list[str]) -> None:
    import pyarrow as pa

    for name in names:
        kind = schema.field(name).type
        if name == "labels":
            ok = (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _is_text(kind.value_type)
            wanted = "a list of strings"
        elif name in FLAG_COLUMNS:
            ok, wanted = pa.types.is_boolean(kind), "booleans"
        else:
            ok, wanted = _is_text(kind), "strings"
        if not ok:
            raise CorruptDataError(f"{path}: column {name!r} holds {kind}, not {wanted}; {_REFETCH}")


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _as_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow as pa

    return column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column


def _multi_hot(path: Path, ids: list[str], column: pa.ChunkedArray) -> np.ndarray:
    import pyarrow.compute as pc

    labels = np.zeros((len(ids), len(LABELS)), dtype=np.uint8)
    lists = column.combine_chunks()
    if len(lists) == 0:
        return labels
    rows = pc.list_parent_indices(lists).to_numpy()
    names = pc.dictionary_encode(_as_string(lists.flatten()))
    vocabulary = names.dictionary.to_pylist()
    unknown = [name for name in vocabulary if name not in _LABEL_INDEX]
    if unknown:
        code = vocabulary.index(unknown[0])
        row = rows[np.flatnonzero(names.indices.to_numpy(zero_copy_only=False) == code)[0]]
        raise CorruptDataError(
            f"{path}: patch {ids[row]} has the label {unknown[0]!r}, which is none of the 19 BigEarthNet classes; {_REFETCH}"
        )
    to_index = np.array([_LABEL_INDEX[name] for name in vocabulary], dtype=np.int64)
    labels[rows, to_index[names.indices.to_numpy(zero_copy_only=False)]] = 1
    return labels


def _refuse_duplicates(ids: list[str], sources: list[Path]) -> None:
    if len(set(ids)) == len(ids):
        return
    seen: set[str] = set()
    for patch in ids:
        if patch in seen:
            raise CorruptDataError(f"patch {patch} is listed in both {sources[0]} and {sources[-1]}; {_REFETCH}")
        seen.add(patch)


class RebenSplit(SplitReader):
    """One split of BigEarthNet v2.0 as ``metadata.parquet`` defines it."""

    def __init__(
        self,
        root: Path,
        split: str,
        *,
        include_flagged: bool = False,
        metadata: Path | None = None,
        exact_gdal: bool = False,
    ) -> None:
        root = Path(root)
        if not root.exists():
            raise DataNotFoundError(
                f"data directory {root} does not exist; run {suggest.download('reben', root)} or pass --data-dir"
            )
        if split not in SPLITS:
            raise UsageError(f"reben has splits {', '.join(SPLITS)}, not {split!r}")
        self.root = root
        self.dataset = "reben"
        self.split = split
        self.label_names = LABELS
        self.patch_size = PATCH_SIZE
        self.include_flagged = include_flagged
        self.exact_gdal = exact_gdal
        self.metadata_file = Path(metadata) if metadata is not None else root / METADATA
        self.metadata_files = [self.metadata_file]
        ids, labels = read_metadata(self.metadata_file, SPLITS[split], include_flagged=include_flagged)
        flagged_file = self.metadata_file.parent / FLAGGED_METADATA
        if include_flagged and flagged_file.is_file() and flagged_file != self.metadata_file:
            more_ids, more_labels = read_metadata(flagged_file, SPLITS[split], include_flagged=True)
            ids, labels = ids + more_ids, np.concatenate([labels, more_labels])
            self.metadata_files.append(flagged_file)
        elif include_flagged:
            log.warning(
                "include_flagged: %s is not beside %s; only its own flagged rows are kept",
                FLAGGED_METADATA,
                self.metadata_file,
            )
        _refuse_duplicates(ids, self.metadata_files)  # each file alone was checked as it was read
        if not ids:
            raise CorruptDataError(f"{self.metadata_file} has no patches in split {SPLITS[split]!r}; {_REFETCH}")
        self._ids, self._labels = ids, labels
        self.patch_dir = root / PATCH_FOLDER
        if not self.patch_dir.is_dir():
            raise DataNotFoundError(
                f"no {PATCH_FOLDER}/ folder in {root}; run {suggest.download('reben', root)}, which extracts "
                f"BigEarthNet-S2.tar.zst there, or pass --data-dir pointing at the folder that holds it"
            )
        self._patch_prefix = f"{self.patch_dir}{os.sep}"  # plain string joins: pathlib costs show at 10k patches/s

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def labels(self) -> np.ndarray:
        """(N, 19) multi-hot labels of the split, from the parquet."""
        return self._labels

    @property
    def available_bands(self) -> tuple[str, ...]:
        return BANDS

    def band_path(self, patch: str, band: str) -> Path:
        return Path(f"{self._patch_prefix}{tile_of(patch)}/{patch}/{patch}_{band}.tif")

    def load(self, index: int, bands: Sequence[str]) -> Sample:
        patch = self._ids[index]
        stem = f"{self._patch_prefix}{tile_of(patch)}/{patch}/{patch}_"  # strings: pathlib costs show at 10k patches/s
        try:
            reads = [read_patch_band(f"{stem}{b}.tif", b, exact_gdal=self.exact_gdal, fix=_FIX) for b in bands]
        except DataNotFoundError:
            folder = self.patch_dir / tile_of(patch) / patch
            if not folder.is_dir():
                raise DataNotFoundError(
                    f"patch folder {folder} (listed in {self.metadata_file.name}) is missing; {_FIX}"
                ) from None
            raise
        check_same_footprint(patch, bands, reads, fix=_FIX)
        crs, bounds = (reads[0].crs, reads[0].bounds) if reads else ("", (np.nan,) * 4)
        return Sample(index, stack_bands(reads), self._labels[index].copy(), crs, bounds, date_from_product_name(patch))

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "metadata_files": [str(p) for p in self.metadata_files],
            "include_flagged": self.include_flagged,
            "band_resolution_m": {b: RESOLUTION_M[b] for b in BANDS},
        }


class RebenDefinition(DatasetDefinition):
    def open(self, root: Path, split: str, **options: object) -> SplitReader:
        """Open one split. Options: ``include_flagged`` (bool), ``metadata`` (a parquet path), ``exact_gdal`` (bool)."""
        unknown = set(options) - {"include_flagged", "metadata", "exact_gdal"}
        if unknown:
            raise UsageError(
                f"reben takes the options include_flagged, metadata, exact_gdal, not {', '.join(sorted(unknown))}"
            )
        metadata = options.get("metadata")
        return RebenSplit(
            root,
            split,
            include_flagged=bool(options.get("include_flagged", False)),
            metadata=Path(str(metadata)) if metadata else None,
            exact_gdal=bool(options.get("exact_gdal", False)),
        )


# Zenodo record 10891137 (CDLA-Permissive-1.0). The archive's md5 comes from the release
# pipeline's tracked hashes (kai-tub/bigearthnet-pipeline, whose metadata.parquet md5 equals the
# published one); sizes: metadata.parquet exactly, the archive as Zenodo lists it.
_ZENODO = "https://zenodo.org/records/10891137/files"
SOURCE = DatasetSource(
    name="reben",
    description="BigEarthNet v2.0 (reBEN, Zenodo record 10891137): the Sentinel-2 patches and their metadata",
    files=(
        RemoteFile(
            name="metadata.parquet",
            url=f"{_ZENODO}/metadata.parquet?download=1",
            dest="metadata.parquet",
            size=3_616_349,
            md5="55687065e77b6d0b0f1ff604a6e7b49c",
        ),
        RemoteFile(
            name="BigEarthNet-S2.tar.zst",
            url=f"{_ZENODO}/BigEarthNet-S2.tar.zst?download=1",
            dest=f"{DOWNLOADS}/BigEarthNet-S2.tar.zst",
            approx_size=int(63.25 * GB),
            md5="2245ed2d1a93f6ce637d839bc856396e",
            produces=("BigEarthNet-S2",),
            # 549,488 patches x 164,560 bytes of files (measured on real patches) = 90.4 GB; ~106 GB
            # on a 4 KiB-block file system.
            extracted_size=106 * GB,
        ),
    ),
)

DEFINITION = RebenDefinition(
    name="reben",
    description="BigEarthNet v2.0 (reBEN): 480,038 Sentinel-2 patches (snow, cloud, shadow left out), 19 multi-labels",
    splits=("train", "val", "test"),
    default_splits=("val", "test"),
    label_sets=LABEL_SETS,
    download_hint="rsir download reben",
    source=SOURCE,
)
