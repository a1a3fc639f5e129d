"""Footprints: where samples lie (native CRS and bounds, EPSG:4326 corners), and GeoJSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Footprints:
    """Where samples lie: CRS per sample, native bounds and EPSG:4326 corners (NaN when unknown)."""

    crs: list[str]
    bounds: np.ndarray  # (N, 4) float64 left, bottom, right, top
    lonlat: np.ndarray  # (N, 4, 2) float64 corners ul, ur, lr, ll as (lon, lat)

    @classmethod
    def empty(cls, n: int) -> Footprints:
        return cls([""] * n, np.full((n, 4), np.nan), np.full((n, 4, 2), np.nan))

    @classmethod
    def concat(cls, parts: Sequence[Footprints]) -> Footprints:
        if not parts:
            return cls.empty(0)
        return cls(
            [c for p in parts for c in p.crs],
            np.concatenate([p.bounds for p in parts]),
            np.concatenate([p.lonlat for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.crs)


def lonlat_corners(crs: Sequence[str], bounds: np.ndarray) -> np.ndarray:
    """Corners (upper-left, upper-right, lower-right, lower-left) of each box in EPSG:4326.

    Args:
        crs: one CRS string per box ("" when unknown).
        bounds: (N, 4) left, bottom, right, top in that CRS.

    Returns:
        (N, 4, 2) longitude/latitude; NaN where the CRS is unknown or the box is NaN.
    """
    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    out = np.full((len(bounds), 4, 2), np.nan)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(crs):
        if name and np.all(np.isfinite(bounds[i])):
            groups.setdefault(name, []).append(i)
    if not groups:
        return out
    from rasterio.warp import transform

    for name, rows in groups.items():
        b = bounds[rows]
        xs = np.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0]], axis=1).ravel()
        ys = np.stack([b[:, 3], b[:, 3], b[:, 1], b[:, 1]], axis=1).ravel()
        if name.upper() in ("EPSG:4326", "OGC:CRS84"):
            lon, lat = xs, ys
        else:
            lon, lat = transform(name, "EPSG:4326", xs.tolist(), ys.tolist())
        out[rows] = np.stack([np.asarray(lon), np.asarray(lat)], axis=1).reshape(len(rows), 4, 2)
    return out


def make_footprints(crs: Sequence[str], bounds: np.ndarray) -> Footprints:
    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    return Footprints(list(crs), bounds, lonlat_corners(crs, bounds))


def geojson_feature(corners: np.ndarray, properties: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON Polygon feature from (4, 2) lon/lat corners (null geometry when unknown)."""
    corners = np.asarray(corners, dtype=np.float64)
    if not np.all(np.isfinite(corners)):
        geometry = None
    else:
        ring = [[float(x), float(y)] for x, y in corners]
        ring.append(ring[0])
        # RFC 7946: exterior rings counter-clockwise. ul, ur, lr, ll is clockwise; reverse it.
        geometry = {"type": "Polygon", "coordinates": [ring[::-1]]}
    return {"type": "Feature", "geometry": geometry, "properties": properties}
