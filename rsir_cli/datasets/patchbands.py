"""BigEarthNet's band files (v1.0 and v2.0): read fast, resampled exactly as the official pipeline.

Both versions store each patch as 12 single-band uint16 GeoTIFFs at the bands' native resolution:
120 x 120 px for the 10 m bands, 60 x 60 for the 20 m bands, 20 x 20 for the 60 m bands, all over
the same 1200 m x 1200 m footprint. The official pipeline (torchgeo's readers, as the paper's code
runs them) brings every band to 120 x 120 with GDAL's bilinear resampling
(``read(out_shape=(120, 120))``) and keeps integers.

rsir reads the plain files directly (``tiff.py``) and upsamples with the exact integer form of
GDAL's bilinear kernel: output pixel ``o`` of a factor-``f`` upsampling lies at input coordinate
``(o + 0.5) / f - 0.5``, so its weights are multiples of ``1 / 2f`` along each axis; edge pixels
repeat; GDAL rounds half up. For ``f = 2`` that is ``(9a + 3b + 3c + d + 8) // 16``. The test suite
checks both factors BigEarthNet needs (2 and 6) against rasterio bit for bit, on random data full of
exact half-way cases and on the real sample patches. Where this exactness is not established, GDAL
itself does the work: files that are not plain, other factors, and bands whose pixels include the
file's nodata value (reBEN's files declare nodata = 0, and GDAL leaves nodata pixels out of the
bilinear sum).

:func:`read_patch_band` also checks what a patch's band must look like: one band, the native size
of its resolution, and a footprint (CRS and bounds) for the caller to compare across the patch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsir_cli.bands import RESOLUTION_M
from rsir_cli.datasets.tiff import PlainGeoTiff, read_plain_geotiff
from rsir_cli.errors import CorruptDataError, DataNotFoundError

if TYPE_CHECKING:
    from rasterio.crs import CRS
    from rasterio.io import DatasetReader

PATCH_SIZE = 120
PATCH_METRES = 1200
BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: side in pixels of each band's file: 120 (10 m), 60 (20 m), 20 (60 m)
NATIVE_SIZE: dict[str, int] = {band: PATCH_METRES // RESOLUTION_M[band] for band in BANDS}
# Upsampling factors whose integer form is checked against GDAL (tests/test_bigearthnet.py).
_EXACT_FACTORS = (2, 6)
_FIX = "re-extract the dataset from its archive"


@dataclass(frozen=True)
class PatchBand:
    """One band of a patch at 120 x 120 px and the footprint its file declares."""

    pixels: np.ndarray  # (120, 120) integers (uint16 or int32)
    crs: str  # "EPSG:<code>" (or WKT), "" when the file has none
    bounds: tuple[float, float, float, float]  # left, bottom, right, top; NaN when unknown


def upsample2x_bilinear(band: np.ndarray) -> np.ndarray:
    """GDAL's bilinear 2x upsampling of an integer image, exactly, in integer arithmetic.

    Each output pixel lies a quarter pixel from its four nearest inputs, so its weights are
    9/16, 3/16, 3/16, 1/16 -- separably (3a + b) / 4 down the rows, then across the columns; edges
    repeat the border pixel; GDAL rounds half up: ``(9a + 3b + 3c + d + 8) // 16``.
    """
    a = band.astype(np.int32)
    h, w = a.shape
    above = np.concatenate([a[:1], a[:-1]])  # edge pixels repeat
    below = np.concatenate([a[1:], a[-1:]])
    rows = np.empty((2 * h, w), dtype=np.int32)
    rows[0::2] = 3 * a + above
    rows[1::2] = 3 * a + below
    left = np.concatenate([rows[:, :1], rows[:, :-1]], axis=1)
    right = np.concatenate([rows[:, 1:], rows[:, -1:]], axis=1)
    out = np.empty((2 * h, 2 * w), dtype=np.int32)
    out[:, 0::2] = 3 * rows + left
    out[:, 1::2] = 3 * rows + right
    return (out + 8) >> 4


@functools.lru_cache(maxsize=16)
def _bilinear_taps(n: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each of the ``n * factor`` outputs: the two input indexes and their weights (sum 2 * factor)."""
    twice = 2 * np.arange(n * factor) + 1 - factor  # output centre in input pixels, times 2 * factor
    low = np.floor_divide(twice, 2 * factor)
    high_weight = (twice - low * 2 * factor).astype(np.int32)
    low_index = np.clip(low, 0, n - 1)  # edge pixels repeat
    high_index = np.clip(low + 1, 0, n - 1)
    return low_index, high_index, (2 * factor - high_weight).astype(np.int32), high_weight


