"""Code tables: packed binary codes of a whole split, with the hasher that made them.

Each table is its own file, ``<split>.codes/<name>.h5`` beside the split's embeddings (which are
never opened for writing again): ``bits`` (N, bits/8) uint8 packed by ``numpy.packbits``, the
fitted hasher's arrays under ``hasher/`` and its settings as that group's attributes. The file
records the ``content_digest`` of the embeddings it was computed from, so that a table made before
the split was re-embedded is recognised as stale. Written whole and renamed into place, like every
store file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli import fileio
from rsir_cli.store import hdf5


@dataclass
class Codes:
    """Packed binary codes of one split, with the hasher that made them."""

    name: str
    bits: np.ndarray  # (N, nbytes) uint8, packed
    attrs: dict[str, Any]
    hasher: dict[str, np.ndarray]
    hasher_attrs: dict[str, Any]

    @property
    def n_bits(self) -> int:
        return int(self.attrs["n_bits"])

    @property
    def content_digest(self) -> str:
        """The digest of the embeddings these codes were computed from ("" if unknown)."""
        return str(self.attrs.get("content_digest") or "")


def write_table(
    path: Path,
    bits: np.ndarray,
    *,
    attrs: Mapping[str, Any],
    hasher: Mapping[str, np.ndarray],
    hasher_attrs: Mapping[str, Any],
) -> None:
    """Write one code table file (replacing an older one atomically)."""
    builder = hdf5.FileBuilder()
    builder.add("bits", np.ascontiguousarray(bits, dtype=np.uint8))
    for key, value in hasher.items():
        builder.add(f"hasher/{key}", np.asarray(value))
    builder.set_attrs(dict(attrs))
    if hasher_attrs or not hasher:
        builder.set_attrs(dict(hasher_attrs), group="hasher")
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.write_bytes(path, builder.buffer())


def read_table(path: Path, name: str) -> Codes:
    bits = hdf5.read_arrays(path, ("bits",))["bits"]
    hasher, hasher_attrs = hdf5.read_group(path, "hasher")
    return Codes(name, np.asarray(bits), hdf5.read_attrs(path), hasher, hasher_attrs)


def table_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".h5")] for p in folder.iterdir() if p.name.endswith(".h5") and p.is_file())
