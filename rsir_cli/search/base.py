"""The interface every search backend implements.

Conventions (all backends, so that results compare one to one):

- ``search(queries, k)`` returns, per query, the ``k`` database rows with the smallest distance,
  in ascending distance; **ties are broken by the lower database row index**. Rows are 0-based
  positions in the order vectors were added.
- Distances: ``hamming`` on packed binary codes (uint8, 8 bits per byte, ``numpy.packbits``
  order) counts differing bits; ``l1`` and ``l2`` (Euclidean, not squared) on float vectors;
  ``cosine`` is ``1 - cos``; ``dot`` is ``-<q, x>`` (so that smaller is better everywhere).
- When the database holds fewer than ``k`` rows, the missing places hold index -1 and distance +inf.
- A backend is closed when its user is done with it: ``with backend: ...`` or ``backend.close()``
  (a Milvus collection disconnects, which for Milvus Lite frees its file; the exact engine holds
  nothing outside this process). Closing twice is harmless.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import numpy as np

DISTANCES = ("hamming", "l1", "l2", "cosine", "dot")


@dataclass
class SearchResult:
    """Top-k matches: ``indices`` (Q, k) int64 database rows, ``distances`` (Q, k) float64."""

    indices: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


_Backend = TypeVar("_Backend", bound="SearchBackend")


class SearchBackend(ABC):
    """A database of vectors (float or packed binary) searchable by top-k; a context manager."""

    distance: str

    @abstractmethod
    def add(self, vectors: np.ndarray) -> None:
        """Append database rows (float32 (N, D), or uint8 (N, bits/8) packed codes for hamming)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` nearest database rows of each query, ties by lower row index."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of database rows."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds outside this process (connections, files); idempotent."""

    def __enter__(self: _Backend) -> _Backend:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
