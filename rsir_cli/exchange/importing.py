"""`rsir import`: a GeoParquet file (rsir's own or another tool's) into the store as one split."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli.errors import CorruptDataError, ImportFormatError, StoreError
from rsir_cli.exchange.common import (
    FOREIGN_SPLIT,
    HASHERS_KEY,
    IMPORTED_MODEL,
    SOURCE_METADATA_LIMIT,
    STORE_KEYS,
    decode_array,
)
from rsir_cli.geoparquet import RSIR_FORMAT_VERSION
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.store import EmbeddingStore

if TYPE_CHECKING:
    from rsir_cli.geoparquet_read import GeoParquetInfo, GeoParquetReader


@dataclass
class ImportResult:
    """What :func:`import_file` did."""

    source: Path
    model: str
    dataset: str
    split: str
    rows: int
    dim: int
    state: str  # imported | replaced | up to date
    foreign: bool
    columns: dict[str, str | None]
    label_names: list[str]
    codes: list[str]  # code tables written
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.rows,
            "dim": self.dim,
            "state": self.state,
            "foreign": self.foreign,
            "columns": self.columns,
            "labels": len(self.label_names),
            "codes": self.codes,
            "seconds": round(self.seconds, 3),
        }


def _name_from(stem: str) -> str:
    """A store name (letters, digits, ``.``, ``_``, ``-``) from a file name."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-.")
    return name if name and name[0].isalnum() else f"imported-{name}".rstrip("-")


def full_label_names(dataset: str) -> list[str] | None:
    """The full label set (store column order) of a dataset rsir knows; None for any other name."""
    from rsir_cli.datasets import label_sets_for

    for label_set in label_sets_for(dataset).values():
        if label_set.mapping == tuple(range(len(label_set.names))):
            return list(label_set.names)
    return None


@dataclass
class _Plan:
    """Everything an import decided before it touches the store."""

    source: Path
    model: str
    dataset: str
    split: str
    foreign: bool
    attrs: dict[str, Any]
    label_names: list[str]
    label_columns: np.ndarray | None  # file label j -> store column (None: the same order)
    hashers: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]
    columns: dict[str, str | None]
    rows: int
    dim: int = 0
    codes: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.model}/{self.dataset}/{self.split}"

    def result(self, state: str, codes: list[str], seconds: float) -> ImportResult:
        return ImportResult(
            self.source,
            self.model,
            self.dataset,
            self.split,
            self.rows,
            self.dim,
            state,
            self.foreign,
            self.columns,
            self.label_names,
            codes,
            seconds,
        )


