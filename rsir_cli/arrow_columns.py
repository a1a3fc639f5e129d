"""Arrow columns as numpy for the GeoParquet reader: numbers, null masks, dates, boxes; a spill file.

Numbers and null masks are zero-copy views of the Arrow buffers (with the array's offset applied).
"""

from __future__ import annotations

import datetime as _dt
import json
import mmap
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli.errors import ImportFormatError

if TYPE_CHECKING:
    import pyarrow as pa


def decode_metadata(raw: dict[bytes, bytes] | None) -> dict[str, Any]:
    """A Parquet file's key/value metadata, JSON values decoded (Arrow's own schema left out)."""
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        name = key.decode("utf-8", "replace")
        if name == "ARROW:schema":
            continue
        text = value.decode("utf-8", "replace")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


def is_numeric_list(kind: pa.DataType) -> bool:
    """Whether an Arrow type is a (fixed-size, large) list of floats or integers."""
    import pyarrow as pa

    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        return False
    value = kind.value_type
    return pa.types.is_floating(value) or pa.types.is_integer(value)


_NUMPY_TYPES = {
    "halffloat": np.float16, "float": np.float32, "double": np.float64,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
}  # fmt: skip


def as_numpy(array: pa.Array) -> np.ndarray:
    """A numeric Arrow array without nulls as a zero-copy numpy view."""
    if array.null_count:
        raise ValueError("as_numpy takes arrays without nulls")
    dtype = _NUMPY_TYPES.get(str(array.type))
    if dtype is None:
        raise ValueError(f"no numpy type for {array.type}")
    values = np.frombuffer(array.buffers()[1], dtype=dtype)
    return values[array.offset : array.offset + len(array)]


def nulls(array: pa.Array) -> np.ndarray:
    """(N,) bool: which entries of an Arrow array are null."""
    if not array.null_count:
        return np.zeros(len(array), dtype=bool)
    bitmap = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    bits = np.unpackbits(bitmap, bitorder="little")[array.offset : array.offset + len(array)]
    return bits == 0


def is_list(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def large_binary_id() -> int:
    import pyarrow as pa

    return pa.large_binary().id


def struct_matrix(column: pa.Array, names: tuple[str, ...]) -> np.ndarray:
    """(N, len(names)) float64 of a struct column; NaN where the struct is null."""
    out = np.stack([as_numpy(column.field(k).fill_null(np.nan)).astype(np.float64) for k in names], axis=1)
    if column.null_count:
        out[nulls(column)] = np.nan
    return out


def dates(column: pa.Array | None, n: int) -> list[str]:
    """ISO 8601 strings ("" unknown) from a string, date, timestamp or integer-year column."""
    import pyarrow as pa

    if column is None:
        return [""] * n
    kind = column.type
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        column = column.cast(pa.timestamp(kind.unit, "UTC"))
    values = column.to_pylist()
    out = []
    for value in values:
        if value is None:
            out.append("")
        elif isinstance(value, _dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(_dt.timezone.utc)
            out.append(value.date().isoformat())
        elif isinstance(value, _dt.date):
            out.append(value.isoformat())
        elif isinstance(value, int):
            out.append(f"{value:04d}")
        else:
            out.append(str(value).strip())
    return out


def reproject(corners: np.ndarray, crs: str) -> np.ndarray:
    """(N, 4, 2) corners from ``crs`` to longitude/latitude (NaN rows stay NaN)."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform

    out = np.full_like(corners, np.nan)
    known = np.isfinite(corners).all(axis=(1, 2))
    if not known.any():
        return out
    try:
        source = CRS.from_user_input(crs)
    except CRSError as error:
        raise ImportFormatError(
            f"the geometry's CRS {crs[:80]!r} is not one rasterio knows ({error}); name the geometry's CRS"
        ) from None
    xy = corners[known].reshape(-1, 2)
    lon, lat = transform(source, "EPSG:4326", xy[:, 0].tolist(), xy[:, 1].tolist())
    out[known] = np.stack([np.asarray(lon), np.asarray(lat)], axis=1).reshape(-1, 4, 2)
    return out


class Spill:
    """Fixed-width row tables in a temporary file, written at scattered rows and read back in order.

    The file is memory-mapped; after each block the written pages are synced and handed back to the
    kernel (``MADV_DONTNEED``), so resident memory stays that of a block while the file holds all rows.
    """

    def __init__(self, rows: int, widths: dict[str, int]) -> None:
        self._handle = tempfile.TemporaryFile(prefix="rsir-import-")
        size = max(1, rows * sum(widths.values()))
        self._handle.truncate(size)
        self._map = mmap.mmap(self._handle.fileno(), size)
        self._views: dict[str, np.ndarray] = {}
        at = 0
        for name, width in widths.items():
            self._views[name] = np.frombuffer(self._map, np.uint8, count=rows * width, offset=at).reshape(rows, width)
            at += rows * width

    def put(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        self._views[name][rows] = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1)

    def get(self, name: str, begin: int, count: int, dtype: type) -> np.ndarray:
        return self._views[name][begin : begin + count].copy().view(dtype)

    def release(self) -> None:
        # For a shared file mapping the kernel keeps dropped dirty pages in the page cache: no sync needed.
        if hasattr(mmap, "MADV_DONTNEED"):  # not on Windows
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        self._views.clear()  # numpy views must go before the map can close
        self._map.close()
        self._handle.close()
