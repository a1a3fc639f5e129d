"""`rsir index`, `rsir search --backend milvus` and `rsir bench-milvus` against a real Milvus standalone server.

One server (the PyPI package ``milvus``, with authentication on) is started for the whole module
inside a private network namespace (``unshare -n``), because it listens on all interfaces. This
file runs itself there as a script (``session``): it builds a store, runs the CLI against the
server and writes what it saw to a JSON file; the tests below check that record. The server is
started and stopped by process id by :mod:`rsir_cli.milvus_server`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
WRONG_TOKEN = "root:WrongPassword77"
pytestmark = [pytest.mark.milvus_server, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from rsir_cli.milvus_server import private_network_available

    if importlib.util.find_spec("milvus") is None:
        pytest.skip("the Milvus server package is not installed: pip install milvus")
    available, why = private_network_available()
    if not available:
        pytest.skip(f"cannot isolate the Milvus server in a private network namespace: {why}")
    work = tmp_path_factory.mktemp("milvus-server")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name in ("RSIR_MILVUS_URI", "RSIR_MILVUS_TOKEN", "RSIR_STORE"):
        env.pop(name, None)
    command = [
        "unshare", "-n", sys.executable, "-m", "rsir_cli.milvus_server", "--data", str(work / "milvus"), "--auth",
        "--", sys.executable, str(Path(__file__).resolve()), "session", str(work),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    record = work / "session.json"
    assert result.returncode == 0 and record.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(record.read_text())
    data["process_output"] = result.stdout + result.stderr
    return data


def test_server_index_then_search_equals_the_exact_engine(session: dict[str, Any]) -> None:
    import numpy as np

    from tests.helpers import TEST, assert_same_up_to_ties

    for kind in ("float", "trivial", "binary"):
        made = session["index"][kind]
        assert made["state"] == "created" and made["rows"] == TEST and made["backend"] == "Milvus server"
        assert made["uri"] == "http://127.0.0.1:19530" and made["server_version"].startswith("v2.")
        for exact, found in session["searches"][kind]:
            if kind == "float":
                assert [m["row"] for m in found] == [m["row"] for m in exact]
                np.testing.assert_allclose([m["distance"] for m in found], [m["distance"] for m in exact], rtol=1e-5)
            else:
                assert_same_up_to_ties(exact, found)
    assert session["index"]["float"]["index_type"] == "FLAT"
    assert session["index"]["binary"]["index_type"] == "BIN_FLAT"


def test_server_builds_bin_ivf_flat_and_hnsw(session: dict[str, Any]) -> None:
    from tests.helpers import assert_same_up_to_ties

    ivf = session["index"]["trivial_ivf"]
    assert (ivf["state"], ivf["index_type"], ivf["index_params"], ivf["search_params"]) == (
        "index rebuilt",
        "BIN_IVF_FLAT",
        {"nlist": 4},
        {"nprobe": 4},
    )
    exact, found = session["searches"]["trivial_ivf"]
    assert_same_up_to_ties(exact, found)  # all 4 lists probed: exact
    hnsw = session["index"]["float_hnsw"]
    assert (hnsw["state"], hnsw["index_type"]) == ("index rebuilt", "HNSW")
    exact, found = session["searches"]["float_hnsw"]
    assert len(set(m["row"] for m in found) & set(m["row"] for m in exact)) >= 8  # approximate, 300 rows


def test_server_reindexing_is_idempotent(session: dict[str, Any]) -> None:
    again = session["index"]["float_again"]
    assert again["state"] == "up to date" and again["insert_seconds"] == 0 and again["index_seconds"] == 0


def test_server_failures_are_one_line_exit_1(session: dict[str, Any]) -> None:
    failures = session["failures"]
    for case, expected in {
        "wrong token": "Milvus at http://127.0.0.1:19530 refused the token",
        "no token": "Milvus at http://127.0.0.1:19530 needs a token",
        "missing collection": "Milvus server at http://127.0.0.1:19530 has no collection rsir_m_d_test_float_cosine",
        "unreachable": "cannot reach Milvus at http://127.0.0.1:19999",
    }.items():
        code, lines = failures[case]
        assert code == 1 and len(lines) == 1 and expected in lines[0], (case, lines)
    assert "have 32 dimensions but the collection rsir_m_d_test_float_l2 holds 64" in failures["query width"]


def test_server_bench_runs_the_papers_indexes(session: dict[str, Any]) -> None:
    document = session["bench"]
    assert document["settings"]["milvus"].startswith("Milvus server v2.")
    milvus_rows = [row for row in document["rows"] if row["engine"] == "milvus"]
    assert [row["index"].split(" (")[0] for row in milvus_rows] == ["IVF_FLAT", "BIN_IVF_FLAT", "BIN_IVF_FLAT"]
    for row in milvus_rows:
        assert row["note"] == "" and 0.3 <= row["recall"] <= 1.0
        assert row["memory_mb"] is not None and row["memory_mb"] > 50  # the server process, by its pid


def test_the_token_never_appears(session: dict[str, Any]) -> None:
    everything = json.dumps(session)
    for secret in (WRONG_TOKEN, "WrongPassword77", "root:Milvus"):
        assert secret not in everything


# ------------------------------------------------------------------ the session, run in the namespace
def _session(work: Path) -> int:
    from typer.testing import CliRunner

    from rsir_cli.cli.app import app
    from rsir_cli.errors import BackendError
    from rsir_cli.search import milvus
    from tests.helpers import make_store

    assert os.environ["RSIR_MILVUS_URI"] == "http://127.0.0.1:19530" and os.environ["RSIR_MILVUS_TOKEN"]
    store = make_store(work / "store")
    record: dict[str, Any] = {"index": {}, "searches": {}, "failures": {}, "outputs": []}

    def run(*args: str, env: dict[str, str | None] | None = None) -> Any:
        result = CliRunner().invoke(app, list(args), env=env)
        record["outputs"].append(result.output)
        return result

    def index(name: str, *args: str) -> None:
        result = run("index", "--store", str(store), "--json", *args)
        assert result.exit_code == 0, result.output
        record["index"][name] = json.loads(result.stdout)

    def search(query: str, *args: str) -> list[dict]:
        result = run("search", "--store", str(store), "--id", query, "--k", "10", "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["results"][0]["matches"]

    def pair(query: str, *args: str, exact_args: tuple[str, ...] = ()) -> list[list[dict]]:
        return [search(query, *args, *exact_args), search(query, *args, "--backend", "milvus")]

    def failure(name: str, *args: str, env: dict[str, str | None] | None = None) -> None:
        result = run(*args, env=env)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        record["failures"][name] = [result.exit_code, errors]

    index("float")
    index("trivial", "--hash", "trivial", "--bits", "32")
    index("binary", "--hash", "binary")
    record["searches"]["float"] = [pair(q, exact_args=("--distance", "l2")) for q in ("val_0", "val_6")]
    record["searches"]["trivial"] = [pair(q, "--hash", "trivial", "--bits", "32") for q in ("val_0", "val_6")]
    record["searches"]["binary"] = [pair(q, "--hash", "binary") for q in ("val_0", "val_6")]
    index("float_again")
    index("trivial_ivf", "--hash", "trivial", "--bits", "32", "--index-type", "ivf_flat", "--nlist", "4")
    record["searches"]["trivial_ivf"] = pair("val_3", "--hash", "trivial", "--bits", "32")
    index("float_hnsw", "--index-type", "hnsw")
    record["searches"]["float_hnsw"] = pair("val_3", exact_args=("--distance", "l2"))

    failure("wrong token", "index", "--store", str(store), "--token", WRONG_TOKEN)
    failure("no token", "index", "--store", str(store), env={"RSIR_MILVUS_TOKEN": None})
    failure("missing collection", "search", "--store", str(store), "--id", "val_0", "--backend", "milvus",
            "--distance", "cosine")  # fmt: skip
    failure("unreachable", "index", "--store", str(store), "--uri", "http://127.0.0.1:19999",
            env={"RSIR_MILVUS_TIMEOUT": "2"})  # fmt: skip
    import numpy as np

    target = milvus.resolve_target(os.environ["RSIR_MILVUS_URI"], os.environ["RSIR_MILVUS_TOKEN"], store)
    connection = milvus.MilvusConnection(target)
    with milvus.MilvusIndex.open(connection, "rsir_m_d_test_float_l2", distance="l2", owns_connection=True) as backend:
        try:
            backend.search(np.zeros((1, 32), np.float32), 5)
            record["failures"]["query width"] = "no error"
        except BackendError as error:
            record["failures"]["query width"] = str(error)

    bench = run("bench-milvus", "--store", str(work / "empty"), "--sizes", "500", "--queries", "20", "--k", "5",
                "--nlist", "8", "--json")  # fmt: skip
    assert bench.exit_code == 0, bench.output
    record["bench"] = json.loads(bench.stdout)
    (work / "session.json").write_text(json.dumps(record))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["session"]:
    sys.exit(_session(Path(sys.argv[2])))
