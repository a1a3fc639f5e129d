"""The HDF5 side of the store: the only module of rsir that imports h5py.

HDF5 is not crash-consistent while a file is changed in place (a flush is a dozen separate
writes), so rsir never lets HDF5 write to disk: every file is built whole in memory
(:func:`build`) and committed by :mod:`rsir_cli.fileio` (temporary name, fsync, rename). Files
are only ever opened read-only here, without HDF5's file locking (nothing writes them in place).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rsir_cli.errors import StoreError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
STRING = h5py.string_dtype("utf-8")
# Attributes stored as JSON text (HDF5 has no nested types); everything else is a scalar.
JSON_ATTRS = frozenset(
    {"bands", "mean", "std", "label_names", "model_config", "fill_bands", "extra", "band_sources", "inputs"}
)


def encode_attr(key: str, value: Any) -> Any:
    if key in JSON_ATTRS or isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return ""
    return value


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and (key in JSON_ATTRS or value[:1] in ("[", "{")):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def _store_array(values: Any) -> tuple[np.ndarray, Any]:
    """An array as HDF5 takes it: strings become UTF-8 variable-length strings."""
    array = np.asarray(values)
    if array.dtype.kind in ("U", "O", "S"):
        return np.asarray([str(v) for v in array.reshape(-1)], dtype=object).reshape(array.shape), STRING
    return array, array.dtype


class RecordingFile:
    """A file object for h5py that keeps the first OS error of any call (HDF5 reports its own).

    The handle may be buffered: a full disk then shows in a later flush, seek or read, which is
    why every call is watched, not only ``write``.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._handle, name)
        if not callable(attribute):
            return attribute

        def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except OSError as error:
                self.error = self.error or error
                raise

        return watched


