"""`rsir evaluate` through the CLI: the paper's numbers against an independent computation, and bad input."""

from __future__ import annotations

import csv
import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from rsir_cli.datasets import label_sets_for
from rsir_cli.store import EmbeddingStore
from tests.cli import assert_one_line_error, run
from tests.helpers import write_split


def clustered(rng: np.random.Generator, n: int, dim: int, n_labels: int, centres: np.ndarray):
    """Small-integer embeddings around class centres (float32-exact L1), multi-hot labels."""
    classes = rng.integers(0, len(centres), n)
    embeddings = centres[classes] + rng.integers(-2, 3, (n, dim))
    labels = np.zeros((n, n_labels), dtype=np.uint8)
    labels[np.arange(n), classes % n_labels] = 1
    extra = rng.random(n) < 0.3
    labels[np.flatnonzero(extra), rng.integers(0, n_labels, extra.sum())] = 1
    return embeddings.astype(np.float32), labels


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Two models x (BigEarthNet: 43 labels, ForestNet: 12 labels), 32-d embeddings."""
    root = tmp_path / "store"
    rng = np.random.default_rng(0)
    for model in ("alpha", "beta"):
        for dataset, n_labels in (("bigearthnet", 43), ("forestnet", 12)):
            centres = rng.integers(-4, 5, (8, 32))
            for split, n in (("val", 40), ("test", 120)):
                embeddings, labels = clustered(rng, n, 32, n_labels, centres)
                # BigEarthNet labels that survive the 43 -> 19 mapping, so that both label sets matter
                write_split(root, model, dataset, split, embeddings, labels, random_weights=model == "beta")
    return root


def reference_map(q: np.ndarray, db: np.ndarray, q_labels, db_labels, k: int, distance: str) -> tuple[float, float]:
    """mAP@k and P@k (x100) by brute force with exact fractions: sort by (distance, row), any shared label."""
    if distance == "hamming":
        d = (np.unpackbits(q, axis=1)[:, None] != np.unpackbits(db, axis=1)[None]).sum(axis=2)
    else:
        d = np.abs(q.astype(np.int64)[:, None] - db.astype(np.int64)[None]).sum(axis=2)
    total_ap, total_p = Fraction(0), Fraction(0)
    for i in range(len(q)):
        order = sorted(range(len(db)), key=lambda j: (d[i, j], j))[:k]
        hits, ap = 0, Fraction(0)
        for rank, j in enumerate(order, start=1):
            if (q_labels[i] & db_labels[j]).any():
                hits += 1
                ap += Fraction(hits, rank)
        total_ap += ap / hits if hits else 0
        total_p += Fraction(hits, k)
    return float(100 * total_ap / len(q)), float(100 * total_p / len(q))


def test_default_run_evaluates_every_pair_and_both_label_sets(store: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "out" / "results.csv"
    result = run("evaluate", "--store", store, "--seeds", "3", "--json", "--csv", out_csv)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    cells = document["results"]
    assert {c["column"] for c in cells} == {"BigEarthNet-43", "BigEarthNet-19", "ForestNet-12", "ForestNet-4"}
    assert {c["model"] for c in cells} == {"alpha", "beta"}
    assert {(c["method"], c["bits"]) for c in cells} == {("none", None), ("binary", 32), ("trivial", 32), ("lsh", 32)}
    assert len(cells) == 2 * 4 * 4
    lsh = next(c for c in cells if c["method"] == "lsh")
    assert lsh["seeds"] == [42, 84, 126] and len(lsh["per_seed"]) == 3
    values = [s["map"] for s in lsh["per_seed"]]
    assert lsh["map"] == pytest.approx(np.mean(values))
    assert lsh["map_ci95"] == pytest.approx(1.96 * np.std(values, ddof=1) / np.sqrt(3))
    assert all(c["random_weights"] == (c["model"] == "beta") for c in cells)
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(cells) and rows[0]["map"] and "map_textbook" in rows[0]

    table = run("evaluate", "--store", store, "--seeds", "3", "--metric", "map")
    assert table.exit_code == 0, table.output
    assert table.stdout.count("x100, match any") == 1 and table.stdout.startswith("mAP@20 x100")
    tables = len(re.findall(r"\bmodel\b.*\bmethod\b", table.stdout))  # one per dataset when narrow
    assert tables >= 1 and table.stdout.count("(random") == tables  # the beta model's first row in each
    assert "RANDOM WEIGHTS" in table.output
    three = run("evaluate", "--store", store, "--seeds", "3")
    assert [line.split(" x100")[0] for line in three.stdout.splitlines() if "x100, match any" in line] == [
        "mAP@20",
        "P@20",
        "mAP@20 (textbook: AP / min(k, relevant))",
    ]


def test_numbers_equal_an_independent_brute_force(store: Path) -> None:
    from rsir_cli.hashing import make_hasher

    result = run(
        "evaluate", "--store", store, "--model", "alpha", "--dataset", "forestnet", "--hash", "none,trivial,lsh",
        "--bits", "16", "--seeds", "2", "--k", "7", "--labels", "12", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = {c["method"]: c for c in json.loads(result.stdout)["results"]}
    data = EmbeddingStore(store)
    q, db = data.read("alpha", "forestnet", "val"), data.read("alpha", "forestnet", "test")
    expected_map, expected_p = reference_map(q.embeddings, db.embeddings, q.labels, db.labels, 7, "l1")
    assert cells["none"]["map"] == pytest.approx(expected_map, abs=1e-9)
    assert cells["none"]["precision"] == pytest.approx(expected_p, abs=1e-9)
    hasher = make_hasher("trivial", 16, None, 32)
    expected_map, _ = reference_map(
        hasher.transform(q.embeddings), hasher.transform(db.embeddings), q.labels, db.labels, 7, "hamming"
    )
    assert cells["trivial"]["map"] == pytest.approx(expected_map, abs=1e-9)
    for seed, scores in zip((42, 84), cells["lsh"]["per_seed"], strict=True):
        hasher = make_hasher("lsh", 16, seed, 32)
        expected_map, _ = reference_map(
            hasher.transform(q.embeddings), hasher.transform(db.embeddings), q.labels, db.labels, 7, "hamming"
        )
        assert scores["map"] == pytest.approx(expected_map, abs=1e-9)


def test_label_sets_are_derived_from_the_stored_labels(store: Path) -> None:
    result = run("evaluate", "--store", store, "--model", "alpha", "--hash", "none", "--labels", "19,4", "--json")
    assert result.exit_code == 0, result.output
    cells = {c["column"]: c for c in json.loads(result.stdout)["results"]}
    assert set(cells) == {"BigEarthNet-19", "ForestNet-4"}
    data = EmbeddingStore(store)
    q, db = data.read("alpha", "bigearthnet", "val"), data.read("alpha", "bigearthnet", "test")
    convert = label_sets_for("bigearthnet")["19"].convert
    expected, _ = reference_map(q.embeddings, db.embeddings, convert(q.labels), convert(db.labels), 20, "l1")
    assert cells["BigEarthNet-19"]["map"] == pytest.approx(expected, abs=1e-9)


def test_a_dataset_rsir_does_not_know_is_scored_with_its_stored_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    centres = rng.integers(-4, 5, (5, 16))
    for split, n in (("val", 20), ("test", 50)):
        embeddings, labels = clustered(rng, n, 16, 5, centres)
        write_split(tmp_path, "m", "myarchive", split, embeddings, labels)
    result = run("evaluate", "--store", tmp_path, "--hash", "none", "--k", "5", "--json")
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(result.stdout)["results"]
    data = EmbeddingStore(tmp_path)
    q, db = data.read("m", "myarchive", "val"), data.read("m", "myarchive", "test")
    assert cell["column"] == "myarchive" and cell["label_set"] == ""
    assert cell["map"] == pytest.approx(reference_map(q.embeddings, db.embeddings, q.labels, db.labels, 5, "l1")[0])
    assert_one_line_error(
        run("evaluate", "--store", tmp_path, "--labels", "43"), r"no evaluated dataset has that label set", exit_code=2
    )


def test_stored_codes_and_in_memory_codes_give_the_same_numbers(store: Path) -> None:
    args = ("evaluate", "--store", store, "--model", "alpha", "--hash", "trivial,lsh,itq", "--bits", "16",
            "--seeds", "2", "--json")  # fmt: skip
    before = json.loads(run(*args).stdout)["results"]
    assert {c["codes"] for c in before} == {"memory"}
    for method in ("trivial", "lsh", "itq"):
        hashed = run("hash", "--store", store, "--model", "alpha", "--method", method, "--bits", "16", "--seeds", "2")
        assert hashed.exit_code == 0, hashed.output
    after = json.loads(run(*args).stdout)["results"]
    assert {c["codes"] for c in after} == {"store"}
    for a, b in zip(before, after, strict=True):
        assert (a["column"], a["method"]) == (b["column"], b["method"])
        assert a["per_seed"] == b["per_seed"]

    # Re-embedding the query split makes its tables stale, for evaluate and hash alike (one rule):
    # evaluate hashes in memory again, and hash rewrites exactly the val tables of that dataset.
    data = EmbeddingStore(store)
    val = data.read("alpha", "forestnet", "val")
    write_split(store, "alpha", "forestnet", "val", val.embeddings[::-1].copy(), val.labels, overwrite=True)
    stale = json.loads(run(*args).stdout)["results"]
    assert {(c["dataset"], c["codes"]) for c in stale} == {("bigearthnet", "store"), ("forestnet", "memory")}
    rehash = run("hash", "--store", store, "--model", "alpha", "--method", "itq", "--bits", "16", "--seeds", "2",
                 "--json")  # fmt: skip
    results = json.loads(rehash.stdout)["results"]
    written = {(r["dataset"], r["split"]) for r in results if r["state"] == "written"}
    assert written == {("forestnet", "val")}


def test_match_exact_and_distance_options(store: Path) -> None:
    any_result = run("evaluate", "--store", store, "--model", "alpha", "--dataset", "bigearthnet", "--hash", "none",
                     "--labels", "43", "--json")  # fmt: skip
    exact_result = run("evaluate", "--store", store, "--model", "alpha", "--dataset", "bigearthnet", "--hash", "none",
                       "--labels", "43", "--match", "exact", "--json")  # fmt: skip
    cosine = run("evaluate", "--store", store, "--model", "alpha", "--dataset", "bigearthnet", "--hash", "none",
                 "--labels", "43", "--distance", "cosine", "--json")  # fmt: skip
    for r in (any_result, exact_result, cosine):
        assert r.exit_code == 0, r.output
    any_map = json.loads(any_result.stdout)["results"][0]
    exact_map = json.loads(exact_result.stdout)["results"][0]
    assert exact_map["match"] == "exact" and exact_map["map"] < any_map["map"]
    assert json.loads(cosine.stdout)["results"][0]["distance"] == "cosine"


def test_store_without_test_split_is_one_clear_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_split(tmp_path, "m", "forestnet", "val", rng.standard_normal((5, 16)), np.eye(12, dtype=np.uint8)[:5])
    result = run("evaluate", "--store", tmp_path, "--model", "m", "--dataset", "forestnet")
    assert_one_line_error(result, r"no 'test' split.*rsir embed")
    result = run("evaluate", "--store", tmp_path)  # nothing to evaluate at all
    assert_one_line_error(result, r"both a 'val' and a 'test' split")


def test_mismatched_dims_between_splits_is_one_clear_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    labels = np.eye(12, dtype=np.uint8)[np.arange(6) % 12]
    write_split(tmp_path, "m", "forestnet", "val", rng.standard_normal((6, 16)), labels)
    write_split(tmp_path, "m", "forestnet", "test", rng.standard_normal((6, 24)), labels)
    assert_one_line_error(run("evaluate", "--store", tmp_path), r"16 dims but the 'test' ones have 24")


@pytest.mark.parametrize(
    ("args", "pattern", "code"),
    [
        (("--hash", "trivial", "--bits", "24"), r"--bits 24 does not divide the embedding dimension 32", 2),
        (("--hash", "lsh", "--bits", "20"), r"multiple of 8", 2),
        (("--hash", "sh"), r"unknown hash method 'sh'", 2),
        (("--hash", "none", "--distance", "hamming"), r"hamming applies to binary codes only", 2),
        (("--distance", "chebyshev"), r"unknown --distance", 2),
        (("--labels", "7"), r"no evaluated dataset has that label set", 2),
        (("--match", "some"), r"--match must be 'any' or 'exact'", 2),
        (("--model", "nobody"), r"holds no embeddings for nobody", 1),
    ],
)
def test_bad_options_are_one_clear_line(store: Path, args: tuple[str, ...], pattern: str, code: int) -> None:
    """Bad option values are usage errors (exit 2) wherever they are noticed; a store problem exits 1."""
    assert_one_line_error(run("evaluate", "--store", store, *args), pattern, exit_code=code)


def test_a_k_larger_than_the_database_is_clamped_like_search(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("evaluate", "--store", store, "--model", "alpha", "--hash", "none", "--k", "1000000000", "--json")
    assert result.exit_code == 0, result.output
    assert "evaluating at k = 120" in result.stderr
    assert {c["k"] for c in json.loads(result.stdout)["results"]} == {120}

    from rsir_cli import evaluation

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(evaluation, "evaluate_store", exhausted)
    failed = run("evaluate", "--store", store)
    assert failed.exit_code == 1 and "out of memory: lower --k" in failed.output
    assert "--batch-size" not in failed.output  # evaluate has no such option
