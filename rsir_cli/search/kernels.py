"""Fused CPU kernels (numba) for exact top-k search with the engine's (distance, row) rule.

Why numba: on a few cores, exact search over a whole archive is bound by arithmetic, and the
library kernels at hand leave a lot on the table. faiss-cpu's ``IndexBinaryFlat`` has specialised
popcount loops only for some code sizes (768-bit codes take its generic loop) and its L1 is a
float loop without a quantised form. Here each query's scan computes a distance and keeps its
top-k in the same pass (a counting selection for Hamming; a bounded candidate set for L1), compiled
for the host CPU by numba's LLVM, with the x86 ``psadbw`` instruction for byte-wise L1.

- :func:`hamming_topk`: ``popcount(q ^ x)``; codes of up to 32 bits as one uint32 word per row (a
  loop LLVM vectorises), 32-992 bytes as 32-byte vectors (LLVM's vector popcount, eight queries
  per load of a database row; for three or more chunks, a row is skipped when no query's partial
  distance over all but the last chunk is below its limit, adaptively per tile), other sizes as
  uint64 words. The running selection keeps a histogram of the admitted distances and admits a
  row only if its distance is *strictly* below the current k-th one: rows arrive in increasing
  order, so a later row that ties the k-th distance loses (the lower row wins), which is the
  engine's tie rule.
- :func:`l1_topk`: float32 vectors, exact float L1, found through a uint8 quantisation
  ``x ~ lo + s * c`` (one step ``s`` for all dimensions, per-dimension offsets ``lo``). For the
  quantised vectors, L1 is ``s * SAD(c_q, c_x)``, computed 32 bytes per instruction; the triangle
  inequality bounds the true distance by ``s * SAD -/+ (e_q + e_x)``, where ``e`` is a vector's own
  L1 quantisation error (computed exactly). Every row whose lower bound does not exceed the k-th
  smallest upper bound is a candidate; the candidates' exact distances (:func:`_exact_l1`: float64
  sums over 8 interleaved partial sums, rounded to float32 and ranked as float32, like the rest of
  the engine) give the top-k. No row of the true top-k can be pruned, so the result is exact; a
  loose quantisation only makes the candidate set (and the run) larger. A few queries skip the
  quantisation and compute every row's distance, the database split among the threads.

Queries are processed in blocks of up to 128 that share each L2-sized tile of the database (so it
streams from memory once per block), one block span per Python thread (the kernels release the
GIL). The kernels compile on first use (seconds) and are cached on disk by numba.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Bytes per SIMD chunk (one AVX2 register); vector-layout codes are zero-padded to a multiple.
CHUNK = 32
# Relative slack on the L1 bounds: float64 rounding of the sums and the float32 ranking are far
# below it (float32 rounds by at most 2**-24 relative).
_REL_SLACK = 1e-6


def _host_has_avx2() -> bool:
    from llvmlite import binding

    if config.CPU_NAME not in (None, "host"):
        return False  # compiling for a named or generic CPU: no host-specific intrinsics
    try:
        return bool(binding.get_host_cpu_features().get("avx2"))
    except Exception:  # pragma: no cover - feature query unsupported on this platform
        return False


_AVX2 = _host_has_avx2()


@intrinsic
def _popcount(typingctx, value):  # type: ignore[no-untyped-def]
    """Set bits of an unsigned integer, as an int64 (numba would widen int64 + uint64 to float64)."""
    if not isinstance(value, types.Integer) or value.signed:
        return None
    sig = types.int64(value)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        count = builder.ctpop(args[0])
        return builder.zext(count, ir.IntType(64)) if value.bitwidth < 64 else count

    return sig, codegen


@intrinsic
def _float32_bits(typingctx, value):  # type: ignore[no-untyped-def]
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _bits_float32(typingctx, value):  # type: ignore[no-untyped-def]
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def _pair_intrinsic(kind: str, use_avx2: bool, lanes: int):  # type: ignore[no-untyped-def]
    """``f(a, ia, b, ib, nbytes, stride)``: for j < lanes, the distance between bytes
    a[ia + j * stride + t] and b[ib + t], t < nbytes (uint8 arrays, nbytes a multiple of 32): one database row against
    ``lanes`` consecutive query rows, the row's bytes loaded once, as an LLVM loop over 32-byte
    vectors. ``kind`` ``sad``: sum of absolute byte differences (``psadbw`` on x86 with AVX2);
    ``hamming``: set bits of the XOR (bytes of ``ctpop``, summed at the end; at most 31 chunks).
    Returns an int64 (one lane) or a tuple of int64."""

    @intrinsic
    def sad(typingctx, a, ia, b, ib, nbytes, stride):  # type: ignore[no-untyped-def]
        result = types.int64 if lanes == 1 else types.UniTuple(types.int64, lanes)
        sig = result(a, ia, b, ib, nbytes, stride)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            i1, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
            vec8 = ir.VectorType(i8, CHUNK)
            queries = context.make_array(signature.args[0])(context, builder, args[0])
            rows = context.make_array(signature.args[2])(context, builder, args[2])
            pa = builder.gep(queries.data, [args[1]])
            pb = builder.gep(rows.data, [args[3]])
            chunks = builder.sdiv(args[4], ir.Constant(i64, CHUNK))
            width = args[5]
            module = builder.module
            if kind == "hamming":
                vec16 = ir.VectorType(ir.IntType(16), CHUNK)
                ctpop = cgutils.get_or_insert_function(module, ir.FunctionType(vec8, [vec8]), "llvm.ctpop.v32i8")
                reduce = cgutils.get_or_insert_function(
                    module, ir.FunctionType(ir.IntType(16), [vec16]), "llvm.vector.reduce.add.v32i16"
                )
                zero = ir.Constant(vec8, [0] * CHUNK)
            elif use_avx2:
                vec64 = ir.VectorType(i64, 4)
                psad = cgutils.get_or_insert_function(
                    module, ir.FunctionType(vec64, [vec8, vec8]), "llvm.x86.avx2.psad.bw"
                )
                reduce = cgutils.get_or_insert_function(
                    module, ir.FunctionType(i64, [vec64]), "llvm.vector.reduce.add.v4i64"
                )
                zero = ir.Constant(vec64, [0, 0, 0, 0])
            else:
                vec32 = ir.VectorType(i32, CHUNK)
                absolute = cgutils.get_or_insert_function(
                    module, ir.FunctionType(vec32, [vec32, i1]), "llvm.abs.v32i32"
                )
                reduce = cgutils.get_or_insert_function(
                    module, ir.FunctionType(i32, [vec32]), "llvm.vector.reduce.add.v32i32"
                )
                zero = ir.Constant(i64, 0)
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(lanes)]
            with cgutils.for_range(builder, chunks) as loop:
                offset = builder.mul(loop.index, ir.Constant(i64, CHUNK))
                vb = builder.load(builder.bitcast(builder.gep(pb, [offset]), vec8.as_pointer()), align=1)
                for lane, acc in enumerate(accs):
                    at = builder.add(offset, builder.mul(width, ir.Constant(i64, lane)))
                    va = builder.load(builder.bitcast(builder.gep(pa, [at]), vec8.as_pointer()), align=1)
                    if kind == "hamming":
                        part = builder.call(ctpop, [builder.xor(va, vb)])
                    elif use_avx2:
                        part = builder.call(psad, [va, vb])
                    else:
                        diff = builder.sub(builder.zext(va, vec32), builder.zext(vb, vec32))
                        part = builder.zext(builder.call(reduce, [builder.call(absolute, [diff, i1(0)])]), i64)
                    builder.store(builder.add(builder.load(acc), part), acc)
            values = [builder.load(acc) for acc in accs]
            if kind == "hamming":
                values = [builder.zext(builder.call(reduce, [builder.zext(v, vec16)]), i64) for v in values]
            elif use_avx2:
                values = [builder.call(reduce, [value]) for value in values]
            if lanes == 1:
                return values[0]
            return context.make_tuple(builder, signature.return_type, values)

        return sig, codegen

    return sad


_ham = _pair_intrinsic("hamming", _AVX2, 1)
_ham8 = _pair_intrinsic("hamming", _AVX2, 8)


# ------------------------------------------------------------------------------------- hamming
# Queries per block (one thread's unit of work) and bytes of database rows per tile: a tile stays
# in a core's L2 cache while the block's queries scan it, so the database streams from memory once
# per block instead of once per query.
_QUERY_BLOCK = 128
_TILE_BYTES = 1 << 17


@njit(nogil=True, boundscheck=False, cache=True)
def _admit_hamming(row, d, k, hist, buf_rows, buf_dist, limit, below, used):  # type: ignore[no-untyped-def]
    """Admit a row whose distance ``d`` is below ``limit``; returns (limit, below, used).

    ``hist`` counts the admitted distances, ``below`` the admitted rows with distance < limit, and
    once k rows are admitted ``limit`` is the k-th smallest admitted distance: a later row at that
    distance loses to the k earlier ones, so only rows strictly below it are admitted.
    """
    hist[d] += 1
    below += 1
    if used == buf_rows.shape[0]:
        used = _compact(buf_rows, buf_dist, used, limit, k - below + 1)
    buf_rows[used] = row
    buf_dist[used] = d
    used += 1
    if below >= k:
        value = limit - 1
        while below - hist[value] >= k:
            below -= hist[value]
            value -= 1
        below -= hist[value]
        limit = value
    return limit, below, used


@njit(nogil=True, boundscheck=False, cache=True)
def _scan_one_word(database, query, first, stop, k, dist, hist, buf_rows, buf_dist, limit, below, used):  # type: ignore[no-untyped-def]
    """Codes of one word: distances of a tile in a loop the compiler vectorises, then chunks of 64
    rows checked at once for any row below the limit (rarely true once the table is full)."""
    q0 = query[0]
    count = stop - first
    codes = database.reshape(-1)[first:stop]  # one word per row: contiguous
    for t in range(count):
        dist[t] = _popcount(codes[t] ^ q0)
    for c0 in range(0, count, 64):
        c1 = min(count, c0 + 64)
        bound = np.int32(limit)
        hits = np.int32(0)
        for t in range(c0, c1):
            hits += dist[t] < bound
        if hits == 0:
            continue
        for t in range(c0, c1):
            if dist[t] < limit:
                limit, below, used = _admit_hamming(first + t, dist[t], k, hist, buf_rows, buf_dist, limit, below, used)
    return limit, below, used


@njit(nogil=True, boundscheck=False, cache=True)
def _scan_words(database, query, first, stop, k, hist, buf_rows, buf_dist, limit, below, used):  # type: ignore[no-untyped-def]
    """Longer codes, four words at a time; a row is abandoned as soon as its partial distance
    reaches the limit (a partial distance never exceeds the full one, so this is exact)."""
    words = database.shape[1]
    full = words - words % 4
    for row in range(first, stop):
        dist = 0
        for w in range(0, full, 4):
            dist += (
                _popcount(database[row, w] ^ query[w])
                + _popcount(database[row, w + 1] ^ query[w + 1])
                + _popcount(database[row, w + 2] ^ query[w + 2])
                + _popcount(database[row, w + 3] ^ query[w + 3])
            )
            if dist >= limit:
                break
        if dist >= limit:
            continue
        for w in range(full, words):
            dist += _popcount(database[row, w] ^ query[w])
        if dist < limit:
            limit, below, used = _admit_hamming(row, dist, k, hist, buf_rows, buf_dist, limit, below, used)
    return limit, below, used


@njit(nogil=True, boundscheck=False, cache=True)
def _compact(buf_rows, buf_dist, used, limit, at_limit):  # type: ignore[no-untyped-def]
    """Keep the buffered rows with distance < limit and the first ``at_limit`` at ``limit``."""
    kept = 0
    for slot in range(used):
        dist = buf_dist[slot]
        if dist < limit or (dist == limit and at_limit > 0):
            if dist == limit:
                at_limit -= 1
            buf_rows[kept] = buf_rows[slot]
            buf_dist[kept] = dist
            kept += 1
    return kept


@njit(nogil=True, boundscheck=False, cache=True)
def _hamming_state(m, bits, k):  # type: ignore[no-untyped-def]
    """Selection state of a block of m queries: distance histograms, limits (bits + 1: admit all),
    rows admitted below the limit, buffer fill, and the buffered rows and distances."""
    cap = 2 * k + 64
    return (
        np.zeros((m, bits + 1), dtype=np.int64),
        np.full(m, bits + 1, dtype=np.int64),
        np.zeros(m, dtype=np.int64),
        np.zeros(m, dtype=np.int64),
        np.empty((m, cap), dtype=np.int64),
        np.empty((m, cap), dtype=np.int64),
    )


@njit(nogil=True, boundscheck=False, cache=True)
def _hamming_blocks(database, queries, k, tile, query_block, out_rows, out_dist):  # type: ignore[no-untyped-def]
    n, words = database.shape
    bits = 8 * database.itemsize * words
    n_queries = queries.shape[0]
    for block in range((n_queries + query_block - 1) // query_block):
        q0 = block * query_block
        m = min(n_queries, q0 + query_block) - q0
        hist, limit, below, used, buf_rows, buf_dist = _hamming_state(m, bits, k)
        dist = np.empty(tile, dtype=np.int32)
        for first in range(0, n, tile):
            stop = min(n, first + tile)
            for i in range(m):
                if words == 1:
                    limit[i], below[i], used[i] = _scan_one_word(
                        database,
                        queries[q0 + i],
                        first,
                        stop,
                        k,
                        dist,
                        hist[i],
                        buf_rows[i],
                        buf_dist[i],
                        limit[i],
                        below[i],
                        used[i],
                    )
                else:
                    limit[i], below[i], used[i] = _scan_words(
                        database,
                        queries[q0 + i],
                        first,
                        stop,
                        k,
                        hist[i],
                        buf_rows[i],
                        buf_dist[i],
                        limit[i],
                        below[i],
                        used[i],
                    )
        _hamming_finish(q0, m, k, limit, below, used, buf_rows, buf_dist, out_rows, out_dist)


@njit(nogil=True, boundscheck=False, cache=True, inline="always")
def _admit_at(i, row, d, k, hist, buf_rows, buf_dist, limit, below, used):  # type: ignore[no-untyped-def]
    """:func:`_admit_hamming` for query ``i`` of a block (state in per-block arrays)."""
    limit[i], below[i], used[i] = _admit_hamming(
        row, d, k, hist[i], buf_rows[i], buf_dist[i], limit[i], below[i], used[i]
    )


@njit(nogil=True, boundscheck=False, cache=True)
def _hamming_vector_blocks(codes, qcodes, k, tile, query_block, out_rows, out_dist):  # type: ignore[no-untyped-def]
    """Codes of 32-byte chunks: eight queries per pass over a tile, each row's bytes loaded once,
    popcounts as vectors (:func:`_pair_intrinsic`)."""
    n, width = codes.shape
    bits = 8 * width
    flat = codes.reshape(-1)
    qflat = qcodes.reshape(-1)
    n_queries = qcodes.shape[0]
    for block in range((n_queries + query_block - 1) // query_block):
        q0 = block * query_block
        m = min(n_queries, q0 + query_block) - q0
        hist, limit, below, used, buf_rows, buf_dist = _hamming_state(m, bits, k)
        groups = m - m % 8
        # Codes of three or more chunks: all but the last chunk first; the last only for rows where
        # some query's partial distance is still below its limit.
        # Adaptive: a tile splits only while the last split tile needed fewer than half its tails
        # (structured data, once the limits have settled), re-checked every 8th tile.
        head = width - CHUNK if width >= 3 * CHUNK else width
        tail_rate = 0.0
        for first in range(0, n, tile):
            stop = min(n, first + tile)
            split = head < width and (tail_rate < 0.5 or (first // tile) % 8 == 0)
            part = head if split else width
            tails = 0
            for g in range(0, groups, 8):
                base = (q0 + g) * width
                t0, t1, t2, t3, t4, t5, t6, t7 = (
                    limit[g],
                    limit[g + 1],
                    limit[g + 2],
                    limit[g + 3],
                    limit[g + 4],
                    limit[g + 5],
                    limit[g + 6],
                    limit[g + 7],
                )
                # Lanes unrolled by hand: a loop over the tuple measured ~1.5x slower.
                for row in range(first, stop):
                    at = row * width
                    d0, d1, d2, d3, d4, d5, d6, d7 = _ham8(qflat, base, flat, at, part, width)
                    if (
                        d0 >= t0
                        and d1 >= t1
                        and d2 >= t2
                        and d3 >= t3
                        and d4 >= t4
                        and d5 >= t5
                        and d6 >= t6
                        and d7 >= t7
                    ):
                        continue  # a partial distance never exceeds the full one: no lane admits
                    if split:
                        tails += 1
                        e0, e1, e2, e3, e4, e5, e6, e7 = _ham8(qflat, base + part, flat, at + part, width - part, width)
                        d0, d1, d2, d3 = d0 + e0, d1 + e1, d2 + e2, d3 + e3
                        d4, d5, d6, d7 = d4 + e4, d5 + e5, d6 + e6, d7 + e7
                    if d0 < t0:
                        _admit_at(g, row, d0, k, hist, buf_rows, buf_dist, limit, below, used)
                        t0 = limit[g]
                    if d1 < t1:
                        _admit_at(g + 1, row, d1, k, hist, buf_rows, buf_dist, limit, below, used)
                        t1 = limit[g + 1]
                    if d2 < t2:
                        _admit_at(g + 2, row, d2, k, hist, buf_rows, buf_dist, limit, below, used)
                        t2 = limit[g + 2]
                    if d3 < t3:
                        _admit_at(g + 3, row, d3, k, hist, buf_rows, buf_dist, limit, below, used)
                        t3 = limit[g + 3]
                    if d4 < t4:
                        _admit_at(g + 4, row, d4, k, hist, buf_rows, buf_dist, limit, below, used)
                        t4 = limit[g + 4]
                    if d5 < t5:
                        _admit_at(g + 5, row, d5, k, hist, buf_rows, buf_dist, limit, below, used)
                        t5 = limit[g + 5]
                    if d6 < t6:
                        _admit_at(g + 6, row, d6, k, hist, buf_rows, buf_dist, limit, below, used)
                        t6 = limit[g + 6]
                    if d7 < t7:
                        _admit_at(g + 7, row, d7, k, hist, buf_rows, buf_dist, limit, below, used)
                        t7 = limit[g + 7]
            if split and groups > 0:
                tail_rate = tails / ((stop - first) * (groups // 8))
            for i in range(groups, m):
                base = (q0 + i) * width
                t0 = limit[i]
                for row in range(first, stop):
                    d0 = _ham(qflat, base, flat, row * width, width, width)
                    if d0 < t0:
                        _admit_at(i, row, d0, k, hist, buf_rows, buf_dist, limit, below, used)
                        t0 = limit[i]
        _hamming_finish(q0, m, k, limit, below, used, buf_rows, buf_dist, out_rows, out_dist)


@njit(nogil=True, boundscheck=False, cache=True)
def _hamming_finish(q0, m, k, limit, below, used, buf_rows, buf_dist, out_rows, out_dist):  # type: ignore[no-untyped-def]
    for i in range(m):
        # the k-th distance is limit[i]: rows below it and the lowest rows at it, by (distance, row)
        count = _compact(buf_rows[i], buf_dist[i], used[i], limit[i], k - below[i])
        order = np.argsort(buf_dist[i, :count], kind="mergesort")  # stable: rows stay ascending
        for slot in range(min(k, count)):
            out_rows[q0 + i, slot] = buf_rows[i, order[slot]]
            out_dist[q0 + i, slot] = buf_dist[i, order[slot]]


def will_compile(distance: str) -> bool:
    """Whether the first search of ``distance`` in this process will likely compile the kernels
    (seconds) rather than load them from numba's disk cache: a heuristic for a progress message."""
    dispatchers = {"hamming": (_hamming_blocks, _hamming_vector_blocks), "l1": (_l1_blocks, _l1_keys)}[distance]
    try:
        return not any(
            d.signatures or os.path.exists(d._cache._cache_file._index_path)  # numba internals
            for d in dispatchers
        )
    except AttributeError:  # pragma: no cover - another numba layout
        return False


