"""Band names and the band table: rsir speaks Sentinel-2 band names (B01 ... B12, B8A) everywhere.

HLS S30 uses the same names; the Prithvi models' six bands are B02, B03, B04, B8A, B11, B12 (blue,
green, red, narrow NIR, SWIR 1, SWIR 2). ForestNet's Landsat-8 composites are mapped onto the same
six names by their role (see ``forestnet.py``).

The band table also knows other sensors (Landsat 8/9 OLI, PlanetScope SuperDove) with each band's
central wavelength and its role (the STAC ``eo:common_name``). Models that take any band set
(DOFA) are conditioned on those wavelengths; the data is still read under the Sentinel-2 name of
the same role (what rsir's readers speak), so a PlanetScope ``nir`` band is read as ``B08`` but
fed to the model at 0.865 µm, not at Sentinel-2's 0.842 µm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rsir_cli.errors import UsageError

SENTINEL2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip

# Native ground sampling distance of each Sentinel-2 band, in metres.
RESOLUTION_M: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}  # fmt: skip

# Common names (STAC eo:common_name, HLS and Prithvi documentation) -> Sentinel-2 band.
_ALIASES: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nirbroad": "B08",
    "nir08": "B8A",
    "nirnarrow": "B8A",
    "narrownir": "B8A",
    "rededge4": "B8A",
    "watervapour": "B09",
    "watervapor": "B09",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir1": "B11",
    "swir22": "B12",
    "swir2": "B12",
}


def canonical_band(name: str) -> str | None:
    """Map a band name or description to its Sentinel-2 name, or None when it names no band.

    Accepts ``B2``, ``B02``, ``b8a``, ``S2_B11``, ``"B04 (red)"``, ``red``, ``swir16``, ``NIR_Narrow``.
    """
    text = name.strip()
    if not text:
        return None
    match = re.search(r"(?:^|[^A-Za-z0-9])B0?(\d{1,2}|8A)(?:$|[^A-Za-z0-9])", f" {text} ", flags=re.IGNORECASE)
    if match:
        number = match.group(1).upper()
        band = "B8A" if number == "8A" else f"B{int(number):02d}"
        if band in RESOLUTION_M:
            return band
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    return _ALIASES.get(key)


@dataclass(frozen=True)
class SpectralBand:
    """One band of a sensor: its own name, its role, central wavelength and Sentinel-2 counterpart."""

    sensor: str
    name: str
    common_name: str
    center_um: float
    sentinel2: str | None  # the Sentinel-2 band of the same role: the name rsir's readers read it by


def _table(sensor: str, rows: list[tuple[str, str, float, str | None]]) -> dict[str, SpectralBand]:
    return {name: SpectralBand(sensor, name, common, center, s2) for name, common, center, s2 in rows}


# Central wavelengths in µm. Sentinel-2: ESA's nominal values (S2A/S2B differ by under 0.01 µm), the
# ones DOFA's authors use. Landsat 8/9 OLI(-2) and TIRS: USGS band designations. PlanetScope:
# the 8-band SuperDove (PSB.SD) instrument; its 4-band products carry blue, green, red and nir.
SENSORS: dict[str, dict[str, SpectralBand]] = {
    "sentinel2": _table(
        "sentinel2",
        [
            ("B01", "coastal", 0.443, "B01"),
            ("B02", "blue", 0.490, "B02"),
            ("B03", "green", 0.560, "B03"),
            ("B04", "red", 0.665, "B04"),
            ("B05", "rededge", 0.705, "B05"),
            ("B06", "rededge", 0.740, "B06"),
            ("B07", "rededge", 0.783, "B07"),
            ("B08", "nir", 0.842, "B08"),
            ("B8A", "nir08", 0.865, "B8A"),
            ("B09", "nir09", 0.945, "B09"),
            ("B10", "cirrus", 1.375, "B10"),
            ("B11", "swir16", 1.610, "B11"),
            ("B12", "swir22", 2.190, "B12"),
        ],
    ),
    "landsat8": _table(
        "landsat8",
        [
            ("B1", "coastal", 0.443, "B01"),
            ("B2", "blue", 0.482, "B02"),
            ("B3", "green", 0.561, "B03"),
            ("B4", "red", 0.655, "B04"),
            ("B5", "nir08", 0.865, "B8A"),
            ("B6", "swir16", 1.609, "B11"),
            ("B7", "swir22", 2.201, "B12"),
            ("B8", "pan", 0.590, None),
            ("B9", "cirrus", 1.373, "B10"),
            ("B10", "lwir11", 10.895, None),
            ("B11", "lwir12", 12.005, None),
        ],
    ),
    "planetscope": _table(
        "planetscope",
        [
            ("coastal_blue", "coastal", 0.443, "B01"),
            ("blue", "blue", 0.490, "B02"),
            ("green_i", "green", 0.531, None),
            ("green", "green", 0.565, "B03"),
            ("yellow", "yellow", 0.610, None),
            ("red", "red", 0.665, "B04"),
            ("rededge", "rededge", 0.705, "B05"),
            ("nir", "nir", 0.865, "B08"),
        ],
    ),
}
SENSORS["landsat9"] = {
    name: SpectralBand("landsat9", b.name, b.common_name, b.center_um, b.sentinel2)
    for name, b in SENSORS["landsat8"].items()
}
# Role synonyms accepted for every sensor (STAC common names and what people write).
_ROLE_SYNONYMS = {
    "swir1": "swir16",
    "swir2": "swir22",
    "nirnarrow": "nir08",
    "narrownir": "nir08",
    "coastalblue": "coastal",
    "coastalaerosol": "coastal",
    "panchromatic": "pan",
}
_NIR_ROLES = ("nir", "nir08")


def resolve_band(name: str, sensor: str = "sentinel2") -> SpectralBand:
    """The band ``name`` of ``sensor``: its own name (``B5``, ``B8A``, ``nir``) or a role (``nir08``, ``red``).

    Raises:
        UsageError: unknown sensor, or a name the sensor does not have (the message lists its bands).
    """
    key = sensor.strip().lower().replace("-", "").replace("_", "")
    if key not in SENSORS:
        raise UsageError(f"unknown sensor {sensor!r}; known sensors: {', '.join(SENSORS)}")
    table = SENSORS[key]
    text = name.strip()
    if key == "sentinel2":
        s2 = canonical_band(text)
        if s2 is not None:
            return table[s2]
    else:
        number = _band_number(text)
        for band in table.values():
            if band.name.lower() == text.lower() or (number is not None and _band_number(band.name) == number):
                return band
    role = re.sub(r"[^a-z0-9]", "", text.lower())
    role = _ROLE_SYNONYMS.get(role, role)
    matches = [b for b in table.values() if b.common_name == role]
    if not matches and role in _NIR_ROLES:  # a sensor with one NIR band answers to both NIR roles
        matches = [b for b in table.values() if b.common_name in _NIR_ROLES]
    if len(matches) > 1:  # a role several bands share (Sentinel-2's red edges): take the named one only
        raise UsageError(
            f"{sensor} has several {role!r} bands ({', '.join(b.name for b in matches)}); name one of them"
        )
    if matches:
        return matches[0]
    raise UsageError(
        f"{sensor} has no band {name!r}; its bands: "
        + ", ".join(f"{b.name} ({b.common_name}, {b.center_um:g} µm)" for b in table.values())
    )


def _band_number(name: str) -> str | None:
    """``B05`` and ``b5`` -> ``5``; ``B8A`` -> ``8A``; anything else -> None."""
    match = re.fullmatch(r"[Bb]0*(\d{1,2}[Aa]?)", name.strip())
    return match.group(1).upper() if match else None


def parse_band_list(text: str) -> tuple[str, list[str]]:
    """Split a band-set value such as ``landsat8:B2,B3,B4,B5`` into (sensor, names).

    Without a ``SENSOR:`` prefix the names are Sentinel-2's (``B02,B03,B04,B08`` or
    ``blue,green,red,nir``).
    """
    sensor, _, names = text.rpartition(":")
    bands = [n.strip() for n in names.split(",") if n.strip()]
    if not bands:
        raise UsageError(f"no bands in {text!r}; give e.g. B02,B03,B04,B08 or planetscope:blue,green,red,nir")
    return (sensor.strip() or "sentinel2"), bands


def parse_wavelengths(text: str) -> list[float]:
    """``0.49,0.56,0.665`` (µm) -> floats.

    Raises:
        UsageError: not a comma-separated list of positive numbers.
    """
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"wavelengths must be numbers in µm separated by commas, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise UsageError(f"wavelengths must be positive numbers in µm, got {text!r}")
    return values


# Published per-band statistics of surface reflectance x 10000: Prithvi-EO-2.0's HLS pretraining data
# (Harmonised Landsat Sentinel-2), at the HLS bands' Sentinel-2 central wavelengths.
_HLS_CENTERS_UM = (0.490, 0.560, 0.665, 0.865, 1.610, 2.190)
_HLS_MEAN = (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0)
_HLS_STD = (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0)
REFLECTIVE_RANGE_UM = (0.40, 2.50)


def reflectance_statistics(wavelengths: tuple[float, ...] | list[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std for surface reflectance x 10000 at any wavelength of the reflective range.

    The six HLS bands' published statistics (Prithvi-EO-2.0), linearly interpolated in wavelength
    and held constant below 0.49 µm and above 2.19 µm. rsir uses them to standardise bands for
    models trained with per-dataset statistics (DOFA) when no statistics are given.

    Raises:
        UsageError: a wavelength outside 0.4-2.5 µm (thermal or radar: no reflectance prior; give
            the mean and std explicitly).
    """
    low, high = REFLECTIVE_RANGE_UM
    outside = [w for w in wavelengths if not low <= w <= high]
    if outside:
        raise UsageError(
            f"no default statistics for wavelength(s) {', '.join(f'{w:g}' for w in outside)} µm (outside the "
            f"reflective {low:g}-{high:g} µm range); give the per-band mean and std explicitly"
        )
    waves = np.asarray(wavelengths, dtype=np.float64)
    mean = np.interp(waves, _HLS_CENTERS_UM, _HLS_MEAN)
    std = np.interp(waves, _HLS_CENTERS_UM, _HLS_STD)
    return tuple(round(float(m), 3) for m in mean), tuple(round(float(s), 3) for s in std)
