"""The exact engine against a brute-force numpy top-k with the same tie rule (distance, then lower row)."""

from __future__ import annotations

import numpy as np
import pytest

from rsir_cli.errors import UsageError
from rsir_cli.search import torch_tiles
from rsir_cli.search.base import DISTANCES
from rsir_cli.search.exact import KERNEL_DISTANCES, STRATEGIES, ExactIndex, exact_search
from tests.helpers import brute_force, reference_distances


def tie_heavy_data(distance: str, n: int, q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Data on which float32 is exact and equal distances are common.

    Codes: few distinct low-entropy bytes. Floats: small integers (L1/L2/dot exact in float32).
    Cosine: +-1 vectors of 16 dims (norm 4) times powers of two, so normalised entries are +-1/4,
    +-1/8, ... and every cosine is an exact multiple of 1/16.
    """
    if distance == "hamming":
        nbytes = int(rng.choice([1, 2, 4, 12]))
        make = lambda m: ((rng.random((m, nbytes)) < 0.5) * rng.choice([0, 1, 3, 255], (m, nbytes))).astype(np.uint8)  # noqa: E731
        return make(n), make(q)
    if distance == "cosine":
        make = lambda m: (  # noqa: E731
            rng.choice([-1.0, 1.0], (m, 16)) * rng.choice([1.0, 2.0, 4.0], (m, 1))
        ).astype(np.float32)
        return make(n), make(q)
    dim = int(rng.integers(1, 12))
    return rng.integers(-2, 3, (n, dim)).astype(np.float32), rng.integers(-2, 3, (q, dim)).astype(np.float32)


STRATEGY_CASES = [
    (distance, strategy)
    for distance in DISTANCES
    for strategy in STRATEGIES
    if (strategy != "cpu-kernels" or distance in KERNEL_DISTANCES) and (strategy != "cpu-small" or distance == "l1")
]


@pytest.mark.parametrize(("distance", "strategy"), STRATEGY_CASES)
def test_engine_equals_brute_force_with_many_ties(distance: str, strategy: str) -> None:
    """Every strategy, with small database tiles and query blocks, so that a search crosses many
    tiles (the first merged whole, later ones only below the k-th distance) or none (k >= n)."""
    rng = np.random.default_rng(sum(map(ord, distance + strategy)))
    boundary_ties = 0
    for trial in range(6):
        n = int(rng.integers(1, 2500))
        q = int(rng.integers(1, 300 if distance == "l1" else 150))  # l1: the kernels quantise from 256 queries
        k = int(rng.choice([1, 7, 20, 64, 150, 3000]))
        tile = int(rng.choice([37, 97, 301]))
        database, queries = tie_heavy_data(distance, n, q, rng)
        index = ExactIndex(distance, block_size=int(rng.choice([16, 1000])), strategy=strategy, tile_rows=tile)
        index.add(database[: n // 2])  # added in two parts: rows keep their order
        index.add(database[n // 2 :])
        assert len(index) == n
        result = index.search(queries, k)
        full = reference_distances(distance, queries, database)
        expected_i, expected_d = brute_force(full, k)
        np.testing.assert_array_equal(result.indices, expected_i, err_msg=f"{distance} trial {trial} n={n} k={k}")
        np.testing.assert_allclose(result.distances, expected_d, rtol=0, atol=1e-12)
        if k < n:  # rows tied at the k-th distance, some in and some out: only the tie rule decides
            ordered = np.sort(full, axis=1)
            boundary_ties += int((ordered[:, k - 1] == ordered[:, k]).sum())
    assert boundary_ties > 0


@pytest.mark.parametrize("distance", ["l1", "l2", "cosine", "dot"])
def test_cpu_tiles_merge_many_tiles_equals_brute_force_with_many_ties(distance: str) -> None:
    """The path of a full-size CPU float search (``evaluate --distance l2|cosine|dot``; l1 with NaN or
    infinity): a query block scans many database tiles and is full after the first one (k < tile
    rows), so every later tile merges only its entries below each query's current k-th distance.
    Tie-heavy data: the lower row must win every tie, across tile boundaries too."""
    rng = np.random.default_rng(sum(map(ord, distance)) + 1)
    boundary_ties = 0
    for trial in range(5):
        tile = int(rng.choice([37, 97, 301]))
        n = tile * int(rng.integers(3, 9)) + int(rng.integers(0, tile))  # several tiles, the last one short
        q = int(rng.integers(1, 150))
        k = int(rng.choice([1, 7, 20, tile - 1]))
        database, queries = tie_heavy_data(distance, n, q, rng)
        index = ExactIndex(distance, block_size=int(rng.choice([16, 1000])), strategy="cpu-tiles", tile_rows=tile)
        index.add(database)
        result = index.search(queries, k)
        full = reference_distances(distance, queries, database)
        expected_i, expected_d = brute_force(full, k)
        np.testing.assert_array_equal(result.indices, expected_i, err_msg=f"{distance} trial {trial} n={n} k={k}")
        np.testing.assert_allclose(result.distances, expected_d, rtol=0, atol=1e-12)
        ordered = np.sort(full, axis=1)
        boundary_ties += int((ordered[:, k - 1] == ordered[:, k]).sum())
    assert boundary_ties > 0  # rows tied at the k-th distance, some in and some out: only the tie rule decides


def test_torch_tiles_with_int64_hamming_keys_equal_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hamming tiles whose int32 keys ``distance * rows + row`` would overflow (on CUDA: a tile of
    about 2**31 / (bits + 1) rows or more) take the int64 keys of the float distances."""
    monkeypatch.setattr(torch_tiles._Prepared, "small_keys", lambda self, rows: False)  # no test has such a tile
    rng = np.random.default_rng(7)
    database, queries = tie_heavy_data("hamming", 1800, 90, rng)
    expected_i, expected_d = brute_force(reference_distances("hamming", queries, database), 25)
    index = ExactIndex("hamming", block_size=32, strategy="torch-tiles", tile_rows=250)
    index.add(database)
    found = index.search(queries, 25)
    np.testing.assert_array_equal(found.indices, expected_i)
    np.testing.assert_allclose(found.distances, expected_d, rtol=0, atol=1e-12)


def test_strategy_choice_and_refusals() -> None:
    codes = np.zeros((10, 4), dtype=np.uint8)
    hamming = ExactIndex("hamming")
    hamming.add(codes)
    assert hamming.strategy_for(codes[:1]) == "cpu-tiles"  # a few queries: faiss, nothing to compile
    assert hamming.strategy_for(np.zeros((64, 4), dtype=np.uint8)) == "cpu-kernels"
    floats = ExactIndex("l1")
    floats.add(np.array([[0.0, 1.0], [np.nan, 2.0]], dtype=np.float32))
    assert floats.strategy_for(np.zeros((1, 2), dtype=np.float32)) == "cpu-tiles"  # NaN: the kernels cannot rank it
    assert ExactIndex("l2").strategy_for(np.zeros((500, 2), dtype=np.float32)) == "cpu-tiles"
    assert ExactIndex("dot", strategy="torch-tiles").strategy_for(np.zeros((1, 2), dtype=np.float32)) == "torch-tiles"
    strict = ExactIndex("l1", strategy="cpu-kernels")
    strict.add(np.array([[np.inf, 0.0]], dtype=np.float32))
    with pytest.raises(UsageError, match="finite vectors only"):
        strict.search(np.zeros((1, 2), dtype=np.float32), 1)
    with pytest.raises(UsageError, match="compute hamming and l1, not l2"):
        ExactIndex("l2", strategy="cpu-kernels")
    with pytest.raises(UsageError, match="unknown search strategy 'gpu'"):
        ExactIndex("l2", strategy="gpu")
    with pytest.raises(UsageError, match="tile_rows must be at least 1"):
        ExactIndex("l2", tile_rows=0)
    with ExactIndex("l2") as index:  # a backend is a context manager; closing the engine releases nothing
        index.add(np.eye(2, dtype=np.float32))
        np.testing.assert_array_equal(index.search(np.eye(2, dtype=np.float32), 1).indices, [[0], [1]])
    index.close()  # twice is harmless
    np.testing.assert_array_equal(index.search(np.eye(2, dtype=np.float32)[:1], 1).indices, [[0]])


def test_random_float_data_ranks_by_the_float32_distances_it_reports() -> None:
    """On generic floats the order is exactly ascending in the reported distances, rows ascending in ties."""
    rng = np.random.default_rng(3)
    database = rng.standard_normal((3000, 24)).astype(np.float32)
    queries = rng.standard_normal((40, 24)).astype(np.float32)
    for distance in ("l1", "l2", "cosine", "dot"):
        result = exact_search(database, queries, 30, distance)
        d, i = result.distances, result.indices
        assert (np.diff(d, axis=1) >= 0).all()
        assert ((np.diff(d, axis=1) > 0) | (np.diff(i, axis=1) > 0)).all()
        # and the set equals the float64 brute force up to float32 rounding at the boundary
        reference = reference_distances(distance, queries, database)
        np.testing.assert_allclose(d, np.sort(reference, axis=1)[:, :30], rtol=1e-5, atol=1e-5)


def test_fewer_database_rows_than_k_pads_with_minus_one_and_inf() -> None:
    database = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    result = exact_search(database, np.array([[1.0, 0.0]], dtype=np.float32), 4, "l2")
    np.testing.assert_array_equal(result.indices, [[0, 1, -1, -1]])
    np.testing.assert_allclose(result.distances, [[0.0, np.sqrt(2.0), np.inf, np.inf]])
    empty = ExactIndex("hamming")
    empty.add(np.zeros((0, 4), dtype=np.uint8))
    got = empty.search(np.zeros((2, 4), dtype=np.uint8), 3)
    assert (got.indices == -1).all() and np.isinf(got.distances).all()


def test_hand_computed_hamming_example() -> None:
    # rows: 0b00000000, 0b11110000, 0b00000001, 0b10000000, 0b00000000 (a tie with row 0)
    database = np.array([[0], [240], [1], [128], [0]], dtype=np.uint8)
    result = exact_search(database, np.array([[1]], dtype=np.uint8), 5, "hamming")
    np.testing.assert_array_equal(result.indices, [[2, 0, 4, 3, 1]])
    np.testing.assert_array_equal(result.distances, [[0, 1, 1, 2, 5]])


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="unknown distance"):
        ExactIndex("manhattan")
    index = ExactIndex("hamming")
    with pytest.raises(UsageError, match="packed uint8"):
        index.add(np.zeros((3, 4), dtype=np.float32))
    index.add(np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(UsageError, match="5 bytes per code, the database has 4"):
        index.search(np.zeros((1, 5), dtype=np.uint8), 2)
    with pytest.raises(UsageError, match="k must be at least 1"):
        index.search(np.zeros((1, 4), dtype=np.uint8), 0)
    floats = ExactIndex("l1")
    floats.add(np.zeros((3, 8)))
    with pytest.raises(UsageError, match="7 dimensions, the database has 8"):
        floats.search(np.zeros((1, 7)), 1)


@pytest.mark.gpu
@pytest.mark.parametrize("distance", DISTANCES)
def test_cuda_equals_cpu(distance: str) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(11)
    for n, k, tile_rows in ((5000, 20, None), (20000, 100, 4096)):  # the second run tiles the database
        database, queries = tie_heavy_data(distance, n, 700, rng)
        cpu = exact_search(database, queries, k, distance, device="cpu")
        cuda_index = ExactIndex(distance, "cuda", tile_rows=tile_rows)
        cuda_index.add(database)
        cuda = cuda_index.search(queries, k)
        np.testing.assert_array_equal(cuda.indices, cpu.indices)
        np.testing.assert_array_equal(cuda.distances, cpu.distances)
    # random 768-bit codes, as the benchmark runs them
    codes = rng.integers(0, 256, (30000, 96), dtype=np.uint8)
    if distance == "hamming":
        np.testing.assert_array_equal(
            exact_search(codes, codes[:500], 20, "hamming", "cuda").indices,
            exact_search(codes, codes[:500], 20, "hamming", "cpu").indices,
        )
