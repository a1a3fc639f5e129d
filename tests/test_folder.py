"""The ``folder`` dataset: a directory of GeoTIFF chips with an optional labels CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rsir_cli.cli.app import app
from rsir_cli.datasets import open_split
from rsir_cli.datasets.folder import read_labels_csv
from rsir_cli.errors import CorruptDataError, DataNotFoundError
from tests.fakedata import write_raster

PRITHVI = ("B02", "B03", "B04", "B8A", "B11", "B12")


def _chips(root: Path, described: bool = True) -> dict[str, np.ndarray]:
    """Five 64 px chips in two class folders (and one 32 px chip); returns id -> data."""
    descriptions = list(PRITHVI) if described else None
    rng = np.random.default_rng(0)
    written = {}
    for i, name in enumerate(["forest/a", "forest/b", "water/c", "water/d", "odd"]):
        size = 32 if name == "odd" else 64
        data = rng.integers(1, 5000, size=(6, size, size)).astype(np.uint16)
        path = root / f"{name}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_raster(path, data, left=600000 + 1000 * i, top=5000000, descriptions=descriptions)
        written[name] = data
    (root / "notes.txt").write_text("not a chip")
    return written


def test_chips_ids_footprints_and_list_labels(tmp_path: Path) -> None:
    root = tmp_path / "chips"
    written = _chips(root)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file,labels\nforest/a.tif,forest\nforest/b,forest;road\nwater/c,water\nwater/d,water|forest\nodd,\nelsewhere,x\n"
    )
    reader = open_split("folder", "all", root, labels=labels)
    assert reader.dataset == "chips" and reader.split == "all" and reader.patch_size == 64
    assert reader.ids == ["forest/a", "forest/b", "odd", "water/c", "water/d"]
    assert reader.label_names == ("forest", "road", "water")
    expected = {
        "forest/a": [1, 0, 0],
        "forest/b": [1, 1, 0],
        "odd": [0, 0, 0],
        "water/c": [0, 0, 1],
        "water/d": [1, 0, 1],
    }
    for i, sample_id in enumerate(reader.ids):
        sample = reader.load(i, ("B04", "B02"))
        np.testing.assert_array_equal(sample.labels, expected[sample_id], err_msg=sample_id)
        assert sample.image.shape == (2, 64, 64) and sample.crs == "EPSG:32633"
    sample = reader.load(reader.ids.index("water/c"), ("B04", "B02"))
    np.testing.assert_array_equal(sample.image, written["water/c"][[2, 0]].astype(np.float32))
    assert sample.bounds == (602000.0, 4999360.0, 602640.0, 5000000.0)
    # The 32 px chip is resampled to the first chip's 64 px: a 2x bilinear upsampling keeps its mean.
    odd = reader.load(reader.ids.index("odd"), ("B02",)).image[0]
    assert odd.shape == (64, 64) and abs(odd.mean() - written["odd"][0].mean()) < 20
    assert reader.describe()["dataset_options"]["labels"] == str(labels.resolve())


def test_multi_hot_labels_csv(tmp_path: Path) -> None:
    csv_path = tmp_path / "l.csv"
    csv_path.write_text("id,cropland,urban\nb,1,0\na,true,yes\nc,0,\n")
    names, labels = read_labels_csv(csv_path, ["a", "b", "c"])
    assert names == ("cropland", "urban")
    np.testing.assert_array_equal(labels, [[1, 1], [1, 0], [0, 0]])


def test_labels_csv_errors(tmp_path: Path) -> None:
    csv_path = tmp_path / "l.csv"
    csv_path.write_text("id,labels\na,x\n")
    with pytest.raises(CorruptDataError, match=r"no row for 2 of 3 samples: b, c"):
        read_labels_csv(csv_path, ["a", "b", "c"])
    csv_path.write_text("id,labels\na,x\na,y\n")
    with pytest.raises(CorruptDataError, match="line 3: a second row for 'a'"):
        read_labels_csv(csv_path, ["a"])
    csv_path.write_text("id,cropland\na,maybe\n")
    with pytest.raises(CorruptDataError, match="'maybe' is not 0 or 1"):
        read_labels_csv(csv_path, ["a"])
    with pytest.raises(DataNotFoundError, match="does not exist"):
        read_labels_csv(tmp_path / "none.csv", ["a"])


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"no GeoTIFF chips"):
        open_split("folder", "all", tmp_path / "empty")
    with pytest.raises(DataNotFoundError, match="is not a folder"):
        open_split("folder", "all", tmp_path / "missing")
    root = tmp_path / "plain"
    _chips(root, described=False)
    with pytest.raises(DataNotFoundError, match=r"Pass --bands with 6 1-based band numbers"):
        open_split("folder", "all", root).check(PRITHVI)


def test_embed_a_folder_with_band_numbers_and_labels(tmp_path: Path, fake_encoder: str) -> None:
    from rsir_cli.store import EmbeddingStore

    root = tmp_path / "plain"
    written = _chips(root, described=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\nforest/a,forest\nforest/b,forest\nodd,other\nwater/c,water\nwater/d,water\n")
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app,
        [
            "embed", "-m", fake_encoder, "--random-weights", "-d", "folder", "--data-dir", str(root), "--name", "mine",
            "--labels", str(labels), "--bands", "1,2,3,4,5,6", "--store", str(store), "--workers", "0",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = EmbeddingStore(store).read(fake_encoder, "mine", "all", footprints=True)
    assert data.ids == ["forest/a", "forest/b", "odd", "water/c", "water/d"]
    assert data.label_names == ["forest", "other", "water"]
    np.testing.assert_array_equal(data.labels.argmax(axis=1), [0, 0, 1, 2, 2])
    assert data.attrs["dataset_options"]["band_indexes"] == dict(zip(PRITHVI, range(1, 7), strict=True))
    assert data.footprints.crs == ["EPSG:32633"] * 5 and len(written) == 5
    # Wrong --bands for the model: a usage error (exit 2), one line, nothing written.
    bad = CliRunner().invoke(
        app,
        ["embed", "-m", fake_encoder, "--random-weights", "-d", "folder", "--data-dir", str(root), "--name", "bad",
         "--bands", "1,2,3", "--store", str(store)],
    )  # fmt: skip
    assert bad.exit_code == 2 and "gives 3 band number(s) but fake reads 6 bands" in bad.output
    assert not (store / fake_encoder / "bad").exists()
