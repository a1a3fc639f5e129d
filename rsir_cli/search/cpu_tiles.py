"""The ``cpu-tiles`` strategy of the exact engine: library tiles merged into a running top-k.

- Hamming: faiss-cpu's ``IndexBinaryFlat`` (an exhaustive scan in row order that keeps the lower
  row among equal distances; nothing to compile).
- Floats: a block of queries against tiles of database rows (BLAS matrix products for l2, cosine
  and dot; faiss's float32 L1), each tile merged into the block's running top-k. The first tiles
  merge whole (while a query holds fewer than k rows); later ones only their entries strictly
  below a query's current k-th distance: tiles come in increasing row order, so a later row that
  ties the k-th distance has the higher row and loses. Entries are int64 keys ``(order-preserving
  integer image of the float32 distance) << 32 | row``, so one integer comparison is the
  (distance, row) comparison.

See :mod:`rsir_cli.search.exact` for the ranking rule and the dispatcher.
"""

from __future__ import annotations

import numpy as np

from rsir_cli.progress import ProgressTask

MAX_KEY = np.iinfo(np.int64).max
ROW_MASK = 0xFFFFFFFF
#: queries per block and database rows per tile (a 1024 x 8192 float32 tile is 32 MB)
QUERY_BLOCK = 1024
TILE_ROWS = {"hamming": 8192, "l1": 1024, "l2": 8192, "cosine": 8192, "dot": 8192}
# faiss binary search: queries per call (the progress bar advances per call).
_HAMMING_BLOCK = 8192
# Fewer queries than this run on one thread (see faiss_hamming).
_FEW_QUERIES = 64
# A float tile holds about this many distances (and at least TILE_ROWS rows): few queries scan
# long tiles (less overhead per tile).
_TILE_ELEMENTS = 1 << 23


def faiss_hamming(
    database: np.ndarray, queries: np.ndarray, k: int, block_size: int | None, task: ProgressTask
) -> tuple[np.ndarray, np.ndarray]:
    """faiss-cpu's exhaustive binary search (rows in order, the lower row kept among equal distances)."""
    import faiss

    index = faiss.IndexBinaryFlat(database.shape[1] * 8)
    index.add(database)
    n = queries.shape[0]
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)
    step = block_size or _HAMMING_BLOCK
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
    values = ordinal_to_float(ordinal).astype(np.float32)
    return np.where(keys[:, -1] == MAX_KEY, np.float32(np.inf), values)


def float_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    distance: str,
    block_size: int | None,
    task: ProgressTask,
    norms: np.ndarray | None = None,
    tile_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blocked exact top-k on the CPU: BLAS (or faiss L1) tiles, then a merge of the few entries that
    beat each query's current k-th distance (compared as float32, strictly: a later row that ties
    the k-th distance has the higher row and loses). Few queries scan long tiles (less overhead)."""
    n = database.shape[0]
    step = block_size or QUERY_BLOCK
    tile = tile_rows or max(TILE_ROWS[distance], _TILE_ELEMENTS // max(1, min(step, queries.shape[0])))
    # ``database`` arrives prepared: unit rows for cosine; ``norms`` its squared norms for l2.
    if distance == "l2" and norms is None:
        norms = np.einsum("ij,ij->i", database, database)
    out_keys = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], step):
        block = queries[start : start + step]
        if distance == "cosine":
            block = normalise_rows(block)
        if distance == "l2":
            block_norms = np.einsum("ij,ij->i", block, block)[:, None]
            block = block * np.float32(-2.0)  # exact: (-2q).x == -2 (q.x) in floating point
        best = np.full((block.shape[0], k), MAX_KEY, dtype=np.int64)
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
    values = ordinal_to_float(ordinal)
    if distance == "l2":
        values = np.sqrt(values)
    elif distance == "cosine":
        values = 1.0 + values
    return out_keys & ROW_MASK, values


def _merge_tile(best: np.ndarray, values: np.ndarray, first: int) -> np.ndarray:
    """Merge a (B, T) float32 tile of rows ``first ...`` into the running (B, k) keys."""
    n_rows, k = best.shape
    width = values.shape[1]
    if (best[:, -1] == MAX_KEY).any():  # some row not yet full: merge the whole tile
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


def normalise_rows(data: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    norms = np.sqrt(np.einsum("ij,ij->i", data, data))[:, None]
    return (data / np.where(norms > 0, norms, np.float32(1.0))).astype(np.float32)


def ordinal_to_float(ordinal: np.ndarray) -> np.ndarray:
    """Inverse of the order-preserving map (int64 ordinals of float32 values) -> float64 values."""
    ordinal = ordinal.astype(np.int32)
    bits = np.where(ordinal < 0, ordinal ^ 0x7FFFFFFF, ordinal).astype(np.int32)
    return bits.view(np.float32).astype(np.float64)
