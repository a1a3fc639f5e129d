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

How it runs:

- CPU, ``hamming``: batches of queries run the fused kernels of :mod:`rsir_cli.search.kernels`
  (numba: popcounts and a counting selection in one pass, blocks of queries sharing each
  cache-sized tile of codes, one thread per CPU); fewer than ``_KERNEL_MIN_QUERIES`` queries use
  faiss-cpu's ``IndexBinaryFlat`` (no compilation). Both scan rows in order and keep the lower row
  among equal distances; the tests check both against a brute force with many ties.
- CPU, ``l1``: the kernels too. The distance is the float64 sum of ``|q - x|`` (fixed 8-way
  partial sums) rounded to float32, ranked as float32. Batches of queries find their rows through
  a uint8 quantisation of the vectors with exact triangle-inequality bounds (no row of the true
  top-k can be pruned; see the kernels module); a few queries compute every row's distance.
  Vectors with NaN or infinity fall back to faiss's float32 L1 tiles, as does everything where
  numba cannot be imported (a stripped-down environment; one warning).
- CPU, l2, cosine and dot: tiles of a query block against the database (BLAS matrix products),
  each merged into a running top-k: only the entries strictly below a query's current k-th
  distance are merged (after the first tile, very few), as int64 keys ``(order-preserving
  integer image of the float32 distance) << 32 | row``, so that one integer comparison is the
  (distance, row) comparison.
- CUDA (torch): the same keys over whole-database tiles, the tile's top k by ``torch.topk`` and a
  merge. Hamming is a +-1 matrix product in fp16 for codes of up to 2048 bits (exact: every
  partial sum is an integer of magnitude <= 2048; longer codes use fp32), ranked by int32 keys
  ``hamming * rows + row``; floats are fp32 matrix products (l2, cosine, dot; full fp32 unless
  the caller enabled TF32) or ``torch.cdist`` (l1).

Memory is bounded by the block sizes: a query block times a database tile of distances and keys
(about 64 MB on the CPU, about 2 GB on a GPU), plus the database itself (and, for cosine, its
normalised copy).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from rsir_cli.devices import resolve_device
from rsir_cli.errors import UsageError
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.search.base import DISTANCES, SearchResult

log = logging.getLogger(__name__)

FLOAT_DISTANCES = ("l1", "l2", "cosine", "dot")
_MAX_KEY = np.iinfo(np.int64).max
_ROW_MASK = 0xFFFFFFFF
# CPU: queries per block and database rows per tile (a 1024 x 8192 float32 tile is 32 MB).
_CPU_QUERY_BLOCK = 1024
_CPU_TILE = {"l1": 1024, "l2": 8192, "cosine": 8192, "dot": 8192}
# faiss binary search: queries per call (the progress bar advances per call).
_CPU_HAMMING_BLOCK = 8192
# Fewer queries than this run on one thread (see _faiss_hamming).
_FEW_QUERIES = 64
# CPU: at least this many hamming queries run the numba kernels (fewer: faiss, nothing to compile).
_KERNEL_MIN_QUERIES = 64
# CPU l1: at least this many queries go through the quantised bounds (fewer: every row's distance).
_L1_QUANTISE_MIN_QUERIES = 256
# CPU float tiles hold at most this many distances: few queries scan long tiles (less overhead).
_CPU_TILE_ELEMENTS = 1 << 23
# CUDA: elements of one distance tile (queries x database rows); 2**27 keeps a tile near 2 GB.
_CUDA_TILE_ELEMENTS = 1 << 27


