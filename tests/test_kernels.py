"""The numba search kernels against brute force: every code layout, the quantised L1 bounds under
stress (a wide outlier dimension, constant and duplicate rows, crowded candidate buffers), the
thread split, the engine's routing, and the portable (non-AVX2) build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rsir_cli.search import exact, kernels
from tests.helpers import brute_force, reference_distances


def l1_float32_reference(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """The documented L1 value: float64 |q - x| summed in 8 interleaved partial sums (dimension t
    into sum t % 8, the tail after the last full group of 8 into sum 0), combined as
    ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)), rounded to float32."""
    diff = np.abs(queries.astype(np.float64)[:, None, :] - database.astype(np.float64)[None, :, :])
    dim = diff.shape[2]
    full = dim - dim % 8
    parts = np.zeros(diff.shape[:2] + (8,))
    for t in range(0, full, 8):  # sequential, in the kernel's order
        parts += diff[:, :, t : t + 8]
    for t in range(full, dim):
        parts[:, :, 0] += diff[:, :, t]
    p = parts
    total = ((p[..., 0] + p[..., 1]) + (p[..., 2] + p[..., 3])) + ((p[..., 4] + p[..., 5]) + (p[..., 6] + p[..., 7]))
    return total.astype(np.float32).astype(np.float64)


def tie_heavy_codes(n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    return ((rng.random((n, width)) < 0.3) * rng.choice([1, 3, 128, 255], (n, width))).astype(np.uint8)


@pytest.mark.parametrize("width", [1, 3, 4, 5, 12, 31, 32, 33, 64, 96, 200, 992, 1000])
def test_hamming_kernels_equal_brute_force_on_every_layout(width: int) -> None:
    rng = np.random.default_rng(width)
    database = tie_heavy_codes(700, width, rng)
    queries = np.concatenate([database[rng.integers(0, 700, 9)], tie_heavy_codes(6, width, rng)])  # 15: not 4k
    prepared = kernels.prepare_codes(database)
    expected_dtype = np.uint32 if width <= 4 else np.uint8 if 32 <= width <= 992 else np.uint64
    assert prepared.dtype == expected_dtype
    full = reference_distances("hamming", queries, database)
    ties = 0
    for k in (1, 20, 699, 700):
        rows, dist = kernels.hamming_topk(prepared, queries, k, tile_rows=150)  # many tiles per query block
        expected_rows, expected_dist = brute_force(full, k)
        np.testing.assert_array_equal(rows, expected_rows, err_msg=f"width {width} k {k}")
        np.testing.assert_array_equal(dist, expected_dist)
        if k < 700:
            ordered = np.sort(full, axis=1)
            ties += int((ordered[:, k - 1] == ordered[:, k]).sum())
    assert ties > 0  # the tie rule decided some boundaries


def test_hamming_thread_split_changes_nothing() -> None:
    rng = np.random.default_rng(5)
    database = kernels.prepare_codes(tie_heavy_codes(3000, 96, rng))
    queries = tie_heavy_codes(1030, 96, rng)
    seen: list[int] = []
    one = kernels.hamming_topk(database, queries, 25, threads=1)
    three = kernels.hamming_topk(database, queries, 25, advance=seen.append, threads=3)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])
    assert sum(seen) == 1030 and len(seen) > 1  # progress in spans


def _l1_cases(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    normal = rng.standard_normal((1500, 50)).astype(np.float32)
    outlier = normal.copy()
    outlier[:, 7] *= 1000.0  # one wide dimension: the quantisation clips and the bounds loosen
    integers = rng.integers(-2, 3, (1500, 7)).astype(np.float32)  # exact in float32, many ties
    duplicates = np.repeat(rng.standard_normal((30, 33)).astype(np.float32), 50, axis=0)
    constant = np.full((400, 40), 0.25, dtype=np.float32)
    return {
        "normal": (normal, rng.standard_normal((70, 50)).astype(np.float32)),
        "outlier": (outlier, outlier[rng.integers(0, 1500, 40)] + np.float32(0.01)),
        "integers": (integers, rng.integers(-2, 3, (60, 7)).astype(np.float32)),
        "duplicates": (duplicates, duplicates[rng.integers(0, 1500, 20)]),
        "constant": (constant, rng.standard_normal((9, 40)).astype(np.float32)),
    }


@pytest.mark.parametrize("case", ["normal", "outlier", "integers", "duplicates", "constant"])
def test_l1_kernels_equal_brute_force(case: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    database, queries = _l1_cases(rng)[case]
    quantiser = kernels.L1Quantiser(database)
    quantised = (quantiser, quantiser.quantise(database))
    full = l1_float32_reference(queries, database)
    for k in (1, 20, 150):
        k = min(k, len(database))
        expected_rows, expected_dist = brute_force(full, k)
        for mode in ("direct", "quantised"):
            rows, dist, counts = kernels.l1_topk(
                database, queries, k, quantised if mode == "quantised" else None, tile_rows=64
            )
            np.testing.assert_array_equal(rows, expected_rows, err_msg=f"{case} {mode} k={k}")
            np.testing.assert_array_equal(dist, expected_dist)
        # counts: the quantised run's exactly evaluated rows per query
        if case == "normal":  # the bounds prune: far fewer exact distances than rows
            assert counts.mean() < 0.5 * len(database)
        if case == "constant" and k == 1:  # every row ties: the candidate buffers had to grow
            assert counts.min() == len(database) > 16 * k + 64


def test_l1_bounds_hold_for_every_row() -> None:
    """|L1(q, x) - step * SAD(codes)| <= e_q + e_x, the inequality the pruning rests on."""
    rng = np.random.default_rng(2)
    database = (rng.standard_normal((300, 45)) * rng.choice([0.1, 1.0, 30.0], 45)).astype(np.float32)
    queries = rng.standard_normal((20, 45)).astype(np.float32) * 5
    quantiser = kernels.L1Quantiser(database)
    db, qs = quantiser.quantise(database), quantiser.quantise(queries)
    true = reference_distances("l1", queries, database)
    sad = np.abs(qs.codes.astype(np.int64)[:, None, :] - db.codes.astype(np.int64)[None, :, :]).sum(axis=2)
    gap = np.abs(true - quantiser.step * sad)
    assert (gap <= qs.errors[:, None] + db.errors[None, :] + 1e-9).all()
    assert (qs.errors > 0).all() and quantiser.step > 0


def test_engine_routes_batches_through_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    database = rng.integers(-2, 3, (900, 9)).astype(np.float32)
    queries = rng.integers(-2, 3, (80, 9)).astype(np.float32)
    monkeypatch.setattr(exact, "_L1_QUANTISE_MIN_QUERIES", 1)
    monkeypatch.setattr(exact, "_SMALL_L1_TERMS", 0)  # this small search would take numpy (cpu-small)
    calls: list[bool] = []
    real = kernels.l1_topk
    monkeypatch.setattr(kernels, "l1_topk", lambda *a, **kw: calls.append(a[3] is not None) or real(*a, **kw))
    result = exact.exact_search(database, queries, 30, "l1")
    assert calls == [True]
    expected_rows, expected_dist = brute_force(reference_distances("l1", queries, database), 30)
    np.testing.assert_array_equal(result.indices, expected_rows)
    np.testing.assert_array_equal(result.distances, expected_dist)
    # hamming: a batch runs the kernels, a few queries faiss (cpu-tiles); both give the same answer
    codes = tie_heavy_codes(900, 96, rng)
    index = exact.ExactIndex("hamming")
    index.add(codes)
    assert (index.strategy_for(codes[:70]), index.strategy_for(codes[:5])) == ("cpu-kernels", "cpu-tiles")
    batch = index.search(codes[:70], 15)
    faiss = exact.exact_search(codes, codes[:70], 15, "hamming", strategy="cpu-tiles")
    np.testing.assert_array_equal(faiss.indices, batch.indices)
    np.testing.assert_array_equal(faiss.indices, brute_force(reference_distances("hamming", codes[:70], codes), 15)[0])


def test_l1_with_nan_falls_back_to_float32_tiles() -> None:
    database = np.array([[0.0, 0.0], [np.nan, 1.0], [1.0, 1.0]], dtype=np.float32)
    result = exact.exact_search(database, np.zeros((1, 2), dtype=np.float32), 3, "l1")
    np.testing.assert_array_equal(result.indices, [[0, 2, 1]])  # NaN ranks last, as +inf
    assert np.isinf(result.distances[0, 2])


@pytest.mark.slow
def test_portable_build_without_avx2_equals_brute_force(tmp_path: os.PathLike) -> None:
    """Compiled for a generic x86-64 CPU (as on a machine without AVX2), the byte loops take the
    portable LLVM form instead of psadbw; results are the same."""
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from rsir_cli.search import kernels
        from tests.helpers import brute_force, reference_distances
        from tests.test_kernels import l1_float32_reference
        before = kernels.will_compile("l1"), kernels.will_compile("hamming")
        rng = np.random.default_rng(4)
        database = rng.standard_normal((800, 40)).astype(np.float32)
        queries = rng.standard_normal((30, 40)).astype(np.float32)
        quantiser = kernels.L1Quantiser(database)
        rows, dist, _ = kernels.l1_topk(database, queries, 12, (quantiser, quantiser.quantise(database)))
        expected = brute_force(l1_float32_reference(queries, database), 12)
        codes = rng.integers(0, 256, (800, 96), dtype=np.uint8)
        hrows, _ = kernels.hamming_topk(kernels.prepare_codes(codes), codes[:30], 12)
        hexpected = brute_force(reference_distances("hamming", codes[:30], codes), 12)
        print(json.dumps({"avx2": kernels._AVX2, "l1": bool((rows == expected[0]).all() and (dist == expected[1]).all()),
                          "hamming": bool((hrows == hexpected[0]).all()), "compiles": before,
                          "then": [kernels.will_compile("l1"), kernels.will_compile("hamming")]}))
        """
    )
    env = {**os.environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path)}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "avx2": False,
        "l1": True,
        "hamming": True,
        "compiles": [True, True],  # an empty cache: the progress bar says the kernels compile
        "then": [False, False],
    }


