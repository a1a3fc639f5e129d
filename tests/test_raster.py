"""Reading user rasters: band mapping, units, nodata, coarse bands, windows and chips, bounded memory."""

from __future__ import annotations

import dataclasses
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from rsir_cli.errors import CorruptDataError, DataNotFoundError, UsageError
from rsir_cli.pixels import PixelWindow, chip_grid
from rsir_cli.raster import Raster, band_map, open_raster, parse_band_indexes
from rsir_cli.retrieval.tiles import query_region
from tests.fakedata import write_raster

PRITHVI = ("B02", "B03", "B04", "B8A", "B11", "B12")


def _bands(rng: np.random.Generator, count: int, size: int = 40) -> np.ndarray:
    return rng.integers(1, 10000, size=(count, size, size)).astype(np.uint16)


def test_bands_are_mapped_from_descriptions_in_any_order_and_spelling(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = _bands(rng, 8)
    # File order: B12, B01, red, B8A, green, swir16, blue, B05 (aliases and decorated names too).
    descriptions = ["B12", "B01 coastal", "red", "S2_B8A", "Green", "swir16", "B2", "B05"]
    path = write_raster(tmp_path / "t.tif", data, descriptions=descriptions)
    raster = open_raster(path)
    assert raster.mapped_by == "descriptions"
    image, invalid = raster.read(raster.region, PRITHVI)
    expected_positions = [6, 4, 2, 3, 5, 0]  # where B02, B03, B04, B8A, B11, B12 lie in the file
    np.testing.assert_array_equal(image, data[expected_positions].astype(np.float32))
    assert image.dtype == np.float32 and not invalid.any()


def test_band_numbers_override_missing_descriptions(tmp_path: Path) -> None:
    data = _bands(np.random.default_rng(1), 6)
    path = write_raster(tmp_path / "t.tif", data)
    numbers = parse_band_indexes("6, 5,4,3,2,1")
    raster = open_raster(path, band_map(numbers, PRITHVI))
    image, _ = raster.read(raster.region, PRITHVI)
    np.testing.assert_array_equal(image, data[::-1].astype(np.float32))
    assert raster.mapped_by == "--bands"


def test_band_errors_say_what_the_file_has_and_what_the_model_needs(tmp_path: Path) -> None:
    three = write_raster(tmp_path / "three.tif", _bands(np.random.default_rng(2), 3), descriptions=["red", "", ""])
    with pytest.raises(DataNotFoundError) as error:
        open_raster(three).require(PRITHVI, "model prithvi")
    message = str(error.value)
    assert "3 band(s)" in message and "'red'" in message and "needs 6 bands" in message and "B8A" in message

    six = write_raster(tmp_path / "six.tif", _bands(np.random.default_rng(3), 6))
    with pytest.raises(DataNotFoundError, match=r"descriptions do not name B02, B03, B04, B8A, B11, B12.*--bands"):
        open_raster(six).require(PRITHVI, "model prithvi")
    with pytest.raises(UsageError, match=r"band 9 for B12.*only 6 band\(s\)"):
        open_raster(six, band_map([1, 2, 3, 4, 5, 9], PRITHVI))
    with pytest.raises(UsageError, match="band 2 for both B03 and B04"):
        open_raster(six, band_map([1, 2, 2, 4, 5, 6], PRITHVI))
    with pytest.raises(UsageError, match=r"gives 3 band number\(s\) but model prithvi reads 6"):
        band_map([1, 2, 3], PRITHVI, "model prithvi")
    with pytest.raises(UsageError, match="1-based"):
        parse_band_indexes("1,two,3")
    with pytest.raises(UsageError, match="start at 1"):
        parse_band_indexes("0,1")


def test_non_rasters_and_missing_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    with pytest.raises(CorruptDataError, match="not a raster GDAL can read"):
        open_raster(text)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        open_raster(tmp_path / "missing.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no single-band raster files named by band"):
        open_raster(tmp_path / "empty")


def test_scale_offset_and_units(tmp_path: Path) -> None:
    raw = np.array([[[0, 1000, 2500, 10000]]], dtype=np.uint16).repeat(2, axis=0)
    path = write_raster(tmp_path / "s.tif", raw, descriptions=["B04", "B03"], scales=[0.0001, 1.0], offsets=[-0.1, 0.0])
    # auto: B04 has a scale, so raw*0.0001 - 0.1 is reflectance, times 10000 = raw - 1000; B03 stays raw.
    image, _ = open_raster(path).read(PixelWindow(0, 0, 4, 1), ["B04", "B03"])
    np.testing.assert_allclose(image[0, 0], [-1000, 0, 1500, 9000], atol=1e-3)
    np.testing.assert_array_equal(image[1, 0], [0, 1000, 2500, 10000])
    # dn: scaled values are already reflectance x 10000.
    image, _ = open_raster(path, units="dn").read(PixelWindow(0, 0, 4, 1), ["B04", "B03"])
    np.testing.assert_allclose(image[0, 0], [-0.1, 0.0, 0.15, 0.9], atol=1e-6)
    np.testing.assert_array_equal(image[1, 0], [0, 1000, 2500, 10000])
    # reflectance: every band times 10000, scale or not.
    reflectance = write_raster(tmp_path / "r.tif", np.array([[[0.05, 0.25]]], dtype=np.float32), descriptions=["B02"])
    image, _ = open_raster(reflectance, units="reflectance").read(PixelWindow(0, 0, 2, 1), ["B02"])
    np.testing.assert_allclose(image[0, 0], [500, 2500], rtol=1e-6)
    with pytest.raises(UsageError, match="--units"):
        open_raster(path, units="percent")


def test_nodata_is_masked_filled_with_the_valid_mean_and_counted(tmp_path: Path) -> None:
    b02 = np.full((10, 10), 100, dtype=np.uint16)
    b03 = np.full((10, 10), 300, dtype=np.uint16)
    b02[:, :3] = 0  # 30 % nodata in B02
    b03[0, 5] = 0  # and one more pixel in B03
    b02[0, 5] = 7
    path = write_raster(tmp_path / "n.tif", np.stack([b02, b03]), descriptions=["B02", "B03"], nodata=0)
    raster = open_raster(path)
    image, invalid = raster.read(raster.region, ["B02", "B03"])
    expected = np.zeros((10, 10), dtype=bool)
    expected[:, :3] = True
    expected[0, 5] = True
    np.testing.assert_array_equal(invalid, expected)
    valid_b02 = b02[:, 3:].astype(np.float64)
    assert image[0, 0, 0] == pytest.approx(valid_b02.mean(), rel=1e-6)  # (69 * 100 + 7) / 70
    assert image[1, 0, 5] == pytest.approx(300.0)
    assert raster.nodata_fraction(raster.region, ["B02"]) == pytest.approx(0.3)
    assert raster.nodata_fraction(raster.region, ["B02", "B03"]) == pytest.approx(0.31)

    floats = np.ones((1, 4, 4), dtype=np.float32)
    floats[0, 0, :] = np.nan
    nan_path = write_raster(tmp_path / "nan.tif", floats, descriptions=["B02"])
    _, invalid = open_raster(nan_path).read(PixelWindow(0, 0, 4, 4), ["B02"])
    assert invalid.sum() == 4

    # One +inf pixel (and a -inf) is nodata as well: filled, counted, never fed to a model.
    floats = np.full((1, 4, 4), 500.0, dtype=np.float32)
    floats[0, 1, 1], floats[0, 2, 3] = np.inf, -np.inf
    inf_path = write_raster(tmp_path / "inf.tif", floats, descriptions=["B02"])
    image, invalid = open_raster(inf_path).read(PixelWindow(0, 0, 4, 4), ["B02"])
    assert invalid.sum() == 2 and invalid[1, 1] and invalid[2, 3]
    assert np.isfinite(image).all() and image[0, 1, 1] == 500.0


def test_coarse_bands_are_resampled_bilinearly_from_the_same_ground(tmp_path: Path) -> None:
    """A 20 m band shifted by half a pixel (as in real Sentinel-2 files) holding a linear ramp:
    GDAL's bilinear interpolation of a linear function is exact, so every interior 10 m pixel must
    equal the ramp at its own centre."""
    folder = tmp_path / "scene"
    folder.mkdir()
    left, top = 500000.0, 5000000.0
    write_raster(folder / "x_B02.tif", np.zeros((1, 200, 200), np.float32), left=left, top=top, pixel=10)
    ramp_left, ramp_top = left - 10, top + 20  # the 20 m grid starts 10 m west and 20 m north

    def ramp(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 * (x - left) - 0.25 * (top - y) + 1000.0

    cols, rows = np.meshgrid(np.arange(102), np.arange(102))
    coarse = ramp(ramp_left + 20 * (cols + 0.5), ramp_top - 20 * (rows + 0.5)).astype(np.float32)
    write_raster(folder / "x_B8A.tif", coarse[None], left=ramp_left, top=ramp_top, pixel=20)
    raster = open_raster(folder)
    assert raster.resolution == 10 and raster.available_bands == ("B02", "B8A")
    window = PixelWindow(40, 60, 120, 120)
    image, _ = raster.read(window, ["B8A"])
    x = left + 10 * (window.col_off + np.arange(120) + 0.5)
    y = top - 10 * (window.row_off + np.arange(120) + 0.5)
    expected = ramp(x[None, :], y[:, None])
    np.testing.assert_allclose(image[0, 2:-2, 2:-2], expected[2:-2, 2:-2], atol=1e-2)


def test_folder_region_is_what_every_band_covers(tmp_path: Path) -> None:
    folder = tmp_path / "scene"
    folder.mkdir()
    write_raster(folder / "T_B02_10m.tif", np.ones((1, 100, 100), np.uint16), left=0, top=1000, pixel=10)
    write_raster(folder / "T_B11_20m.tif", np.ones((1, 40, 45), np.uint16), left=20, top=990, pixel=20)
    write_raster(folder / "T_B02_60m.tif", np.ones((1, 5, 5), np.uint16), left=0, top=1000, pixel=60)  # coarser twin
    write_raster(folder / "preview.tif", np.ones((3, 10, 10), np.uint8))  # names no band: ignored
    raster = open_raster(folder)
    assert Path(raster.sources["B02"].path).name == "T_B02_10m.tif"
    # B11 covers x 20..920, y 190..990 -> reference columns 2..92, rows 1..81.
    assert raster.region == PixelWindow(2, 1, 90, 80)
    with pytest.raises(UsageError, match="applies to a multi-band file"):
        open_raster(folder, {"B02": 1})


def test_chip_grid_drops_partial_edge_chips() -> None:
    rows, cols, chips = chip_grid(PixelWindow(0, 0, 1931, 1942), 120)
    assert (rows, cols, len(chips)) == (16, 16, 256)
    assert chips[0].window == PixelWindow(0, 0, 120, 120)
    assert chips[17].window == PixelWindow(120, 120, 120, 120) and (chips[17].row, chips[17].col) == (1, 1)
    assert chips[-1].window == PixelWindow(1800, 1800, 120, 120)
    # An axis shorter than one chip is one chip of its own length.
    rows, cols, chips = chip_grid(PixelWindow(5, 7, 300, 80), 120)
    assert (rows, cols) == (1, 2) and chips[1].window == PixelWindow(125, 7, 120, 80)


def test_bbox_and_window_select_regions(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "t.tif", _bands(np.random.default_rng(4), 6, 400), descriptions=list(PRITHVI))
    raster = open_raster(path)
    # The tile spans x 500000..504000, y 4996040..5000040 (EPSG:32633).
    region, chips = query_region(raster, 120, bbox=(501200, 4997640, 502400, 4998840))
    assert region == PixelWindow(120, 120, 120, 120) and len(chips) == 1
    assert raster.window_bounds(region) == (501200.0, 4997640.0, 502400.0, 4998840.0)
    region, chips = query_region(raster, 120, window=PixelWindow(0, 0, 250, 370))
    assert region == PixelWindow(0, 0, 250, 370) and len(chips) == 6
    region, _ = query_region(raster, 120, window=PixelWindow(300, 300, 500, 500))  # clipped to the tile
    assert region == PixelWindow(300, 300, 100, 100)
    with pytest.raises(UsageError, match=r"lies outside t.tif.*EPSG:32633.*tile's CRS"):
        query_region(raster, 120, bbox=(15.0, 45.0, 15.01, 45.01))  # lon/lat for a UTM tile
    with pytest.raises(UsageError, match="lies outside"):
        query_region(raster, 120, window=PixelWindow(500, 0, 10, 10))
    with pytest.raises(UsageError, match="smaller than half a patch"):
        query_region(raster, 120, window=PixelWindow(0, 0, 59, 200))
    no_crs = write_raster(
        tmp_path / "nocrs.tif", _bands(np.random.default_rng(5), 6), crs=None, descriptions=list(PRITHVI)
    )
    with pytest.raises(UsageError, match="has no CRS"):
        query_region(open_raster(no_crs), 20, bbox=(0, 0, 1, 1))
    tiny = write_raster(tmp_path / "tiny.tif", _bands(np.random.default_rng(6), 6, 1), descriptions=list(PRITHVI))
    with pytest.raises(DataNotFoundError, match=r"1 x 1 px, smaller than half a patch"):
        query_region(open_raster(tiny), 120)


def test_a_raster_pickles_without_open_files(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "t.tif", _bands(np.random.default_rng(7), 6), descriptions=list(PRITHVI))
    raster = open_raster(path)
    first, _ = raster.read(raster.region, PRITHVI)
    assert raster._handles  # opened lazily by the read
    copy = pickle.loads(pickle.dumps(raster))
    assert copy._handles == {}
    again, _ = copy.read(copy.region, PRITHVI)
    np.testing.assert_array_equal(first, again)


def _big_sparse_tile(path: Path) -> np.ndarray:
    """A 10,980 x 10,980 six-band tile, tiled and sparse (a few MB on disk); one block holds data."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    block = np.random.default_rng(8).integers(1, 16, size=(6, 512, 512)).astype(np.uint16)
    with rasterio.open(
        path, "w", driver="GTiff", width=10980, height=10980, count=6, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(300000, 5000040, 10, 10), tiled=True, blockxsize=512, blockysize=512,
        compress="deflate", sparse_ok=True,
    ) as dst:  # fmt: skip
        for i, band in enumerate(PRITHVI):
            dst.set_band_description(i + 1, band)
        dst.write(block, window=Window(5120, 5120, 512, 512))
    return block


def test_a_window_of_a_full_size_tile_reads_only_its_chips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.tif"
    block = _big_sparse_tile(path)
    raster = open_raster(path)
    assert (raster.width, raster.height) == (10980, 10980)
    windows = []
    original = Raster._file

    class Spy:
        def __init__(self, src: object) -> None:
            self.src = src

        def read(self, *args: object, **kwargs: object) -> np.ndarray:
            windows.append(kwargs["window"])
            return self.src.read(*args, **kwargs)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self.src, name)

    monkeypatch.setattr(Raster, "_file", lambda self, p: Spy(original(self, p)))
    region, chips = query_region(raster, 120, window=PixelWindow(5160, 5160, 360, 240))
    images = [raster.read(chip.window, PRITHVI)[0] for chip in chips]
    assert len(chips) == 6 and len(windows) == 6
    assert all(w.width == 120 and w.height == 120 for w in windows)
    # The chip at (5160, 5160) is block pixels 40..160 of the written block.
    np.testing.assert_array_equal(images[0], block[:, 40:160, 40:160].astype(np.float32))


@pytest.mark.slow
def test_searching_a_full_size_tile_keeps_memory_bounded(tmp_path: Path, fake_encoder: str) -> None:
    """All 8,281 chips of a 10,980 x 10,980 tile are embedded while the Python heap stays far below
    one band of the tile (241 MB as uint16); reading it whole would need 1.4 GB."""
    from rsir_cli.models import build_encoder, get_model_config
    from rsir_cli.retrieval.tiles import plan_tile, tile_queries

    path = tmp_path / "big.tif"
    _big_sparse_tile(path)
    config = get_model_config(fake_encoder)
    attrs = {"patch_size": 120, "pixel_size_m": 10.0, "model_config": dataclasses.asdict(config)}
    plan = plan_tile(path, attrs)
    assert len(plan.chips) == 91 * 91
    encoder = build_encoder(config, None, True)
    tracemalloc.start()
    try:
        found = tile_queries(plan, encoder, device="cpu", batch_size=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(found.queries) == 8281 and not found.skipped
    assert peak < 64 * 2**20, f"peak Python heap {peak / 2**20:.0f} MiB"