class ExactIndex:
    """Exact top-k search over packed binary codes (``hamming``) or float vectors.

    Args:
        distance: one of ``hamming``, ``l1``, ``l2``, ``cosine``, ``dot``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        block_size: queries per block (default: 1024 on the CPU, sized to ~2 GB tiles on CUDA).
    """

    def __init__(self, distance: str, device: str = "cpu", block_size: int | None = None) -> None:
        distance = distance.strip().lower()
        if distance not in DISTANCES:
            raise UsageError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        if block_size is not None and block_size < 1:
            raise UsageError("block_size must be at least 1")
        self.distance = distance
        self.device = resolve_device(device)
        self.block_size = block_size
        self._parts: list[np.ndarray] = []
        self._database: np.ndarray | None = None
        self._width: int | None = None
        # Per-database work kept across searches (single queries repeat it otherwise):
        # the unit rows for cosine, the squared norms for l2.
        self._prepared: np.ndarray | None = None
        self._norms: np.ndarray | None = None
        self._kernel_codes: np.ndarray | None = None  # hamming: codes in the kernels' layout
        self._l1_quantised: tuple[Any, Any] | None = None  # l1: the quantiser and database codes
        self._finite: bool | None = None

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def add(self, vectors: np.ndarray) -> None:
        """Append database rows: uint8 (N, bits/8) packed codes for hamming, else float (N, D)."""
        vectors = self._check(vectors, "database")
        if len(self) + len(vectors) > _ROW_MASK:
            raise UsageError(f"the exact engine holds at most {_ROW_MASK:,} database rows")
        self._parts.append(vectors)
        self._database = self._prepared = self._norms = None
        self._kernel_codes = self._l1_quantised = self._finite = None

    def search(self, queries: np.ndarray, k: int, progress: Progress = NULL_PROGRESS) -> SearchResult:
        """The ``k`` nearest database rows of every query, ordered by (distance, row).

        Returns:
            SearchResult with ``indices`` (Q, k) int64 and ``distances`` (Q, k) float64; places
            beyond the database size hold -1 and +inf.
        """
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        queries = self._check(queries, "queries")
        n_queries = queries.shape[0]
        indices = np.full((n_queries, k), -1, dtype=np.int64)
        distances = np.full((n_queries, k), np.inf)
        database = self._joined()
        k_eff = min(k, database.shape[0])
        if n_queries == 0 or k_eff == 0:
            return SearchResult(indices, distances)
        kernels = _kernels() if self.device == "cpu" and self.distance in ("hamming", "l1") else None
        label = f"search {self.distance} ({self.device})"
        uses_kernels = kernels is not None and (self.distance == "l1" or n_queries >= _KERNEL_MIN_QUERIES)
        if uses_kernels and kernels.will_compile(self.distance):
            label += ", compiling the CPU kernels (first use only)"
        task = progress.task(label, total=n_queries, unit="queries")
        try:
            if self.distance == "hamming" and self.device == "cpu":
                if n_queries >= _KERNEL_MIN_QUERIES and kernels is not None:
                    if self._kernel_codes is None:
                        self._kernel_codes = kernels.prepare_codes(database)
                    found_i, found_d = kernels.hamming_topk(self._kernel_codes, queries, k_eff, task.advance)
                    found_d = found_d.astype(np.float64)
                else:
                    found_i, found_d = _faiss_hamming(database, queries, k_eff, self.block_size, task)
            elif self.distance == "l1" and kernels is not None and self._all_finite(queries):
                quantised = None
                if n_queries >= _L1_QUANTISE_MIN_QUERIES:
                    if self._l1_quantised is None:
                        quantiser = kernels.L1Quantiser(database)
                        self._l1_quantised = (quantiser, quantiser.quantise(database))
                    quantised = self._l1_quantised
                found_i, found_d, _ = kernels.l1_topk(database, queries, k_eff, quantised, task.advance)
            elif self.device == "cpu":
                found_i, found_d = _cpu_float_search(
                    self._prepared_database(), queries, k_eff, self.distance, self.block_size, task, self._norms
                )
            else:
                found_i, found_d = _tiled_search(
                    database, queries, k_eff, self.distance, self.device, self.block_size, task
                )
        finally:
            task.close()
        indices[:, :k_eff] = found_i
        distances[:, :k_eff] = found_d
        return SearchResult(indices, distances)

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
            self._prepared = _normalise_rows(database) if self.distance == "cosine" else database
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


@functools.cache
def _kernels() -> Any:
    """The numba kernels module, or None (with one warning) where numba cannot be imported: a
    stripped-down environment; a normal install has it. The faiss paths then serve, slower."""
    try:
        from rsir_cli.search import kernels
    except ImportError as error:
        log.warning("CPU search kernels unavailable (%s): falling back to faiss, which is slower", error)
        return None
    return kernels


def exact_search(database: np.ndarray, queries: np.ndarray, k: int, distance: str, device: str = "cpu") -> SearchResult:
    """One-shot exact search (see :class:`ExactIndex`)."""
    index = ExactIndex(distance, device)
    index.add(database)
    return index.search(queries, k)


# ------------------------------------------------------------------------------------- hamming / faiss
def _faiss_hamming(
    database: np.ndarray, queries: np.ndarray, k: int, block_size: int | None, task: Any
) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexBinaryFlat(database.shape[1] * 8)
    index.add(database)
    n = queries.shape[0]
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)
    step = block_size or _CPU_HAMMING_BLOCK
    # A few queries scan the codes in well under a millisecond on one thread, while an OpenMP
    # team waits for every thread: on a busy machine that costs tens of milliseconds per call.
    threads = faiss.omp_get_max_threads()
    if n < _FEW_QUERIES:
        faiss.omp_set_num_threads(1)
    try:
        for start in range(0, n, step):
            block = queries[start : start + step]
            d, i = index.search(block, k)
            indices[start : start + len(block)] = i
            distances[start : start + len(block)] = d
            task.advance(len(block))
    finally:
        faiss.omp_set_num_threads(threads)
    return indices, distances


