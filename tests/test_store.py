"""The store contract: layout, commits as segments, resume, locking, shards, codes, older files, damage."""

from __future__ import annotations

import os
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


def _fill(store: EmbeddingStore, rows: int = 10) -> None:
    with _writer(store, rows) as writer:
        for start in range(0, rows, 4):
            writer.append(*_batch(start, min(4, rows - start)))
        writer.finish()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_layout_and_roundtrip(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with _writer(store) as writer:
        for start in (0, 4, 8):
            n = min(4, 10 - start)
            embeddings, ids, labels = _batch(start, n)
            writer.append(embeddings, ids, labels, dates=[f"2017-06-{10 + i:02d}" for i in range(start, start + n)])
        writer.finish()
    assert _tree(tmp_path) == {"m", "m/d", "m/d/val.h5"}  # the run's folder is gone once it is complete
    data = store.read("m", "d", "val", footprints=True)
    expected, ids, labels = _batch(0, 10)
    np.testing.assert_array_equal(data.embeddings, expected)
    assert data.ids == ids and data.dates == [f"2017-06-{10 + i:02d}" for i in range(10)]
    np.testing.assert_array_equal(data.labels, labels)
    assert data.attrs["bands"] == ["B02", "B03"]
    assert data.attrs["schema_version"] == SCHEMA_VERSION and data.attrs["complete"] is True
    assert np.isnan(data.footprints.bounds).all() and data.footprints.crs == [""] * 10
    with h5py.File(tmp_path / "m" / "d" / "val.h5") as f:  # inspectable with plain h5py / h5ls
        assert f["embeddings"].dtype == np.float32 and f["embeddings"].shape == (10, 8)
        assert f.attrs["rows_committed"] == 10


def test_each_commit_is_one_segment_file_and_a_restart_continues_after_it(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, commit_seconds=0)
    writer = _writer(store)
    writer.append(*_batch(0, 4))
    writer.append(*_batch(4, 3))
    run = tmp_path / "m" / "d" / "val.partial"
    assert sorted(p.name for p in run.iterdir()) == [
        "header.json",
        "lock",
        "rows-0000000000-0000000004.h5",
        "rows-0000000004-0000000007.h5",
    ]
    writer._lock.release()  # the process dies here: nothing more is written, the kernel drops the lock
    (run / ".rows-0000000007-0000000010.h5.999999.tmp").write_bytes(b"half a segment")  # killed mid-write

    with _writer(store) as resumed:
        assert resumed.rows_done == 7
        assert resumed.ids_done == [f"id{i}" for i in range(7)]
        resumed.append(*_batch(7, 3))
        resumed.finish()
    np.testing.assert_array_equal(store.read("m", "d", "val").embeddings, _batch(0, 10)[0])
    assert not run.exists()


def test_a_damaged_segment_and_everything_after_it_is_embedded_again(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, commit_seconds=0)
    writer = _writer(store)
    for start in (0, 3, 6):
        writer.append(*_batch(start, 3))
    writer._lock.release()
    run = tmp_path / "m" / "d" / "val.partial"
    damaged = run / "rows-0000000003-0000000006.h5"
    damaged.write_bytes(damaged.read_bytes()[:100])  # bit rot / a copy cut short
    with _writer(store) as resumed:
        assert resumed.rows_done == 3
        assert sorted(p.name for p in run.iterdir() if p.name.startswith("rows")) == ["rows-0000000000-0000000003.h5"]


def test_buffered_rows_are_committed_when_the_writer_closes(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, commit_seconds=3600)
    with _writer(store) as writer:
        writer.append(*_batch(0, 4))
        assert writer.rows_done == 0  # buffered, not committed yet
    with _writer(store) as resumed:
        assert resumed.rows_done == 4


def test_settings_decide_between_resume_nothing_to_do_and_refusal(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with _writer(store) as writer:
        writer.append(*_batch(0, 4))
    other = {**ATTRS, "weights_sha256": "other"}
    with pytest.raises(StoreError, match="unfinished run made with different settings.*weights_sha256.*--overwrite"):
        store.writer("m", "d", "val", attrs=other, dim=8, n_labels=3, rows_expected=10, resume_keys=("weights_sha256",))
    with pytest.raises(StoreError, match="incomplete \\(4 of 10 rows.*run the same"):
        store.read("m", "d", "val")
    with _writer(store) as resumed:
        resumed.append(*_batch(4, 6))
        resumed.finish()
    with _writer(store) as again:  # a complete file made with these settings: nothing to do
        assert again.up_to_date and again.rows_done == 10
        assert again.ids_done == _batch(0, 10)[1]
        again.finish()
    assert _tree(tmp_path) == {"m", "m/d", "m/d/val.h5"}
    with pytest.raises(StoreError, match="complete file made with different settings.*--overwrite"):
        store.writer("m", "d", "val", attrs=other, dim=8, n_labels=3, rows_expected=10, resume_keys=("weights_sha256",))


def test_overwrite_keeps_the_old_file_until_the_new_one_is_complete(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    _fill(store)
    with _writer(store, overwrite=True) as fresh:
        assert fresh.rows_done == 0 and not fresh.up_to_date
        fresh.append(_batch(0, 4)[0] + 1000, *_batch(0, 4)[1:])
    np.testing.assert_array_equal(store.read("m", "d", "val").embeddings, _batch(0, 10)[0])  # still the old one


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with _writer(store):
        with pytest.raises(StoreError, match=f"being written by another rsir process \\(pid {os.getpid()}\\)"):
            _writer(store)


def test_bad_rows_are_refused_before_they_are_committed(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, commit_seconds=0)
    with _writer(store) as writer:
        embeddings, ids, labels = _batch(0, 4)
        embeddings[2, 5] = np.nan
        with pytest.raises(StoreError, match="non-finite embeddings.*1 of 4.*'id2'.*nothing of this batch"):
            writer.append(embeddings, ids, labels)
        embeddings[2, 5] = np.inf
        with pytest.raises(StoreError, match="non-finite"):
            writer.append(embeddings, ids, labels)
        writer.append(*_batch(0, 2))
        with pytest.raises(StoreError, match="'id1' comes twice.*rows 1 and 2"):
            writer.append(*_batch(1, 2))
        with pytest.raises(StoreError, match="'id5' comes twice.*rows 2 and 3"):
            writer.append(_batch(0, 2)[0], ["id5", "id5"], _batch(0, 2)[2])
        assert writer.rows_done == 2


def test_unknown_schema_version_is_refused_with_advice(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    _fill(store, 2)
    path = tmp_path / "m" / "d" / "val.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*--overwrite"):
        store.read("m", "d", "val")


def test_damaged_files_are_diagnosed_as_damaged(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    _fill(store)
    path = tmp_path / "m" / "d" / "val.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="val.h5 is damaged \\(the file is truncated: .* of its .* bytes") as caught:
        store.read("m", "d", "val")
    assert "--overwrite" in str(caught.value) and "lock" not in str(caught.value)
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="is damaged \\(the file is empty\\)"):
        store.read("m", "d", "val")
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="is not an HDF5 file"):
        store.read("m", "d", "val")


def test_shards_are_joined_in_order_and_missing_or_unfinished_shards_named(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    total = 10
    for index in (1, 2, 3):
        shard = Shard(index, 3)
        start, stop = shard.bounds(total)
        with store.writer(
            "m", "d", "test", attrs=ATTRS, dim=8, n_labels=3, rows_expected=stop - start, shard=shard
        ) as writer:
            writer.append(*_batch(start, stop - start))
            if index == 3:
                with pytest.raises(StoreError, match="shard\\(s\\) 3/3 are still being embedded.*--shard 3/3"):
                    store.read("m", "d", "test")
            writer.finish()
        if index == 2:
            with pytest.raises(StoreError, match="shard\\(s\\) 3/3 are missing.*--shard 3/3"):
                store.read("m", "d", "test")
    data = store.read("m", "d", "test")
    np.testing.assert_array_equal(data.embeddings, _batch(0, total)[0])
    assert [s.split for s in store.summaries()] == ["test"]
    assert store.summaries()[0].rows == total and store.summaries()[0].shards == "3"


def test_shard_bounds_cover_the_split_exactly() -> None:
    for total in (0, 1, 7, 100, 125866):
        for count in (1, 3, 8):
            ranges = [Shard(i, count).bounds(total) for i in range(1, count + 1)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    with pytest.raises(StoreError):
        Shard.parse("0/4")
    assert Shard.parse(" 2/8 ") == Shard(2, 8)


def test_codes_live_in_their_own_file_and_never_touch_the_embeddings(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    _fill(store)
    embeddings_file = tmp_path / "m" / "d" / "val.h5"
    before = embeddings_file.read_bytes(), embeddings_file.stat().st_mtime_ns
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
    assert (tmp_path / "m" / "d" / "val.codes" / "lsh-32-s42.h5").is_file()
    assert (embeddings_file.read_bytes(), embeddings_file.stat().st_mtime_ns) == before
    codes = store.read_codes("m", "d", "val", "lsh-32-s42")
    np.testing.assert_array_equal(codes.bits, bits)
    np.testing.assert_array_equal(codes.hasher["planes"], planes)
    assert codes.n_bits == 32 and codes.attrs["seed"] == 42 and codes.hasher_attrs["dim"] == 8
    assert codes.content_digest == store.content_digest("m", "d", "val") != ""
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
    with pytest.raises(StoreError, match="no codes named 'trivial-32'"):
        store.read_codes("m", "d", "val", "trivial-32")
    with pytest.raises(StoreError, match="5 codes for a split of more rows"):
        store.write_codes("m", "d", "val", "x-8", bits[:5], attrs={}, hasher={}, hasher_attrs={})


def test_the_content_digest_identifies_the_embeddings_whatever_the_batching(tmp_path: Path) -> None:
    one, other, changed = EmbeddingStore(tmp_path / "a"), EmbeddingStore(tmp_path / "b"), EmbeddingStore(tmp_path / "c")
    _fill(one)
    with _writer(other) as writer:
        for start, n in ((0, 1), (1, 6), (7, 3)):
            writer.append(*_batch(start, n))
        writer.finish()
    with _writer(changed) as writer:
        embeddings, ids, labels = _batch(0, 10)
        embeddings[9, 0] += 1
        writer.append(embeddings, ids, labels)
        writer.finish()
    assert one.content_digest("m", "d", "val") == other.content_digest("m", "d", "val")
    assert one.content_digest("m", "d", "val") != changed.content_digest("m", "d", "val")


def test_footprints_are_stored(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    fp = Footprints(["EPSG:32633"] * 2, np.array([[0, 0, 1, 1], [1, 1, 2, 2]], float), np.zeros((2, 4, 2)))
    with _writer(store, rows=2) as writer:
        writer.append(*_batch(0, 2), footprints=fp)
        writer.finish()
    data = store.read("m", "d", "val", footprints=True)
    assert data.footprints.crs == ["EPSG:32633"] * 2
    np.testing.assert_array_equal(data.footprints.bounds, fp.bounds)


def test_missing_split_says_what_to_run_with_the_users_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"rsir embed --model m --dataset d --split test --store {tmp_path}`"):
        EmbeddingStore(tmp_path).read("m", "d", "test")


def _legacy_file(path: Path, rows: int, committed: int, complete: bool) -> None:
    """A file as rsir 0.1/0.2 wrote it (schema 1: chunked, resized in place, codes inside)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    embeddings, ids, labels = _batch(0, rows)
    string = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=embeddings, maxshape=(None, 8), chunks=(4, 8))
        f.create_dataset("labels", data=labels, maxshape=(None, 3), chunks=(4, 3))
        f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=string, maxshape=(None,), chunks=(4,))
        f.create_dataset("footprint_crs", data=np.asarray([""] * rows, dtype=object), dtype=string, maxshape=(None,))
        f.create_dataset("footprint_bounds", data=np.full((rows, 4), np.nan), maxshape=(None, 4))
        f.create_dataset("footprint_lonlat", data=np.full((rows, 4, 2), np.nan), maxshape=(None, 4, 2))
        f.create_group("codes").create_group("trivial-8").create_dataset("bits", data=np.zeros((rows, 1), np.uint8))
        for key, value in {
            **ATTRS,
            "bands": '["B02", "B03"]',
            "label_names": '["a", "b", "c"]',
            "schema_version": 1,
            "model": "m",
            "dataset": "d",
            "split": "val",
            "embedding_dim": 8,
            "rows_expected": 10,
            "rows_committed": committed,
            "complete": complete,
        }.items():
            f.attrs[key] = value


def test_files_of_the_older_format_are_read_and_an_unfinished_one_is_continued(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    path = tmp_path / "m" / "d" / "val.h5"
    _legacy_file(path, rows=10, committed=10, complete=True)
    data = store.read("m", "d", "val")
    np.testing.assert_array_equal(data.embeddings, _batch(0, 10)[0])
    assert data.dates == [""] * 10 and store.code_names("m", "d", "val") == []  # old in-file codes: hash again
    with _writer(store) as writer:
        assert writer.up_to_date

    _legacy_file(path, rows=6, committed=5, complete=False)  # a run killed after 5 committed rows
    with _writer(store) as resumed:
        assert resumed.rows_done == 5 and resumed.ids_done == _batch(0, 5)[1]
        assert not path.exists()  # its rows now live in the run's first segment
        resumed.append(*_batch(5, 5))
        resumed.finish()
    np.testing.assert_array_equal(store.read("m", "d", "val").embeddings, _batch(0, 10)[0])


def test_an_abandoned_run_leaves_nothing_and_keeps_the_complete_file(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, commit_seconds=0)
    _fill(store)
    before = (tmp_path / "m" / "d" / "val.h5").read_bytes()
    writer = _writer(store, overwrite=True)
    writer.append(*_batch(0, 4))
    writer.abandon()
    assert _tree(tmp_path) == {"m", "m/d", "m/d/val.h5"} and (tmp_path / "m" / "d" / "val.h5").read_bytes() == before


def test_open_rows_reads_the_rows_asked_for_across_shards_and_code_tables(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    total = 11
    for index in (1, 2, 3):
        shard = Shard(index, 3)
        start, stop = shard.bounds(total)
        with store.writer(
            "m", "d", "test", attrs=ATTRS, dim=8, n_labels=3, rows_expected=stop - start, shard=shard
        ) as w:
            w.append(*_batch(start, stop - start))
            w.finish()
    bits = np.arange(total * 2, dtype=np.uint8).reshape(total, 2)
    store.write_codes("m", "d", "test", "trivial-16", bits, attrs={"n_bits": 16}, hasher={}, hasher_attrs={})
    truth = _batch(0, total)[0]
    with store.open_rows("m", "d", "test", codes=["trivial-16"]) as rows:
        assert (
            rows.embeddings.shape == (total, 8)
            and rows.embeddings.dtype == np.float32
            and len(rows.embeddings) == total
        )
        for index in ([7, 1, 9, 1], [0, 3, 4, 10], list(range(total)), []):
            np.testing.assert_array_equal(rows.embeddings[np.array(index, dtype=np.int64)], truth[index])
            np.testing.assert_array_equal(rows.codes["trivial-16"][np.array(index, dtype=np.int64)], bits[index])
        np.testing.assert_array_equal(rows.embeddings[2:9], truth[2:9])  # a slice over all three shards
        with pytest.raises(IndexError):
            rows.embeddings[np.array([total])]
    with pytest.raises(StoreError, match="no codes named 'lsh-8-s1'"):
        with store.open_rows("m", "d", "test", codes=["lsh-8-s1"]):
            pass
    _legacy_file(tmp_path / "m" / "d" / "val.h5", rows=10, committed=10, complete=True)  # chunked, schema 1
    with store.open_rows("m", "d", "val") as rows:
        np.testing.assert_array_equal(rows.embeddings[np.array([9, 0, 4])], _batch(0, 10)[0][[9, 0, 4]])
