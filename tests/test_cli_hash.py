"""`rsir hash` through the CLI: codes beside the embeddings, fitted on the database, no-op reruns, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir_cli.hashing import hasher_from_codes, make_hasher, unpack
from rsir_cli.store import EmbeddingStore
from tests.cli import assert_one_line_error, run
from tests.helpers import write_split


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    rng = np.random.default_rng(0)
    for dataset, n_labels in (("bigearthnet", 43), ("forestnet", 12)):
        for split, n in (("val", 30), ("test", 70)):
            embeddings = rng.standard_normal((n, 48)) * np.linspace(2, 0.2, 48) + 0.4
            labels = np.eye(n_labels, dtype=np.uint8)[rng.integers(0, n_labels, n)]
            write_split(root, "m", dataset, split, embeddings, labels)
    return root


def states(result) -> list[tuple[str, str, str, str]]:
    return [(r["dataset"], r["split"], r["code"], r["state"]) for r in json.loads(result.stdout)["results"]]


def test_trivial_codes_for_every_split_then_a_no_op_rerun(store: Path) -> None:
    first = run("hash", "--store", store, "--method", "trivial", "--bits", "16", "--json")
    assert first.exit_code == 0, first.output
    assert sorted(states(first)) == [
        (d, s, "trivial-16", "written") for d in ("bigearthnet", "forestnet") for s in ("test", "val")
    ]
    data = EmbeddingStore(store)
    for dataset in ("bigearthnet", "forestnet"):
        for split in ("val", "test"):
            codes = data.read_codes("m", dataset, split, "trivial-16")
            embeddings = data.read("m", dataset, split).embeddings
            # packed 8 bits per byte, equal to the strided group means, hand-computed here
            expected = (embeddings.reshape(len(embeddings), 3, 16).mean(axis=1) > 0).astype(np.uint8)
            assert codes.bits.dtype == np.uint8 and codes.bits.shape == (len(embeddings), 2)
            np.testing.assert_array_equal(unpack(codes.bits, 16), expected)
    again = run("hash", "--store", store, "--method", "trivial", "--bits", "16")
    assert again.exit_code == 0, again.output
    assert "exists" in again.stdout and "written" not in again.stdout
    assert "Nothing to do" in again.output
    forced = run("hash", "--store", store, "--method", "trivial", "--bits", "16", "--force", "--json")
    assert {s[3] for s in states(forced)} == {"written"}


def test_lsh_seeds_use_the_same_hyperplanes_for_queries_and_database(store: Path) -> None:
    result = run(
        "hash", "--store", store, "--method", "lsh", "--bits", "32", "--seeds", "3", "--dataset", "forestnet", "--json"
    )
    assert result.exit_code == 0, result.output
    assert sorted({s[2] for s in states(result)}) == ["lsh-32-s126", "lsh-32-s42", "lsh-32-s84"]
    data = EmbeddingStore(store)
    assert data.code_names("m", "bigearthnet", "val") == []  # only the dataset asked for
    for seed in (42, 84, 126):
        val = data.read_codes("m", "forestnet", "val", f"lsh-32-s{seed}")
        test = data.read_codes("m", "forestnet", "test", f"lsh-32-s{seed}")
        np.testing.assert_array_equal(val.hasher["planes"], test.hasher["planes"])
        np.testing.assert_array_equal(val.hasher["planes"], np.random.RandomState(seed).randn(32, 48))
        np.testing.assert_array_equal(
            test.bits, make_hasher("lsh", 32, seed, 48).transform(data.read("m", "forestnet", "test").embeddings)
        )


def test_itq_is_fitted_on_the_test_split_and_applied_unchanged(store: Path) -> None:
    result = run("hash", "--store", store, "--method", "itq", "--bits", "16", "--seed", "7", "--dataset", "bigearthnet")
    assert result.exit_code == 0, result.output
    data = EmbeddingStore(store)
    test = data.read("m", "bigearthnet", "test").embeddings
    val = data.read("m", "bigearthnet", "val").embeddings
    val_codes = data.read_codes("m", "bigearthnet", "val", "itq-16-s7")
    hasher = hasher_from_codes(val_codes)
    assert hasher.attrs()["fitted_on"] == "test" and hasher.attrs()["fit_rows"] == 70
    np.testing.assert_allclose(hasher.mean, test.astype(np.float64).mean(axis=0), atol=1e-12)
    refit = make_hasher("itq", 16, 7, 48).fit(test)
    np.testing.assert_array_equal(val_codes.bits, refit.transform(val))

    # Re-embedding the test split makes the fitted codes of val stale: the next run refits them.
    write_split(store, "m", "bigearthnet", "test", test[::-1] * 2, np.zeros((70, 43), np.uint8), overwrite=True)
    rerun = run("hash", "--store", store, "--method", "itq", "--bits", "16", "--seed", "7", "--dataset", "bigearthnet",
                "--json")  # fmt: skip
    assert sorted(states(rerun)) == [
        ("bigearthnet", "test", "itq-16-s7", "written"),
        ("bigearthnet", "val", "itq-16-s7", "written"),
    ]


def test_a_single_split_archive_is_fitted_on_that_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    embeddings = rng.standard_normal((50, 24)) + 1.0
    write_split(tmp_path, "m", "myarchive", "all", embeddings, np.zeros((50, 1), np.uint8))
    result = run("hash", "--store", tmp_path, "--method", "pca", "--bits", "8", "--json")
    assert result.exit_code == 0, result.output
    codes = EmbeddingStore(tmp_path).read_codes("m", "myarchive", "all", "pca-8")
    assert codes.hasher_attrs["fitted_on"] == "all"
    np.testing.assert_array_equal(
        codes.bits, make_hasher("pca", 8, None, 24).fit(embeddings.astype(np.float32)).transform(embeddings)
    )


@pytest.mark.parametrize(
    ("args", "pattern", "code"),
    [
        (("--method", "sh", "--bits", "32"), r"unknown hash method 'sh'", 2),
        (("--method", "trivial", "--bits", "40"), r"--bits 40 does not divide the embedding dimension 48", 2),
        (("--method", "lsh", "--bits", "12"), r"multiple of 8", 2),
        (("--method", "lsh", "--bits", "32", "--seed", "1", "--seeds", "2"), r"either --seed or --seeds", 2),
        (("--method", "binary", "--bits", "32"), r"--bits must be 48", 2),
        (("--method", "trivial", "--bits", "16", "--model", "other"), r"holds no embeddings for other", 1),
    ],
)
def test_bad_input_is_one_clear_line(store: Path, args: tuple[str, ...], pattern: str, code: int) -> None:
    assert_one_line_error(run("hash", "--store", store, *args), pattern, exit_code=code)
    assert EmbeddingStore(store).code_names("m", "forestnet", "val") == []  # nothing written


def test_learned_method_without_a_database_split_is_one_clear_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    for split in ("train", "val"):
        write_split(tmp_path, "m", "forestnet", split, rng.standard_normal((5, 16)), np.eye(12, dtype=np.uint8)[:5])
    assert_one_line_error(run("hash", "--store", tmp_path, "--method", "itq", "--bits", "8"), r"no 'test' split to fit")


def test_mismatched_dims_between_splits_is_one_clear_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    write_split(tmp_path, "m", "forestnet", "val", rng.standard_normal((5, 16)), np.eye(12, dtype=np.uint8)[:5])
    write_split(tmp_path, "m", "forestnet", "test", rng.standard_normal((5, 24)), np.eye(12, dtype=np.uint8)[:5])
    assert_one_line_error(
        run("hash", "--store", tmp_path, "--method", "trivial", "--bits", "8"), r"different embedding dims"
    )


@pytest.mark.slow
def test_fake_encoder_store_end_to_end(tmp_path: Path, ben_root: Path, fake_encoder: str) -> None:
    """embed (random weights) -> hash -> evaluate, through the CLI: codes used, random weights marked."""
    store = tmp_path / "store"
    embedded = run("embed", "--model", fake_encoder, "--dataset", "bigearthnet", "--data-dir", ben_root,
                   "--store", store, "--random-weights", "--workers", "0")  # fmt: skip
    assert embedded.exit_code == 0, embedded.output
    hashed = run("hash", "--store", store, "--method", "trivial", "--bits", "32")
    assert hashed.exit_code == 0, hashed.output
    result = run("evaluate", "--store", store, "--hash", "none,binary,trivial", "--json")
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)["results"]
    assert {c["column"] for c in cells} == {"BigEarthNet-43", "BigEarthNet-19"}
    assert all(c["random_weights"] and c["n_queries"] == 6 and c["n_database"] == 10 for c in cells)
    assert {c["codes"] for c in cells if c["method"] == "trivial"} == {"store"}
    assert {c["bits"] for c in cells if c["method"] == "binary"} == {64}