# ------------------------------------------------------------------------------------- CPU floats, numpy
def _numpy_ordinal(values: np.ndarray) -> np.ndarray:
    """float32 array -> int64 array with the same order (NaN as +inf, -0.0 as +0.0)."""
    values = np.nan_to_num(values, nan=np.inf, posinf=np.inf, neginf=-np.inf)
    bits = values.view(np.int32).astype(np.int64)
    ordinal = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    ordinal[ordinal == -1] = 0  # -0.0
    return ordinal


def _threshold(keys: np.ndarray) -> np.ndarray:
    """The float32 distance of each row's current k-th key (+inf while a row is not full)."""
    ordinal = keys[:, -1] >> 32
    values = _ordinal_to_float(ordinal).astype(np.float32)
    return np.where(keys[:, -1] == _MAX_KEY, np.float32(np.inf), values)


def _cpu_float_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    distance: str,
    block_size: int | None,
    task: Any,
    norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blocked exact top-k on the CPU: BLAS (or faiss L1) tiles, then a merge of the few entries that
    beat each query's current k-th distance (compared as float32, strictly: a later row that ties
    the k-th distance has the higher row and loses)."""
    n = database.shape[0]
    step = block_size or _CPU_QUERY_BLOCK
    tile = max(_CPU_TILE.get(distance, 8192), _CPU_TILE_ELEMENTS // max(1, min(step, queries.shape[0])))
    # ``database`` arrives prepared: unit rows for cosine; ``norms`` its squared norms for l2.
    if distance == "l2" and norms is None:
        norms = np.einsum("ij,ij->i", database, database)
    out_keys = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], step):
        block = queries[start : start + step]
        if distance == "cosine":
            block = _normalise_rows(block)
        if distance == "l2":
            block_norms = np.einsum("ij,ij->i", block, block)[:, None]
            block = block * np.float32(-2.0)  # exact: (-2q).x == -2 (q.x) in floating point
        best = np.full((block.shape[0], k), _MAX_KEY, dtype=np.int64)
        for first in range(0, n, tile):
            stop = min(n, first + tile)
            rows = database[first:stop]
            if distance == "l1":
                import faiss

                values = faiss.pairwise_distances(block, rows, faiss.METRIC_L1)
            else:
                values = block @ rows.T
                if distance == "l2":
                    values += norms[first:stop]
                    values += block_norms
                    np.maximum(values, 0, out=values)
                else:  # dot, cosine: ranked by the negated product
                    np.negative(values, out=values)
            best = _merge_tile(best, values, first)
        out_keys[start : start + block.shape[0]] = best
        task.advance(block.shape[0])
    ordinal = out_keys >> 32
    values = _ordinal_to_float(ordinal)
    if distance == "l2":
        values = np.sqrt(values)
    elif distance == "cosine":
        values = 1.0 + values
    return out_keys & _ROW_MASK, values


def _merge_tile(best: np.ndarray, values: np.ndarray, first: int) -> np.ndarray:
    """Merge a (B, T) float32 tile of rows ``first ...`` into the running (B, k) keys."""
    n_rows, k = best.shape
    width = values.shape[1]
    if (best[:, -1] == _MAX_KEY).any():  # some row not yet full: merge the whole tile
        keys = (_numpy_ordinal(values) << 32) | np.arange(first, first + width, dtype=np.int64)
        candidates = np.concatenate([best, keys], axis=1)
        if candidates.shape[1] > k:
            candidates = np.partition(candidates, k - 1, axis=1)[:, :k]
        return np.sort(candidates, axis=1)
    hits = np.flatnonzero(values < _threshold(best)[:, None])
    if hits.size == 0:
        return best
    rows, cols = np.divmod(hits, width)
    keys = (_numpy_ordinal(values[rows, cols]) << 32) | (cols + first)
    all_rows = np.concatenate([np.repeat(np.arange(n_rows), k), rows])
    all_keys = np.concatenate([best.ravel(), keys])
    order = np.lexsort((all_keys, all_rows))
    counts = np.bincount(all_rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    return all_keys[order][starts[:, None] + np.arange(k)]


def _normalise_rows(data: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", data, data))[:, None]
    return (data / np.where(norms > 0, norms, np.float32(1.0))).astype(np.float32)


# ------------------------------------------------------------------------------------- tiled, torch
def _float_ordinal(values: Any) -> Any:
    """float32 tensor -> int32 tensor with the same order (NaN as +inf, -0.0 as +0.0)."""
    import torch

    values = torch.nan_to_num(values, nan=float("inf"), posinf=float("inf"), neginf=float("-inf"))
    bits = values.view(torch.int32)
    ordinal = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return torch.where(ordinal == -1, torch.zeros_like(ordinal), ordinal)  # -1 is -0.0


def _ordinal_to_float(ordinal: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_float_ordinal` (int64 ordinals of float32 values) -> float64 values."""
    ordinal = ordinal.astype(np.int32)
    bits = np.where(ordinal < 0, ordinal ^ 0x7FFFFFFF, ordinal).astype(np.int32)
    return bits.view(np.float32).astype(np.float64)


