"""Band names: rsir speaks Sentinel-2 band names (B01 ... B12, B8A) everywhere.

HLS S30 uses the same names; the Prithvi models' six bands are B02, B03, B04, B8A, B11, B12 (blue,
green, red, narrow NIR, SWIR 1, SWIR 2). ForestNet's Landsat-8 composites are mapped onto the same
six names by their role (see ``forestnet.py``).
"""

from __future__ import annotations

import re

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
