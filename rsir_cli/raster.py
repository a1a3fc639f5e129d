"""Reading a user's imagery: band mapping, scale/offset/nodata, windows and chips.

A :class:`Raster` is either one multi-band raster file (a GeoTIFF, or anything GDAL opens) or a
folder of single-band files named by band (``*B02*``, ``*_B8A.tif``), as Sentinel-2 products ship
them. Its bands are read by window on a *reference grid*: the grid of its finest band. A band on a
coarser grid (the 20 m and 60 m Sentinel-2 bands) is read from the same ground window with GDAL's
bilinear resampling to the reference size, exactly as BigEarthNet's 20 m bands are brought to
120 x 120 (``read(window=..., out_shape=..., resampling=bilinear)``). Nothing ever reads a whole
large file: every read is one window (one chip).

Band mapping: the file's band descriptions when they name Sentinel-2 / HLS bands (``B02``,
``B8A``, ``red``, ``swir16`` ...), else explicit 1-based band indexes (``--bands``), else a clear
error listing what the file has and what the model needs.

Units. The models' normalisation expects surface reflectance x 10000 (BigEarthNet digital
numbers). Each band's value is ``raw * scale + offset`` with the file's own scale and offset; with
``units="auto"`` a band whose scale differs from 1 is taken to hold reflectance in [0, 1] and is
multiplied by 10000. ``units="dn"`` never multiplies (the scaled values already are reflectance x
10000); ``units="reflectance"`` always multiplies (e.g. float reflectance files without a scale).

Nodata: pixels that the file marks invalid (its nodata value, an internal mask or an alpha band)
or that are NaN. They are filled with the mean of the band's valid pixels in the same chip, so
that the model sees no artificial edges; a chip's *nodata fraction* is the share of pixels where
any band read is invalid. Queries whose nodata fraction exceeds :data:`MAX_NODATA_FRACTION` are
refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli.bands import RESOLUTION_M, canonical_band
from rsir_cli.dates import date_in_name, iso_date
from rsir_cli.errors import CorruptDataError, DataNotFoundError, UsageError
from rsir_cli.pixels import PixelWindow

UNITS = ("auto", "dn", "reflectance")
REFLECTANCE_FACTOR = 10000.0
#: a query chip with more nodata than this share of its pixels is refused (a database chip skipped)
MAX_NODATA_FRACTION = 0.5
#: file suffixes taken as band files in a folder (GDAL decides by content, so .jp2 GeoTIFFs work)
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


@dataclass(frozen=True)
class BandSource:
    """Where one band lives: a file, the band's 1-based index in it, its grid and its units."""

    band: str
    path: str
    index: int
    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]  # affine a, b, c, d, e, f
    scale: float
    offset: float
    has_mask: bool
    description: str = ""

    @property
    def resolution(self) -> float:
        return abs(self.transform[0])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        a, _, c, _, e, f = self.transform
        return c, f + e * self.height, c + a * self.width, f


def parse_band_indexes(text: str) -> list[int]:
    """``"3,2,1"`` -> ``[3, 2, 1]`` (1-based band indexes)."""
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(
                f"--bands takes comma-separated 1-based band numbers such as 2,3,4; got {text!r}"
            ) from None
        if value < 1:
            raise UsageError(f"--bands: band numbers start at 1, got {value}")
        values.append(value)
    if not values:
        raise UsageError("--bands is empty; give comma-separated 1-based band numbers such as 2,3,4")
    return values


def band_map(indexes: Sequence[int], needed: Sequence[str], model: str = "the model") -> dict[str, int]:
    """Pair ``--bands`` indexes with the model's read bands, in order."""
    if len(indexes) != len(needed):
        raise UsageError(
            f"--bands gives {len(indexes)} band number(s) but {model} reads {len(needed)} bands, in this order: "
            f"{', '.join(needed)}; give one 1-based band number of the file for each"
        )
    return dict(zip(needed, (int(i) for i in indexes), strict=True))


def _open_dataset(path: Path) -> Any:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as error:
        raise CorruptDataError(f"{path} is not a raster GDAL can read ({str(error).strip()}); give a GeoTIFF") from None


#: GDAL drivers of pictures (screenshots, rendered maps): never spectral bands
_PICTURE_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"})