def cpu_threads() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _in_threads(
    run: Callable[[int, int, int], None], n_queries: int, advance: Callable[[int], None] | None, threads: int | None
) -> None:
    """Run ``run(start, stop, query_block)`` over spans of the queries on a pool of threads (the
    kernels release the GIL), calling ``advance`` with each finished span's size, in order."""
    threads = max(1, threads or cpu_threads())
    span = max(4, min(4 * _QUERY_BLOCK, -(-n_queries // threads)))
    block = min(_QUERY_BLOCK, span)
    spans = [(start, min(n_queries, start + span)) for start in range(0, n_queries, span)]
    if threads == 1 or len(spans) == 1:
        for start, stop in spans:
            run(start, stop, block)
            if advance is not None:
                advance(stop - start)
        return
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, start, stop, block) for start, stop in spans]
        try:
            for (start, stop), future in zip(spans, futures, strict=True):
                future.result()
                if advance is not None:
                    advance(stop - start)
        finally:
            for future in futures:
                future.cancel()


# Codes of at least this many bytes (and at most 31 chunks: byte counters) use the vector kernel.
_VECTOR_MIN_BYTES = 32
_VECTOR_MAX_BYTES = 31 * CHUNK


def prepare_codes(codes: np.ndarray) -> np.ndarray:
    """Packed uint8 codes (N, B) in the layout :func:`hamming_topk` scans; zero padding adds no
    distance. Codes of up to 32 bits: one uint32 word per row; up to 31 bytes: uint64 words;
    longer: uint8 rows padded to whole 32-byte chunks (the vector kernel); beyond 992 bytes:
    uint64 words again."""
    n, width = codes.shape
    if _VECTOR_MIN_BYTES <= width <= _VECTOR_MAX_BYTES:
        size, dtype = CHUNK, np.uint8
    else:
        size, dtype = (4, np.uint32) if width <= 4 else (8, np.uint64)
    padded = np.zeros((n, -(-width // size) * size), dtype=np.uint8)
    padded[:, :width] = codes
    return padded.view(dtype)


def hamming_topk(
    database: np.ndarray,
    query_codes: np.ndarray,
    k: int,
    advance: Callable[[int], None] | None = None,
    threads: int | None = None,
    tile_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k Hamming search of packed uint8 queries against :func:`prepare_codes` rows.

    Returns rows (Q, k) int64 and distances (Q, k) int64, ordered by (distance, row); ``k`` must not
    exceed the number of database rows. ``advance(n)`` reports finished queries; ``tile_rows``
    sets the database rows a block of queries scans at a time (default: an L2 cache's worth).
    """
    n_queries, width = query_codes.shape
    queries = np.zeros((n_queries, database.shape[1] * database.itemsize), dtype=np.uint8)
    queries[:, :width] = query_codes
    queries = queries.view(database.dtype)
    out_rows = np.empty((n_queries, k), dtype=np.int64)
    out_dist = np.empty((n_queries, k), dtype=np.int64)
    tile = tile_rows or max(256, _TILE_BYTES // (database.itemsize * database.shape[1]))
    blocks = _hamming_vector_blocks if database.dtype == np.uint8 else _hamming_blocks

    def run(start: int, stop: int, block: int) -> None:
        blocks(database, queries[start:stop], k, tile, block, out_rows[start:stop], out_dist[start:stop])

    _in_threads(run, n_queries, advance, threads)
    return out_rows, out_dist


# ------------------------------------------------------------------------------------- l1
class Quantised(NamedTuple):
    """A float32 matrix as uint8 codes ``c`` with ``x ~ lo + step * c`` and each row's L1 error."""

    codes: np.ndarray
    errors: np.ndarray


class L1Quantiser:
    """One step for all dimensions and per-dimension offsets, fitted on the database.

    The step is chosen among a few candidates to minimise the mean per-row L1 error on a sample
    of the database (a wide dimension then clips, which the per-row error accounts for).
    """

    def __init__(self, database: np.ndarray, seed: int = 0) -> None:
        self.dim = database.shape[1]
        self.lo = database.min(axis=0).astype(np.float64)
        widest = float((database.max(axis=0) - self.lo).max())
        self.step = 1.0
        if not widest > 0:  # a constant database: any step is exact
            return
        rng = np.random.default_rng(seed)
        sample = database[rng.choice(len(database), size=min(len(database), 2048), replace=False)]
        best = None
        for fraction in (1.0, 0.75, 0.5, 0.35, 0.25, 0.18, 0.12):
            self.step = widest * fraction / 255.0
            error = float(self.quantise(sample).errors.mean())
            if best is None or error < best[0]:
                best = (error, self.step)
        self.step = best[1]

    @property
    def width(self) -> int:
        return -(-self.dim // CHUNK) * CHUNK

    def quantise(self, data: np.ndarray, block: int = 8192) -> Quantised:
        codes = np.zeros((data.shape[0], self.width), dtype=np.uint8)
        errors = np.empty(data.shape[0], dtype=np.float64)
        for start in range(0, data.shape[0], block):
            part = data[start : start + block].astype(np.float64)
            levels = np.clip(np.rint((part - self.lo) / self.step), 0, 255)
            codes[start : start + len(part), : self.dim] = levels.astype(np.uint8)
            errors[start : start + len(part)] = np.abs(part - (self.lo + self.step * levels)).sum(axis=1)
        return Quantised(codes, errors)


_sad = _pair_intrinsic("sad", _AVX2, 1)
_sad4 = _pair_intrinsic("sad", _AVX2, 4)


@intrinsic
def _l1_lanes(typingctx, a, ia, b, ib, groups):  # type: ignore[no-untyped-def]
    """Eight float64 partial sums of |a[ia + t] - b[ib + t]| over t < 8 * groups (float32
    arrays): lane u sums the elements t = u (mod 8), in order. Plain IEEE vector arithmetic per
    lane (no reassociation), so every CPU computes the same bits."""
    sig = types.UniTuple(types.float64, 8)(a, ia, b, ib, groups)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        vf = ir.VectorType(ir.FloatType(), 8)
        vd = ir.VectorType(ir.DoubleType(), 8)
        first = context.make_array(signature.args[0])(context, builder, args[0])
        second = context.make_array(signature.args[2])(context, builder, args[2])
        pa = builder.gep(first.data, [args[1]])
        pb = builder.gep(second.data, [args[3]])
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vd, [vd]), "llvm.fabs.v8f64")
        acc = cgutils.alloca_once_value(builder, ir.Constant(vd, [0.0] * 8))
        with cgutils.for_range(builder, args[4]) as loop:
            offset = builder.mul(loop.index, ir.Constant(i64, 8))
            va = builder.load(builder.bitcast(builder.gep(pa, [offset]), vf.as_pointer()), align=4)
            vb = builder.load(builder.bitcast(builder.gep(pb, [offset]), vf.as_pointer()), align=4)
            diff = builder.fsub(builder.fpext(va, vd), builder.fpext(vb, vd))
            builder.store(builder.fadd(builder.load(acc), builder.call(fabs, [diff])), acc)
        total = builder.load(acc)
        lanes = [builder.extract_element(total, ir.Constant(ir.IntType(32), u)) for u in range(8)]
        return context.make_tuple(builder, signature.return_type, lanes)

    return sig, codegen


@njit(nogil=True, boundscheck=False, cache=True)
def _exact_l1(a, ia, b, ib, dim):  # type: ignore[no-untyped-def]
    """The engine's L1: sum |a - b| over ``dim`` float32 elements from offsets ``ia`` and ``ib``,
    in float64 over 8 interleaved partial sums (the tail after the last group of 8 into the
    first), combined as ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))."""
    p0, p1, p2, p3, p4, p5, p6, p7 = _l1_lanes(a, ia, b, ib, dim // 8)
    for t in range(dim - dim % 8, dim):
        p0 += abs(np.float64(a[ia + t]) - np.float64(b[ib + t]))
    return ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))


@njit(nogil=True, boundscheck=False, cache=True)
def _push_bound(heap, high):  # type: ignore[no-untyped-def]
    """Replace the largest of the k smallest upper bounds (a max-heap) by a smaller ``high``."""
    k = heap.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        if child + 1 < k and heap[child + 1] > heap[child]:
            child += 1
        if heap[child] <= high:
            break
        heap[pos] = heap[child]
        pos = child
    heap[pos] = high


@njit(nogil=True, boundscheck=False, cache=True)
def _l1_make_room(i, room, heap, cand_rows, cand_low, used):  # type: ignore[no-untyped-def]
    """Give query ``i`` of a block room for ``room`` more candidates: drop those the bound has since
    excluded and, if that is not enough, grow every query's buffer. Returns the buffers."""
    cap = cand_rows.shape[1]
    if cap - used[i] >= room:
        return cand_rows, cand_low
    threshold = heap[i, 0] * (1.0 + _REL_SLACK)
    kept = 0
    for slot in range(used[i]):
        if cand_low[i, slot] <= threshold:
            cand_rows[i, kept] = cand_rows[i, slot]
            cand_low[i, kept] = cand_low[i, slot]
            kept += 1
    used[i] = kept
    if cap - kept < room + cap // 2:  # still crowded: grow
        grown = max(2 * cap, kept + room + cap // 2)
        grown_rows = np.empty((cand_rows.shape[0], grown), dtype=np.int64)
        grown_low = np.empty((cand_rows.shape[0], grown), dtype=np.float64)
        grown_rows[:, :cap] = cand_rows
        grown_low[:, :cap] = cand_low
        return grown_rows, grown_low
    return cand_rows, cand_low


@njit(nogil=True, boundscheck=False, cache=True, inline="always")
def _l1_admit(i, row, low, high, heap, limit, cand_rows, cand_low, used):  # type: ignore[no-untyped-def]
    """Admit row ``row`` as a candidate of query ``i`` (bounds ``low`` and ``high``); the buffer
    has room (see :func:`_l1_make_room`)."""
    if high < heap[i, 0]:
        _push_bound(heap[i], high)
        limit[i] = heap[i, 0] * (1.0 + _REL_SLACK)
    cand_rows[i, used[i]] = row
    cand_low[i, used[i]] = low
    used[i] += 1


@njit(nogil=True, boundscheck=False, cache=True)
def _l1_blocks(
    codes, errors, database, qcodes, qerrors, queries, step, k, tile, query_block, out_rows, out_dist, counts
):  # type: ignore[no-untyped-def]
    n, width = codes.shape
    dim = database.shape[1]
    flat = codes.reshape(-1)
    qflat = qcodes.reshape(-1)
    database_flat = database.reshape(-1)
    queries_flat = queries.reshape(-1)
    n_queries = queries.shape[0]
    row_slack = errors * (1.0 + _REL_SLACK)
    for block in range((n_queries + query_block - 1) // query_block):
        q0 = block * query_block
        m = min(n_queries, q0 + query_block) - q0
        heap = np.full((m, k), np.inf)  # per query: max-heap of the k smallest upper bounds
        limit = np.full(m, np.inf)  # per query: the largest of them, with the slack
        cand_rows = np.empty((m, 16 * k + tile), dtype=np.int64)
        cand_low = np.empty((m, 16 * k + tile), dtype=np.float64)
        used = np.zeros(m, dtype=np.int64)
        slack = qerrors[q0 : q0 + m] * (1.0 + _REL_SLACK)
        groups = m - m % 4
        for first in range(0, n, tile):
            stop = min(n, first + tile)
            for i in range(m):  # room for a whole tile of candidates, outside the hot loop
                cand_rows, cand_low = _l1_make_room(i, stop - first, heap, cand_rows, cand_low, used)
            for g in range(0, groups, 4):  # four queries per pass over the tile's rows
                base = (q0 + g) * width
                e0, e1, e2, e3 = slack[g], slack[g + 1], slack[g + 2], slack[g + 3]
                t0, t1, t2, t3 = limit[g], limit[g + 1], limit[g + 2], limit[g + 3]
                for row in range(first, stop):
                    s0, s1, s2, s3 = _sad4(qflat, base, flat, row * width, width, width)
                    error = row_slack[row]
                    approx = step * s0
                    margin = e0 + error + approx * _REL_SLACK
                    if approx - margin <= t0:
                        _l1_admit(g, row, approx - margin, approx + margin, heap, limit, cand_rows, cand_low, used)
                        t0 = limit[g]
                    approx = step * s1
                    margin = e1 + error + approx * _REL_SLACK
                    if approx - margin <= t1:
                        _l1_admit(g + 1, row, approx - margin, approx + margin, heap, limit, cand_rows, cand_low, used)
                        t1 = limit[g + 1]
                    approx = step * s2
                    margin = e2 + error + approx * _REL_SLACK
                    if approx - margin <= t2:
                        _l1_admit(g + 2, row, approx - margin, approx + margin, heap, limit, cand_rows, cand_low, used)
                        t2 = limit[g + 2]
                    approx = step * s3
                    margin = e3 + error + approx * _REL_SLACK
                    if approx - margin <= t3:
                        _l1_admit(g + 3, row, approx - margin, approx + margin, heap, limit, cand_rows, cand_low, used)
                        t3 = limit[g + 3]
            for i in range(groups, m):
                base = (q0 + i) * width
                for row in range(first, stop):
                    approx = step * _sad(qflat, base, flat, row * width, width, width)
                    margin = slack[i] + row_slack[row] + approx * _REL_SLACK
                    if approx - margin <= limit[i]:
                        _l1_admit(i, row, approx - margin, approx + margin, heap, limit, cand_rows, cand_low, used)
        for i in range(m):
            threshold = heap[i, 0] * (1.0 + _REL_SLACK)
            keys = np.empty(used[i], dtype=np.int64)
            kept = 0
            for slot in range(used[i]):
                if cand_low[i, slot] <= threshold:
                    row = cand_rows[i, slot]
                    value = np.float32(_exact_l1(queries_flat, (q0 + i) * dim, database_flat, row * dim, dim))
                    # distances are >= 0: the float32 bit pattern orders them (+0.0 is all zeros)
                    keys[kept] = (np.int64(_float32_bits(value)) << 32) | row
                    kept += 1
            keys = np.sort(keys[:kept])
            for slot in range(min(k, kept)):
                out_rows[q0 + i, slot] = keys[slot] & 0xFFFFFFFF
                out_dist[q0 + i, slot] = np.float64(_bits_float32(np.int32(keys[slot] >> 32)))
            counts[q0 + i] = kept


@njit(nogil=True, boundscheck=False, cache=True)
def _l1_keys(database, query, first, stop, keys):  # type: ignore[no-untyped-def]
    """keys[r] = (float32 bits of the exact L1 distance) << 32 | r for first <= r < stop."""
    dim = database.shape[1]
    flat = database.reshape(-1)
    for row in range(first, stop):
        value = np.float32(_exact_l1(query, 0, flat, row * dim, dim))
        keys[row] = (np.int64(_float32_bits(value)) << 32) | row


def _l1_direct(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    out_rows: np.ndarray,
    out_dist: np.ndarray,
    advance: Callable[[int], None] | None,
    threads: int | None,
) -> None:
    """Every row's exact distance (no quantisation), the database split among the threads: the
    path for a few queries."""
    n = database.shape[0]
    threads = max(1, threads or cpu_threads())
    span = -(-n // threads)
    keys = np.empty(n, dtype=np.int64)
    with ThreadPoolExecutor(threads) as pool:
        for q in range(queries.shape[0]):
            query = np.ascontiguousarray(queries[q])
            spans = [(start, min(n, start + span)) for start in range(0, n, span)]
            for future in [pool.submit(_l1_keys, database, query, start, stop, keys) for start, stop in spans]:
                future.result()
            best = np.sort(np.partition(keys, k - 1)[:k]) if k < n else np.sort(keys)
            out_rows[q] = best & 0xFFFFFFFF
            out_dist[q] = (best >> 32).astype(np.int32).view(np.float32)
            if advance is not None:
                advance(1)


def l1_topk(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    quantised: tuple[L1Quantiser, Quantised] | None = None,
    advance: Callable[[int], None] | None = None,
    threads: int | None = None,
    tile_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k L1 of float32 ``queries`` against a float32 ``database``.

    With ``quantised`` (the database's :class:`L1Quantiser` and codes), rows are found through the
    quantised bounds; without, every row's distance is computed (best for a few queries). Both
    rank the same float32 distances. Returns rows (Q, k) int64, distances (Q, k) float64 (float32
    values) and each query's number of exactly evaluated rows; ``k`` must not exceed the number
    of database rows. ``advance(n)`` reports finished queries; ``tile_rows`` sets the database
    rows a block of quantised queries scans at a time (default: an L2 cache's worth; the direct
    path splits the rows among the threads instead).
    """
    n_queries = queries.shape[0]
    out_rows = np.empty((n_queries, k), dtype=np.int64)
    out_dist = np.empty((n_queries, k), dtype=np.float64)
    counts = np.full(n_queries, database.shape[0], dtype=np.int64)
    if quantised is None:
        _l1_direct(database, queries, k, out_rows, out_dist, advance, threads)
        return out_rows, out_dist, counts
    quantiser, codes = quantised
    query_codes = quantiser.quantise(queries)
    tile = tile_rows or max(64, _TILE_BYTES // quantiser.width)

    def run(start: int, stop: int, block: int) -> None:
        _l1_blocks(
            codes.codes,
            codes.errors,
            database,
            query_codes.codes[start:stop],
            query_codes.errors[start:stop],
            queries[start:stop],
            quantiser.step,
            k,
            tile,
            block,
            out_rows[start:stop],
            out_dist[start:stop],
            counts[start:stop],
        )

    _in_threads(run, n_queries, advance, threads)
    return out_rows, out_dist, counts
