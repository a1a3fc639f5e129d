"""Search orchestration: the database from the store, queries from a tile or a stored sample, matches.

The query is prepared exactly like the database it is searched against. The store's provenance
says which model (config, bands, normalisation, input size, weights checksum) made the database;
the tile is read in those bands and units, cut into chips of the database's native patch size,
embedded with :func:`rsir_cli.embedding.embed_images` and, for binary codes, hashed by the hasher
stored with the codes. The search itself is one :class:`rsir_cli.search.base.SearchBackend`
(the exact engine by default), so the rest does not care where the vectors live.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli.datasets.base import SplitReader
from rsir_cli.errors import DataNotFoundError, RsirError, StoreError, UsageError, WeightsError
from rsir_cli.geo import Footprints
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.raster import MAX_NODATA_FRACTION, PixelWindow
from rsir_cli.search.base import DISTANCES, SearchBackend
from rsir_cli.store import QUERY_SPLIT, EmbeddingStore

log = logging.getLogger(__name__)

#: where the database is looked for, in order: the paper's test split, a user archive's only split
DATABASE_SPLITS = ("test", "all")
#: the true-colour bands of thumbnails, in display order (red, green, blue)
RGB_BANDS = ("B04", "B03", "B02")
#: datasets whose ground pixel size the store does not record (the built-in ones)
PIXEL_SIZE_M = {"bigearthnet": 10.0, "forestnet": 15.0}
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: the store was embedded with random weights; these matches mean nothing"


# ------------------------------------------------------------------------------------ database
@dataclass
class Database:
    """The searched split: ids, labels, footprints and the vectors the backend indexes."""

    store: EmbeddingStore
    model: str
    dataset: str
    split: str
    attrs: dict[str, Any]
    ids: list[str]
    labels: np.ndarray
    footprints: Footprints
    vectors: np.ndarray
    distance: str
    code: str | None = None
    hasher: Any = None
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def label_names(self) -> list[str]:
        return list(self.attrs.get("label_names") or [])

    @property
    def random_weights(self) -> bool:
        return bool(self.attrs.get("random_weights"))

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "rows": len(self),
            "distance": self.distance,
            "code": self.code,
            "random_weights": self.random_weights,
        }


def _pick(kind: str, wanted: str | None, available: Sequence[str], store: EmbeddingStore, hint: str) -> str:
    options = sorted(set(available))
    if wanted is not None:
        if wanted not in options:
            raise StoreError(
                f"the store {store.root} has no embeddings of {kind} {wanted!r}"
                + (f" (it has: {', '.join(options)})" if options else "")
                + f"; {hint}"
            )
        return wanted
    if not options:
        raise StoreError(f"the store {store.root} is empty; {hint}")
    if len(options) > 1:
        raise UsageError(f"the store {store.root} holds several {kind}s ({', '.join(options)}); pick one with --{kind}")
    return options[0]


def resolve_entry(
    store: EmbeddingStore, model: str | None, dataset: str | None, split: str | None = None
) -> tuple[str, str, str]:
    """(model, dataset, database split): the ones asked for, or the store's only ones.

    Raises:
        StoreError: the store lacks them (the message lists what it has and what to run).
        UsageError: the choice is ambiguous.
    """
    entries = store.entries()
    hint = "run `rsir embed --model M --dataset D` first, or pass --store"
    model = _pick("model", model, [m for m, _, _ in entries], store, hint)
    dataset = _pick(
        "dataset",
        dataset,
        [d for m, d, _ in entries if m == model],
        store,
        f"run `rsir embed --model {model} --dataset D` first",
    )
    splits = [s for m, d, s in entries if m == model and d == dataset]
    if split is not None:
        if split not in splits:
            raise StoreError(
                f"the store has no {split!r} split for {model}/{dataset} (it has: {', '.join(splits)}); "
                f"run `rsir embed --model {model} --dataset {dataset} --split {split}`"
            )
        return model, dataset, split
    for candidate in DATABASE_SPLITS:
        if candidate in splits:
            return model, dataset, candidate
    raise StoreError(
        f"the store has no database split (test, or all for your own imagery) for {model}/{dataset}; it has "
        f"{', '.join(splits)}: pass --split, or run `rsir embed --model {model} --dataset {dataset} --split test`"
    )


def open_database(
    store: EmbeddingStore,
    *,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    hash_method: str | None = None,
    bits: int | None = None,
    seed: int | None = None,
    distance: str | None = None,
) -> Database:
    """Read the database split (float embeddings, or one code table with its hasher).

    Default distances are the paper's: L1 for float embeddings, Hamming for codes.

    Raises:
        StoreError: missing model, dataset, split or codes (the message says what to run).
        UsageError: an ambiguous choice, or a distance that does not fit the vectors.
    """
    model, dataset, split = resolve_entry(store, model, dataset, split)
    use_codes = hash_method is not None and hash_method.strip().lower() not in ("", "none")
    if not use_codes and bits is not None:
        raise UsageError("--bits needs --hash (binary, trivial, lsh, pca or itq)")
    if distance is not None and distance not in DISTANCES:
        raise UsageError(f"--distance must be one of {', '.join(DISTANCES)}, not {distance!r}")
    if use_codes:
        if distance not in (None, "hamming"):
            raise UsageError(f"binary codes are compared by Hamming distance, not {distance}")
        data = store.read(model, dataset, split, embeddings=False, footprints=True)
        from rsir_cli.hashing import hasher_from_codes
        from rsir_cli.stored_codes import find_code

        code = find_code(
            store, model, dataset, split, str(hash_method), bits, seed, int(data.attrs.get("embedding_dim") or 0)
        )
        codes = store.read_codes(model, dataset, split, code)
        assert data.footprints is not None
        return Database(
            store, model, dataset, split, data.attrs, data.ids, data.labels, data.footprints,
            codes.bits, "hamming", code, hasher_from_codes(codes),
        )  # fmt: skip
    if distance == "hamming":
        raise UsageError("Hamming distance needs binary codes: pass --hash METHOD --bits B")
    data = store.read(model, dataset, split, embeddings=True, footprints=True)
    assert data.embeddings is not None and data.footprints is not None
    return Database(
        store, model, dataset, split, data.attrs, data.ids, data.labels, data.footprints,
        data.embeddings, distance or "l1", embeddings=data.embeddings,
    )  # fmt: skip


def make_backend(
    database: Database,
    backend: str = "exact",
    device: str = "cpu",
    *,
    uri: str | None = None,
    token: str | None = None,
) -> SearchBackend:
    """The search backend holding the database's vectors.

    ``exact``: the ground-truth engine, in process. ``milvus``: the collection `rsir index` built
    from the same store split, at ``uri`` (a Milvus Lite .db file, default ``<store>/milvus.db``,
    or ``http(s)://host:port`` with ``token``); it is checked to be current with the store.
    """
    if backend == "milvus":
        from rsir_cli.indexing import open_database_collection
        from rsir_cli.search.milvus import resolve_target

        return open_database_collection(resolve_target(uri, token, database.store.root), database)
    if backend != "exact":
        raise UsageError(f"unknown search backend {backend!r}; choose exact or milvus")
    from rsir_cli.search.exact import ExactIndex

    index = ExactIndex(database.distance, device=device)
    index.add(database.vectors)
    return index


# -------------------------------------------------------------------------------------- queries
@dataclass
class Query:
    """One query: its embedding, and what is known about it (labels, footprint, image)."""

    id: str
    embedding: np.ndarray
    labels: np.ndarray | None = None
    crs: str = ""
    bounds: tuple[float, float, float, float] = (np.nan, np.nan, np.nan, np.nan)
    lonlat: np.ndarray = field(default_factory=lambda: np.full((4, 2), np.nan))
    window: PixelWindow | None = None
    nodata_fraction: float = 0.0
    split: str | None = None  # a stored sample's split
    rgb: np.ndarray | None = None  # (3, H, W) B04, B03, B02 in model units, for the figure


@dataclass
class TileQueries:
    """The chips of a tile that are searched, and what was left out."""

    queries: list[Query]
    region: PixelWindow
    chip_size: int
    chips_total: int
    skipped: list[tuple[str, float]]
    bands_mapped_by: str


def load_encoder(attrs: dict[str, Any], weights: Path | None = None) -> Any:
    """The encoder that made the store, rebuilt from its provenance.

    Random-weight stores get the same seeded random weights. Otherwise the weights are resolved as
    `rsir embed` does (``--weights`` or the downloaded checkpoint) and must have the store's sha256.

    Raises:
        WeightsError: missing weights, or weights other than the store's.
        UsageError: ``--weights`` given for a random-weight store.
    """
    from rsir_cli.models import build_encoder, config_from_provenance, load_plugins
    from rsir_cli.models.weights import resolve_weights

    load_plugins()
    config = config_from_provenance(attrs)
    if attrs.get("random_weights"):
        if weights is not None:
            raise UsageError("the store was embedded with random weights; drop --weights to query it")
        return build_encoder(config, None, True)
    resolved = resolve_weights(config, weights, False)
    expected = str(attrs.get("weights_sha256") or "")
    if expected and resolved.sha256 != expected:  # checked before the checkpoint is even loaded
        raise WeightsError(
            f"{resolved.source} has sha256 {str(resolved.sha256)[:16]}..., but the store was embedded with weights "
            f"{expected[:16]}... ({attrs.get('weights_source') or 'unknown source'}); pass --weights with that checkpoint"
        )
    return build_encoder(config, resolved.path, False)


def query_chip_size(attrs: dict[str, Any], pixel_size_m: float | None) -> int:
    """Chip size in tile pixels that covers the ground of one database patch."""
    patch = int(attrs.get("patch_size") or 120)
    dataset_kind = str(attrs.get("dataset_type") or attrs.get("dataset") or "")
    try:
        database_pixel = float(attrs.get("pixel_size_m") or PIXEL_SIZE_M.get(dataset_kind) or 0)
    except (TypeError, ValueError):
        database_pixel = 0.0
    if database_pixel > 0 and pixel_size_m:
        return max(1, round(patch * database_pixel / pixel_size_m))
    return patch


@dataclass
class TilePlan:
    """A query tile opened and checked: its bands, the region searched and its chips."""

    path: Path
    raster: Any
    needed: tuple[str, ...]
    region: PixelWindow
    chips: list[Any]
    chip_size: int
    units: str


def plan_tile(
    path: Path,
    config: Any,
    attrs: dict[str, Any],
    *,
    bands: Sequence[int] | None = None,
    units: str = "auto",
    window: PixelWindow | None = None,
    bbox: Sequence[float] | None = None,
    chip_size: int | None = None,
) -> TilePlan:
    """Open a query tile and check it against the model (cheap; before any model is loaded).

    Args:
        config: the store's model config (:func:`rsir_cli.models.config_from_provenance`).
        bands: ``--bands``, 1-based band numbers for the model's read bands (default: descriptions).
        chip_size: chip size in tile pixels (default: the ground size of one database patch).

    Raises:
        UsageError: bands that do not fit, a region outside the tile or smaller than half a chip.
        CorruptDataError / DataNotFoundError: not a raster, or nothing there.
    """
    from rsir_cli.raster import band_map, open_raster, query_chips

    needed = tuple(config.read_bands)
    band_indexes = band_map(bands, needed, f"model {config.name}") if bands else None
    raster = open_raster(path, band_indexes, units)
    raster.require(needed, f"model {config.name}")
    size = chip_size or query_chip_size(attrs, raster.pixel_size_m())
    region, chips = query_chips(raster, size, window, bbox)
    return TilePlan(Path(path), raster, needed, region, chips, size, units)


def tile_queries(
    plan: TilePlan,
    encoder: Any,
    *,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 16,
    keep_rgb: int = 0,
    progress: Progress = NULL_PROGRESS,
) -> TileQueries:
    """Read the planned chips one window at a time and embed them, ``batch_size`` chips at once.

    Memory stays bounded by one batch of chips, whatever the tile's size. Chips that are mostly
    nodata (over :data:`MAX_NODATA_FRACTION`) are skipped and listed.

    Args:
        keep_rgb: keep the true-colour image of the first ``keep_rgb`` chips (for the figure).

    Raises:
        UsageError: every chip is mostly nodata.
    """
    from rsir_cli.embedding import embed_images
    from rsir_cli.geo import lonlat_corners

    raster, needed, chips, path = plan.raster, plan.needed, plan.chips, plan.path
    single = len(chips) == 1
    stem = path.stem if path.is_file() else path.name
    rgb_positions = [needed.index(b) for b in RGB_BANDS] if all(b in needed for b in RGB_BANDS) else None
    queries: list[Query] = []
    skipped: list[tuple[str, float]] = []
    bar = progress.task(f"embedding {path.name}", total=len(chips), unit="chip")
    try:
        for start in range(0, len(chips), batch_size):
            batch = chips[start : start + batch_size]
            images, kept = [], []
            for chip in batch:
                chip_id = stem if single else f"{stem}_r{chip.row}_c{chip.col}"
                image, invalid = raster.read(chip.window, needed)
                fraction = float(invalid.mean())
                if fraction > MAX_NODATA_FRACTION:
                    skipped.append((chip_id, fraction))
                    continue
                if not queries and not kept and plan.units == "auto" and 0.0 < float(image.max()) <= 1.5:
                    log.warning(
                        "%s: the values look like reflectance in [0, 1] but carry no scale; if so, pass --units reflectance",
                        path.name,
                    )
                bounds = raster.window_bounds(chip.window) if raster.crs else (np.nan,) * 4
                keep = rgb_positions is not None and len(queries) + len(kept) < keep_rgb
                kept.append(
                    Query(
                        chip_id,
                        np.empty(0, np.float32),
                        crs=raster.crs,
                        bounds=tuple(bounds),  # type: ignore[arg-type]
                        window=chip.window,
                        nodata_fraction=fraction,
                        rgb=image[rgb_positions] if keep else None,
                    )
                )
                images.append(image)
            if images:
                embeddings = embed_images(encoder, np.stack(images), device=device, precision=precision)
                corners = lonlat_corners([q.crs for q in kept], np.array([q.bounds for q in kept]))
                for query, embedding, lonlat in zip(kept, embeddings, corners, strict=True):
                    query.embedding = embedding
                    query.lonlat = lonlat
                queries.extend(kept)
            bar.advance(len(batch))
    finally:
        bar.close()
        raster.close()
    if not queries:
        worst = min(fraction for _, fraction in skipped)
        what = "the query" if single else f"all {len(chips)} chips of the query"
        raise DataNotFoundError(
            f"{what} in {path.name} {'is' if single else 'are'} mostly nodata ({worst:.0%} of the pixels or more; "
            f"at most {MAX_NODATA_FRACTION:.0%} is allowed): pick a region with data (--window / --bbox)"
        )
    return TileQueries(queries, plan.region, plan.chip_size, len(chips), skipped, raster.mapped_by)


def stored_query(database: Database, sample_id: str) -> Query:
    """A sample already in the store, by id: the query split (val) first, then the database split.

    Its stored embedding is the query (no encoder runs); its labels are known.

    Raises:
        DataNotFoundError: no such id in either split.
    """
    store, model, dataset = database.store, database.model, database.dataset
    splits = [s for m, d, s in store.entries() if m == model and d == dataset]
    order = ([QUERY_SPLIT] if QUERY_SPLIT in splits and QUERY_SPLIT != database.split else []) + [database.split]
    for split in order:
        if split == database.split and database.embeddings is not None:
            ids, labels, embeddings, footprints = (
                database.ids,
                database.labels,
                database.embeddings,
                database.footprints,
            )
        else:
            data = store.read(model, dataset, split, embeddings=True, footprints=True)
            assert data.embeddings is not None and data.footprints is not None
            ids, labels, embeddings, footprints = data.ids, data.labels, data.embeddings, data.footprints
        if sample_id in ids:
            row = ids.index(sample_id)
            return Query(
                sample_id,
                np.asarray(embeddings[row], dtype=np.float32),
                labels=np.asarray(labels[row]),
                crs=footprints.crs[row],
                bounds=tuple(float(v) for v in footprints.bounds[row]),  # type: ignore[arg-type]
                lonlat=np.asarray(footprints.lonlat[row]),
                split=split,
            )
    raise DataNotFoundError(
        f"no sample {sample_id!r} in {model}/{dataset} (looked in split(s) {', '.join(order)}); "
        "ids are the dataset's own sample names (see `rsir search --json` output)"
    )


# -------------------------------------------------------------------------------------- results
@dataclass
class Match:
    """One database row found for a query."""

    rank: int
    row: int
    id: str
    distance: float
    labels: list[str] | None
    crs: str
    bounds: tuple[float, float, float, float]
    lonlat: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "row": self.row,
            "id": self.id,
            "distance": self.distance,
            "labels": self.labels,
            "crs": self.crs or None,
            "bounds": _finite_list(self.bounds),
            "lonlat": _finite_list(self.lonlat),
        }


@dataclass
class QueryResult:
    """A query and its matches, best first."""

    query: Query
    labels: list[str] | None
    matches: list[Match]

    def to_dict(self) -> dict[str, Any]:
        q = self.query
        return {
            "query": q.id,
            "split": q.split,
            "window": q.window.as_list() if q.window else None,
            "crs": q.crs or None,
            "bounds": _finite_list(q.bounds),
            "lonlat": _finite_list(q.lonlat),
            "nodata_fraction": round(q.nodata_fraction, 6),
            "labels": self.labels,
            "matches": [m.to_dict() for m in self.matches],
        }


def _finite_list(values: Any) -> Any:
    array = np.asarray(values, dtype=np.float64)
    return array.tolist() if np.all(np.isfinite(array)) else None


def _label_list(names: Sequence[str], row: np.ndarray | None) -> list[str] | None:
    """Names of the set labels; None when the dataset has no labels at all."""
    if row is None or not names:
        return None
    return [names[j] for j in np.flatnonzero(row)]


def search(database: Database, backend: SearchBackend, queries: Sequence[Query], k: int) -> list[QueryResult]:
    """The ``k`` nearest database rows of every query (ties: lower database row first)."""
    if k < 1:
        raise UsageError("--k must be at least 1")
    if not queries:
        return []
    vectors = np.stack([q.embedding for q in queries]).astype(np.float32)
    if vectors.shape[1] != int(database.attrs.get("embedding_dim") or vectors.shape[1]):
        raise StoreError(
            f"query embeddings have {vectors.shape[1]} dimensions, the database {database.attrs.get('embedding_dim')}"
        )
    if database.hasher is not None:
        vectors = database.hasher.transform(vectors)
    found = backend.search(vectors, k)
    names = database.label_names
    results = []
    for q, (rows, distances) in enumerate(zip(found.indices, found.distances, strict=True)):
        matches = []
        for rank, (row, distance) in enumerate(zip(rows, distances, strict=True), start=1):
            if row < 0:
                continue
            row = int(row)
            distance = float(distance)
            matches.append(
                Match(
                    rank,
                    row,
                    database.ids[row],
                    int(round(distance)) if database.distance == "hamming" else distance,
                    _label_list(names, database.labels[row]),
                    database.footprints.crs[row],
                    tuple(float(v) for v in database.footprints.bounds[row]),  # type: ignore[arg-type]
                    np.asarray(database.footprints.lonlat[row]),
                )
            )
        results.append(QueryResult(queries[q], _label_list(names, queries[q].labels), matches))
    return results


def results_geojson(database: Database, results: Sequence[QueryResult]) -> dict[str, Any]:
    """The queries' and matches' footprints (EPSG:4326) as a GeoJSON FeatureCollection (RFC 7946).

    Every feature has the same properties (``role`` query/match, query, rank, id, distance,
    labels), so that QGIS reads one attribute table; a query has rank 0 and distance 0.
    """
    from rsir_cli.geo import geojson_feature

    features = []
    for result in results:
        q = result.query
        if np.all(np.isfinite(q.lonlat)):
            features.append(
                geojson_feature(
                    q.lonlat,
                    {
                        "role": "query",
                        "query": q.id,
                        "rank": 0,
                        "id": q.id,
                        "distance": 0.0,
                        "labels": "; ".join(result.labels or []),
                    },
                )
            )
        for match in result.matches:
            features.append(
                geojson_feature(
                    match.lonlat,
                    {
                        "role": "match",
                        "query": q.id,
                        "rank": match.rank,
                        "id": match.id,
                        "distance": float(match.distance),
                        "labels": "; ".join(match.labels or []),
                    },
                )
            )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    # A foreign member (RFC 7946, 6.1): what was searched; GIS readers ignore it.
    collection["rsir"] = database.describe()
    if database.random_weights:
        collection["rsir"]["warning"] = RANDOM_WEIGHTS_WARNING
    return collection


# ----------------------------------------------------------------------------------- thumbnails
def open_reader(attrs: dict[str, Any], split: str) -> SplitReader:
    """Reopen the dataset a store split was embedded from (its recorded root and options).

    Raises:
        RsirError: the data is not on disk any more (or cannot be opened).
    """
    from rsir_cli.datasets import get_dataset

    kind = str(attrs.get("dataset_type") or attrs.get("dataset") or "")
    root = attrs.get("dataset_root")
    if not root:
        raise DataNotFoundError("the store does not record where its dataset lies")
    options = attrs.get("dataset_options") or {}
    if not isinstance(options, dict):
        options = {}
    return get_dataset(kind).open(Path(str(root)), split, **{k: v for k, v in options.items() if v is not None})


def read_rgb(
    attrs: dict[str, Any], items: Sequence[tuple[str, str]]
) -> tuple[dict[tuple[str, str], np.ndarray | None], list[str]]:
    """True-colour images (3, H, W: B04, B03, B02) of stored samples, read from the dataset on disk.

    Args:
        items: (split, id) pairs.

    Returns:
        The image per item (None where it cannot be read) and notes on what could not be read.
    """
    images: dict[tuple[str, str], np.ndarray | None] = {}
    notes: list[str] = []
    readers: dict[str, tuple[SplitReader, dict[str, int]] | None] = {}
    for split, sample_id in items:
        if (split, sample_id) in images:
            continue
        if split not in readers:
            try:
                reader = open_reader(attrs, split)
                missing = [b for b in RGB_BANDS if b not in reader.available_bands]
                if missing:
                    raise DataNotFoundError(f"the dataset has no band(s) {', '.join(missing)} for a true-colour image")
                readers[split] = (reader, {name: i for i, name in enumerate(reader.ids)})
            except RsirError as error:
                readers[split] = None
                notes.append(f"thumbnails of the {split!r} split are placeholders: {error}")
        entry = readers[split]
        image = None
        if entry is not None:
            reader, index = entry
            try:
                if sample_id not in index:
                    raise DataNotFoundError(f"{sample_id} is not in the dataset on disk")
                image = reader.load(index[sample_id], RGB_BANDS).image
            except RsirError as error:
                notes.append(f"{sample_id}: {error}")
        images[(split, sample_id)] = image
    return images, notes


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------------------------- figure
#: the figure draws at most this many queries (rows)
FIGURE_MAX_QUERIES = 8


def format_distance(distance: float, kind: str) -> str:
    return str(int(distance)) if kind == "hamming" else f"{distance:.4g}"


def retrieval_picture(
    database: Database, results: Sequence[QueryResult], max_rows: int = FIGURE_MAX_QUERIES
) -> tuple[bytes, list[str]]:
    """The PNG of queries and matches (see :mod:`rsir_cli.figures`), and notes on what is missing.

    Match thumbnails are read from the dataset on disk (the store's ``dataset_root``); where the
    data is gone, a placeholder is drawn and a note says why.
    """
    from rsir_cli import figures

    shown = list(results[:max_rows])
    items = [(database.split, m.id) for r in shown for m in r.matches]
    items += [(str(r.query.split), r.query.id) for r in shown if r.query.rgb is None and r.query.split]
    images, notes = read_rgb(database.attrs, items) if items else ({}, [])
    rows = []
    for result in shown:
        q = result.query
        image = q.rgb if q.rgb is not None else images.get((str(q.split), q.id))
        labels = "labels: " + ", ".join(result.labels) if result.labels is not None else "labels unknown"
        query_panel = figures.Panel(image, ["query", q.id, labels], "query", placeholder="no true-colour\nimage")
        panels = [
            figures.Panel(
                images.get((database.split, m.id)),
                [f"#{m.rank}  d = {format_distance(m.distance, database.distance)}", m.id, ", ".join(m.labels or [])],
                figures.label_agreement(result.labels, m.labels),
                placeholder="image not on disk",
            )
            for m in result.matches
        ]
        rows.append((query_panel, panels))
    if len(results) > max_rows:
        notes.append(f"the figure shows the first {max_rows} of {len(results)} queries")
    code = f", {database.code}" if database.code else ""
    title = f"rsir search in {database.model} / {database.dataset} / {database.split} ({database.distance}{code})"
    warning = RANDOM_WEIGHTS_WARNING if database.random_weights else None
    return figures.png_bytes(figures.retrieval_figure(rows, title, warning)), notes