def import_file(
    store: EmbeddingStore,
    path: str | Path,
    *,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    id_column: str | None = None,
    embedding_column: str | None = None,
    geometry_column: str | None = None,
    label_column: str | None = None,
    date_column: str | None = None,
    geometry_crs: str | None = None,
    overwrite: bool = False,
    option_names: Mapping[str, str] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> ImportResult:
    """Read a GeoParquet embedding file (rsir's own or another tool's) into the store as one split.

    Args:
        store: the store.
        path: the ``.parquet`` file.
        model, dataset, split: the names in the store. Default: an rsir file's own names; for
            another tool's file :data:`IMPORTED_MODEL`, the file's name and :data:`FOREIGN_SPLIT`.
        id_column, embedding_column, geometry_column, label_column, date_column: the columns of
            another tool's file (None: guessed, see :mod:`rsir_cli.geoparquet_read`).
        geometry_crs: the geometry's CRS where the file does not say (e.g. ``EPSG:4326``).
        overwrite: replace a split the store holds with other content (or an unfinished run).
        option_names: how the reader's messages name the column options, by role (``id``,
            ``embedding``, ``geometry``, ``labels``, ``date``, ``geometry_crs``); the CLI passes its flags.
        progress: reports rows read.

    Returns:
        What was imported (state ``imported``, ``replaced`` or ``up to date``).

    Raises:
        DataNotFoundError: the file does not exist.
        CorruptDataError: it is not Parquet, or rsir's metadata in it is damaged.
        ImportFormatError: a column is missing or holds what rsir cannot take (no geometry, mixed
            lengths, nulls, non-finite values, repeated ids, labels of another label set); nothing
            is written.
        StoreError: the store holds the split with other content (the message names --overwrite),
            or another process is writing it.
    """
    from rsir_cli.geoparquet_read import GeoParquetReader

    began = time.perf_counter()
    path = Path(path)
    reader = GeoParquetReader(
        path,
        id_column=id_column,
        embedding_column=embedding_column,
        geometry_column=geometry_column,
        label_column=label_column,
        date_column=date_column,
        geometry_crs=geometry_crs,
        option_names=dict(option_names or {}),
    )
    plan = _plan(store, reader.info, model, dataset, split)
    state = _existing(store, plan, overwrite)
    if state == "stored":
        if not _same_as_stored(store, plan, reader, progress):
            raise StoreError(
                f"the store {store.root} already holds {plan.where} with other content; add --overwrite to replace "
                f"it with the rows of {path.name}, or import it under another --model, --dataset or --split"
            )
        written = _write_codes(store, plan, missing_only=True)
        return plan.result("up to date", written, time.perf_counter() - began)
    _write_split(store, plan, reader, progress)
    written = _write_codes(store, plan, missing_only=False)
    return plan.result(state, written, time.perf_counter() - began)


def _plan(
    store: EmbeddingStore, info: GeoParquetInfo, model: str | None, dataset: str | None, split: str | None
) -> _Plan:
    """Names, attributes, label order and code tables of an import, checked before anything is read."""
    path = info.path
    if info.rows == 0:
        raise ImportFormatError(f"{path.name} has no rows; nothing to import")
    hashers: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]] = {}
    if info.rsir is not None:  # rsir's own file
        version = info.rsir.get("format_version")
        if not isinstance(version, int):
            raise CorruptDataError(f"{path.name}: its rsir metadata has no format_version; it is damaged")
        if version > RSIR_FORMAT_VERSION:
            raise ImportFormatError(
                f"{path.name} was written by a newer rsir (file format version {version}); this rsir reads version "
                f"{RSIR_FORMAT_VERSION}: upgrade rsir to import it"
            )
        provenance = dict(info.provenance)
        records = provenance.pop(HASHERS_KEY, None) or {}
        model = model or str(provenance.get("model") or IMPORTED_MODEL)
        dataset = dataset or str(provenance.get("dataset") or _name_from(path.stem))
        split = split or str(provenance.get("split") or FOREIGN_SPLIT)
        attrs = {key: value for key, value in provenance.items() if key not in STORE_KEYS}
        if provenance.get("created"):
            attrs["source_created"] = provenance["created"]
        if not isinstance(attrs.get("model_config"), dict):  # no model rsir could rebuild
            attrs["imported"] = True
        for name in info.code_names:
            if name in records:
                hashers[name] = _hasher_from_record(path, name, records[name])
        label_names, label_columns = list(info.label_names), None
    else:
        model = model or IMPORTED_MODEL
        dataset = dataset or _name_from(path.stem)
        split = split or FOREIGN_SPLIT
        attrs = {
            "imported": True,
            "source_columns": {role: column for role, column in info.columns.items() if column},
            "geometry_crs": info.geometry_crs or "",
            "ids_generated": info.ids_generated,
            "random_weights": False,
        }
        extra = {}
        for key, value in info.file_metadata.items():
            if key in ("geo", "ARROW:schema"):
                continue
            try:
                if len(json.dumps(value)) <= SOURCE_METADATA_LIMIT:
                    extra[key] = value
            except (TypeError, ValueError):
                continue
        if extra:
            attrs["source_metadata"] = extra
        label_names = _label_order(store, path, model, dataset, split, info.label_names)
        position = {name: column for column, name in enumerate(label_names)}
        label_columns = np.array([position[name] for name in info.label_names], dtype=np.int64)
    store.location(model, dataset, split)  # the names must be valid store names
    attrs["imported_from"] = str(path.resolve())
    attrs["label_names"] = label_names
    plan = _Plan(
        path, model, dataset, split, info.rsir is None, attrs, label_names, label_columns, hashers,
        dict(info.columns), info.rows,
    )  # fmt: skip
    if info.dim is not None:
        _check_dim(store, plan, info.dim)
    return plan


