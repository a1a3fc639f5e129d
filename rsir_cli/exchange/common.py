"""What export and import share: the names of imported models, the store's own attributes, arrays as JSON."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

#: the model name of embeddings another tool computed (unless the caller names it)
IMPORTED_MODEL = "imported"
#: the split a file another tool wrote goes to (the "whole archive" split `rsir search` looks in)
FOREIGN_SPLIT = "all"
#: attributes the store writes itself (run and commit record): never copied from a file
STORE_KEYS = frozenset(
    {
        "schema_version",
        "rsir_version",
        "created",
        "completed",
        "model",
        "dataset",
        "split",
        "shard",
        "embedding_dim",
        "rows_expected",
        "rows_committed",
        "complete",
        "content_digest",
    }
)
#: what the provenance of an exported file adds to the store's attributes
HASHERS_KEY = "hashers"
#: file metadata of another tool kept with an import (small values only)
SOURCE_METADATA_LIMIT = 16384


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """An array as JSON: ``{"dtype": "<f8", "shape": [...], "base64": little-endian bytes}`` (exact)."""
    array = np.asarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": little.dtype.str,
        "shape": list(array.shape),
        "base64": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii"),
    }


def decode_array(record: Mapping[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_array`.

    Raises:
        ValueError: the record is not one :func:`encode_array` made.
    """
    dtype, shape = np.dtype(str(record["dtype"])), tuple(int(n) for n in record["shape"])
    data = base64.b64decode(str(record["base64"]), validate=True)
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
