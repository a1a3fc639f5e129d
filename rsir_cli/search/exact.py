"""The exact search engine: blocked top-k with bounded memory, on the CPU or a CUDA device.

It is the ground truth of rsir: ``evaluate`` and ``search`` use it, and the Milvus backend is
checked against it.

**Ranking rule.** Results are ordered by ``(distance, database row)``: the smaller distance first
and, among equal distances, **the lower database row index first**. Hamming distances tie
massively (a 32-bit code has only 33 possible distances), so this rule decides which images fill
the last places of a top-k; the official code leaves that order to ``torch.topk``. The rule is
exact for the distances the engine computes: float distances are computed in float32 (like
``torch.cdist``) and compared as float32, never through a tolerance.

Distances (see :mod:`rsir_cli.search.base`): ``hamming`` on packed codes; ``l1``; ``l2``
(ranked by the float32 squared distance, reported as its square root); ``cosine`` (``1 - cos``,
ranked by the float32 ``-cos``); ``dot`` (``-<q, x>``).

**Strategies.** One dispatcher (:meth:`ExactIndex.strategy_for`) picks how a search runs; every
strategy returns the same rows and distances (the tests check each against a brute force with
many ties). ``strategy=`` chooses one by name:

- ``cpu-kernels`` (``hamming``, ``l1``): the fused numba kernels of :mod:`rsir_cli.search.kernels`
  (popcounts and a counting selection in one pass for Hamming; for L1 the float64 sum of
  ``|q - x|`` in fixed 8-way partial sums rounded to float32, found through a uint8 quantisation
  with exact triangle-inequality bounds when at least ``_L1_QUANTISE_MIN_QUERIES`` queries come
  at once, every row's distance otherwise). Blocks of queries share each cache-sized tile of the
  database, one thread per CPU. The kernels rank finite vectors only.
- ``cpu-small`` (``l1``): numpy, for a few queries against a small database: the very value the
  kernels compute (the float64 sum of ``|q - x|`` in the same 8 partial sums, combined in the same
  order, rounded to float32), without loading numba (half a second of a one-tile `rsir search`).
- ``cpu-tiles``: library tiles. Hamming: faiss-cpu's ``IndexBinaryFlat`` (no compilation). Floats:
  a query block against database tiles (BLAS matrix products; faiss's float32 L1), each tile merged
  into a running top-k: only the entries strictly below a query's current k-th distance are merged
  (after the first tile, very few; a later row that ties the k-th distance has the higher row and
  loses), as int64 keys ``(order-preserving integer image of the float32 distance) << 32 | row``,
  so that one integer comparison is the (distance, row) comparison.
- ``torch-tiles``: what a CUDA device runs (also on the CPU, for tests): the same keys over
  whole-database tiles, the tile's top k by ``torch.topk`` and a merge. Hamming is a +-1 matrix
  product in fp16 for codes of up to 2048 bits (exact: every partial sum is an integer of
  magnitude <= 2048; longer codes use fp32), ranked by int32 keys ``hamming * rows + row``;
  floats are fp32 matrix products (l2, cosine, dot; full fp32 unless the caller enabled TF32) or
  ``torch.cdist`` (l1).
- ``auto`` (the default): on a CUDA device ``torch-tiles``; on the CPU ``cpu-kernels`` for a batch
  of at least ``_KERNEL_MIN_QUERIES`` Hamming queries and for finite L1 vectors (``cpu-small`` when
  the whole search is at most ``_SMALL_L1_TERMS`` terms), ``cpu-tiles``
  otherwise (a few Hamming queries: nothing to compile; L1 with NaN or infinity; l2, cosine, dot;
  or where numba cannot be imported, a stripped-down environment: one warning).

``tile_rows`` sets the database rows per tile of every tiled strategy (faiss's binary scan has no
tiles of its own); the defaults bound memory: a query block times a database tile of distances
and keys (about 64 MB on the CPU, about 2 GB on a GPU), plus the database itself (and, for
cosine, its normalised copy).
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from rsir_cli.devices import resolve_device
from rsir_cli.errors import MissingDependencyError, UsageError
from rsir_cli.progress import NULL_PROGRESS, Progress, ProgressTask
from rsir_cli.search import cpu_tiles
from rsir_cli.search.base import DISTANCES, SearchBackend, SearchResult

if TYPE_CHECKING:
    from rsir_cli.search.kernels import L1Quantiser, Quantised

log = logging.getLogger(__name__)

#: the named ways a search can run (see the module docstring)
STRATEGIES = ("auto", "cpu-kernels", "cpu-small", "cpu-tiles", "torch-tiles")
#: the distances the CPU kernels compute
KERNEL_DISTANCES = ("hamming", "l1")
_ROW_LIMIT = 0xFFFFFFFF  # rows are the low 32 bits of the tiles' keys
# CPU: at least this many hamming queries run the numba kernels (fewer: faiss, nothing to compile).
_KERNEL_MIN_QUERIES = 64
# CPU l1: at least this many queries go through the quantised bounds (fewer: every row's distance).
_L1_QUANTISE_MIN_QUERIES = 256
#: ``auto`` takes ``cpu-small`` for L1 up to this many query x row x dimension terms (a query
#: against ~20,000 768-d rows): numpy computes them faster than numba loads its kernels
_SMALL_L1_TERMS = 1 << 24


class ExactIndex(SearchBackend):
    """Exact top-k search over packed binary codes (``hamming``) or float vectors.

    Args:
        distance: one of ``hamming``, ``l1``, ``l2``, ``cosine``, ``dot``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        block_size: queries per block (default: 1024 on the CPU, sized to ~2 GB tiles on CUDA).
        strategy: ``auto`` (default), ``cpu-kernels``, ``cpu-tiles`` or ``torch-tiles`` (see the
            module docstring); all give the same results.
        tile_rows: database rows per tile of the tiled strategies (default: sized to memory).

    Raises:
        UsageError: an unknown distance or strategy, a strategy that cannot run this distance on
            this device, or a block or tile size below 1.
    """

    def __init__(
        self,
        distance: str,
        device: str = "cpu",
        block_size: int | None = None,
        *,
        strategy: str = "auto",
        tile_rows: int | None = None,
    ) -> None:
        distance = distance.strip().lower()
        if distance not in DISTANCES:
            raise UsageError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        if block_size is not None and block_size < 1:
            raise UsageError("block_size must be at least 1")
        if tile_rows is not None and tile_rows < 1:
            raise UsageError("tile_rows must be at least 1")
        self.distance = distance
        self.device = resolve_device(device)
        self.strategy = _check_strategy(strategy, distance, self.device)
        self.block_size = block_size
        self.tile_rows = tile_rows
        self._parts: list[np.ndarray] = []
        self._database: np.ndarray | None = None
        self._width: int | None = None
        # Per-database work kept across searches (single queries repeat it otherwise):
        # the unit rows for cosine, the squared norms for l2.
        self._prepared: np.ndarray | None = None
        self._norms: np.ndarray | None = None
        self._kernel_codes: np.ndarray | None = None  # hamming: codes in the kernels' layout
        self._l1_quantised: tuple[L1Quantiser, Quantised] | None = None  # l1: the quantiser and database codes
        self._finite: bool | None = None

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def close(self) -> None:
        """Nothing to release: the engine holds only this process's memory."""

    def add(self, vectors: np.ndarray) -> None:
        """Append database rows: uint8 (N, bits/8) packed codes for hamming, else float (N, D)."""
        vectors = self._check(vectors, "database")
        if len(self) + len(vectors) > _ROW_LIMIT:
            raise UsageError(f"the exact engine holds at most {_ROW_LIMIT:,} database rows")
        self._parts.append(vectors)
        self._database = self._prepared = self._norms = None
        self._kernel_codes = self._l1_quantised = self._finite = None

    def strategy_for(self, queries: np.ndarray) -> str:
        """The strategy a search of ``queries`` runs: the one asked for, or ``auto``'s choice.

        Raises:
            UsageError: ``cpu-kernels`` asked for with NaN or infinite L1 vectors.
            MissingDependencyError: ``cpu-kernels`` asked for where numba cannot be imported.
        """
        strategy = self.strategy
        if strategy == "cpu-kernels":
            if _kernels() is None:
                raise MissingDependencyError("the cpu-kernels search strategy needs numba: pip install numba")
            if self.distance == "l1" and not self._all_finite(queries):
                raise UsageError("the cpu-kernels strategy ranks finite vectors only; use cpu-tiles (or auto)")
            return strategy
        if strategy == "cpu-small" and self.distance != "l1":
            raise UsageError("the cpu-small strategy computes l1 only; use auto")
        if strategy == "cpu-small" and not self._all_finite(queries):
            raise UsageError("the cpu-small strategy ranks finite vectors only; use cpu-tiles (or auto)")
        if strategy != "auto":
            return strategy
        if self.device != "cpu":
            return "torch-tiles"
        terms = len(queries) * self._joined().shape[0] * self._joined().shape[1]
        if self.distance == "l1" and terms <= _SMALL_L1_TERMS and self._all_finite(queries):
            return "cpu-small"
        if self.distance == "hamming" and len(queries) >= _KERNEL_MIN_QUERIES and _kernels() is not None:
            return "cpu-kernels"  # a batch: worth the kernels (a few queries: faiss, nothing to compile)
        if self.distance == "l1" and _kernels() is not None and self._all_finite(queries):
            return "cpu-kernels"
        return "cpu-tiles"

    def search(self, queries: np.ndarray, k: int, progress: Progress = NULL_PROGRESS) -> SearchResult:
        """The ``k`` nearest database rows of every query, ordered by (distance, row).

        Returns:
            SearchResult with ``indices`` (Q, k) int64 and ``distances`` (Q, k) float64; places
            beyond the database size hold -1 and +inf.

        Raises:
            UsageError: k below 1, or queries of another type or width than the database.
        """
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        queries = self._check(queries, "queries")
        n_queries = queries.shape[0]
        indices = np.full((n_queries, k), -1, dtype=np.int64)
        distances = np.full((n_queries, k), np.inf)
        k_eff = min(k, self._joined().shape[0])
        if n_queries == 0 or k_eff == 0:
            return SearchResult(indices, distances)
        strategy = self.strategy_for(queries)
        label = f"search {self.distance} ({self.device})"
        if strategy == "cpu-kernels" and _kernels().will_compile(self.distance):
            label += ", compiling the CPU kernels (first use only)"
        run = {
            "cpu-kernels": self._cpu_kernels,
            "cpu-small": self._cpu_small,
            "cpu-tiles": self._cpu_tiles,
            "torch-tiles": self._torch_tiles,
        }
        task = progress.task(label, total=n_queries, unit="queries")
        try:
            found_i, found_d = run[strategy](queries, k_eff, task)
        finally:
            task.close()
        indices[:, :k_eff] = found_i
        distances[:, :k_eff] = found_d
        return SearchResult(indices, distances)

    # ------------------------------------------------------------------------------ strategies
    def _cpu_kernels(self, queries: np.ndarray, k: int, task: ProgressTask) -> tuple[np.ndarray, np.ndarray]:
        kernels = _kernels()
        database = self._joined()
        if self.distance == "hamming":
            if self._kernel_codes is None:
                self._kernel_codes = kernels.prepare_codes(database)
            rows, found = kernels.hamming_topk(self._kernel_codes, queries, k, task.advance, tile_rows=self.tile_rows)
            return rows, found.astype(np.float64)
        quantised = None
        if len(queries) >= _L1_QUANTISE_MIN_QUERIES:
            if self._l1_quantised is None:
                quantiser = kernels.L1Quantiser(database)
                self._l1_quantised = (quantiser, quantiser.quantise(database))
            quantised = self._l1_quantised
        rows, found, _ = kernels.l1_topk(database, queries, k, quantised, task.advance, tile_rows=self.tile_rows)
        return rows, found

    def _cpu_small(self, queries: np.ndarray, k: int, task: ProgressTask) -> tuple[np.ndarray, np.ndarray]:
        database = np.asarray(self._joined(), dtype=np.float64)
        rows = np.empty((len(queries), k), dtype=np.int64)
        found = np.empty((len(queries), k), dtype=np.float64)
        order_of_rows = np.arange(database.shape[0])
        for q, query in enumerate(np.asarray(queries, dtype=np.float64)):
            distances = l1_eight_lanes(database, query)
            best = np.lexsort((order_of_rows, distances))[:k]  # by distance, ties by the lower row
            rows[q], found[q] = best, distances[best]
            task.advance(1)
        return rows, found

    def _cpu_tiles(self, queries: np.ndarray, k: int, task: ProgressTask) -> tuple[np.ndarray, np.ndarray]:
        if self.distance == "hamming":
            return cpu_tiles.faiss_hamming(self._joined(), queries, k, self.block_size, task)
        database = self._prepared_database()
        return cpu_tiles.float_search(
            database, queries, k, self.distance, self.block_size, task, self._norms, self.tile_rows
        )

    def _torch_tiles(self, queries: np.ndarray, k: int, task: ProgressTask) -> tuple[np.ndarray, np.ndarray]:
        from rsir_cli.search.torch_tiles import tiled_search

        return tiled_search(
            self._joined(), queries, k, self.distance, self.device, self.block_size, task, self.tile_rows
        )

    # ------------------------------------------------------------------------------------------
    def _check(self, vectors: np.ndarray, what: str) -> np.ndarray:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise UsageError(f"{what} must be a 2-D array (rows x dims), got shape {vectors.shape}")
        if self.distance == "hamming":
            if vectors.dtype != np.uint8:
                raise UsageError(f"hamming search takes packed uint8 codes; the {what} are {vectors.dtype}")
        elif not np.issubdtype(vectors.dtype, np.number):
            raise UsageError(f"{self.distance} search takes numeric vectors; the {what} are {vectors.dtype}")
        else:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        width = vectors.shape[1]
        if self._width is None and what == "database":
            self._width = width
        elif self._width is not None and width != self._width:
            unit = "bytes per code" if self.distance == "hamming" else "dimensions"
            raise UsageError(f"the {what} have {width} {unit}, the database has {self._width}")
        return np.ascontiguousarray(vectors)

    def _all_finite(self, queries: np.ndarray) -> bool:
        if self._finite is None:
            self._finite = bool(np.isfinite(self._joined()).all())
        return self._finite and bool(np.isfinite(queries).all())

    def _prepared_database(self) -> np.ndarray:
        """The database as the CPU float search reads it (unit rows for cosine), and l2 norms."""
        if self._prepared is None:
            database = self._joined()
            self._prepared = cpu_tiles.normalise_rows(database) if self.distance == "cosine" else database
            if self.distance == "l2":
                self._norms = np.einsum("ij,ij->i", database, database)
        return self._prepared

    def _joined(self) -> np.ndarray:
        if self._database is None:
            if not self._parts:
                dtype = np.uint8 if self.distance == "hamming" else np.float32
                self._database = np.zeros((0, self._width or 0), dtype=dtype)
            else:
                self._database = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts)
                self._parts = [self._database]
        return self._database