def _band_sources(path: Path, src: Any) -> list[BandSource]:
    """Every band of an open file as a source (band name from its description, or "")."""
    from rasterio.enums import MaskFlags

    t = src.transform
    if src.crs is None and t.is_identity:
        picture = src.driver in _PICTURE_FORMATS
        kind = f"a {src.driver} picture" if picture else "an image without georeferencing"
        raise CorruptDataError(
            f"{path.name} is {kind} ({src.count} band(s) of {src.dtypes[0]}, no CRS, no geotransform), not a "
            "satellite tile: rsir needs a GeoTIFF in the store model's spectral bands (e.g. Sentinel-2 B02, B03, "
            "B04, B8A, B11, B12 as reflectance x 10000), with its CRS and geotransform"
            + ("; export the tile from the satellite product, not a screenshot or a rendered map" if picture else "")
        )
    if t.b != 0 or t.d != 0:
        raise CorruptDataError(f"{path} is rotated or sheared; warp it north-up first (gdalwarp {path.name} out.tif)")
    if t.a <= 0 or t.e >= 0:
        raise CorruptDataError(
            f"{path} is not north-up (pixel size {t.a}, {t.e}); warp it first (gdalwarp {path.name} out.tif)"
        )
    sources = []
    for i in range(src.count):
        description = src.descriptions[i] or ""
        scale = src.scales[i] if src.scales[i] is not None else 1.0
        offset = src.offsets[i] if src.offsets[i] is not None else 0.0
        flags = src.mask_flag_enums[i]
        sources.append(
            BandSource(
                band=canonical_band(description) or "",
                path=str(path),
                index=i + 1,
                width=src.width,
                height=src.height,
                transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                scale=float(scale),
                offset=float(offset),
                has_mask=list(flags) != [MaskFlags.all_valid],
                description=description,
            )
        )
    return sources


def _crs_string(crs: Any) -> str:
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


