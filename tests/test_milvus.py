"""The Milvus backend on Milvus Lite, checked against brute force; URIs, errors, the bench's arithmetic."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rsir_cli import bench
from rsir_cli.cli.app import app
from rsir_cli.errors import BackendError, UsageError
from rsir_cli.search import milvus
from rsir_cli.search.milvus import MilvusConnection, MilvusIndex, MilvusTarget


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory):
    """One Milvus Lite file for the module (starting Lite costs about half a second)."""
    target = milvus.resolve_target(str(tmp_path_factory.mktemp("lite") / "t.db"), None, ".")
    with MilvusConnection(target) as connection:
        yield connection


def _brute_force(database: np.ndarray, queries: np.ndarray, distance: str) -> np.ndarray:
    """(Q, N) distances in rsir's conventions, computed independently in float64."""
    if distance == "hamming":
        bits_db = np.unpackbits(database, axis=1).astype(np.int64)
        bits_q = np.unpackbits(queries, axis=1).astype(np.int64)
        return (bits_q[:, None, :] != bits_db[None, :, :]).sum(axis=2).astype(np.float64)
    x, q = database.astype(np.float64), queries.astype(np.float64)
    if distance == "l2":
        return np.sqrt(((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    if distance == "dot":
        return -(q @ x.T)
    cos = (q @ x.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(x, axis=1)[None, :]
    return 1.0 - cos


def _fresh(connection: MilvusConnection, name: str, distance: str, dim: int) -> MilvusIndex:
    connection.drop_collection(name)
    return MilvusIndex.create(connection, name, distance=distance, dim=dim)


# ------------------------------------------------------------------------------------- URIs
def test_uri_resolution(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="rsir_cli"):
        default = milvus.resolve_target(None, "ignored", tmp_path / "store")
        assert caplog.messages == [
            "the Milvus token (--token / RSIR_MILVUS_TOKEN) is ignored: Milvus Lite, a local file, has no users"
        ]
        milvus.resolve_target(None, None, tmp_path / "store")
        milvus.resolve_target(str(tmp_path / "x.db"), "ignored too", ".")
        assert len(caplog.messages) == 2  # said once per token given, not for a Lite target without one
    assert default.lite and default.uri == str((tmp_path / "store" / "milvus.db").absolute())
    assert default.token is None  # Milvus Lite takes no token
    server = milvus.resolve_target("https://user:password1@milvus.example.org:19530", "tok:secret", ".")
    assert not server.lite and server.token == "tok:secret"
    assert server.display == "https://milvus.example.org:19530"
    assert "tok:secret" not in repr(server)
    assert {"tok:secret", "user:password1", "password1"} <= set(server.secrets())
    assert "secret" not in server.secrets()  # too short to hide alone without garbling messages
    assert "Milvus" not in MilvusTarget("http://h:1", "root:Milvus").secrets()
    for bad in ("grpc://host:19530", "http://", str(tmp_path / "vectors.sqlite")):
        with pytest.raises(UsageError):
            milvus.resolve_target(bad, None, ".")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(UsageError, match="folder"):
        milvus.resolve_target(str(tmp_path / "dir.db"), None, ".")


def test_scrub_hides_token_password_and_its_md5() -> None:
    target = MilvusTarget("http://h:1", "root:Sup3rSecret")
    md5 = hashlib.md5(b"root:Sup3rSecret").hexdigest()
    text = f"failed with root:Sup3rSecret (password Sup3rSecret) alias http://h:1-{md5}"
    cleaned = milvus.scrub(text, target.secrets())
    assert "Sup3rSecret" not in cleaned and md5 not in cleaned
    assert cleaned == "failed with *** (password ***) alias http://h:1-***"


def test_collection_names_follow_milvus_rules() -> None:
    assert (
        milvus.collection_name("prithvi", "bigearthnet", "test", "trivial-32")
        == "rsir_prithvi_bigearthnet_test_trivial_32"
    )
    assert milvus.collection_name("prithvi-rgb", "forestnet", "test", "lsh-32-s42") == (
        "rsir_prithvi_rgb_forestnet_test_lsh_32_s42"
    )
    long = milvus.collection_name("m" * 150, "d" * 150, "test", "float-l2")
    assert len(long) <= 200 and long.replace("_", "").isalnum()
    assert long != milvus.collection_name("m" * 150, "d" * 151, "test", "float-l2")


def test_metric_and_index_choices() -> None:
    assert [milvus.metric_for(d) for d in ("hamming", "l2", "cosine", "dot")] == ["HAMMING", "L2", "COSINE", "IP"]
    with pytest.raises(UsageError, match="no L1"):
        milvus.metric_for("l1")
    assert milvus.index_spec("flat", binary=True) == ("BIN_FLAT", {}, {})
    assert milvus.index_spec("ivf_flat", binary=True, nlist=128, nprobe=16) == (
        "BIN_IVF_FLAT",
        {"nlist": 128},
        {"nprobe": 16},
    )
    assert milvus.index_spec("IVF_FLAT", binary=False, nlist=8, nprobe=16)[2] == {"nprobe": 8}
    with pytest.raises(UsageError, match="binary codes take flat, ivf_flat"):
        milvus.index_spec("hnsw", binary=True)
    with pytest.raises(UsageError):
        milvus.index_spec("bin_flat", binary=False)


# ----------------------------------------------------------------------- search vs brute force
@pytest.mark.parametrize("distance", ["l2", "cosine", "dot"])
def test_float_flat_search_equals_brute_force(lite: MilvusConnection, distance: str) -> None:
    rng = np.random.default_rng(1)
    database = rng.standard_normal((400, 24)).astype(np.float32)  # continuous values: no ties
    queries = rng.standard_normal((15, 24)).astype(np.float32)
    index = _fresh(lite, f"float_{distance}", distance, 24)
    index.add(database, [f"s{i}" for i in range(len(database))])
    index.build_index("FLAT", {}, {})
    found = index.search(queries, 10)
    truth = _brute_force(database, queries, distance)
    np.testing.assert_array_equal(found.indices, np.argsort(truth, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(found.distances, np.sort(truth, axis=1)[:, :10], rtol=1e-4, atol=1e-4)
    assert len(index) == 400
    assert index.sample_ids([0, 399]) == {0: "s0", 399: "s399"}


@pytest.mark.parametrize("bits", [32, 768])
def test_binary_flat_search_equals_brute_force_up_to_ties(lite: MilvusConnection, bits: int) -> None:
    """Hamming distances tie massively: equal distances everywhere; equal rows wherever the distance is unique
    in its query, and rows tied at the k-th distance drawn from that tie; ties in row order within the result."""
    rng = np.random.default_rng(2)
    rows = 3000  # more than one insert batch at 768 bits
    database = rng.integers(0, 256, (rows, bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (12, bits // 8), dtype=np.uint8)
    index = _fresh(lite, f"binary_{bits}", "hamming", bits)
    index.add(database)
    index.build_index("BIN_FLAT", {}, {})
    assert len(index) == rows
    k = 20
    found = index.search(queries, k)
    truth = _brute_force(database, queries, "hamming")
    for q in range(len(queries)):
        expected = np.sort(truth[q])[:k]
        np.testing.assert_array_equal(found.distances[q], expected)
        np.testing.assert_array_equal(truth[q, found.indices[q]], found.distances[q])  # each row is that far
        assert len(set(found.indices[q])) == k
        kth = expected[-1]
        np.testing.assert_array_equal(
            np.sort(found.indices[q][found.distances[q] < kth]), np.flatnonzero(truth[q] < kth)
        )
        order = np.lexsort((found.indices[q], found.distances[q]))
        np.testing.assert_array_equal(order, np.arange(k))


def test_fewer_rows_than_k_pads_and_limits(lite: MilvusConnection) -> None:
    database = np.array([[0, 0, 0, 0], [255, 255, 255, 255], [15, 0, 0, 0]], dtype=np.uint8)
    index = _fresh(lite, "tiny", "hamming", 32)
    index.add(database)
    index.build_index("BIN_FLAT", {}, {})
    found = index.search(np.zeros((1, 4), dtype=np.uint8), 5)
    np.testing.assert_array_equal(found.indices, [[0, 2, 1, -1, -1]])
    np.testing.assert_array_equal(found.distances, [[0, 4, 32, np.inf, np.inf]])
    with pytest.raises(BackendError, match="at most 16384"):
        index.search(np.zeros((1, 4), dtype=np.uint8), 20000)
    with pytest.raises(BackendError, match="have 64 bits but the collection tiny holds 32"):
        index.search(np.zeros((1, 8), dtype=np.uint8), 3)
    with pytest.raises(UsageError, match="packed uint8"):
        index.search(np.zeros((1, 32), dtype=np.float32), 3)


def test_milvus_lite_refuses_ivf_and_hnsw_for_what_it_lacks(lite: MilvusConnection) -> None:
    """Milvus Lite 2.5.1: binary vectors BIN_FLAT only; floats FLAT / IVF_FLAT (no HNSW)."""
    codes = _fresh(lite, "lite_bin_ivf", "hamming", 32)
    codes.add(np.zeros((10, 4), dtype=np.uint8))
    with pytest.raises(milvus.UnsupportedIndexError, match="BIN_IVF_FLAT"):
        codes.build_index("BIN_IVF_FLAT", {"nlist": 4}, {"nprobe": 4})
    floats = _fresh(lite, "lite_hnsw", "l2", 8)
    floats.add(np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32))
    with pytest.raises(milvus.UnsupportedIndexError, match="HNSW"):
        floats.build_index("HNSW", milvus.HNSW_PARAMS, {"ef": 64})
    floats.build_index("IVF_FLAT", {"nlist": 4}, {"nprobe": 4})  # accepted
    opened = MilvusIndex.open(lite, "lite_hnsw")
    assert (opened.distance, opened.dim, opened.search_params) == ("l2", 8, {"nprobe": 4})
    with pytest.raises(BackendError, match="indexed for l2, not cosine"):
        MilvusIndex.open(lite, "lite_hnsw", distance="cosine")


def test_unreachable_server_is_one_quick_line_without_the_token() -> None:
    began = time.monotonic()
    with pytest.raises(BackendError) as caught:
        MilvusConnection(MilvusTarget("http://127.0.0.1:9", "root:TopSecret42"), timeout=2)
    message = str(caught.value)
    assert time.monotonic() - began < 15
    assert message.startswith("cannot reach Milvus at http://127.0.0.1:9") and "\n" not in message
    assert "TopSecret42" not in message


def _lite_file_is_held(path: Path) -> bool:
    """Whether a Milvus Lite server holds the file, as another process sees it (its lock file is locked)."""
    probe = (
        "import fcntl, sys\n"
        "try:\n"
        "    fcntl.lockf(open(sys.argv[1], 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(1)\n"
    )
    lock = path.parent / f".{path.name}.lock"
    return subprocess.run([sys.executable, "-c", probe, str(lock)], check=False).returncode == 1


def test_an_opened_collection_is_a_backend_that_closes_what_it_owns(tmp_path: Path) -> None:
    target = milvus.resolve_target(str(tmp_path / "own.db"), None, ".")
    owner = MilvusConnection(target)
    index = MilvusIndex.create(owner, "c", distance="l2", dim=2)
    index.add(np.eye(2, dtype=np.float32))
    index.build_index("FLAT", {}, {})
    with pytest.raises(BackendError, match=r"has no collection nope$"):
        MilvusIndex.open(owner, "nope")
    with pytest.raises(BackendError, match="has no collection nope; run `this` first"):
        MilvusIndex.open(owner, "nope", hint="run `this` first")
    with MilvusIndex.open(owner, "c") as borrowed:  # the connection stays its owner's
        np.testing.assert_array_equal(borrowed.search(np.eye(2, dtype=np.float32), 1).indices, [[0], [1]])
    assert owner.has_collection("c") and _lite_file_is_held(tmp_path / "own.db")
    owner.close()
    assert not _lite_file_is_held(tmp_path / "own.db")  # the last connection stopped the Lite server
    with MilvusIndex.open(MilvusConnection(target), "c", owns_connection=True) as owned:
        assert len(owned) == 2 and _lite_file_is_held(tmp_path / "own.db")
    assert not _lite_file_is_held(tmp_path / "own.db")  # closing the index closed its connection
    owned.close()  # twice is harmless


# ----------------------------------------------------------------------------------- the bench
def test_tie_aware_recall_by_hand() -> None:
    database = np.array([[0b00000000], [0b00000001], [0b00000011], [0b00000010], [0b11111111]], dtype=np.uint8)
    queries = np.array([[0]], dtype=np.uint8)
    # distances 0, 1, 2, 1, 8; exact top-2 is rows 0 and 1 (distance 1 tied by rows 1 and 3)
    exact = np.array([[0.0, 1.0]])
    assert bench.recall_at_k(database, queries, np.array([[0, 3]]), exact, "hamming") == 1.0  # the other tie
    assert bench.recall_at_k(database, queries, np.array([[0, 2]]), exact, "hamming") == 0.5
    assert bench.recall_at_k(database, queries, np.array([[4, -1]]), exact, "hamming") == 0.0
    floats = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype=np.float32)  # distances 0, 5, 1
    truth = np.array([[0.0, 1.0]])
    assert bench.recall_at_k(floats, np.zeros((1, 2), np.float32), np.array([[2, 1]]), truth, "l2") == 0.5


@pytest.mark.slow
def test_bench_on_milvus_lite_with_seeded_vectors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "bench-milvus", "--store", str(tmp_path / "empty"), "--sizes", "300,600", "--queries", "25",
            "--k", "5", "--nlist", "8", "--json", "--csv", str(tmp_path / "b.csv"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    settings, rows = document["settings"], document["rows"]
    assert settings["seeded"] is True and settings["data"].startswith("SEEDED")
    assert settings["sizes"] == [300, 600]
    assert settings["uri"] == "a temporary Milvus Lite file"
    assert [(r["size"], r["vectors"], r["engine"]) for r in rows] == [
        (size, vectors, engine)
        for size in (300, 600)
        for vectors in ("float-768", "binary-768", "trivial-32")
        for engine in ("milvus", "exact")
    ]
    for row in rows:
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["throughput_qps"] > 0
        if row["engine"] == "milvus" and row["vectors"] != "float-768":
            # Lite has no BIN_IVF_FLAT: BIN_FLAT ran, an exact search, so recall counts ties as correct
            assert row["index"] == "BIN_FLAT" and row["requested"] == "BIN_IVF_FLAT"
            assert row["note"] == "BIN_IVF_FLAT unsupported here; ran BIN_FLAT" and row["recall"] == 1.0
        if row["engine"] == "milvus" and row["vectors"] == "float-768":
            assert row["index"].startswith("IVF_FLAT (nlist 8, nprobe 8)") and 0.5 <= row["recall"] <= 1.0
            assert row["memory_mb"] and row["memory_mb"] > 10  # the Milvus Lite process
    csv_text = (tmp_path / "b.csv").read_text()
    assert csv_text.count("SEEDED synthetic vectors") == len(rows)
    assert not (tmp_path / "empty" / bench.SCRATCH_FOLDER).exists()  # the temporary Lite file is gone


def test_stale_scratch_folders_are_those_of_this_hosts_dead_processes(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    host = socket.gethostname()
    parent = tmp_path / bench.SCRATCH_FOLDER
    dead, alive, elsewhere = (
        parent / f"{host}-{dead_pid}",
        parent / f"{host}-{os.getpid()}",
        parent / f"other-{dead_pid}",
    )
    for folder in (dead, alive, elsewhere):
        folder.mkdir(parents=True)
        (folder / "bench.db").write_bytes(b"x")
    assert bench.remove_stale_scratch(parent) == [dead]
    assert not dead.exists() and alive.exists() and elsewhere.exists()
    assert bench.remove_stale_scratch(tmp_path / "no such folder") == []


@pytest.mark.slow
def test_a_killed_bench_leaves_a_folder_that_the_next_run_removes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    command = [sys.executable, "-m", "rsir_cli", "bench-milvus", "--store", str(store), "--sizes", "5000",
               "--queries", "500", "--k", "5", "--seeded"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scratch = store / bench.SCRATCH_FOLDER / f"{socket.gethostname()}-{run.pid}"
    try:
        deadline = time.monotonic() + 120
        while not (scratch / "bench.db").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (scratch / "bench.db").exists(), "the run never made its Lite file"
    finally:
        run.kill()  # SIGKILL: no cleanup can run
        run.wait()
    assert (scratch / "bench.db").exists()  # left behind
    result = CliRunner().invoke(
        app, ["bench-milvus", "--store", str(store), "--sizes", "200", "--queries", "5", "--k", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert not (store / bench.SCRATCH_FOLDER).exists()


def test_bench_reads_store_embeddings_when_present(tmp_path: Path) -> None:
    from rsir_cli.store import EmbeddingStore

    store = EmbeddingStore(tmp_path / "store")
    rng = np.random.default_rng(3)
    for split, n in (("val", 30), ("test", 200)):
        writer = store.writer("m", "d", split, attrs={"label_names": ["a"]}, dim=64, n_labels=1, rows_expected=n)
        writer.append(
            rng.standard_normal((n, 64)).astype(np.float32), [f"{split}{i}" for i in range(n)], np.ones((n, 1))
        )
        writer.finish()
    data = bench.load_data(store, None, None, n_queries=20, n_database=500)
    assert not data.seeded and data.source.startswith("store embeddings m/d")
    assert data.queries.shape == (20, 64) and data.database.shape == (200, 64)
    np.testing.assert_array_equal(data.database, store.read("m", "d", "test").embeddings)
    assert [name for name, _, _ in bench.vector_sets(data.database)] == ["float-64", "binary-64", "trivial-32"]
    with pytest.raises(UsageError, match="exclude"):
        bench.load_data(store, "m", "d", n_queries=1, n_database=1, seeded=True)

    args = ["bench-milvus", "--store", str(store.root), "--sizes", "150,500", "--queries", "10", "--k", "5"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["settings"]["seeded"] is False and document["settings"]["sizes"] == [150]
    assert document["settings"]["notes"] == ["sizes 500 skipped: the database has 200 rows"]
    assert {row["size"] for row in document["rows"]} == {150} and len(document["rows"]) == 6