def _check_strategy(strategy: str, distance: str, device: str) -> str:
    strategy = strategy.strip().lower()
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown search strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy in ("cpu-kernels", "cpu-tiles") and device != "cpu":
        raise UsageError(f"the {strategy} strategy runs on the CPU, not on {device}; use torch-tiles (or auto)")
    if strategy == "cpu-kernels" and distance not in KERNEL_DISTANCES:
        raise UsageError(f"the CPU kernels compute {' and '.join(KERNEL_DISTANCES)}, not {distance}; use cpu-tiles")
    return strategy


@functools.cache
def _kernels() -> ModuleType | None:
    """The numba kernels module, or None (with one warning) where numba cannot be imported: a
    stripped-down environment; a normal install has it. The faiss paths then serve, slower."""
    try:
        from rsir_cli.search import kernels
    except ImportError as error:
        log.warning("CPU search kernels unavailable (%s): falling back to faiss, which is slower", error)
        return None
    return kernels


def l1_eight_lanes(database: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The L1 distance of the kernels, for every row: float64 ``|q - x|`` summed in 8 interleaved
    partial sums (dimension t into sum t % 8; the tail after the last full group of 8 into sum 0),
    combined as ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)), rounded to float32."""
    diff = np.abs(database - query)
    dim = diff.shape[1]
    full = dim - dim % 8
    parts = np.zeros((diff.shape[0], 8))
    for t in range(0, full, 8):  # sequential, in the kernels' order
        parts += diff[:, t : t + 8]
    for t in range(full, dim):
        parts[:, 0] += diff[:, t]
    p = parts
    total = ((p[:, 0] + p[:, 1]) + (p[:, 2] + p[:, 3])) + ((p[:, 4] + p[:, 5]) + (p[:, 6] + p[:, 7]))
    return total.astype(np.float32).astype(np.float64)


def exact_search(
    database: np.ndarray, queries: np.ndarray, k: int, distance: str, device: str = "cpu", strategy: str = "auto"
) -> SearchResult:
    """One-shot exact search (see :class:`ExactIndex`)."""
    index = ExactIndex(distance, device, strategy=strategy)
    index.add(database)
    return index.search(queries, k)