class Raster:
    """A georeferenced image whose bands are read by window on a reference grid.

    Safe in DataLoader workers: files are opened lazily, once per process, and never pickled.
    Build one with :func:`open_raster`.
    """

    def __init__(
        self,
        path: Path,
        sources: Mapping[str, BandSource],
        all_bands: Sequence[BandSource],
        crs: str,
        units: str,
        kind: str,
        mapped_by: str,
        date: str = "",
    ) -> None:
        self.path = Path(path)
        self.sources = dict(sources)
        self.all_bands = list(all_bands)
        self.crs = crs
        self.units = units
        self.kind = kind  # "file" or "folder"
        self.mapped_by = mapped_by  # "descriptions", "--bands" or "file names"
        self.date = date  # acquisition date (ISO 8601) from the file's tags or name; "" unknown
        # The reference grid: the finest band (the first of equals).
        grids = list(self.sources.values()) or list(self.all_bands)
        self.reference = min(grids, key=lambda s: s.resolution)
        self.width, self.height = self.reference.width, self.reference.height
        self.transform = self.reference.transform
        self.region = self._common_region()
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    # ------------------------------------------------------------------------------ geometry
    @property
    def resolution(self) -> float:
        return abs(self.transform[0])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.window_bounds(self.region)

    @property
    def available_bands(self) -> tuple[str, ...]:
        return tuple(self.sources)

    def pixel_size_m(self) -> float | None:
        """Pixel size in metres: exact in a projected CRS, approximate in a geographic one."""
        if not self.crs:
            return None
        from rasterio.crs import CRS

        crs = CRS.from_user_input(self.crs)
        if crs.is_projected:
            factor = crs.linear_units_factor[1]
            return self.resolution * factor
        if crs.is_geographic:
            top = self.transform[5]
            latitude = top + self.transform[4] * self.height / 2
            return self.resolution * 111_320.0 * math.sqrt(max(math.cos(math.radians(latitude)), 1e-6))
        return None

    def window_bounds(self, window: PixelWindow) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a reference-grid window, in the raster's CRS."""
        a, _, c, _, e, f = self.transform
        left, top = c + a * window.col_off, f + e * window.row_off
        return left, top + e * window.height, left + a * window.width, top

    def _to_pixels(self, x: float, y: float) -> tuple[float, float]:
        a, _, c, _, e, f = self.transform
        return (x - c) / a, (y - f) / e

    def _common_region(self) -> PixelWindow:
        """The part of the reference grid that every band covers (a folder's files may differ)."""
        region: PixelWindow | None = PixelWindow(0, 0, self.width, self.height)
        for source in self.sources.values():
            left, bottom, right, top = source.bounds
            col0, row0 = self._to_pixels(left, top)
            col1, row1 = self._to_pixels(right, bottom)
            # Whole reference pixels only (rounded first: 1e-9 of float noise is not a pixel).
            first_col, first_row = math.ceil(round(col0, 6)), math.ceil(round(row0, 6))
            inside = PixelWindow(
                first_col, first_row, math.floor(round(col1, 6)) - first_col, math.floor(round(row1, 6)) - first_row
            )
            region = region.intersection(inside) if region and inside.width > 0 and inside.height > 0 else None
            if region is None:
                raise CorruptDataError(f"the band files in {self.path} do not overlap")
        assert region is not None  # the loop keeps it or raises
        return region

    def window_from_bbox(self, bbox: Sequence[float]) -> PixelWindow:
        """The reference-grid window covering ``bbox`` (minx, miny, maxx, maxy in the raster's CRS).

        Raises:
            UsageError: the raster has no CRS, or the box does not overlap it.
        """
        if not self.crs:
            raise UsageError(
                f"{self.path.name} has no CRS, so --bbox cannot be placed; give --window col,row,width,height"
            )
        minx, miny, maxx, maxy = (float(v) for v in bbox)
        if not (minx < maxx and miny < maxy):
            raise UsageError(f"--bbox needs minx < maxx and miny < maxy, got {minx:g},{miny:g},{maxx:g},{maxy:g}")
        col0, row0 = self._to_pixels(minx, maxy)
        col1, row1 = self._to_pixels(maxx, miny)
        window = PixelWindow(
            math.floor(round(col0, 6)),
            math.floor(round(row0, 6)),
            math.ceil(round(col1, 6)) - math.floor(round(col0, 6)),
            math.ceil(round(row1, 6)) - math.floor(round(row0, 6)),
        )
        inside = window.intersection(self.region)
        if inside is None:
            left, bottom, right, top = self.bounds
            raise UsageError(
                f"--bbox {minx:g},{miny:g},{maxx:g},{maxy:g} lies outside {self.path.name}, whose bounds in its CRS "
                f"({self.crs if len(self.crs) < 40 else 'see gdalinfo'}) are {left:.10g},{bottom:.10g},{right:.10g},{top:.10g}; "
                "give --bbox in the tile's CRS"
            )
        return inside

    def check_window(self, window: PixelWindow) -> PixelWindow:
        """A ``--window`` clipped to the raster; an error when it lies outside."""
        inside = window.intersection(self.region)
        if window.width <= 0 or window.height <= 0 or inside is None:
            raise UsageError(
                f"--window {window} lies outside {self.path.name}, which covers columns {self.region.col_off}.."
                f"{self.region.col_end - 1} and rows {self.region.row_off}..{self.region.row_end - 1}"
            )
        return inside

    # ---------------------------------------------------------------------------- band checks
    def describe_bands(self) -> str:
        """What the file (or folder) holds, for error messages."""
        if self.kind == "folder":
            names = ", ".join(f"{s.band} ({Path(s.path).name})" for s in self.all_bands)
            return f"band files {names}" if names else "no band files"
        parts = [f"{s.index}: {s.description!r}" if s.description else f"{s.index}: -" for s in self.all_bands]
        return f"{len(self.all_bands)} band(s) [{', '.join(parts)}]"

    def band_sources(self, bands: Sequence[str]) -> list[dict[str, str]]:
        """Which band of the file (or which file of the folder) feeds each of ``bands``."""
        out = []
        for band in bands:
            source = self.sources[band]
            if self.kind == "folder":
                where = Path(source.path).name
            else:
                where = f"band {source.index}" + (f" ({source.description!r})" if source.description else "")
                where += f", mapped by {self.mapped_by}"
            out.append({"input": band, "from": where})
        return out

    def require(self, bands: Sequence[str], model: str = "the model") -> None:
        """Fail with what the raster has and what is needed when ``bands`` are not all mapped."""
        missing = [b for b in bands if b not in self.sources]
        if not missing:
            return
        needed = ", ".join(bands)
        if self.kind == "folder":
            raise DataNotFoundError(
                f"{self.path} lacks band(s) {', '.join(missing)}: it has {self.describe_bands()}; {model} needs "
                f"{needed}. Add single-band files whose names contain the band (e.g. T33UUP_B8A.tif)"
            )
        if len(self.all_bands) < len(bands):
            raise DataNotFoundError(
                f"{self.path.name} has {self.describe_bands()}, but {model} needs {len(bands)} bands ({needed})"
            )
        raise DataNotFoundError(
            f"{self.path.name} has {self.describe_bands()}; {model} needs {needed} and the band descriptions do not "
            f"name {', '.join(missing)}. Pass --bands with {len(bands)} 1-based band numbers of the file, in the "
            f"order {needed} (e.g. --bands {','.join(str(i + 1) for i in range(len(bands)))})"
        )

    # -------------------------------------------------------------------------------- reading
    def _file(self, path: str) -> Any:
        if os.getpid() != self._pid:  # a forked DataLoader worker: never share GDAL handles
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(path)
        if handle is None:
            handle = _open_dataset(Path(path))
            self._handles[path] = handle
        return handle

    def close(self) -> None:
        if os.getpid() == self._pid:
            for handle in self._handles.values():
                handle.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def read(
        self, window: PixelWindow, bands: Sequence[str], size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read ``bands`` in ``window`` of the reference grid.

        Args:
            window: reference-grid pixels.
            bands: Sentinel-2 band names, all mapped (see :meth:`require`).
            size: (height, width) of the output; default the window's own size.

        Returns:
            The image, float32 (len(bands), h, w) in model units (reflectance x 10000) with invalid
            pixels filled by the band's valid mean, and the invalid mask (h, w) bool (True where any
            band is invalid).
        """
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioIOError
        from rasterio.transform import Affine
        from rasterio.windows import Window, from_bounds

        self.require(bands)
        height, width = size or (window.height, window.width)
        image = np.empty((len(bands), height, width), dtype=np.float32)
        invalid = np.zeros((height, width), dtype=bool)
        bounds = self.window_bounds(window)
        by_file: dict[str, list[int]] = {}
        for position, band in enumerate(bands):
            by_file.setdefault(self.sources[band].path, []).append(position)
        for path, positions in by_file.items():
            sources = [self.sources[bands[p]] for p in positions]
            first = sources[0]
            if first.transform == self.transform:
                file_window = Window(window.col_off, window.row_off, window.width, window.height)
            else:  # a coarser (or shifted) grid: the same ground window, in fractional pixels
                w = from_bounds(*bounds, transform=Affine(*first.transform))
                file_window = Window(*(round(float(v), 6) for v in (w.col_off, w.row_off, w.width, w.height)))
            plain = (file_window.width, file_window.height) == (width, height) and all(
                float(v).is_integer() for v in (file_window.col_off, file_window.row_off)
            )
            resampling = Resampling.nearest if plain else Resampling.bilinear
            indexes = [s.index for s in sources]
            src = self._file(path)
            try:
                raw = src.read(
                    indexes, window=file_window, out_shape=(len(indexes), height, width), resampling=resampling
                )
                masks = None
                if any(s.has_mask for s in sources):
                    masks = src.read_masks(
                        indexes,
                        window=file_window,
                        out_shape=(len(indexes), height, width),
                        resampling=Resampling.nearest,
                    )
            except RasterioIOError as error:
                raise CorruptDataError(f"cannot read {path} (window {window}): {str(error).strip()}") from None
            for j, (position, source) in enumerate(zip(positions, sources, strict=True)):
                values = raw[j].astype(np.float32)
                # NaN and infinity are nodata: a model would turn one such pixel into NaN embeddings
                bad = ~np.isfinite(values)
                if masks is not None:
                    bad |= masks[j] == 0
                with np.errstate(over="ignore", invalid="ignore"):
                    if source.scale != 1.0 or source.offset != 0.0:
                        values = values * np.float32(source.scale) + np.float32(source.offset)
                    if self.units == "reflectance" or (self.units == "auto" and source.scale != 1.0):
                        values = values * np.float32(REFLECTANCE_FACTOR)
                bad |= ~np.isfinite(values)
                if bad.any():
                    good = ~bad
                    values[bad] = values[good].mean() if good.any() else 0.0
                    invalid |= bad
                image[position] = values
        return image, invalid

    def nodata_fraction(self, window: PixelWindow, bands: Sequence[str] | None = None) -> float:
        """Share of ``window`` that is nodata in any of ``bands`` (default: the reference band)."""
        names = list(bands) if bands else [self.reference.band]
        if not all(b in self.sources for b in names) or not any(self.sources[b].has_mask for b in names):
            return 0.0
        _, invalid = self.read(window, names)
        return float(invalid.mean())


def _map_file(path: Path, src: Any, band_indexes: Mapping[str, int] | None) -> tuple[dict[str, BandSource], str]:
    sources = _band_sources(path, src)
    if band_indexes:
        mapped: dict[str, BandSource] = {}
        seen: dict[int, str] = {}
        for band, index in band_indexes.items():
            if band not in RESOLUTION_M:
                raise UsageError(f"{band!r} is not a Sentinel-2 band name")
            if not 1 <= int(index) <= len(sources):
                raise UsageError(
                    f"--bands names band {index} for {band}, but {path.name} has only {len(sources)} band(s) "
                    f"(numbered 1..{len(sources)})"
                )
            if int(index) in seen:
                raise UsageError(f"--bands gives band {index} for both {seen[int(index)]} and {band}")
            seen[int(index)] = band
            source = sources[int(index) - 1]
            mapped[band] = dataclasses.replace(source, band=band)
        return mapped, "--bands"
    mapped = {}
    for source in sources:
        if source.band and source.band not in mapped:
            mapped[source.band] = source
    return mapped, "descriptions"


def _scan_folder(folder: Path) -> tuple[dict[str, BandSource], list[BandSource], str]:
    """Single-band files named by band; of two files of one band, the finer one wins."""
    found: dict[str, BandSource] = {}
    listed: list[BandSource] = []
    crs_seen: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in RASTER_SUFFIXES:
            continue
        band = canonical_band(path.stem)
        if band is None:
            continue
        with _open_dataset(path) as src:
            if src.count != 1:
                continue
            source = dataclasses.replace(_band_sources(path, src)[0], band=band)
            crs_seen[path.name] = _crs_string(src.crs)
        listed.append(source)
        if band not in found or source.resolution < found[band].resolution:
            found[band] = source
    crss = {crs_seen[Path(s.path).name] for s in found.values()}
    if len(crss) > 1:
        raise CorruptDataError(f"the band files in {folder} are in different CRSs ({', '.join(sorted(crss))})")
    return found, listed, next(iter(crss), "")


def open_raster(path: str | Path, band_indexes: Mapping[str, int] | None = None, units: str = "auto") -> Raster:
    """Open a raster file or a folder of single-band files for windowed reading.

    Args:
        path: a raster file, or a folder of single-band files whose names contain the band.
        band_indexes: Sentinel-2 band -> 1-based band index in the file (``--bands``); default:
            the file's band descriptions.
        units: ``auto``, ``dn`` or ``reflectance`` (see the module docstring).

    Raises:
        DataNotFoundError: nothing at ``path``, or a folder without band files.
        CorruptDataError: not a raster GDAL can read, rotated, or band files that do not fit.
        UsageError: ``band_indexes`` that do not fit the file, or ``--bands`` given for a folder.
    """
    path = Path(path)
    if units not in UNITS:
        raise UsageError(f"--units must be one of {', '.join(UNITS)}, not {units!r}")
    if path.is_dir():
        if band_indexes:
            raise UsageError(
                f"--bands applies to a multi-band file; {path} is a folder whose file names give the bands"
            )
        sources, listed, crs = _scan_folder(path)
        if not sources:
            raise DataNotFoundError(
                f"{path} holds no single-band raster files named by band (such as *_B02.tif or s2_B8A.jp2)"
            )
        names = [path.name, *(Path(s.path).name for s in listed)]
        date = next((d for d in map(date_in_name, names) if d), "")
        return Raster(path, sources, listed, crs, units, "folder", "file names", date)
    with _open_dataset(path) as src:
        if src.width < 1 or src.height < 1 or src.count < 1:
            raise CorruptDataError(f"{path} holds no pixels")
        mapped, how = _map_file(path, src, band_indexes)
        listed = _band_sources(path, src)
        crs = _crs_string(src.crs)
        date = _tag_date(src.tags()) or date_in_name(path.name)
    return Raster(path, mapped, listed, crs, units, "file", how, date)


#: GDAL metadata items that hold an acquisition date, in order of preference
_DATE_TAGS = ("ACQUISITIONDATETIME", "ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "DATATAKE_1_DATATAKE_SENSING_START",
              "datetime", "TIFFTAG_DATETIME")  # fmt: skip


def _tag_date(tags: Mapping[str, str]) -> str:
    """The acquisition date a GeoTIFF's metadata names (TIFFTAG_DATETIME is the file's own time: last)."""
    for key in _DATE_TAGS:
        if tags.get(key):
            value = iso_date(tags[key])
            if value:
                return value
    return ""