def test_without_numba_the_engine_falls_back_to_faiss(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Where numba cannot be imported, CPU search still answers exactly (faiss paths), with a warning."""
    import builtins

    real_import = builtins.__import__

    def no_kernels(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if name == "rsir_cli.search" and fromlist and "kernels" in fromlist:
            raise ImportError("No module named 'numba'")
        return real_import(name, globals, locals, fromlist, level)

    exact._kernels.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_kernels)
    monkeypatch.setattr(exact, "_L1_QUANTISE_MIN_QUERIES", 1)
    rng = np.random.default_rng(12)
    database = rng.integers(-2, 3, (800, 6)).astype(np.float32)
    queries = rng.integers(-2, 3, (90, 6)).astype(np.float32)
    with caplog.at_level("WARNING", logger="rsir_cli.search.exact"):
        result = exact.exact_search(database, queries, 25, "l1")
        codes = tie_heavy_codes(800, 12, rng)
        hamming = exact.exact_search(codes, codes[:90], 25, "hamming")
    expected = brute_force(reference_distances("l1", queries, database), 25)
    np.testing.assert_array_equal(result.indices, expected[0])
    np.testing.assert_array_equal(result.distances, expected[1])
    np.testing.assert_array_equal(
        hamming.indices, brute_force(reference_distances("hamming", codes[:90], codes), 25)[0]
    )
    assert sum("kernels unavailable" in r.message for r in caplog.records) == 1
    monkeypatch.undo()
    exact._kernels.cache_clear()  # later tests import the real kernels again


def test_the_small_numpy_l1_is_the_kernels_value_bit_for_bit() -> None:
    """cpu-small (numpy, no numba) and cpu-kernels rank and report the same float32 sums on data
    where the order of summation matters (normal floats, 771 dims: a tail after the groups of 8)."""
    rng = np.random.default_rng(11)
    database = rng.standard_normal((3000, 771)).astype(np.float32)
    database[1234] = database[17]  # an exact tie: the lower row first
    queries = rng.standard_normal((3, 771)).astype(np.float32)
    queries[0] = database[17] + 1e-3
    small, fused = exact.ExactIndex("l1", strategy="cpu-small"), exact.ExactIndex("l1", strategy="cpu-kernels")
    for index in (small, fused):
        index.add(database)
    a, b = small.search(queries, 50), fused.search(queries, 50)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.distances[:, :5], np.sort(l1_float32_reference(queries, database), axis=1)[:, :5])
    assert list(a.indices[0, :2]) == [17, 1234]
    auto = exact.ExactIndex("l1")
    auto.add(database)
    assert auto.strategy_for(queries[:1]) == "cpu-small"  # one tile against a few thousand rows
    assert auto.strategy_for(np.repeat(queries, 300, axis=0)) == "cpu-kernels"