class _RunningTopK:
    """The k smallest int64 keys ``(ordinal << 32) | row`` seen so far for a block of queries."""

    def __init__(self, n_queries: int, k: int, device: str) -> None:
        import torch

        self.k = k
        self.keys = torch.full((n_queries, k), _MAX_KEY, dtype=torch.int64, device=device)

    def add(self, ordinals: Any, first_row: int, sparse: bool) -> None:
        """Merge a tile of ordinals (Q, T) whose rows are ``first_row ... first_row + T - 1``.

        ``sparse`` (CPU): only tile entries below the current k-th distance are merged. Tiles come
        in increasing row order, so a tile row whose distance equals the current k-th one has the
        higher row and loses: the strict comparison is exact. Dense (CUDA): the tile's own top k
        by key, then a merge; keys are unique, so this is exact in any tile order.
        """
        import torch

        if sparse:
            threshold = self.keys[:, -1:] >> 32
            mask = ordinals < threshold
            rows, cols = mask.nonzero(as_tuple=True)
            if rows.numel() == 0:
                return
            if rows.numel() * 8 < mask.numel():  # few survivors: merge only them
                counts = torch.bincount(rows, minlength=mask.shape[0])
                starts = torch.cumsum(counts, 0) - counts
                slot = torch.arange(rows.numel(), device=rows.device) - starts[rows]
                candidates = torch.full(
                    (mask.shape[0], self.k + int(counts.max())), _MAX_KEY, dtype=torch.int64, device=rows.device
                )
                candidates[:, : self.k] = self.keys
                candidates[rows, self.k + slot] = (ordinals[rows, cols].to(torch.int64) << 32) | (cols + first_row)
                self.keys = torch.topk(candidates, self.k, dim=1, largest=False, sorted=True).values
                return
            keys = torch.where(mask, (ordinals.to(torch.int64) << 32) | _row_ids(ordinals, first_row), _MAX_KEY)
        else:
            keys = (ordinals.to(torch.int64) << 32) | _row_ids(ordinals, first_row)
        self.merge(torch.topk(keys, min(self.k, keys.shape[1]), dim=1, largest=False, sorted=True).values)

    def merge(self, keys: Any) -> None:
        """Merge a (Q, m) block of global keys (any order; keys are unique)."""
        import torch

        merged = torch.cat([self.keys, keys], dim=1)
        self.keys = torch.topk(merged, self.k, dim=1, largest=False, sorted=True).values


def _row_ids(like: Any, first_row: int) -> Any:
    import torch

    return torch.arange(first_row, first_row + like.shape[1], device=like.device, dtype=torch.int64)