def _hasher_from_record(
    path: Path, name: str, record: Any
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    try:
        table = {k: v for k, v in dict(record["table"]).items() if k not in ("created", "rows", "content_digest")}
        arrays = {key: decode_array(value) for key, value in dict(record["hasher"]).items()}
        return table, arrays, dict(record["hasher_attrs"])
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptDataError(
            f"{path.name}: the rsir metadata of code table {name!r} is damaged ({type(error).__name__}: {error})"
        ) from None


def _label_order(
    store: EmbeddingStore, path: Path, model: str, dataset: str, split: str, found: Sequence[str]
) -> list[str]:
    """The store's label columns for another tool's labels.

    A dataset rsir knows keeps its own full label order (its coarser label sets are derived by
    column); otherwise another split of the same (model, dataset) fixes the order, so that queries
    and database agree column by column; otherwise the labels sorted.
    """
    known = full_label_names(dataset)
    if known is not None:
        unknown = sorted(set(found) - set(known))
        if unknown:
            raise ImportFormatError(
                f"{path.name}: labels {', '.join(map(repr, unknown[:5]))} are not among the {len(known)} labels of "
                f"rsir's {dataset!r} dataset; import it under another --dataset name"
            )
        return known
    for model_name, dataset_name, other in store.entries():
        if (model_name, dataset_name) != (model, dataset) or other == split:
            continue
        try:
            names = [str(n) for n in store.attrs(model, dataset, other).get("label_names") or []]
        except StoreError:
            continue
        extra = sorted(set(found) - set(names))
        if extra:
            raise ImportFormatError(
                f"{path.name} has labels {', '.join(map(repr, extra[:5]))} that the store's {other!r} split of "
                f"{model}/{dataset} lacks, and the splits of a dataset share one label set; import it under another "
                "--dataset name"
            )
        return names
    return sorted(found)


def _check_dim(store: EmbeddingStore, plan: _Plan, dim: int) -> None:
    plan.dim = dim
    for summary in store.summaries():
        same = (summary.model, summary.dataset) == (plan.model, plan.dataset) and summary.split != plan.split
        if same and summary.rows and summary.dim and summary.dim != dim:
            raise ImportFormatError(
                f"{plan.source.name} holds {dim}-d embeddings but the store's {summary.split!r} split of "
                f"{plan.model}/{plan.dataset} has {summary.dim}-d ones; import it under another --model or --dataset"
            )


def _existing(store: EmbeddingStore, plan: _Plan, overwrite: bool) -> str:
    """``imported`` (nothing there), ``replaced`` (there, and overwrite) or ``stored`` (compare first)."""
    if (plan.model, plan.dataset, plan.split) not in store.entries():
        return "imported"
    if overwrite:
        return "replaced"
    try:
        store.split_files(plan.model, plan.dataset, plan.split)
        store.attrs(plan.model, plan.dataset, plan.split)
    except StoreError as error:
        raise StoreError(
            f"the store {store.root} holds an unfinished or damaged {plan.where} ({error}); add --overwrite to "
            "replace it with the file's rows"
        ) from None
    return "stored"


def _blocks(reader: GeoParquetReader, plan: _Plan, store: EmbeddingStore, progress: Progress) -> Any:
    """The file's rows in the store's order, labels in the store's columns; code bits kept aside."""
    task = progress.task(f"import {plan.source.name}", total=plan.rows, unit="rows")
    try:
        for number, block in enumerate(reader.blocks(order="store")):
            if number == 0:
                _check_dim(store, plan, block.dim)
            if plan.label_columns is not None:
                labels = np.zeros((len(block), len(plan.label_names)), dtype=np.uint8)
                labels[:, plan.label_columns] = block.labels
                block.labels = labels
            for name in plan.hashers:
                plan.codes.setdefault(name, []).append(np.asarray(block.codes[name], dtype=np.uint8))
            yield block
            task.advance(len(block))
    finally:
        task.close()


def _write_split(store: EmbeddingStore, plan: _Plan, reader: GeoParquetReader, progress: Progress) -> None:
    """Every block into a new run of the split; an error anywhere throws the run away."""
    blocks = _blocks(reader, plan, store, progress)
    first = next(blocks)  # the first block fixes the dimension (list columns do not say it)
    folders = [store.root, store.root / plan.model, store.root / plan.model / plan.dataset]
    new_folders = [folder for folder in folders if not folder.exists()]
    writer = store.writer(
        plan.model,
        plan.dataset,
        plan.split,
        attrs=plan.attrs,
        dim=plan.dim,
        n_labels=len(plan.label_names),
        rows_expected=plan.rows,
        overwrite=True,  # what was there (if anything) was checked: replace it once this run is complete
    )
    try:
        for block in chain([first], blocks):
            writer.append(block.embeddings, block.ids, block.labels, block.footprints(), block.dates)
        writer.finish()
    except BaseException:
        writer.abandon()
        for folder in reversed(new_folders):  # the run made them: leave the store as it was
            with contextlib.suppress(OSError):  # not empty (another writer): keep it
                folder.rmdir()
        raise


def _same_as_stored(store: EmbeddingStore, plan: _Plan, reader: GeoParquetReader, progress: Progress) -> bool:
    """True when the file holds exactly the rows the store's split holds (embeddings, ids, labels, places, dates)."""
    from rsir_cli.store.runs import ContentDigest

    stored = store.read(plan.model, plan.dataset, plan.split, embeddings=False, footprints=True)
    if stored.label_names != plan.label_names or len(stored) != plan.rows:
        return False
    assert stored.footprints is not None
    digest, start, same = ContentDigest(), 0, True
    for block in _blocks(reader, plan, store, progress):
        stop = start + len(block)
        footprints = block.footprints()
        same = (
            same
            and block.ids == stored.ids[start:stop]
            and np.array_equal(block.labels, stored.labels[start:stop])
            and block.dates == stored.dates[start:stop]
            and footprints.crs == stored.footprints.crs[start:stop]
            and np.array_equal(footprints.bounds, stored.footprints.bounds[start:stop], equal_nan=True)
            and np.array_equal(footprints.lonlat, stored.footprints.lonlat[start:stop], equal_nan=True)
        )
        digest.update(block.embeddings, block.ids)
        start = stop
    return same and digest.hexdigest() == store.content_digest(plan.model, plan.dataset, plan.split)


def _write_codes(store: EmbeddingStore, plan: _Plan, *, missing_only: bool) -> list[str]:
    """Write the file's code tables with their hashers (so they are current); returns the names written."""
    present = set(store.code_names(plan.model, plan.dataset, plan.split)) if missing_only else set()
    written = []
    for name, (table_attrs, arrays, hasher_attrs) in plan.hashers.items():
        if name in present:
            continue
        bits = np.concatenate(plan.codes.pop(name))
        store.write_codes(
            plan.model, plan.dataset, plan.split, name, bits,
            attrs=table_attrs, hasher=arrays, hasher_attrs=hasher_attrs,
        )  # fmt: skip
        written.append(name)
    return written