def upsample_bilinear(band: np.ndarray, factor: int) -> np.ndarray:
    """GDAL's bilinear upsampling of a square integer image by an integer ``factor``, exactly.

    The weights along each axis are multiples of ``1 / (2 * factor)``; the sum is kept in integers
    (at most 65535 x 4 factor^2, far inside int32) and rounded half up, as GDAL does.
    """
    if factor == 2:
        return upsample2x_bilinear(band)
    a = band.astype(np.int32)
    low, high, w_low, w_high = _bilinear_taps(a.shape[0], factor)
    rows = w_low[:, None] * a[low] + w_high[:, None] * a[high]
    out = rows[:, low] * w_low[None, :] + rows[:, high] * w_high[None, :]
    denominator = 4 * factor * factor
    return (out + denominator // 2) // denominator


def read_band_gdal(path: Path | str, size: int = PATCH_SIZE) -> np.ndarray:
    """Read one band the way the official pipeline does: rasterio, bilinear to ``size``, int32."""
    return _read_gdal(Path(path), size)[0]


def read_band(path: Path | str, size: int = PATCH_SIZE) -> np.ndarray:
    """Read one band at ``size`` x ``size``, equal to :func:`read_band_gdal`, about 20x faster.

    No check of the file's geometry: :func:`read_patch_band` is the checked form.
    """
    tiff = _read_plain(path)
    if tiff is None:
        return read_band_gdal(path, size)
    return _resample(tiff, path, size)


def read_patch_band(path: Path | str, band: str, *, exact_gdal: bool = False, fix: str = _FIX) -> PatchBand:
    """Read band ``band`` of a patch at 120 x 120 and check it is what BigEarthNet stores.

    Args:
        path: the band's GeoTIFF.
        band: its Sentinel-2 name, which fixes its native size (:data:`NATIVE_SIZE`).
        exact_gdal: read and resample through rasterio (the reference) instead of the fast path.
        fix: what the user should do about a wrong file, for the error messages.

    Raises:
        DataNotFoundError: the file is missing.
        CorruptDataError: the file is unreadable, holds more than one band, or has the wrong size.
    """
    expected = NATIVE_SIZE[band]
    tiff = None if exact_gdal else _read_plain(path)
    if tiff is None:
        pixels, crs, bounds = _read_gdal(Path(path), PATCH_SIZE, band=band, fix=fix)
        return PatchBand(pixels, crs, bounds)
    if tiff.array.shape != (expected, expected):
        raise CorruptDataError(_wrong_size(path, band, tiff.array.shape, fix))
    pixels = _resample(tiff, path, PATCH_SIZE)
    if tiff.epsg is None or tiff.bounds is None:  # georeferencing in a form tiff.py leaves to GDAL
        crs, bounds = _georeferencing_gdal(Path(path))
        return PatchBand(pixels, crs if tiff.epsg is None else tiff.crs, bounds if tiff.bounds is None else tiff.bounds)
    return PatchBand(pixels, tiff.crs, tiff.bounds)


def check_same_footprint(
    patch: str, bands: Sequence[str], reads: Sequence[PatchBand], fix: str = _FIX, tolerance: float = 0.01
) -> None:
    """Every band of one patch must lie in the same CRS over the same bounds (to ``tolerance``, 1 cm).

    Raises:
        CorruptDataError: naming the patch, the two bands and what differs.
    """
    if not reads:
        return
    first = reads[0]
    for band, read in zip(bands[1:], reads[1:], strict=True):
        if read.crs != first.crs:
            raise CorruptDataError(
                f"patch {patch}: band {band} is in {read.crs or 'no CRS'} but {bands[0]} in {first.crs or 'no CRS'}; {fix}"
            )
        # plain comparisons: np.allclose costs more than reading the band
        if read.bounds != first.bounds and not all(
            abs(a - b) <= tolerance or (a != a and b != b) for a, b in zip(read.bounds, first.bounds, strict=True)
        ):
            raise CorruptDataError(
                f"patch {patch}: band {band} covers {_box(read.bounds)} but {bands[0]} covers {_box(first.bounds)}; {fix}"
            )


def stack_bands(reads: Sequence[PatchBand]) -> np.ndarray:
    """(C, 120, 120) uint16: holds every value exactly (bilinear never leaves the inputs' range)."""
    image = np.empty((len(reads), PATCH_SIZE, PATCH_SIZE), dtype=np.uint16)
    for channel, read in enumerate(reads):
        image[channel] = read.pixels
    return image


def _box(bounds: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in bounds) + ")"


def _wrong_size(path: Path | str, band: str, shape: tuple[int, ...], fix: str) -> str:
    expected = NATIVE_SIZE[band]
    found = "x".join(str(s) for s in reversed(shape))
    return f"{path} is {found} px, but BigEarthNet stores {band} ({RESOLUTION_M[band]} m) as {expected}x{expected} px; {fix}"


def _read_plain(path: Path | str) -> PlainGeoTiff | None:
    try:
        return read_plain_geotiff(path)
    except FileNotFoundError:
        raise DataNotFoundError(f"band file {path} is missing") from None
    except OSError as error:
        raise CorruptDataError(f"cannot read {path}: {error.strerror or error}") from None


def _resample(tiff: PlainGeoTiff, path: Path | str, size: int) -> np.ndarray:
    array = tiff.array
    height, width = array.shape
    if (height, width) == (size, size):
        return array
    factor = size // height if height and size % height == 0 else 0
    if height != width or factor not in _EXACT_FACTORS:
        return read_band_gdal(path, size)
    if tiff.nodata is not None and (not array.all() if tiff.nodata == 0 else np.any(array == tiff.nodata)):
        return read_band_gdal(path, size)  # GDAL leaves nodata pixels out of the kernel
    return upsample_bilinear(array, factor)


def _read_gdal(
    path: Path, size: int, band: str | None = None, fix: str = _FIX
) -> tuple[np.ndarray, str, tuple[float, float, float, float]]:
    """rasterio read at ``size`` (bilinear, int32) plus CRS and bounds; checks the geometry if ``band``."""
    import rasterio
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as src:
            if band is not None and src.count != 1:
                raise CorruptDataError(f"{path} holds {src.count} bands; a BigEarthNet band file holds one; {fix}")
            if band is not None and (src.height, src.width) != (NATIVE_SIZE[band],) * 2:
                raise CorruptDataError(_wrong_size(path, band, (src.height, src.width), fix))
            pixels = src.read(1, out_shape=(size, size), out_dtype="int32", resampling=Resampling.bilinear)
            return pixels, _crs_name(src.crs), _bounds(src)
    except rasterio.errors.RasterioIOError as error:
        if not path.exists():
            raise DataNotFoundError(f"band file {path} is missing") from None
        raise CorruptDataError(f"cannot read {path} as a GeoTIFF: {error}") from None


def _georeferencing_gdal(path: Path) -> tuple[str, tuple[float, float, float, float]]:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return _crs_name(src.crs), _bounds(src)
    except rasterio.errors.RasterioIOError as error:
        raise CorruptDataError(f"cannot read the georeferencing of {path}: {error}") from None


def _bounds(src: DatasetReader) -> tuple[float, float, float, float]:
    if src.crs is None and src.transform.is_identity:  # no georeferencing at all
        return (np.nan, np.nan, np.nan, np.nan)
    return tuple(float(v) for v in src.bounds)  # type: ignore[return-value]


def _crs_name(crs: CRS | None) -> str:
    if not crs:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()
