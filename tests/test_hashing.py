"""Hashers: hand-written references, the official LSH procedure, store round trips, learned > LSH."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rsir_cli import hashing
from rsir_cli.errors import UsageError
from rsir_cli.hashing import CodeSpec, hasher_from_codes, make_hasher, pack, unpack
from rsir_cli.store import EmbeddingStore

REPO = Path(__file__).resolve().parent.parent


def test_binary_embedding_equals_hand_written_bits() -> None:
    embeddings = np.array(
        [
            [0.5, -1.0, 0.0, 2.0, -0.1, 3.0, 1e-30, -0.0, 1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 5.0, -5.0],
            [-1.0] * 8 + [1.0] * 8,
        ],
        dtype=np.float32,
    )
    # > 0 per dimension: 0.0, -0.0 and negatives give 0; bytes read big-endian
    expected_bits = [
        [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0],
        [0] * 8 + [1] * 8,
    ]
    hasher = make_hasher("binary", None, None, 16)
    codes = hasher.transform(embeddings)
    np.testing.assert_array_equal(unpack(codes, 16), expected_bits)
    np.testing.assert_array_equal(codes, [[0b10010110, 0b11000010], [0, 255]])


def test_trivial_hash_equals_hand_written_strided_means() -> None:
    # dim 16, bits 8: bit j averages dims j and j + 8
    x = np.array([[1, -2, 3, -4, 0, 0, 1, -1, -2, 1, -4, 5, 0, 0, 0, 0]], dtype=np.float32)
    means = [(1 - 2) / 2, (-2 + 1) / 2, (3 - 4) / 2, (-4 + 5) / 2, 0, 0, 1 / 2, -1 / 2]
    expected = [[1 if m > 0 else 0 for m in means]]
    assert expected == [[0, 0, 0, 1, 0, 0, 1, 0]]
    np.testing.assert_array_equal(unpack(make_hasher("trivial", 8, None, 16).transform(x), 8), expected)


def test_trivial_hash_equals_a_loop_reference_and_the_official_expression() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    dim, bits = 96, 32
    x = rng.standard_normal((300, dim)).astype(np.float32)
    x[:20, :bits] = -x[:20, bits : 2 * bits] - x[:20, 2 * bits :]  # group sums exactly zero: mean 0 -> bit 0
    loop = np.zeros((300, bits), dtype=np.uint8)
    for i in range(300):
        for j in range(bits):
            loop[i, j] = np.mean([float(x[i, j + g * bits]) for g in range(dim // bits)]) > 0
    codes = unpack(make_hasher("trivial", bits, None, dim).transform(x), bits)
    official = (torch.from_numpy(x).reshape([-1, dim // bits, bits]).mean(dim=1) > 0).numpy()
    np.testing.assert_array_equal(codes, official)
    np.testing.assert_array_equal(codes[20:], loop[20:])  # float64 loop == float32 mean away from zero


def official_lsh_codes(embeddings: np.ndarray, bits: int, seed: int) -> np.ndarray:
    """What the official code does for one split (lshashpy3, one table): seed, draw planes, hash each row."""
    np.random.seed(seed)
    planes = np.random.randn(bits, embeddings.shape[1])
    rows = []
    for vector in embeddings:
        projections = np.dot(planes, np.array(vector.tolist()))
        rows.append([1 if p > 0 else 0 for p in projections])
    return np.array(rows, dtype=np.uint8)


def test_lsh_equals_the_official_procedure_with_identical_planes_for_queries_and_database() -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((60, 48)).astype(np.float32)
    database = rng.standard_normal((90, 48)).astype(np.float32)
    for seed in (42, 84):
        # Hashers made independently for each split (as `rsir search` would for a new tile) ...
        for_queries = make_hasher("lsh", 32, seed, 48)
        for_database = make_hasher("lsh", 32, seed, 48)
        np.testing.assert_array_equal(for_queries.params()["planes"], for_database.params()["planes"])
        q_codes = unpack(for_queries.transform(queries), 32)
        db_codes = unpack(for_database.transform(database), 32)
        # ... equal the official codes of each split, bit for bit
        np.testing.assert_array_equal(q_codes, official_lsh_codes(queries, 32, seed))
        np.testing.assert_array_equal(db_codes, official_lsh_codes(database, 32, seed))
    assert not np.array_equal(make_hasher("lsh", 32, 42, 48).planes, make_hasher("lsh", 32, 84, 48).planes)


@pytest.mark.parametrize("method", hashing.METHODS)
def test_a_fitted_hasher_saved_and_reloaded_hashes_identically(method: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    dim = 64
    database = (rng.standard_normal((200, dim)) + 0.3).astype(np.float32)
    new_tiles = rng.standard_normal((25, dim)).astype(np.float32)
    bits = dim if method == "binary" else 32
    hasher = make_hasher(method, bits, 84, dim).fit(database, fitted_on="test", fit_source="x|200")
    store = EmbeddingStore(tmp_path)
    writer = store.writer("m", "d", "test", attrs={}, dim=dim, n_labels=2, rows_expected=200)
    writer.append(database, [str(i) for i in range(200)], np.zeros((200, 2), np.uint8))
    writer.finish()
    store.write_codes(
        "m",
        "d",
        "test",
        hasher.name,
        hasher.transform(database),
        attrs={"n_bits": bits},
        hasher=hasher.params(),
        hasher_attrs=hasher.attrs(),
    )
    stored = store.read_codes("m", "d", "test", hasher.name)
    rebuilt = hasher_from_codes(stored)
    assert rebuilt.attrs() == hasher.attrs()
    np.testing.assert_array_equal(stored.bits, hasher.transform(database))
    np.testing.assert_array_equal(rebuilt.transform(new_tiles), hasher.transform(new_tiles))
    np.testing.assert_array_equal(rebuilt.transform(database), stored.bits)
    assert hashing.same_hasher(rebuilt, hasher)


@pytest.mark.parametrize("method", ["pca", "itq"])
def test_learned_hashers_depend_only_on_the_database(method: str) -> None:
    rng = np.random.default_rng(3)
    database = (rng.standard_normal((400, 32)) * np.linspace(3, 0.1, 32) + 2.0).astype(np.float32)
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    hasher = make_hasher(method, 16, 42, 32).fit(database)
    np.testing.assert_allclose(hasher.mean, database.astype(np.float64).mean(axis=0), atol=1e-12)
    # a query's code does not depend on the other queries hashed with it
    together = hasher.transform(queries)
    alone = np.concatenate([hasher.transform(queries[i : i + 1]) for i in range(len(queries))])
    np.testing.assert_array_equal(together, alone)
    # the projection is orthonormal (PCA directions, rotated by ITQ)
    np.testing.assert_allclose(hasher.projection.T @ hasher.projection, np.eye(16), atol=1e-10)
    # centred on the database mean, each bit splits the database roughly in half
    balance = unpack(hasher.transform(database), 16).mean(axis=0)
    assert ((balance > 0.2) & (balance < 0.8)).all()


def test_itq_lowers_the_quantisation_error_of_pca() -> None:
    rng = np.random.default_rng(4)
    database = rng.standard_normal((1000, 40)) @ rng.standard_normal((40, 40))
    database = (database / (3 * database.std())).astype(np.float32)  # projections of order 1
    pca = make_hasher("pca", 16, None, 40).fit(database)
    itq = make_hasher("itq", 16, 42, 40).fit(database)

    def projected(hasher: hashing.Hasher) -> np.ndarray:
        return (database - hasher.mean) @ hasher.projection

    def error(hasher: hashing.Hasher) -> float:  # ||B - V R||^2, what ITQ minimises
        values = projected(hasher)
        return float(((np.where(values > 0, 1.0, -1.0) - values) ** 2).sum())

    # same subspace (PCA), different rotation: ITQ's quantises clearly better ...
    assert error(itq) < 0.95 * error(pca)
    # ... which, for a fixed subspace, is the same as a larger sum of |projections| (scale-free)
    assert np.abs(projected(itq)).sum() > 1.02 * np.abs(projected(pca)).sum()


def test_code_names_and_packing() -> None:
    names = {"trivial-32": ("trivial", 32, None), "binary-768": ("binary", 768, None), "lsh-32-s42": ("lsh", 32, 42),
             "itq-64-s84": ("itq", 64, 84)}  # fmt: skip
    for name, (method, bits, seed) in names.items():
        assert CodeSpec(method, bits, seed).name == name and CodeSpec.parse(name) == CodeSpec(method, bits, seed)
    assert CodeSpec("trivial", 32, 42).name == "trivial-32"  # unseeded methods drop a seed
    assert make_hasher("lsh", 32, 7, 64).name == "lsh-32-s7"
    for other in ("lsh-32-s42.tmp", "sh-32", "trivial", "trivial-x", "x-8"):
        assert CodeSpec.parse(other) is None
    with pytest.raises(UsageError, match="more than rsir takes"):
        make_hasher("lsh", 1048576, 42, 64)
    assert make_hasher("pca", 32, 42, 64).name == "pca-32"  # pca ignores seeds
    bits = np.array([[1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(pack(bits), [[129, 254]])
    np.testing.assert_array_equal(unpack(pack(bits), 16), bits)
    assert hashing.paper_seeds(5) == [42, 84, 126, 168, 210]


def test_bad_options_are_clear_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown hash method 'sh'"):
        make_hasher("sh", 32, None, 768)
    with pytest.raises(UsageError, match="multiple of 8"):
        make_hasher("lsh", 30, 42, 768)
    with pytest.raises(UsageError, match="does not divide the embedding dimension 768"):
        make_hasher("trivial", 40, None, 768)
    with pytest.raises(UsageError, match="must be 768"):
        make_hasher("binary", 32, None, 768)
    with pytest.raises(UsageError, match="at most as many bits"):
        make_hasher("pca", 128, None, 64)
    with pytest.raises(UsageError, match="--bits is required"):
        make_hasher("lsh", None, 42, 768)
    with pytest.raises(UsageError, match="64-dimensional"):
        make_hasher("binary", None, None, 64).transform(np.zeros((2, 32), np.float32))
    with pytest.raises(UsageError, match="fitted"):
        make_hasher("itq", 16, 42, 64).transform(np.zeros((2, 64), np.float32))


def _synthetic_benchmark():
    spec = importlib.util.spec_from_file_location("hashing_synthetic", REPO / "benchmarks" / "hashing_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_learned_hashing_beats_lsh_and_trivial_at_32_bits() -> None:
    bench = _synthetic_benchmark()
    data = bench.clustered_embeddings(seed=1, n_queries=600, n_database=4000)
    scores = bench.compare(data, bits=32, seeds=3)
    lsh_best = max(scores["lsh"]["per_seed"])
    for learned in ("itq", "pca"):
        assert min(scores[learned]["per_seed"]) > lsh_best + 5, scores
        assert scores[learned]["map"] > scores["trivial"]["map"] + 5, scores
