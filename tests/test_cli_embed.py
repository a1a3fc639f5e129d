"""`rsir embed` and `rsir info` through the CLI: results, resume after SIGKILL, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from rsir_cli.store import EmbeddingStore
from tests.cli import assert_one_line_error, assert_usage_error, run


def fake_embed(data_dir: Path) -> list[object]:
    """The start of `rsir embed` with the fake encoder on a BigEarthNet tree."""
    return ["embed", "-m", "fake", "-d", "bigearthnet", "--data-dir", data_dir]


def test_embed_fake_model_writes_both_splits_with_labels_and_footprints(
    tmp_path: Path, ben_root: Path, fake_encoder: str
) -> None:
    store = tmp_path / "store"
    result = run(
        "embed",
        "--model",
        fake_encoder,
        "--dataset",
        "bigearthnet",
        "--data-dir",
        ben_root,
        "--store",
        store,
        "--random-weights",
        "--workers",
        "0",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(r["split"], r["rows"]) for r in report] == [("val", 6), ("test", 10)]
    data = EmbeddingStore(store).read("fake", "bigearthnet", "val", footprints=True)
    assert data.embeddings.shape == (6, 64) and np.isfinite(data.embeddings).all()
    assert data.ids == (ben_root / "splits" / "val.csv").read_text().split(",")[0:1] + [
        line.split(",")[0] for line in (ben_root / "splits" / "val.csv").read_text().splitlines()[1:]
    ]
    meta = json.loads((ben_root / "BigEarthNet-v1.0" / data.ids[0] / f"{data.ids[0]}_labels_metadata.json").read_text())
    assert sorted(np.array(data.label_names)[data.labels[0] == 1]) == sorted(meta["labels"])
    assert data.attrs["random_weights"] is True and data.attrs["bands"] == ["B02", "B03", "B04", "B8A", "B11", "B12"]
    # UTM 33N at ~48 N: the footprint lies around 15 E (central meridian) and 48 N.
    lon, lat = data.footprints.lonlat[0].mean(axis=0)
    assert 10 < lon < 20 and 45 < lat < 52

    info = run("info", "--store", store, "--json")
    splits = {(s["split"], s["rows"], s["complete"]) for s in json.loads(info.stdout)["splits"]}
    assert splits == {("val", 6, True), ("test", 10, True)}

    before = (store / "fake" / "bigearthnet" / "val.h5").read_bytes()
    again = run(*fake_embed(ben_root), "--store", store, "--random-weights", "--split", "val", "--json")
    assert again.exit_code == 0, again.output  # a rerun of a finished job: nothing to do
    assert [r["state"] for r in json.loads(again.stdout)] == ["up to date"]
    assert (store / "fake" / "bigearthnet" / "val.h5").read_bytes() == before
    other = run(*fake_embed(ben_root), "--store", store, "--random-weights", "--split", "val", "--precision", "bf16")
    assert_one_line_error(other, "made with different settings \\(precision: 'fp32' there, 'bf16' now\\).*--overwrite")
    forced = run(*fake_embed(ben_root), "--store", store, "--random-weights", "--split", "val", "--precision", "bf16",
                 "--overwrite", "--workers", "0")  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert EmbeddingStore(store).attrs("fake", "bigearthnet", "val")["precision"] == "bf16"


def test_embed_matches_a_direct_encoder_call(tmp_path: Path, ben_root: Path, fake_encoder: str) -> None:
    """Batching, workers and the store change nothing: rows equal encoding each patch alone."""
    from rsir_cli.datasets import open_split
    from rsir_cli.embedding import embed_images
    from rsir_cli.models import build_encoder, get_model_config

    store = tmp_path / "store"
    assert (
        run(
            *fake_embed(ben_root),
            "--store",
            store,
            "--random-weights",
            "--split",
            "test",
            "--batch-size",
            "3",
            "--workers",
            "2",
        ).exit_code
        == 0
    )
    data = EmbeddingStore(store).read("fake", "bigearthnet", "test")
    encoder = build_encoder(get_model_config("fake"), random_weights=True)
    reader = open_split("bigearthnet", "test", ben_root)
    for i in (0, 4, 9):
        image = reader.load(i, encoder.config.read_bands).image[None]
        np.testing.assert_allclose(
            embed_images(encoder, image, device="cpu")[0], data.embeddings[i], rtol=1e-5, atol=1e-6
        )


def _embed_subprocess(store: Path, data_dir: Path, delay: str) -> subprocess.Popen:
    env = {**os.environ, "RSIR_FAKE_DELAY": delay}
    command = [sys.executable, "-m", "rsir_cli", "-q", "embed", "-m", "fake", "-d", "bigearthnet", "--data-dir", str(data_dir),
               "--store", str(store), "--random-weights", "--split", "test", "--batch-size", "2", "--workers", "0"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _committed(store: Path) -> int:
    """Rows committed so far (by a run in progress, or in the complete file)."""
    return sum(s.rows for s in EmbeddingStore(store).summaries())


@pytest.mark.slow
def test_killed_and_resumed_embed_equals_an_uninterrupted_run(
    tmp_path: Path, ben_root: Path, fake_encoder: str
) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    process = _embed_subprocess(killed, ben_root, delay="1.1")  # > the 1 s commit interval
    deadline = time.time() + 120
    while _committed(killed) < 4 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows_at_kill = _committed(killed)
    assert 4 <= rows_at_kill < 10, "the run should have been killed half-way"

    assert _embed_subprocess(killed, ben_root, delay="0").wait() == 0
    assert _embed_subprocess(clean, ben_root, delay="0").wait() == 0
    a = EmbeddingStore(killed).read("fake", "bigearthnet", "test", footprints=True)
    b = EmbeddingStore(clean).read("fake", "bigearthnet", "test", footprints=True)
    assert a.ids == b.ids and len(a.ids) == 10 and len(set(a.ids)) == 10
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.footprints.bounds, b.footprints.bounds)
    np.testing.assert_array_equal(a.footprints.lonlat, b.footprints.lonlat)


def test_sharded_embedding_joins_to_the_unsharded_result(tmp_path: Path, ben_root: Path, fake_encoder: str) -> None:
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    base = [
        *fake_embed(ben_root),
        "--random-weights",
        "--split",
        "test",
        "--workers",
        "0",
    ]
    assert run(*base, "--store", whole).exit_code == 0
    for shard in ("2/3", "1/3", "3/3"):
        assert run(*base, "--store", sharded, "--shard", shard).exit_code == 0
    a, b = (
        EmbeddingStore(whole).read("fake", "bigearthnet", "test"),
        EmbeddingStore(sharded).read("fake", "bigearthnet", "test"),
    )
    assert a.ids == b.ids
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-5)  # batch composition differs


def test_unknown_model_and_dataset(tmp_path: Path, ben_root: Path) -> None:
    assert_usage_error(
        run("embed", "-m", "resnet", "-d", "bigearthnet", "--data-dir", ben_root), "unknown model 'resnet'"
    )
    assert_usage_error(
        run("embed", "-m", "prithvi", "-d", "eurosat", "--data-dir", ben_root), "unknown dataset 'eurosat'"
    )


def test_missing_data_dir(tmp_path: Path) -> None:
    assert_one_line_error(
        run("embed", "-m", "prithvi", "-d", "bigearthnet", "--data-dir", tmp_path / "none"), "rsir download bigearthnet"
    )


def test_missing_band_file_stops_with_the_file_name_and_keeps_earlier_rows(
    tmp_path: Path, ben_root: Path, fake_encoder: str
) -> None:
    names = [line.split(",")[0] for line in (ben_root / "splits" / "test.csv").read_text().splitlines()]
    (ben_root / "BigEarthNet-v1.0" / names[5] / f"{names[5]}_B11.tif").unlink()
    store = tmp_path / "store"
    args = [
        *fake_embed(ben_root),
        "--store",
        store,
        "--random-weights",
        "--split",
        "test",
        "--batch-size",
        "2",
        "--workers",
        "0",
    ]
    assert_one_line_error(run(*args), f"{names[5]}_B11.tif is missing")
    (summary,) = EmbeddingStore(store).summaries()
    assert summary.rows == 4 and not summary.complete


def test_corrupt_geotiff(tmp_path: Path, ben_root: Path, fake_encoder: str) -> None:
    name = (ben_root / "splits" / "val.csv").read_text().split(",")[0]
    (ben_root / "BigEarthNet-v1.0" / name / f"{name}_B04.tif").write_bytes(b"II*\x00\x08\x00\x00\x00broken")
    result = run(
        *fake_embed(ben_root),
        "--store",
        tmp_path / "s",
        "--random-weights",
        "--split",
        "val",
        "--workers",
        "0",
    )
    assert_one_line_error(result, f"cannot read .*{name}_B04.tif")


def test_checkpoint_with_wrong_shapes(tmp_path: Path, ben_root: Path) -> None:
    import yaml

    from tests.helpers import TINY, random_checkpoint

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    sd = random_checkpoint(TINY)
    sd["norm.weight"] = torch.ones(65)
    torch.save(sd, tmp_path / "bad.pt")
    result = run(
        "embed",
        "-m",
        config,
        "-d",
        "bigearthnet",
        "--data-dir",
        ben_root,
        "--store",
        tmp_path / "s",
        "--weights",
        tmp_path / "bad.pt",
    )
    assert_one_line_error(result, "'norm.weight' has shape \\(65,\\)")
    assert not (tmp_path / "s").exists()  # nothing written


def test_incompatible_store_schema(tmp_path: Path, ben_root: Path, fake_encoder: str) -> None:
    store = tmp_path / "store"
    args = [
        *fake_embed(ben_root),
        "--store",
        store,
        "--random-weights",
        "--split",
        "val",
        "--workers",
        "0",
    ]
    assert run(*args).exit_code == 0
    path = store / "fake" / "bigearthnet" / "val.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 0
        f.attrs["complete"] = False
    assert_one_line_error(run(*args), "schema version 0")
    info = run("info", "--store", store)
    assert info.exit_code == 0 and "schema version 0" in info.output


def test_cpu_bf16_autocast_runs_and_is_recorded(tmp_path: Path, ben_root: Path, fake_encoder: str) -> None:
    store = tmp_path / "store"
    result = run(
        *fake_embed(ben_root),
        "--store",
        store,
        "--random-weights",
        "--split",
        "val",
        "--precision",
        "bf16",
        "--workers",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert EmbeddingStore(store).attrs("fake", "bigearthnet", "val")["precision"] == "bf16"
    assert_usage_error(
        run(*fake_embed(ben_root), "--store", store, "--random-weights", "--split", "test", "--precision", "fp8"),
        "--precision must be one of",
    )


@pytest.mark.gpu
def test_cuda_embedding_equals_cpu(tmp_path: Path, ben_root: Path, fake_encoder: str) -> None:
    """The GPU path (uint16 transport, resize on the GPU, overlapped copies) gives the CPU's rows."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    base = [
        *fake_embed(ben_root),
        "--random-weights",
        "--split",
        "test",
        "--batch-size",
        "4",
        "--workers",
        "2",
    ]
    assert run(*base, "--store", tmp_path / "cpu", "--device", "cpu").exit_code == 0
    assert run(*base, "--store", tmp_path / "gpu", "--device", "cuda").exit_code == 0
    cpu = EmbeddingStore(tmp_path / "cpu").read("fake", "bigearthnet", "test")
    gpu = EmbeddingStore(tmp_path / "gpu").read("fake", "bigearthnet", "test")
    assert cpu.ids == gpu.ids
    np.testing.assert_allclose(gpu.embeddings, cpu.embeddings, rtol=1e-4, atol=1e-4)


def test_a_checkpoint_with_nan_weights_is_refused_before_anything_is_stored(tmp_path: Path, ben_root: Path) -> None:
    import yaml

    from tests.helpers import TINY, random_checkpoint

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    state = random_checkpoint(TINY)
    state["norm.weight"] = torch.full_like(state["norm.weight"], float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    store = tmp_path / "s"
    result = run("embed", "-m", config, "-d", "bigearthnet", "--data-dir", ben_root, "--store", store,
                 "--weights", tmp_path / "nan.pt", "--split", "val", "--workers", "0")  # fmt: skip
    assert_one_line_error(result, "non-finite embeddings .*NaN weights.*nothing of this batch was stored")
    (summary,) = EmbeddingStore(store).summaries()
    assert summary.rows == 0 and not summary.complete  # no row of NaNs was committed
