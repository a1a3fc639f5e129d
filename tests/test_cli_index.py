"""`rsir index` and `rsir search --backend milvus` on Milvus Lite: same answers as the exact engine,
idempotent re-indexing, and one clear line for every failure."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from rsir_cli.cli.app import app
from rsir_cli.store import EmbeddingStore
from rsir_cli.stored_codes import hash_store
from tests.helpers import (
    DIM,
    TEST,
    assert_same_up_to_ties,
    make_store,
)


def rsir(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store")


def index_json(store: Path, *args: str) -> dict:
    result = rsir("index", "--store", str(store), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def matches(store: Path, query: str, *args: str) -> list[dict]:
    result = rsir("search", "--store", str(store), "--id", query, "--k", "10", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"][0]["matches"]


def suggested(line: str) -> list[str]:
    """The command an error line tells the user to run (between backticks), as argv without ``rsir``."""
    match = re.search(r"run `([^`]+)`", line)
    assert match, line
    argv = shlex.split(match.group(1))
    assert argv[0] == "rsir", line
    return argv[1:]


def one_error_line(result: Any, exit_code: int = 1) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == exit_code, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert "unexpected" not in errors[0], result.output
    return errors[0]


@pytest.mark.slow
def test_float_index_then_search_equals_the_exact_engine(store: Path) -> None:
    made = index_json(store)
    assert (made["collection"], made["state"], made["rows"], made["dim"]) == (
        "rsir_m_d_test_float_l2",
        "created",
        TEST,
        DIM,
    )
    assert (made["index_type"], made["metric"], made["backend"]) == ("FLAT", "L2", "Milvus Lite")
    assert made["uri"] == str((store / "milvus.db").absolute())
    for query in ("val_0", "val_5", "val_11"):
        exact = matches(store, query, "--distance", "l2")
        found = matches(store, query, "--backend", "milvus")  # l2: the Milvus default
        assert [(m["row"], m["id"], m["labels"]) for m in found] == [(m["row"], m["id"], m["labels"]) for m in exact]
        np.testing.assert_allclose([m["distance"] for m in found], [m["distance"] for m in exact], rtol=1e-5)
    index_json(store, "--distance", "cosine")
    exact = matches(store, "val_3", "--distance", "cosine")
    found = matches(store, "val_3", "--backend", "milvus", "--distance", "cosine")
    assert [m["row"] for m in found] == [m["row"] for m in exact]
    np.testing.assert_allclose([m["distance"] for m in found], [m["distance"] for m in exact], atol=1e-5)


@pytest.mark.parametrize(("method", "bits", "code"), [("trivial", "32", "trivial-32"), ("binary", "64", "binary-64")])
def test_code_index_then_search_equals_the_exact_engine(store: Path, method: str, bits: str, code: str) -> None:
    made = index_json(store, "--hash", method, "--bits", bits)
    assert (made["collection"], made["index_type"], made["metric"]) == (
        f"rsir_m_d_test_{code.replace('-', '_')}",
        "BIN_FLAT",
        "HAMMING",
    )
    table = rsir("search", "--store", str(store), "--id", "val_2", "--hash", method, "--backend", "milvus")
    assert table.exit_code == 0 and f"(hamming, {code}) for val_2" in table.stdout
    for query in ("val_1", "val_2", "val_7"):
        exact = matches(store, query, "--hash", method, "--bits", bits)
        found = matches(store, query, "--hash", method, "--bits", bits, "--backend", "milvus")
        assert_same_up_to_ties(exact, found)


@pytest.mark.slow
def test_reindexing_is_idempotent_drop_rebuilds_and_a_changed_store_is_noticed(store: Path, tmp_path: Path) -> None:
    assert index_json(store, "--hash", "trivial", "--bits", "32")["state"] == "created"
    again = index_json(store, "--hash", "trivial", "--bits", "32")
    assert again["state"] == "up to date" and again["insert_seconds"] == 0 and again["rows"] == TEST
    made = index_json(store)
    assert made["state"] == "created"
    ivf = index_json(store, "--index-type", "ivf_flat", "--nlist", "4")
    assert (ivf["state"], ivf["index_type"], ivf["index_params"], ivf["insert_seconds"]) == (
        "index rebuilt",
        "IVF_FLAT",
        {"nlist": 4},
        0,
    )
    # nprobe 16 >= nlist 4: every list is searched, so IVF answers like the exact engine
    exact = matches(store, "val_4", "--distance", "l2")
    assert [m["row"] for m in matches(store, "val_4", "--backend", "milvus")] == [m["row"] for m in exact]
    assert index_json(store, "--index-type", "ivf_flat", "--nlist", "4")["state"] == "up to date"
    assert index_json(store, "--drop")["state"] == "rebuilt (--drop)"

    make_store(store, seed=1, overwrite=True)  # re-embedded: same shape, other vectors
    stale = one_error_line(rsir("search", "--store", str(store), "--id", "val_0", "--backend", "milvus"))
    assert "rsir_m_d_test_float_l2" in stale and "out of date with the store (weights_sha256, created differ)" in stale
    rerun = suggested(stale)  # the store is not the default one: the command says which
    assert rerun == ["index", "--model", "m", "--dataset", "d", "--split", "test", "--float", "--distance", "l2",
                     "--store", str(store)]  # fmt: skip
    result = rsir(*rerun, "--json")  # runs as printed
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "rebuilt (the store changed)"
    exact = matches(store, "val_0", "--distance", "l2")
    assert [m["row"] for m in matches(store, "val_0", "--backend", "milvus")] == [m["row"] for m in exact]
    # the trivial-32 collection still holds the old codes and must be rebuilt too
    assert index_json(store, "--hash", "trivial", "--bits", "32")["state"] == "rebuilt (the store changed)"


def test_a_custom_uri_and_a_foreign_collection(store: Path, tmp_path: Path) -> None:
    from rsir_cli.search.milvus import MilvusConnection, MilvusIndex, resolve_target

    uri = tmp_path / "elsewhere" / "vectors.db"
    made = index_json(store, "--uri", str(uri))
    assert made["uri"] == str(uri) and uri.exists()
    assert not (store / "milvus.db").exists()
    exact = matches(store, "val_1", "--distance", "l2")
    assert [m["row"] for m in matches(store, "val_1", "--backend", "milvus", "--uri", str(uri))] == [
        m["row"] for m in exact
    ]
    with MilvusConnection(resolve_target(str(uri), None, ".")) as connection:
        connection.drop_collection("rsir_m_d_test_trivial_32")
        MilvusIndex.create(connection, "rsir_m_d_test_trivial_32", distance="hamming", dim=32, description="mine")
    foreign = one_error_line(
        rsir("index", "--store", str(store), "--hash", "trivial", "--bits", "32", "--uri", str(uri))
    )
    assert "was not made by rsir; pass --drop to replace it" in foreign
    replaced = index_json(store, "--hash", "trivial", "--bits", "32", "--uri", str(uri), "--drop")
    assert replaced["state"] == "rebuilt (--drop)"


@pytest.mark.slow
def test_failures_are_one_clear_line_and_exit_1(store: Path, tmp_path: Path) -> None:
    missing = one_error_line(rsir("search", "--store", str(store), "--id", "val_0", "--backend", "milvus"))
    assert "has no collection rsir_m_d_test_float_l2; run `rsir index --model m --dataset d --split test" in missing
    assert rsir(*suggested(missing)).exit_code == 0  # runs as printed; then the search finds the collection
    assert matches(store, "val_0", "--backend", "milvus")
    from rsir_cli.search.milvus import MilvusConnection, resolve_target

    with MilvusConnection(resolve_target(None, None, store)) as connection:
        connection.drop_collection("rsir_m_d_test_float_l2")  # as before: no collection

    secret = "root:Hidden-Token-99"
    for command in (["index"], ["search", "--id", "val_0", "--backend", "milvus"]):
        result = rsir(
            *command, "--store", str(store), "--uri", "http://127.0.0.1:9", "--token", secret,
            env={"RSIR_MILVUS_TIMEOUT": "2"},
        )  # fmt: skip
        line = one_error_line(result)
        assert "cannot reach Milvus at http://127.0.0.1:9" in line
        assert "Hidden-Token-99" not in result.output
    from_env = rsir(
        "index", "--store", str(store), "--uri", "http://127.0.0.1:9",
        env={"RSIR_MILVUS_TIMEOUT": "2", "RSIR_MILVUS_TOKEN": secret},
    )  # fmt: skip
    assert "cannot reach" in one_error_line(from_env) and "Hidden-Token-99" not in from_env.output

    l1 = one_error_line(rsir("index", "--store", str(store), "--distance", "l1"), exit_code=2)  # a usage error
    assert "Milvus has no L1 metric" in l1
    assert "Milvus has no L1 metric" in one_error_line(
        rsir("search", "--store", str(store), "--id", "val_0", "--backend", "milvus", "--distance", "l1"), exit_code=2
    )
    ivf = one_error_line(
        rsir("index", "--store", str(store), "--hash", "trivial", "--bits", "32", "--index-type", "ivf_flat")
    )
    assert "local mode only support BIN_FLAT" in ivf and "--index-type flat" in ivf
    assert "no trivial 16-bit codes" in one_error_line(
        rsir("index", "--store", str(store), "--hash", "trivial", "--bits", "16")
    )
    assert "must end in .db" in one_error_line(
        rsir("index", "--store", str(store), "--uri", str(tmp_path / "x.sqlite")), exit_code=2
    )

    # A collection of other dimensions: the store was re-embedded by a model of another width.
    index_json(store)
    make_store(store, seed=2, dim=32, overwrite=True)
    mismatch = one_error_line(rsir("search", "--store", str(store), "--id", "val_0", "--backend", "milvus"))
    assert "out of date with the store (dim, weights_sha256, created differ)" in mismatch


def test_usage_errors_exit_2(store: Path) -> None:
    assert rsir("index", "--store", str(store), "--hash", "trivial", "--bits", "32", "--float").exit_code == 2
    assert rsir("index", "--store", str(store), "--hash", "trivial", "--distance", "l2").exit_code == 2
    assert rsir("search", "--store", str(store), "--id", "val_0", "--backend", "faiss").exit_code == 2
    assert rsir("index", "--store", str(store), "--index-type", "bin_ivf_flat").exit_code == 2
    assert rsir("index", "--store", str(store), "--nlist", "0").exit_code == 2


def test_help_has_examples() -> None:
    for command in ("index", "bench-milvus"):
        result = rsir(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.stdout and f"rsir {command}" in result.stdout


class _StopAfterFirstBatch:
    """A progress reporter that interrupts the run after the first insert batch (like Ctrl-C)."""

    def task(self, description: str, total: float | None, unit: str = "items", completed: float = 0) -> Any:
        return self

    def advance(self, amount: float = 1) -> None:
        raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_an_interrupted_index_run_is_rebuilt(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rsir_cli import indexing, retrieval
    from rsir_cli.search import milvus
    from rsir_cli.search.milvus import collection

    monkeypatch.setattr(collection, "_INSERT_MAX_ROWS", 256)  # 300 rows: two insert batches
    database = retrieval.open_database(EmbeddingStore(store), distance="l2")
    target = milvus.resolve_target(None, None, store)
    with pytest.raises(KeyboardInterrupt):
        indexing.index_database(target, database, progress=_StopAfterFirstBatch())
    with milvus.MilvusConnection(target) as connection:
        assert len(milvus.MilvusIndex(connection, "rsir_m_d_test_float_l2", distance="l2", dim=DIM)) == 256
    assert index_json(store)["state"] == "rebuilt (an earlier run stopped early)"
    assert index_json(store)["rows"] == TEST


def test_suggested_index_commands_name_only_what_differs_from_the_defaults(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsir_cli import retrieval
    from rsir_cli.indexing import index_command
    from rsir_cli.search.milvus import resolve_target

    hash_store(EmbeddingStore(store), "lsh", 32, [7])
    lsh = retrieval.open_database(EmbeddingStore(store), hash_method="lsh", bits=32, seed=7)
    here = resolve_target(None, None, store)
    assert shlex.split(index_command(lsh, here))[1:] == [
        "index", "--model", "m", "--dataset", "d", "--split", "test", "--hash", "lsh", "--bits", "32", "--seed", "7",
        "--store", str(store),
    ]  # fmt: skip
    assert rsir(*shlex.split(index_command(lsh, here))[1:]).exit_code == 0
    elsewhere = resolve_target(str(tmp_path / "my vectors.db"), None, ".")
    assert index_command(lsh, elsewhere).endswith(f"--uri '{tmp_path / 'my vectors.db'}' --store {store}")
    server = resolve_target("https://user:pw@milvus.example.org:19530", "root:Secret-99", ".")
    command = index_command(lsh, server)
    assert "--uri https://milvus.example.org:19530" in command and "pw" not in command and "Secret" not in command
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rsir-store").symlink_to(store)  # the default store, ./rsir-store
    trivial = retrieval.open_database(EmbeddingStore("rsir-store"), hash_method="trivial", bits=32)
    assert index_command(trivial, resolve_target(None, None, "rsir-store")) == (
        "rsir index --model m --dataset d --split test --hash trivial --bits 32"
    )


def test_a_token_for_milvus_lite_is_ignored_with_one_warning(store: Path) -> None:
    result = rsir("index", "--store", str(store), "--hash", "trivial", "--bits", "32", "--token", "root:Hidden-77")
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())  # unwrapped
    assert stderr.count("token (--token / RSIR_MILVUS_TOKEN) is ignored: Milvus Lite, a local file, has no users") == 1
    assert "Hidden-77" not in result.output


def test_the_early_collection_check_reads_no_vectors_beyond_their_shape(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`search --backend milvus` can check its collection before it embeds a tile: no digest of the vectors."""
    from rsir_cli import indexing, retrieval
    from rsir_cli.errors import BackendError
    from rsir_cli.search.milvus import resolve_target

    database = retrieval.open_database(EmbeddingStore(store), hash_method="trivial", bits=32)
    target = resolve_target(None, None, store)
    with pytest.raises(BackendError, match="has no collection rsir_m_d_test_trivial_32; run `rsir index"):
        indexing.open_database_collection(target, database)
    index_json(store, "--hash", "trivial", "--bits", "32")

    def no_digest(*args: object) -> str:
        raise AssertionError("the early check computed the vectors' digest")

    monkeypatch.setattr(indexing, "fingerprint", no_digest)
    with indexing.open_database_collection(target, database) as collection:
        assert len(collection) == TEST and collection.search(database.vectors[:2], 1).indices[:, 0].tolist() == [0, 1]
