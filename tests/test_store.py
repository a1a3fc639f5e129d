"""The store contract: layout, append/commit, resume after a crash, shards, codes, schema checks."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from rsir_cli.errors import StoreError
from rsir_cli.geo import Footprints
from rsir_cli.store import SCHEMA_VERSION, EmbeddingStore, Shard

ATTRS = {"weights_sha256": "abc", "bands": ["B02", "B03"], "label_names": ["a", "b", "c"]}


def _batch(start: int, n: int, dim: int = 8) -> tuple[np.ndarray, list[str], np.ndarray]:
    rows = np.arange(start, start + n)
    embeddings = (rows[:, None] * 10 + np.arange(dim)[None, :]).astype(np.float32)
    labels = np.stack([rows % 2, rows % 3 == 0, np.ones_like(rows)], axis=1).astype(np.uint8)
    return embeddings, [f"id{r}" for r in rows], labels


def _writer(store: EmbeddingStore, rows: int = 10, **kwargs):
    return store.writer(
        "m", "d", "val", attrs=ATTRS, dim=8, n_labels=3, rows_expected=rows, resume_keys=("weights_sha256",), **kwargs
    )


def test_layout_and_roundtrip(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with _writer(store) as writer:
        for start in (0, 4, 8):
            n = min(4, 10 - start)
            writer.append(*_batch(start, n))
        writer.finish()
    assert (tmp_path / "m" / "d" / "val.h5").is_file()
    data = store.read("m", "d", "val", footprints=True)
    expected, ids, labels = _batch(0, 10)
    np.testing.assert_array_equal(data.embeddings, expected)
    assert data.ids == ids
    np.testing.assert_array_equal(data.labels, labels)
    assert data.attrs["bands"] == ["B02", "B03"]
    assert data.attrs["schema_version"] == SCHEMA_VERSION and data.attrs["complete"] is True
    assert np.isnan(data.footprints.bounds).all() and data.footprints.crs == [""] * 10
    with h5py.File(tmp_path / "m" / "d" / "val.h5") as f:  # inspectable with plain h5py / h5ls
        assert f["embeddings"].dtype == np.float32 and f["embeddings"].chunks is not None


def test_resume_truncates_rows_past_the_last_commit(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    writer = _writer(store)
    writer.append(*_batch(0, 4))
    # Simulate a crash in the middle of the next batch: data written, commit record not advanced.
    f = writer._file
    for name in ("embeddings", "labels"):
        f[name].resize(6, axis=0)
    f["embeddings"][4:6] = 999
    writer.close()

    with _writer(store) as resumed:
        assert resumed.rows_done == 4
        assert resumed.ids_done == [f"id{i}" for i in range(4)]
        resumed.append(*_batch(4, 6))
        resumed.finish()
    data = store.read("m", "d", "val")
    np.testing.assert_array_equal(data.embeddings, _batch(0, 10)[0])


def test_resume_refuses_other_settings_and_complete_files(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    writer = _writer(store)
    writer.append(*_batch(0, 4))
    writer.close()
    with pytest.raises(StoreError, match="different settings.*weights_sha256"):
        store.writer(
            "m",
            "d",
            "val",
            attrs={**ATTRS, "weights_sha256": "other"},
            dim=8,
            n_labels=3,
            rows_expected=10,
            resume_keys=("weights_sha256",),
        )
    with pytest.raises(StoreError, match="incomplete .*4 of 10.*run the same"):
        store.read("m", "d", "val")
    with _writer(store) as resumed:
        resumed.append(*_batch(4, 6))
        resumed.finish()
    with pytest.raises(StoreError, match="already complete.*--overwrite"):
        _writer(store)
    with _writer(store, overwrite=True) as fresh:
        assert fresh.rows_done == 0


def test_incompatible_schema_version_is_refused_with_advice(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with _writer(store, rows=2) as writer:
        writer.append(*_batch(0, 2))
        writer.finish()
    with h5py.File(tmp_path / "m" / "d" / "val.h5", "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*--overwrite"):
        store.read("m", "d", "val")


def test_damaged_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m" / "d" / "val.h5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="damaged or not an rsir store file"):
        EmbeddingStore(tmp_path).read("m", "d", "val")


def test_shards_are_joined_in_order_and_missing_shards_named(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    total = 10
    for index in (1, 2, 3):
        shard = Shard(index, 3)
        start, stop = shard.bounds(total)
        with store.writer(
            "m", "d", "test", attrs=ATTRS, dim=8, n_labels=3, rows_expected=stop - start, shard=shard
        ) as writer:
            writer.append(*_batch(start, stop - start))
            writer.finish()
        if index == 2:
            with pytest.raises(StoreError, match="shard\\(s\\) 3/3 are missing"):
                store.read("m", "d", "test")
    data = store.read("m", "d", "test")
    np.testing.assert_array_equal(data.embeddings, _batch(0, total)[0])
    assert [s.split for s in store.summaries()] == ["test"]
    assert store.summaries()[0].rows == total


def test_shard_bounds_cover_the_split_exactly() -> None:
    for total in (0, 1, 7, 100, 125866):
        for count in (1, 3, 8):
            ranges = [Shard(i, count).bounds(total) for i in range(1, count + 1)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    with pytest.raises(StoreError):
        Shard.parse("0/4")
    assert Shard.parse(" 2/8 ") == Shard(2, 8)


def test_codes_roundtrip_with_hasher_params_and_replacement(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with _writer(store) as writer:
        writer.append(*_batch(0, 10))
        writer.finish()
    bits = np.arange(40, dtype=np.uint8).reshape(10, 4)
    planes = np.random.default_rng(0).normal(size=(32, 8))
    store.write_codes(
        "m",
        "d",
        "val",
        "lsh-32-s42",
        bits,
        attrs={"method": "lsh", "n_bits": 32, "seed": 42},
        hasher={"planes": planes},
        hasher_attrs={"dim": 8},
    )
    codes = store.read_codes("m", "d", "val", "lsh-32-s42")
    np.testing.assert_array_equal(codes.bits, bits)
    np.testing.assert_array_equal(codes.hasher["planes"], planes)
    assert codes.n_bits == 32 and codes.attrs["seed"] == 42 and codes.hasher_attrs["dim"] == 8
    store.write_codes(
        "m",
        "d",
        "val",
        "lsh-32-s42",
        bits[::-1].copy(),
        attrs={"method": "lsh", "n_bits": 32},
        hasher={},
        hasher_attrs={},
    )
    np.testing.assert_array_equal(store.read_codes("m", "d", "val", "lsh-32-s42").bits, bits[::-1])
    assert store.code_names("m", "d", "val") == ["lsh-32-s42"]
    with pytest.raises(StoreError, match="no codes named 'trivial-32'.*rsir hash"):
        store.read_codes("m", "d", "val", "trivial-32")
    with pytest.raises(StoreError, match="codes for a split of more rows"):
        store.write_codes("m", "d", "val", "x-8", bits[:5], attrs={}, hasher={}, hasher_attrs={})


def test_footprints_are_stored(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    fp = Footprints(["EPSG:32633"] * 2, np.array([[0, 0, 1, 1], [1, 1, 2, 2]], float), np.zeros((2, 4, 2)))
    with _writer(store, rows=2) as writer:
        writer.append(*_batch(0, 2), footprints=fp)
        writer.finish()
    data = store.read("m", "d", "val", footprints=True)
    assert data.footprints.crs == ["EPSG:32633"] * 2
    np.testing.assert_array_equal(data.footprints.bounds, fp.bounds)


def test_missing_split_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="rsir embed --model m --dataset d --split test"):
        EmbeddingStore(tmp_path).read("m", "d", "test")