class FileBuilder:
    """An HDF5 file assembled in memory (:meth:`buffer` gives its bytes once closed), or written
    through a file object (a temporary file that is renamed into place only when it is complete)."""

    def __init__(self, handle: Any = None) -> None:
        self._buffer = io.BytesIO() if handle is None else None
        self._file = h5py.File(self._buffer if handle is None else handle, "w", track_order=True)

    def add(self, name: str, values: Any) -> None:
        """A dataset with the given values (``name`` may contain ``/`` for groups)."""
        array, dtype = _store_array(values)
        self._file.create_dataset(name, data=array, dtype=dtype)

    def reserve(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """An empty dataset of ``shape`` to be filled slice by slice (strings: ``str``)."""
        dtype = STRING if dtype is str else np.dtype(dtype)
        return self._file.create_dataset(name, shape=shape, dtype=dtype)

    def fill(self, dataset: Any, start: int, values: Any) -> None:
        array, _ = _store_array(values)
        if len(array):
            dataset[start : start + len(array)] = array

    def set_attrs(self, attrs: Mapping[str, Any], group: str = "/") -> None:
        target = self._file.require_group(group) if group != "/" else self._file
        for key, value in attrs.items():
            target.attrs[key] = encode_attr(key, value)

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def buffer(self) -> memoryview:
        """Close the file and return its bytes (no copy)."""
        self.close()
        assert self._buffer is not None, "a file written through a handle has no buffer"
        return self._buffer.getbuffer()


def _damaged(path: Path, detail: str) -> StoreError:
    return StoreError(f"{path} is damaged ({detail}); {_rebuild_hint(path)}")


def _rebuild_hint(path: Path) -> str:
    return (
        "move it away and re-create it with the rsir embed command that made it, adding --overwrite"
        if path.suffix == ".h5" and not path.parent.name.endswith(".codes")
        else "delete it and run the command that made it again"
    )


def diagnose(path: Path, error: BaseException) -> StoreError:
    """Turn a failure to open ``path`` into what is wrong with it (never "locked": nothing locks it)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        return StoreError(f"{path} does not exist")
    except OSError as os_error:
        return StoreError(f"cannot read {path}: {os_error.strerror or os_error}")
    if size == 0:
        return _damaged(path, "the file is empty")
    if head != HDF5_SIGNATURE:
        return StoreError(f"{path} is not an HDF5 file, so not an rsir store file; move it out of the store")
    text = str(error)
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if truncated:
        got, wanted = int(truncated.group(1)), int(truncated.group(2))
        return _damaged(path, f"the file is truncated: {got:,} of its {wanted:,} bytes are there")
    return _damaged(path, f"HDF5 cannot read it: {text.splitlines()[0] if text else type(error).__name__}")


def _open_read_only(path: Path) -> h5py.File:
    """A committed store file, read-only and without HDF5's locks (nothing writes it in place)."""
    try:
        return h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist") from None
    except OSError as error:
        raise diagnose(path, error) from None


@contextmanager
def open_file(path: Path) -> Iterator[h5py.File]:
    """Open a committed store file read-only, diagnosing a damaged one."""
    handle = _open_read_only(path)
    try:
        yield handle
    except OSError as error:  # a dataset that cannot be read: a damaged file
        raise _damaged(path, f"{type(error).__name__}: {error}") from None
    finally:
        handle.close()


def read_attrs(path: Path, group: str = "/") -> dict[str, Any]:
    with open_file(path) as handle:
        return decode_attrs((handle[group] if group != "/" else handle).attrs)


def read_arrays(path: Path, names: tuple[str, ...], rows: int | None = None) -> dict[str, Any]:
    """Datasets of a file (the first ``rows`` rows); string datasets come back as lists of str.

    A dataset missing from the file comes back as None (older files lack ``dates``).
    """
    out: dict[str, Any] = {}
    with open_file(path) as handle:
        for name in names:
            if name not in handle:
                out[name] = None
                continue
            dataset = handle[name]
            selection = slice(None) if rows is None else slice(0, rows)
            if h5py.check_string_dtype(dataset.dtype) is not None:
                out[name] = list(dataset.asstr()[selection]) if dataset.shape[0] else []
            else:
                out[name] = dataset[selection]
    return out


def read_group(path: Path, group: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every dataset of ``group`` (as arrays) and its attributes."""
    with open_file(path) as handle:
        if group not in handle:
            return {}, {}
        node = handle[group]
        return {key: value[...] for key, value in node.items()}, decode_attrs(node.attrs)


def shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every top-level dataset of a file (cheap: reads no data)."""
    with open_file(path) as handle:
        return {name: tuple(node.shape) for name, node in handle.items() if isinstance(node, h5py.Dataset)}


def group_names(path: Path, group: str) -> list[str]:
    with open_file(path) as handle:
        return sorted(handle[group].keys()) if group in handle else []


class OnDiskRows:
    """One dataset of one or more open files (a split's shards, in order) as rows read on demand.

    Takes what :class:`rsir_cli.geoparquet.EmbeddingTable` asks of its big arrays: ``shape``,
    ``dtype``, ``len`` and indexing by a slice or an array of row numbers (sorted or not); only the
    rows asked for are read, so memory stays that of a block however large the split is.
    """

    def __init__(self, parts: list[tuple[Path, h5py.Dataset, int]]) -> None:
        self._parts = parts
        self._starts = np.concatenate([[0], np.cumsum([rows for _, _, rows in parts])]).astype(np.int64)
        tail = tuple(parts[0][1].shape[1:]) if parts else ()
        self.shape: tuple[int, ...] = (int(self._starts[-1]), *tail)
        self.dtype = parts[0][1].dtype if parts else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray | list[int]) -> np.ndarray:
        if isinstance(key, slice):
            return self._read(np.arange(*key.indices(self.shape[0]), dtype=np.int64))
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"rows out of range 0..{self.shape[0] - 1}")
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing rows only
        block = self._read(unique)
        return block if len(unique) == len(rows) and np.array_equal(unique, rows) else block[inverse]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """Rows in increasing order, file by file."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        cuts = np.searchsorted(rows, self._starts)
        for number, (path, dataset, _) in enumerate(self._parts):
            begin, end = int(cuts[number]), int(cuts[number + 1])
            if begin == end:
                continue
            local = rows[begin:end] - self._starts[number]
            try:
                if local[-1] - local[0] == end - begin - 1:  # a contiguous run: one slice
                    out[begin:end] = dataset[int(local[0]) : int(local[-1]) + 1]
                else:
                    out[begin:end] = dataset[local]
            except OSError as error:  # a dataset that cannot be read: a damaged file
                raise _damaged(path, f"{type(error).__name__}: {error}") from None
        return out


@contextmanager
def open_rows(files: list[tuple[Path, str, int]]) -> Iterator[OnDiskRows]:
    """:class:`OnDiskRows` over the first ``rows`` rows of dataset ``name`` of each (path, name, rows), in order.

    The files stay open (read-only) while the context lasts.

    Raises:
        StoreError: a file is missing, damaged or lacks the dataset.
    """
    with ExitStack() as stack:
        parts = []
        for path, name, rows in files:
            handle = _open_read_only(path)
            stack.callback(handle.close)
            if name not in handle or handle[name].shape[0] < rows:
                raise _damaged(path, f"its {name!r} dataset is missing or short of {rows} rows")
            parts.append((path, handle[name], rows))
        yield OnDiskRows(parts)