def _tiled_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    distance: str,
    device: str,
    block_size: int | None,
    task: Any,
    sparse: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tiles of distances -> int64 keys -> running top-k. ``sparse`` (default: on the CPU) merges
    only entries below the current k-th distance; the dense merge is what CUDA runs."""
    import torch

    on_cuda = device != "cpu"
    sparse = not on_cuda if sparse is None else sparse
    n, width = database.shape
    prepared = _Prepared(database, distance, device)
    if on_cuda:
        tile = n
        query_block = block_size or max(1, min(8192, _CUDA_TILE_ELEMENTS // max(1, n)))
        if query_block * n > 4 * _CUDA_TILE_ELEMENTS:  # a huge database: tile it too
            tile = max(1, _CUDA_TILE_ELEMENTS // query_block)
    else:
        query_block = block_size or _CPU_QUERY_BLOCK
        tile = _CPU_TILE.get(distance, 8192)
    out_keys = np.empty((queries.shape[0], k), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, queries.shape[0], query_block):
            block = prepared.queries(queries[start : start + query_block])
            top = _RunningTopK(block.shape[0], k, device)
            for first in range(0, n, tile):
                stop = min(n, first + tile)
                if prepared.small_keys(stop - first):
                    top.merge(prepared.hamming_top(block, first, stop, k))
                else:
                    top.add(prepared.ordinals(block, first, stop), first, sparse=sparse)
            out_keys[start : start + block.shape[0]] = top.keys.cpu().numpy()
            task.advance(block.shape[0])
    ordinal = out_keys >> 32
    indices = out_keys & _ROW_MASK
    if distance == "hamming":
        values = ordinal.astype(np.float64)
    else:
        values = _ordinal_to_float(ordinal)
        if distance == "l2":
            values = np.sqrt(values)
        elif distance == "cosine":
            values = 1.0 + values  # ranked by -cos: 1 - cos
    return indices, values


class _Prepared:
    """The database on the device in the form its distance needs, and tile -> ordinals."""

    def __init__(self, database: np.ndarray, distance: str, device: str) -> None:
        import torch

        self.distance = distance
        self.device = device
        if distance == "hamming":
            self.bits = database.shape[1] * 8
            # fp16 holds every integer up to 2048 exactly, so a +-1 product of up to 2048 bits is exact.
            self.dtype = torch.float16 if (device != "cpu" and self.bits <= 2048) else torch.float32
            self.data = self._plus_minus(database)
        else:
            data = torch.from_numpy(database).to(device)
            if distance == "cosine":
                data = _normalise(data)
            self.data = data
            self.norms = (data * data).sum(dim=1) if distance == "l2" else None

    def _plus_minus(self, codes: np.ndarray) -> Any:
        import torch

        unpacked = torch.from_numpy(np.unpackbits(codes, axis=1)).to(self.device)
        return (unpacked.to(self.dtype) * 2 - 1).contiguous()

    def queries(self, block: np.ndarray) -> Any:
        import torch

        if self.distance == "hamming":
            return self._plus_minus(block)
        data = torch.from_numpy(block).to(self.device)
        return _normalise(data) if self.distance == "cosine" else data

    def small_keys(self, rows: int) -> bool:
        """Hamming keys ``distance * rows + row`` of a tile fit in int32 (half the memory traffic)."""
        return self.distance == "hamming" and (self.bits + 1) * rows < 2**31

    def hamming_top(self, queries: Any, first: int, stop: int, k: int) -> Any:
        """The k best global keys of one database tile, through int32 keys ``hamming * rows + row``."""
        import torch

        rows = stop - first
        keys = torch.matmul(queries, self.data[first:stop].T).to(torch.int32)  # exact +-1 dot products
        keys.neg_().add_(self.bits).div_(2, rounding_mode="floor")  # Hamming = (bits - dot) / 2
        keys.mul_(rows).add_(torch.arange(rows, device=keys.device, dtype=torch.int32))
        top = torch.topk(keys, min(k, rows), dim=1, largest=False, sorted=True).values
        return ((top // rows).to(torch.int64) << 32) | ((top % rows).to(torch.int64) + first)

    def ordinals(self, queries: Any, first: int, stop: int) -> Any:
        import torch

        data = self.data[first:stop]
        if self.distance == "hamming":
            dot = torch.matmul(queries, data.T).float()
            return ((self.bits - dot) * 0.5).round().to(torch.int32)
        if self.distance == "l1":
            if self.device == "cpu":
                import faiss

                values = torch.from_numpy(faiss.pairwise_distances(queries.numpy(), data.numpy(), faiss.METRIC_L1))
            else:
                values = torch.cdist(queries, data, p=1)
        elif self.distance == "l2":
            q_norms = (queries * queries).sum(dim=1, keepdim=True)
            values = (q_norms + self.norms[first:stop][None, :] - 2.0 * torch.matmul(queries, data.T)).clamp_min_(0.0)
        else:  # dot and cosine: rank by the negated product
            return _float_ordinal(torch.matmul(queries, data.T).neg_())
        # l1 and l2 are >= 0: the float32 bit pattern is already the order; clearing the sign bit
        # maps -0.0 to +0.0 (and ranks a NaN after +inf), in one pass.
        return values.contiguous().view(torch.int32).bitwise_and_(0x7FFFFFFF)


def _normalise(data: Any) -> Any:
    import torch

    norms = torch.linalg.vector_norm(data, dim=1, keepdim=True)
    return data / torch.where(norms > 0, norms, torch.ones_like(norms))
