"""The plain-TIFF reader's pixels and georeferencing equal rasterio's, or it says it does not know."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rsir_cli.datasets.patchbands import read_patch_band
from rsir_cli.datasets.tiff import read_plain_geotiff
from tests.fakedata_reben import write_band


def _rasterio(path: Path) -> tuple[np.ndarray, int | None, tuple[float, ...], float | None]:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1), src.crs.to_epsg() if src.crs else None, tuple(src.bounds), src.nodata


@pytest.mark.parametrize(
    ("size", "pixel", "epsg", "left", "top", "profile"),
    [
        (120, 10.0, 32633, 331200.0, 5331600.0, {}),
        (60, 20.0, 32629, 600000.0, 4400040.0, {}),
        (20, 60.0, 32635, 499980.0, 6800040.0, {}),
        (60, 20.0, 32633, 390000.0, 5348400.0, {"ENDIANNESS": "BIG"}),
        (120, 10.0, 3035, 4321000.0, 3210000.0, {"blockysize": 7}),  # many strips
    ],
)
def test_georeferencing_equals_rasterio(tmp_path: Path, size, pixel, epsg, left, top, profile) -> None:  # noqa: ANN001
    path = tmp_path / "band.tif"
    pixels = np.random.default_rng(size).integers(0, 10000, size=(size, size))
    write_band(path, pixels, left, top, pixel, epsg, **profile)
    tiff = read_plain_geotiff(path)
    assert tiff is not None
    array, code, bounds, nodata = _rasterio(path)
    np.testing.assert_array_equal(tiff.array, array)
    assert (tiff.epsg, tiff.crs, tiff.nodata) == (code, f"EPSG:{code}", nodata)
    np.testing.assert_allclose(tiff.bounds, bounds, rtol=0, atol=1e-9)


def test_geographic_crs_with_ellipsoid_keys_is_left_to_rasterio(tmp_path: Path) -> None:
    """GDAL writes EPSG:4326 with the ellipsoid's axis keys, which could override the code: rasterio decides."""
    path = tmp_path / "lonlat.tif"
    write_band(path, np.ones((60, 60)), 14.25, 47.5, 0.0002, 4326)
    tiff = read_plain_geotiff(path)
    assert tiff is not None and tiff.epsg is None
    np.testing.assert_allclose(tiff.bounds, (14.25, 47.488, 14.262, 47.5), rtol=0, atol=1e-12)
    assert read_patch_band(path, "B05").crs == "EPSG:4326"


def test_a_crs_without_an_epsg_code_is_left_to_rasterio(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "custom.tif"
    profile = {"driver": "GTiff", "width": 60, "height": 60, "count": 1, "dtype": "uint16",
               "crs": "+proj=utm +zone=33 +ellps=intl +units=m +no_defs", "transform": from_origin(1000, 2200, 20, 20)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 60, 60), np.uint16))
    tiff = read_plain_geotiff(path)
    assert tiff is not None and tiff.epsg is None and tiff.bounds == (1000, 1000, 2200, 2200)
    band = read_patch_band(path, "B05")
    with rasterio.open(path) as src:
        epsg = src.crs.to_epsg()  # rasterio finds the EPSG code that matches the definition, if one does
        assert band.crs == (f"EPSG:{epsg}" if epsg else src.crs.to_wkt())
        assert band.bounds == tuple(src.bounds)


def test_pixel_is_point_is_left_to_rasterio(tmp_path: Path) -> None:
    import rasterio

    path = tmp_path / "point.tif"
    write_band(path, np.ones((60, 60)), 390000, 5348400, 20, 32633)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(AREA_OR_POINT="Point")
    tiff = read_plain_geotiff(path)
    assert tiff is not None and tiff.bounds is None
    with rasterio.open(path) as src:
        assert read_patch_band(path, "B05").bounds == tuple(src.bounds)


def test_compressed_files_are_not_plain_and_read_through_gdal(tmp_path: Path) -> None:
    path = tmp_path / "deflate.tif"
    pixels = np.random.default_rng(0).integers(1, 5000, size=(60, 60))
    write_band(path, pixels, 390000, 5348400, 20, 32633, compress="deflate")
    assert read_plain_geotiff(path) is None
    band = read_patch_band(path, "B05")
    assert band.crs == "EPSG:32633" and band.bounds == (390000, 5347200, 391200, 5348400)
    assert band.pixels.shape == (120, 120)
