"""GeoParquet 1.1 embedding files: what other tools (QGIS, DuckDB, geopandas) open, and rsir reads back.

One row per chip, rows in spatial order (a Hilbert curve over the footprint centroids, chips
without a location last), one row group per ``row_group_rows`` rows, zstd:

=================  =========================================  =====================================
column             Arrow / Parquet type                       meaning
=================  =========================================  =====================================
``id``             string, not null                           the dataset's own sample name
``row``            int64, not null                            the row's position in the store, so an
                                                              import restores the store's order
``labels``         list<string>, not null                     the sample's labels (empty: none)
``date``           string, null = unknown                     acquisition date, ISO 8601 as the
                                                              dataset gives it: ``YYYY-MM-DD`` or
                                                              only ``YYYY`` (ForestNet); a date32
                                                              would invent a month and day
``geometry``       binary (WKB Polygon), null = unknown       footprint in OGC:CRS84 (x = longitude,
                                                              y = latitude), ring ul, ll, lr, ur, ul
                                                              (counter-clockwise)
``bbox``           struct<xmin, ymin, xmax, ymax: double>     the GeoParquet 1.1 bbox covering of
                                                              ``geometry`` (null where it is null)
``native_crs``     string, null = unknown                     the sample's own CRS (``EPSG:32633``)
``native_bounds``  struct<left, bottom, right, top: double>   its box in that CRS
``embedding``      fixed_size_list<float32>[D], not null      the float embedding
``code_<name>``    fixed_size_binary[bits / 8], not null      packed binary codes (numpy.packbits,
                                                              big bit order), one column per table
=================  =========================================  =====================================

``native_crs`` and ``native_bounds`` are written only when the table has them.

File metadata: ``geo`` (GeoParquet 1.1.0: primary column ``geometry``, WKB, ``["Polygon"]``, the
PROJJSON of OGC:CRS84 -- longitude first, so no axis-order doubt --, counter-clockwise orientation,
the file's bbox and the bbox covering) and ``rsir`` (JSON, see :func:`rsir_metadata`): the format
version, the column names, the label names in their store order, the code tables, and under
``provenance`` whatever dict the caller gives (the store's attributes: model, weights checksum,
bands, normalisation, pooling, dataset, split; the hashers and their parameters as lists).

The reader is :mod:`rsir_cli.geoparquet_read`; the STAC item beside a file is :mod:`rsir_cli.stac`.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli import __version__
from rsir_cli.fileio import atomic_writer
from rsir_cli.geo import Footprints
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.wkb import POLYGON_BYTES, encode_quads

if TYPE_CHECKING:
    import pyarrow as pa

GEOPARQUET_VERSION = "1.1.0"
RSIR_KEY = "rsir"
RSIR_FORMAT = "rsir-embeddings"
RSIR_FORMAT_VERSION = 1
# 8192 rows of 768 float32 are 25 MB: small enough that writing and reading hold only a few of
# them at a time, large enough that zstd and the per-row-group overhead stay cheap (benchmarks/).
DEFAULT_ROW_GROUP_ROWS = 8192
CODE_PREFIX = "code_"
HILBERT_ORDER = 16

# PROJJSON of OGC:CRS84 (WGS 84 with longitude first), as PROJ writes it.
CRS84_PROJJSON: dict[str, Any] = {
    "$schema": "https://proj.org/schemas/v0.7/projjson.schema.json",
    "type": "GeographicCRS",
    "name": "WGS 84 (CRS84)",
    "datum_ensemble": {
        "name": "World Geodetic System 1984 ensemble",
        "members": [
            {"name": "World Geodetic System 1984 (Transit)"},
            {"name": "World Geodetic System 1984 (G730)"},
            {"name": "World Geodetic System 1984 (G873)"},
            {"name": "World Geodetic System 1984 (G1150)"},
            {"name": "World Geodetic System 1984 (G1674)"},
            {"name": "World Geodetic System 1984 (G1762)"},
            {"name": "World Geodetic System 1984 (G2139)"},
        ],
        "ellipsoid": {"name": "WGS 84", "semi_major_axis": 6378137, "inverse_flattening": 298.257223563},
        "accuracy": "2.0",
        "id": {"authority": "EPSG", "code": 6326},
    },
    "coordinate_system": {
        "subtype": "ellipsoidal",
        "axis": [
            {"name": "Geodetic longitude", "abbreviation": "Lon", "direction": "east", "unit": "degree"},
            {"name": "Geodetic latitude", "abbreviation": "Lat", "direction": "north", "unit": "degree"},
        ],
    },
    "scope": "Not known.",
    "area": "World.",
    "bbox": {"south_latitude": -90, "west_longitude": -180, "north_latitude": 90, "east_longitude": 180},
    "id": {"authority": "OGC", "code": "CRS84"},
}


@dataclass
class EmbeddingTable:
    """Rows of a (model, dataset, split) as plain arrays: what an export writes and an import reads.

    ``embeddings`` and each code table may be any array-like that takes numpy fancy indexing with a
    sorted index array (a numpy array, ``np.load(..., mmap_mode="r")``, an ``h5py.Dataset``): the
    writer reads one row group of them at a time, so memory stays bounded by a row group when they
    live on disk. Everything else is small and held in memory.
    """

    ids: list[str]
    embeddings: Any  # (N, D) float32
    labels: np.ndarray  # (N, C) uint8 multi-hot over label_names
    label_names: list[str]
    dates: list[str]  # ISO 8601, "" unknown
    lonlat: np.ndarray  # (N, 4, 2) float64 corners ul, ur, lr, ll as (lon, lat); NaN unknown
    crs: list[str] | None = None  # native CRS per row ("" unknown)
    bounds: np.ndarray | None = None  # (N, 4) float64 left, bottom, right, top in that CRS
    codes: dict[str, Any] = field(default_factory=dict)  # name -> (N, nbytes) uint8, packed

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def check(self) -> None:
        """Raise ValueError where the arrays do not agree in length or shape."""
        n = len(self.ids)
        shapes = {
            "embeddings": (tuple(self.embeddings.shape[:1]), 2, len(self.embeddings.shape)),
            "labels": ((np.asarray(self.labels).shape[0],), 2, np.asarray(self.labels).ndim),
            "lonlat": ((np.asarray(self.lonlat).shape[0],), 3, np.asarray(self.lonlat).ndim),
        }
        for name, (rows, ndim, got) in shapes.items():
            if rows != (n,) or got != ndim:
                raise ValueError(f"EmbeddingTable.{name} must have {n} rows and {ndim} dimensions")
        if np.asarray(self.lonlat).shape[1:] != (4, 2):
            raise ValueError("EmbeddingTable.lonlat must be (N, 4, 2)")
        if np.asarray(self.labels).shape[1] != len(self.label_names):
            raise ValueError("EmbeddingTable.labels must have one column per label name")
        if len(self.dates) != n:
            raise ValueError(f"EmbeddingTable.dates must have {n} entries")
        if (self.crs is None) != (self.bounds is None):
            raise ValueError("EmbeddingTable.crs and .bounds go together")
        if self.crs is not None and (len(self.crs) != n or np.asarray(self.bounds).shape != (n, 4)):
            raise ValueError("EmbeddingTable.crs must have N entries and .bounds be (N, 4)")
        for name, table in self.codes.items():
            if len(table.shape) != 2 or table.shape[0] != n:
                raise ValueError(f"code table {name!r} must be (N, nbytes)")

    def footprints(self) -> Footprints:
        """The rows' footprints as the store keeps them."""
        n = len(self)
        crs = list(self.crs) if self.crs is not None else [""] * n
        bounds = np.asarray(self.bounds, dtype=np.float64) if self.bounds is not None else np.full((n, 4), np.nan)
        return Footprints(crs, bounds, np.asarray(self.lonlat, dtype=np.float64))

    def take(self, rows: np.ndarray) -> EmbeddingTable:
        """The given rows (any order) as an in-memory table; big arrays are read in sorted order."""
        rows = np.asarray(rows, dtype=np.int64)
        return EmbeddingTable(
            ids=[self.ids[i] for i in rows],
            embeddings=_gather(self.embeddings, rows),
            labels=np.asarray(self.labels)[rows],
            label_names=list(self.label_names),
            dates=[self.dates[i] for i in rows],
            lonlat=np.asarray(self.lonlat, dtype=np.float64)[rows],
            crs=[self.crs[i] for i in rows] if self.crs is not None else None,
            bounds=np.asarray(self.bounds, dtype=np.float64)[rows] if self.bounds is not None else None,
            codes={name: _gather(table, rows) for name, table in self.codes.items()},
        )

    @classmethod
    def concat(cls, parts: Sequence[EmbeddingTable]) -> EmbeddingTable:
        """Rows of several tables with the same columns, one after another."""
        first = parts[0]
        has_native = first.crs is not None
        return cls(
            ids=[i for p in parts for i in p.ids],
            embeddings=np.concatenate([np.asarray(p.embeddings) for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            label_names=list(first.label_names),
            dates=[d for p in parts for d in p.dates],
            lonlat=np.concatenate([p.lonlat for p in parts]),
            crs=[c for p in parts for c in (p.crs or [])] if has_native else None,
            bounds=np.concatenate([p.bounds for p in parts]) if has_native else None,
            codes={name: np.concatenate([np.asarray(p.codes[name]) for p in parts]) for name in first.codes},
        )


def _gather(array: Any, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` for rows in any order, read through sorted unique indices (as h5py needs)."""
    if len(rows) == 0:
        return np.asarray(array[0:0])
    unique, inverse = np.unique(rows, return_inverse=True)
    block = np.asarray(array[unique])
    if len(unique) == len(rows) and np.array_equal(unique, rows):
        return block
    return block[inverse]


def code_column(name: str) -> str:
    """The column that holds code table ``name`` (``itq_32_s42`` -> ``code_itq_32_s42``)."""
    return CODE_PREFIX + name


def hilbert_keys(x: np.ndarray, y: np.ndarray, order: int = HILBERT_ORDER) -> np.ndarray:
    """Distance along a Hilbert curve of ``2**order`` x ``2**order`` cells for integer cells (x, y).

    The classic iterative ``xy2d``, vectorised: nearby cells get nearby keys, which is what makes
    row groups spatially compact.
    """
    x = np.asarray(x, dtype=np.int64).copy()
    y = np.asarray(y, dtype=np.int64).copy()
    n = 1 << order
    keys = np.zeros(x.shape, dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        keys += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return keys


def spatial_order(lonlat: np.ndarray, order: int = HILBERT_ORDER) -> np.ndarray:
    """Row order for writing: along a Hilbert curve of the footprint centroids, unknown places last.

    The curve spans the extent of the known footprints, so a regional dataset uses all of its
    ``2**order`` cells per side. Ties and the rows without a location keep their original order.
    """
    lonlat = np.asarray(lonlat, dtype=np.float64).reshape(-1, 4, 2)
    known = np.isfinite(lonlat).all(axis=(1, 2))
    keys = np.full(len(lonlat), np.iinfo(np.int64).max, dtype=np.int64)
    if known.any():
        centre = lonlat[known].mean(axis=1)
        low, high = centre.min(axis=0), centre.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        cells = np.clip(((centre - low) / span * ((1 << order) - 1)).round(), 0, (1 << order) - 1)
        keys[known] = hilbert_keys(cells[:, 0], cells[:, 1], order)
    return np.argsort(keys, kind="stable")


def geo_metadata(lonlat: np.ndarray) -> dict[str, Any]:
    """The GeoParquet 1.1 ``geo`` metadata for footprints ``lonlat`` (see the module doc)."""
    lonlat = np.asarray(lonlat, dtype=np.float64).reshape(-1, 4, 2)
    known = lonlat[np.isfinite(lonlat).all(axis=(1, 2))]
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"] if len(known) else [],
        "crs": CRS84_PROJJSON,
        "orientation": "counterclockwise",
        "covering": {
            "bbox": {
                "xmin": ["bbox", "xmin"],
                "ymin": ["bbox", "ymin"],
                "xmax": ["bbox", "xmax"],
                "ymax": ["bbox", "ymax"],
            }
        },
    }
    if len(known):
        low, high = known.reshape(-1, 2).min(axis=0), known.reshape(-1, 2).max(axis=0)
        column["bbox"] = [float(low[0]), float(low[1]), float(high[0]), float(high[1])]
    return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}


def rsir_metadata(table: EmbeddingTable, provenance: Mapping[str, Any], created: str) -> dict[str, Any]:
    """The ``rsir`` file metadata: how to read the columns back, and the caller's provenance.

    Keys: ``format`` ("rsir-embeddings"), ``format_version`` (1), ``rsir_version``, ``created``
    (UTC, ISO 8601), ``rows``, ``label_names`` (all of them, in the store's column order, including
    labels no row has), ``embedding`` (column, dim, dtype), ``codes`` (name -> column, bytes, bits,
    bit order), ``columns`` (role -> column name), ``footprint`` (CRS and ring order),
    ``spatial_order``, and ``provenance`` (the caller's dict, made JSON-safe: numpy arrays become
    nested lists, numpy scalars Python numbers).
    """
    columns = {"id": "id", "row": "row", "labels": "labels", "date": "date", "geometry": "geometry", "bbox": "bbox"}
    if table.crs is not None:
        columns.update(native_crs="native_crs", native_bounds="native_bounds")
    columns["embedding"] = "embedding"
    return {
        "format": RSIR_FORMAT,
        "format_version": RSIR_FORMAT_VERSION,
        "rsir_version": __version__,
        "created": created,
        "rows": len(table),
        "label_names": list(table.label_names),
        "embedding": {"column": "embedding", "dim": table.dim, "dtype": "float32"},
        "codes": {
            name: {
                "column": code_column(name),
                "bytes": int(codes.shape[1]),
                "bits": int(codes.shape[1]) * 8,
                "packing": "numpy.packbits, big bit order",
            }
            for name, codes in table.codes.items()
        },
        "columns": columns,
        "footprint": {
            "crs": "OGC:CRS84",
            "ring": "ul, ll, lr, ur, ul (counter-clockwise); read back as corners ul, ur, lr, ll",
        },
        "spatial_order": f"Hilbert curve (order {HILBERT_ORDER}) of footprint centroids; rows without a place last",
        "provenance": jsonable(dict(provenance)),
    }


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays as nested lists and numpy scalars as Python numbers (exact for floats)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def arrow_schema(table: EmbeddingTable) -> pa.Schema:
    """The Arrow schema of a file for ``table`` (without the file metadata)."""
    import pyarrow as pa

    double = pa.float64()
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("labels", pa.list_(pa.string()), nullable=False),
        pa.field("date", pa.string()),
        pa.field("geometry", pa.binary()),
        pa.field("bbox", pa.struct([(k, double) for k in ("xmin", "ymin", "xmax", "ymax")])),
    ]
    if table.crs is not None:
        fields.append(pa.field("native_crs", pa.string()))
        fields.append(pa.field("native_bounds", pa.struct([(k, double) for k in ("left", "bottom", "right", "top")])))
    fields.append(pa.field("embedding", pa.list_(pa.float32(), table.dim), nullable=False))
    for name, codes in table.codes.items():
        fields.append(pa.field(code_column(name), pa.binary(int(codes.shape[1])), nullable=False))
    return pa.schema(fields)


def record_batch(table: EmbeddingTable, rows: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    """Rows ``rows`` of ``table`` (in that order) as one Arrow record batch of ``schema``."""
    import pyarrow as pa

    part = table.take(rows)
    n = len(rows)
    names = np.asarray(part.label_names, dtype=object)
    hot_rows, hot_cols = np.nonzero(np.asarray(part.labels))
    label_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(hot_rows, minlength=n), out=label_offsets[1:])
    labels = pa.ListArray.from_arrays(pa.array(label_offsets), pa.array(names[hot_cols].tolist(), pa.string()))

    wkb, valid = encode_quads(part.lonlat)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(valid.astype(np.int32) * POLYGON_BYTES, out=offsets[1:])
    validity = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    geometry = pa.Array.from_buffers(pa.binary(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(wkb)])
    low, high = part.lonlat.min(axis=1), part.lonlat.max(axis=1)
    bbox = pa.StructArray.from_arrays(
        [pa.array(low[:, 0]), pa.array(low[:, 1]), pa.array(high[:, 0]), pa.array(high[:, 1])],
        names=["xmin", "ymin", "xmax", "ymax"],
        mask=pa.array(~valid),
    )
    embeddings = np.ascontiguousarray(part.embeddings, dtype=np.float32)
    columns: dict[str, pa.Array] = {
        "id": pa.array(part.ids, pa.string()),
        "row": pa.array(rows.astype(np.int64)),
        "labels": labels,
        "date": pa.array([d or None for d in part.dates], pa.string()),
        "geometry": geometry,
        "bbox": bbox,
    }
    if part.crs is not None and part.bounds is not None:
        box = np.asarray(part.bounds, dtype=np.float64)
        columns["native_crs"] = pa.array([c or None for c in part.crs], pa.string())
        columns["native_bounds"] = pa.StructArray.from_arrays(
            [pa.array(box[:, i]) for i in range(4)],
            names=["left", "bottom", "right", "top"],
            mask=pa.array(~np.isfinite(box).all(axis=1)),
        )
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), embeddings.shape[1])
    for name, codes in part.codes.items():
        packed = np.ascontiguousarray(codes, dtype=np.uint8)
        columns[code_column(name)] = pa.Array.from_buffers(
            pa.binary(packed.shape[1]), n, [None, pa.py_buffer(packed.tobytes())]
        )
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


@dataclass
class WriteResult:
    """What :func:`write_geoparquet` wrote."""

    path: Path
    rows: int
    row_groups: int
    bytes: int
    geo: dict[str, Any]
    rsir: dict[str, Any]


def write_geoparquet(
    path: str | Path,
    table: EmbeddingTable,
    *,
    metadata: Mapping[str, Any],
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    compression_level: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> WriteResult:
    """Write ``table`` as one GeoParquet 1.1 file (see the module doc for the columns and metadata).

    The file is written to a temporary name and renamed into place (:func:`rsir_cli.fileio.atomic_writer`),
    so ``path`` holds the old file or the whole new one, never part of one. Only one row group of
    embeddings and codes is in memory at a time.

    Args:
        path: the ``.parquet`` file to write.
        table: the rows; its big arrays may live on disk (see :class:`EmbeddingTable`).
        metadata: rsir's provenance for the file metadata (the store's attributes, hashers, ...).
        row_group_rows: rows per row group.
        compression_level: zstd level (None: Arrow's default, 1).
        progress: reports rows written.

    Returns:
        The path, the row and row-group counts, the file size and the two metadata objects.

    Raises:
        ValueError: the table's arrays do not agree in shape, or ``row_group_rows`` < 1.
        DiskFullError: the disk filled up (nothing is left at ``path``'s temporary name).
    """
    import pyarrow.parquet as pq

    if row_group_rows < 1:
        raise ValueError("row_group_rows must be at least 1")
    table.check()
    path = Path(path)
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    order = spatial_order(table.lonlat)
    geo = geo_metadata(table.lonlat)
    rsir = rsir_metadata(table, metadata, created)
    schema = arrow_schema(table).with_metadata({"geo": json.dumps(geo), RSIR_KEY: json.dumps(rsir)})
    dictionary_columns = ["labels", "date"] + (["native_crs"] if table.crs is not None else [])
    groups = [order[start : start + row_group_rows] for start in range(0, len(order), row_group_rows)]

    task = progress.task(f"export {path.name}", total=len(table), unit="rows")
    try:
        with (
            atomic_writer(path) as handle,
            pq.ParquetWriter(
                handle,
                schema,
                compression="zstd",
                compression_level=compression_level,
                use_dictionary=dictionary_columns,
            ) as writer,
        ):
            for rows in groups:
                writer.write_batch(record_batch(table, rows, schema), row_group_size=len(rows))
                task.advance(len(rows))
    finally:
        task.close()
    size = path.stat().st_size
    return WriteResult(path, len(table), len(groups), size, geo, rsir)
