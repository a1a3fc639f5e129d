"""Read GeoParquet embedding files, rsir's own and other tools', into :class:`EmbeddingTable` blocks.

Columns are named by the caller or guessed:

- embedding: ``embedding``, ``embeddings``, ``vector``, ``vectors``, ``emb``, ``features``, else
  the one column of numeric lists. fixed_size_list, list and large_list of any float or integer
  type are taken; values become float32 (exact for float16/float32 and integers up to 2**24;
  float64 is rounded to the nearest float32, a relative change of at most 2**-24 ~ 6e-8, and a
  value beyond float32's range becomes infinite and is refused as non-finite);
- geometry: the ``geo`` metadata's primary column, else ``geometry``/``geom``/``wkb_geometry``;
  WKB only (GeoArrow's native encodings are refused with a hint); footprints as
  :mod:`rsir_cli.wkb` describes (a quadrilateral as is, other shapes by their bounding box, a
  point as a footprint of zero area), reprojected to lon/lat from the file's CRS;
- id: ``id``, ``chip_id``, ``tile_id``, ``sample_id``, ``patch_id``, ``name``, ``key``, else
  ``row-<n>`` from the row number (``info.ids_generated``);
- labels: ``labels``, ``label``, ``classes``, ``class`` (a list of strings, or one string a row);
- date: ``date``, ``datetime``, ``acquisition_date``, ``time``, ``timestamp`` (string, date,
  timestamp -- truncated to its UTC day -- or an integer year).

Problems the reader finds raise :class:`ImportFormatError` with one line: a named column that is
missing (with the columns there are), no geometry column when one is required, an id column with
nulls or duplicates (found before the first block), and in the block where they occur: nulls in the
embedding column or inside a vector, vectors of different lengths, non-finite values.

rsir's own files (``rsir`` metadata) come back in the store's row order (the ``row`` column) with
their label names, native footprints and code tables, bit for bit; other files in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli import arrow_columns
from rsir_cli.errors import CorruptDataError, DataNotFoundError, ImportFormatError
from rsir_cli.geoparquet import CODE_PREFIX, RSIR_FORMAT, RSIR_KEY, EmbeddingTable
from rsir_cli.wkb import quad_corners_many

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

EMBEDDING_NAMES = ("embedding", "embeddings", "vector", "vectors", "emb", "features")
GEOMETRY_NAMES = ("geometry", "geom", "wkb_geometry")
ID_NAMES = ("id", "chip_id", "tile_id", "sample_id", "patch_id", "name", "key")
LABEL_NAMES = ("labels", "label", "classes", "class")
DATE_NAMES = ("date", "datetime", "acquisition_date", "time", "timestamp")
OPTION_NAMES = {
    "id": "id_column=NAME",
    "embedding": "embedding_column=NAME",
    "geometry": "geometry_column=NAME",
    "labels": "label_column=NAME",
    "date": "date_column=NAME",
    "geometry_crs": "geometry_crs=CRS",
}
# Rows decoded at a time: 4096 x 768 float32 is 12.6 MB, and Parquet's list decoding needs a few
# times that; small enough to keep an import's memory flat, large enough to cost nothing in speed.
BLOCK_ROWS = 4096
_LONLAT_IDS = {("OGC", "CRS84"), ("EPSG", "4326"), ("OGC", "CRS:84")}


@dataclass
class GeoParquetInfo:
    """What a file holds and how the reader maps it."""

    path: Path
    rows: int
    row_groups: int
    dim: int | None  # None until the first block where the type does not fix it
    columns: dict[str, str | None]  # role (id, embedding, geometry, labels, date) -> column
    label_names: list[str]
    code_names: list[str]
    rsir: dict[str, Any] | None = field(repr=False)  # rsir's own metadata (None for another tool's file)
    geo: dict[str, Any] | None = field(repr=False)  # the GeoParquet metadata
    geometry_crs: str | None  # the footprints' source CRS (None: no geometry)
    ids_generated: bool
    file_metadata: dict[str, Any] = field(default_factory=dict, repr=False)  # every key/value, JSON decoded

    @property
    def foreign(self) -> bool:
        """True for a file another tool wrote."""
        return self.rsir is None

    @property
    def provenance(self) -> dict[str, Any]:
        """rsir's provenance for its own files; for another tool's, where the rows came from."""
        if self.rsir is not None:
            return dict(self.rsir.get("provenance") or {})
        return {"model": "imported", "source_file": self.path.name, "columns": dict(self.columns)}


class GeoParquetReader:
    """An open GeoParquet file: :attr:`info`, then :meth:`blocks` (bounded memory) or :meth:`read`."""

    def __init__(
        self,
        path: str | Path,
        *,
        id_column: str | None = None,
        embedding_column: str | None = None,
        geometry_column: str | None = None,
        label_column: str | None = None,
        date_column: str | None = None,
        require_geometry: bool = True,
        geometry_crs: str | None = None,
        allow_non_finite: bool = False,
        option_names: dict[str, str] | None = None,
    ) -> None:
        """Open ``path`` and check what can be checked before reading any embedding.

        Args:
            path: a Parquet file.
            id_column, embedding_column, geometry_column, label_column, date_column: column names;
                None guesses (see the module doc).
            require_geometry: refuse a file without a geometry column.
            geometry_crs: the CRS of the geometry column (e.g. ``EPSG:3857``) where the file does
                not say; overrides the ``geo`` metadata.
            allow_non_finite: accept NaN and infinite embedding values.
            option_names: how messages name the options, by role (``id``, ``embedding``,
                ``geometry``, ``labels``, ``date``, ``geometry_crs``): the CLI passes its own
                (``{"embedding": "--embedding-column NAME"}``); the default names these keyword arguments.

        Raises:
            DataNotFoundError: ``path`` does not exist.
            CorruptDataError: it is not a Parquet file, or rsir's own metadata is broken.
            ImportFormatError: a column is missing, of the wrong type, or ids repeat.
        """
        import pyarrow.parquet as pq

        self.path = Path(path)
        self._options = {**OPTION_NAMES, **(option_names or {})}
        if not self.path.is_file():
            raise DataNotFoundError(f"{self.path} does not exist")
        try:
            # Read pages as batches need them (1 MB at a time), not whole column chunks ahead.
            self._file: pq.ParquetFile = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)
        except Exception as error:  # pyarrow raises ArrowInvalid / OSError variants
            raise CorruptDataError(f"{self.path} is not a readable Parquet file ({error})") from None
        self.allow_non_finite = allow_non_finite
        schema = self._file.schema_arrow
        self._names = list(schema.names)
        metadata = arrow_columns.decode_metadata(schema.metadata)
        geo = metadata.get("geo") if isinstance(metadata.get("geo"), dict) else None
        rsir = metadata.get(RSIR_KEY)
        rsir = rsir if isinstance(rsir, dict) and rsir.get("format") == RSIR_FORMAT else None

        def pick(role: str, named: str | None, guesses: tuple[str, ...]) -> str | None:
            if named is not None:
                if named not in self._names:
                    raise ImportFormatError(
                        f"{self.path.name} has no column {named!r} (for the {role}); its columns are: "
                        f"{', '.join(self._names)}"
                    )
                return named
            lowered = {n.lower(): n for n in self._names}
            return next((lowered[g] for g in guesses if g in lowered), None)

        own = (rsir or {}).get("columns", {})
        embedding = pick("embedding", embedding_column or own.get("embedding"), EMBEDDING_NAMES)
        if embedding is None:
            lists = [f.name for f in schema if arrow_columns.is_numeric_list(f.type)]
            if len(lists) != 1:
                found = f"the numeric list columns are {', '.join(lists)}" if lists else "it has no numeric list column"
                raise ImportFormatError(
                    f"{self.path.name}: cannot tell which column holds the embeddings ({found}); "
                    f"pass {self._option('embedding')} (columns: {', '.join(self._names)})"
                )
            embedding = lists[0]
        if not arrow_columns.is_numeric_list(schema.field(embedding).type):
            raise ImportFormatError(
                f"{self.path.name}: column {embedding!r} is {schema.field(embedding).type}, not a list of numbers; "
                f"pass {self._option('embedding')}"
            )
        primary = (geo or {}).get("primary_column") if geometry_column is None else None
        geometry = pick("geometry", geometry_column or primary, GEOMETRY_NAMES)
        if geometry is None and require_geometry:
            raise ImportFormatError(
                f"{self.path.name} has no geometry column (no GeoParquet 'geo' metadata and none named "
                f"{', '.join(GEOMETRY_NAMES)}); pass {self._option('geometry')} (columns: {', '.join(self._names)})"
            )
        columns: dict[str, str | None] = {
            "id": pick("ids", id_column or own.get("id"), ID_NAMES),
            "embedding": embedding,
            "geometry": geometry,
            "labels": pick("labels", label_column or own.get("labels"), LABEL_NAMES),
            "date": pick("dates", date_column or own.get("date"), DATE_NAMES),
        }
        self.geometry_crs = self._geometry_crs(geometry, geo, geometry_crs) if geometry else None
        self._own = rsir is not None
        self._row_column = own.get("row") if self._own and own.get("row") in self._names else None
        self._native = self._own and "native_crs" in self._names and "native_bounds" in self._names
        code_names = sorted((rsir or {}).get("codes", {}))
        for name in code_names:
            if CODE_PREFIX + name not in self._names:
                raise CorruptDataError(
                    f"{self.path.name}: its rsir metadata names code table {name!r}, which is missing"
                )
        self._code_names = code_names
        self._columns = columns
        ids_generated = columns["id"] is None
        self._ids = self._read_ids(columns["id"])
        if self._own:
            label_names = [str(n) for n in rsir.get("label_names", [])]  # type: ignore[union-attr]
        else:
            label_names = self._scan_label_names(columns["labels"])
        kind = schema.field(embedding).type
        dim = kind.list_size if hasattr(kind, "list_size") else None
        self.info = GeoParquetInfo(
            path=self.path,
            rows=self._file.metadata.num_rows,
            row_groups=self._file.metadata.num_row_groups,
            dim=dim,
            columns=columns,
            label_names=label_names,
            code_names=code_names,
            rsir=rsir,
            geo=geo,
            geometry_crs=self.geometry_crs,
            ids_generated=ids_generated,
            file_metadata=metadata,
        )
        self._store_order()

    # ------------------------------------------------------------------ checks before reading
    def _option(self, role: str) -> str:
        return self._options.get(role, role)

    def _geometry_crs(self, column: str, geo: dict[str, Any] | None, override: str | None) -> str:
        """``EPSG:4326`` for longitude/latitude, else a CRS string rasterio understands."""
        import pyarrow as pa

        kind = self._file.schema_arrow.field(column).type
        storage = getattr(kind, "storage_type", kind)
        if not (pa.types.is_binary(storage) or pa.types.is_large_binary(storage)):
            encoding = ((geo or {}).get("columns", {}).get(column) or {}).get("encoding", str(kind))
            raise ImportFormatError(
                f"{self.path.name}: geometry column {column!r} is {encoding}, not WKB; rewrite it as WKB "
                "(e.g. `ogr2ogr -lco GEOMETRY_ENCODING=WKB out.parquet in.parquet`)"
            )
        if override:
            return "EPSG:4326" if override.upper() in ("EPSG:4326", "OGC:CRS84", "CRS84") else override
        described = (geo or {}).get("columns", {}).get(column)
        if described is None:
            raise ImportFormatError(
                f"{self.path.name}: column {column!r} holds WKB but the file has no GeoParquet metadata for it, "
                f"so its CRS is unknown; pass {self._option('geometry_crs')} (e.g. EPSG:4326)"
            )
        if described.get("encoding", "WKB").upper() != "WKB":
            raise ImportFormatError(
                f"{self.path.name}: geometry column {column!r} uses the {described['encoding']!r} encoding; "
                "rsir reads WKB (rewrite with `ogr2ogr -lco GEOMETRY_ENCODING=WKB out.parquet in.parquet`)"
            )
        if "crs" not in described:
            return "EPSG:4326"  # GeoParquet: a missing crs means OGC:CRS84
        crs = described["crs"]
        if crs is None:
            raise ImportFormatError(
                f"{self.path.name}: the CRS of geometry column {column!r} is undefined (crs: null); "
                f"pass {self._option('geometry_crs')}"
            )
        if isinstance(crs, dict):
            ident = crs.get("id") or {}
            if (str(ident.get("authority", "")).upper(), str(ident.get("code", "")).upper()) in _LONLAT_IDS:
                return "EPSG:4326"  # x = longitude in GeoParquet, whatever the CRS's axis order
            if ident.get("authority") and ident.get("code"):
                return f"{ident['authority']}:{ident['code']}"
            return json.dumps(crs)
        return str(crs)

    def _batches(self, columns: list[str], rows: int = 0) -> Iterator[pa.RecordBatch]:
        """The file's rows in order, ``rows`` (default :data:`BLOCK_ROWS`) at a time, of ``columns`` only."""
        yield from self._file.iter_batches(batch_size=rows or BLOCK_ROWS, columns=columns, use_threads=True)

    def _column(self, name: str) -> pa.Array:
        """One whole column (small ones only: ids, row numbers)."""
        import pyarrow as pa

        chunks = [batch.column(0) for batch in self._batches([name])]
        return pa.concat_arrays(chunks) if chunks else pa.array([], self._file.schema_arrow.field(name).type)

    def _read_ids(self, column: str | None) -> list[str]:
        n = self._file.metadata.num_rows
        if column is None:
            return [f"row-{i}" for i in range(n)]
        values = self._column(column)
        if values.null_count:
            first = int(np.flatnonzero(arrow_columns.nulls(values))[0])
            raise ImportFormatError(
                f"{self.path.name}: id column {column!r} is null in row {first}; every row needs an id"
            )
        ids = [str(v) for v in values.to_pylist()]
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            repeated = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            count = len(ids) - len(set(ids))
            raise ImportFormatError(
                f"{self.path.name}: id column {column!r} repeats ids ({count} duplicates, e.g. {repeated!r}); "
                f"ids must be unique: pass {self._option('id')}"
            )
        return ids

    def _scan_label_names(self, column: str | None) -> list[str]:
        if column is None:
            return []
        names: set[str] = set()
        for batch in self._batches([column]):
            values = batch.column(0)
            flat = values.flatten() if hasattr(values, "flatten") and arrow_columns.is_list(values.type) else values
            names.update(str(v) for v in flat.unique().to_pylist() if v is not None)
        return sorted(names)

    def _store_order(self) -> None:
        """For rsir's own files: the store row of each file row, and the file row of each store row."""
        self._store_rows: np.ndarray | None = None
        self._positions: np.ndarray | None = None
        if self._row_column is None:
            return
        rows = arrow_columns.as_numpy(self._column(self._row_column)).astype(np.int64)
        n = len(rows)
        if not np.array_equal(np.sort(rows), np.arange(n)):
            raise CorruptDataError(f"{self.path.name}: its 'row' column is not a permutation of 0..{n - 1}")
        positions = np.empty(n, dtype=np.int64)
        positions[rows] = np.arange(n)
        self._store_rows, self._positions = rows, positions

    # ------------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return self.info.rows

    def blocks(self, order: str = "store", rows: int = 0) -> Iterator[EmbeddingTable]:
        """The rows, ``rows`` (default :data:`BLOCK_ROWS`) at a time: memory stays bounded by a block.

        Args:
            order: ``"store"``: rsir's own files come back in the row order they were exported
                from (through a temporary file that holds the embeddings and codes); other files
                in file order. ``"file"``: the order of the file (spatial, for rsir's own).
            rows: rows per block.

        Raises:
            ImportFormatError: nulls, mixed lengths or non-finite values in the embedding column
                (in the block where they occur).
        """
        if order not in ("store", "file"):
            raise ValueError("order must be 'store' or 'file'")
        if order == "store" and self._store_rows is not None and len(self._store_rows):
            yield from self._blocks_in_store_order(rows or BLOCK_ROWS)
            return
        start = 0
        for batch in self._batches(self._wanted(), rows):
            block = self._block(batch, start)
            start += len(block)
            yield block

    def read(self) -> EmbeddingTable:
        """All rows as one table (in the store's order for rsir's own files)."""
        parts = list(self.blocks())
        return EmbeddingTable.concat(parts) if parts else self._empty()

    def _empty(self) -> EmbeddingTable:
        dim = self.info.dim or 0
        return EmbeddingTable(
            ids=[],
            embeddings=np.zeros((0, dim), np.float32),
            labels=np.zeros((0, len(self.info.label_names)), np.uint8),
            label_names=list(self.info.label_names),
            dates=[],
            lonlat=np.zeros((0, 4, 2)),
            crs=[] if self._native else None,
            bounds=np.zeros((0, 4)) if self._native else None,
            codes={name: np.zeros((0, 0), np.uint8) for name in self._code_names},
        )

    def _blocks_in_store_order(self, step: int) -> Iterator[EmbeddingTable]:
        """Spill embeddings and codes to a temporary file at their store rows, then read it in order."""
        assert self._store_rows is not None and self._positions is not None
        n = len(self._store_rows)
        small: list[EmbeddingTable] = []
        spill: arrow_columns.Spill | None = None
        try:
            start = 0
            for batch in self._batches(self._wanted(), step):
                block = self._block(batch, start)
                rows = self._store_rows[start : start + len(block)]
                start += len(block)
                arrays = {"embedding": block.embeddings, **block.codes}
                if spill is None:
                    spill = arrow_columns.Spill(
                        n, {name: values.shape[1] * values.itemsize for name, values in arrays.items()}
                    )
                for name, values in arrays.items():
                    spill.put(name, rows, values)
                spill.release()
                block.embeddings = np.zeros((len(block), 0), np.float32)
                block.codes = {}
                small.append(block)
            everything = EmbeddingTable.concat(small)
            assert spill is not None
            for begin in range(0, n, step):
                count = min(n, begin + step) - begin
                part = everything.take(self._positions[begin : begin + count])
                part.embeddings = spill.get("embedding", begin, count, np.float32)
                part.codes = {name: spill.get(name, begin, count, np.uint8) for name in self._code_names}
                spill.release()
                yield part
        finally:
            if spill is not None:
                spill.close()

    def _wanted(self) -> list[str]:
        wanted = [c for c in self._columns.values() if c is not None]
        if self._native:
            wanted += ["native_crs", "native_bounds"]
        wanted += [CODE_PREFIX + name for name in self._code_names]
        return list(dict.fromkeys(wanted))

    def _block(self, batch: pa.RecordBatch, start: int) -> EmbeddingTable:
        """A record batch (whose first row is file row ``start``) as a table."""
        n = batch.num_rows
        ids = self._ids[start : start + n]
        get = {name: batch.column(name) for name in batch.schema.names}
        embeddings = self._vectors(get[self._columns["embedding"]], ids)  # type: ignore[index]
        geometry = self._columns["geometry"]
        lonlat = self._footprints(get[geometry]) if geometry else np.full((n, 4, 2), np.nan)
        crs = bounds = None
        if self._native:
            crs = [c or "" for c in get["native_crs"].to_pylist()]
            bounds = arrow_columns.struct_matrix(get["native_bounds"], ("left", "bottom", "right", "top"))
        codes = {}
        for name in self._code_names:
            values = get[CODE_PREFIX + name]
            width = values.type.byte_width
            codes[name] = np.frombuffer(values.buffers()[1], np.uint8)[
                values.offset * width : (values.offset + n) * width
            ]
            codes[name] = codes[name].reshape(n, width).copy()
        return EmbeddingTable(
            ids=ids,
            embeddings=embeddings,
            labels=self._labels(get.get(self._columns["labels"] or ""), n),
            label_names=list(self.info.label_names),
            dates=arrow_columns.dates(get.get(self._columns["date"] or ""), n),
            lonlat=lonlat,
            crs=crs,
            bounds=bounds,
            codes=codes,
        )

    def _vectors(self, column: pa.Array, ids: list[str]) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        name = self._columns["embedding"]
        if column.null_count:
            first = int(np.flatnonzero(arrow_columns.nulls(column))[0])
            raise ImportFormatError(f"{self.path.name}: embedding column {name!r} is null in row {ids[first]!r}")
        if pa.types.is_fixed_size_list(column.type):
            dim = column.type.list_size
        else:
            lengths = arrow_columns.as_numpy(pc.list_value_length(column))
            dim = int(lengths[0]) if len(lengths) else (self.info.dim or 0)
            odd = np.flatnonzero(lengths != dim)
            if len(odd):
                raise ImportFormatError(
                    f"{self.path.name}: embedding column {name!r} mixes lengths ({dim} in row {ids[0]!r}, "
                    f"{int(lengths[odd[0]])} in row {ids[odd[0]]!r}); every embedding must have the same length"
                )
        if self.info.dim is None:
            self.info.dim = dim
        elif dim != self.info.dim and len(column):
            raise ImportFormatError(
                f"{self.path.name}: embedding column {name!r} mixes lengths ({self.info.dim} earlier, {dim} in row "
                f"{ids[0]!r}); every embedding must have the same length"
            )
        values = column.flatten()
        if values.null_count:
            first = int(np.flatnonzero(arrow_columns.nulls(values))[0]) // max(dim, 1)
            raise ImportFormatError(f"{self.path.name}: embedding of row {ids[first]!r} holds null values")
        with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused below
            vectors = arrow_columns.as_numpy(values).astype(np.float32, copy=False).reshape(len(column), dim)
        if not self.allow_non_finite:
            bad = ~np.isfinite(vectors).all(axis=1)
            if bad.any():
                raise ImportFormatError(
                    f"{self.path.name}: embedding of row {ids[int(np.flatnonzero(bad)[0])]!r} holds NaN or infinite "
                    f"values ({int(bad.sum())} such rows in this row group)"
                )
        return vectors

    def _footprints(self, column: pa.Array) -> np.ndarray:
        storage = getattr(column, "storage", column)
        n = len(storage)
        valid = ~arrow_columns.nulls(storage)
        buffers = storage.buffers()
        offset_type = np.int64 if storage.type.id == arrow_columns.large_binary_id() else np.int32
        offsets = np.frombuffer(buffers[1], offset_type)[storage.offset : storage.offset + n + 1]
        data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
        try:
            corners = quad_corners_many(data, offsets, valid)
        except CorruptDataError as error:
            raise CorruptDataError(f"{self.path.name}: column {self._columns['geometry']!r}: {error}") from None
        if self.geometry_crs == "EPSG:4326":
            return corners
        return arrow_columns.reproject(corners, self.geometry_crs or "")

    def _labels(self, column: pa.Array | None, n: int) -> np.ndarray:
        """(n, C) multi-hot from a list<string> or string column (null: no label)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        hot = np.zeros((n, len(self.info.label_names)), dtype=np.uint8)
        if column is None:
            return hot
        if arrow_columns.is_list(column.type):
            parents = arrow_columns.as_numpy(pc.list_parent_indices(column))
            values = column.flatten()
        else:
            parents, values = np.arange(n), column
        values = values.cast(pa.string())
        index = pc.index_in(values, value_set=pa.array(self.info.label_names, pa.string()))
        unknown = arrow_columns.nulls(index) & ~arrow_columns.nulls(values)
        if unknown.any():
            name = values[int(np.flatnonzero(unknown)[0])].as_py()
            raise CorruptDataError(f"{self.path.name}: label {name!r} is not among the file's label names")
        known = ~arrow_columns.nulls(index)
        hot[parents[known], arrow_columns.as_numpy(index.fill_null(0))[known].astype(np.int64)] = 1
        return hot


def open_geoparquet(path: str | Path, **options: Any) -> GeoParquetReader:
    """Open a GeoParquet embedding file (see :class:`GeoParquetReader` for the options)."""
    return GeoParquetReader(path, **options)


def read_geoparquet(path: str | Path, **options: Any) -> tuple[EmbeddingTable, GeoParquetInfo]:
    """All rows of a GeoParquet embedding file and what the reader found (options: :class:`GeoParquetReader`)."""
    reader = GeoParquetReader(path, **options)
    return reader.read(), reader.info
