"""Footprints: where samples lie (native CRS and bounds, EPSG:4326 corners), GeoJSON and areas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


def point_in_quads(corners: np.ndarray, lon: float, lat: float) -> np.ndarray:
    """Which (N, 4, 2) lon/lat footprints (ul, ur, lr, ll) hold the point (edges included).

    A footprint is convex (a rectangle in its own CRS, a near-rectangle in lon/lat), so the point
    is inside when it lies on the same side of all four edges.
    """
    corners = np.asarray(corners, dtype=np.float64)
    a = corners
    b = np.roll(corners, -1, axis=1)
    cross = (b[..., 0] - a[..., 0]) * (lat - a[..., 1]) - (b[..., 1] - a[..., 1]) * (lon - a[..., 0])
    finite = np.isfinite(cross).all(axis=1)
    return finite & ((cross >= 0).all(axis=1) | (cross <= 0).all(axis=1))


def points_in_rings(points: np.ndarray, rings: Sequence[np.ndarray]) -> np.ndarray:
    """Even-odd rule: (N, 2) lon/lat points inside the polygon made of ``rings`` (outer ring and holes)."""
    points = np.asarray(points, dtype=np.float64)
    x, y = points[:, 0:1], points[:, 1:2]
    inside = np.zeros(len(points), dtype=bool)
    for ring in rings:
        xa, ya = ring[:-1, 0][None], ring[:-1, 1][None]
        xb, yb = ring[1:, 0][None], ring[1:, 1][None]
        crosses = (ya > y) != (yb > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = xa + (y - ya) * (xb - xa) / (yb - ya)
        inside ^= (crosses & (x < at)).sum(axis=1) % 2 == 1
    return inside & np.isfinite(points).all(axis=1)


@dataclass
class AreaOfInterest:
    """Polygons in EPSG:4326 longitude/latitude (from a GeoJSON file), each a list of rings."""

    polygons: list[list[np.ndarray]]
    source: str = "the area"

    @classmethod
    def read(cls, path: str | Path) -> AreaOfInterest:
        """A GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection (RFC 7946: lon/lat degrees).

        Raises:
            DataNotFoundError: the file is missing.
            CorruptDataError: not GeoJSON, or no polygon in it.
        """
        import json

        from rsir_cli.errors import CorruptDataError, DataNotFoundError

        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise DataNotFoundError(f"area file {path} does not exist") from None
        except (OSError, ValueError) as error:
            raise CorruptDataError(f"{path} is not a GeoJSON file: {error}") from None
        polygons: list[list[np.ndarray]] = []

        def visit(node: Any) -> None:
            if not isinstance(node, dict):
                return
            kind = node.get("type")
            if kind == "FeatureCollection":
                for feature in node.get("features") or []:
                    visit(feature)
            elif kind == "Feature":
                visit(node.get("geometry"))
            elif kind == "GeometryCollection":
                for geometry in node.get("geometries") or []:
                    visit(geometry)
            elif kind == "Polygon":
                polygons.append([_ring(r) for r in node.get("coordinates") or []])
            elif kind == "MultiPolygon":
                polygons.extend([_ring(r) for r in polygon] for polygon in node.get("coordinates") or [])

        def _ring(coordinates: Any) -> np.ndarray:
            try:
                ring = np.asarray(coordinates, dtype=np.float64)[:, :2]
            except (TypeError, ValueError, IndexError):
                raise CorruptDataError(f"{path}: a polygon ring is not a list of [lon, lat] positions") from None
            if len(ring) < 3:
                raise CorruptDataError(f"{path}: a polygon ring has fewer than 3 positions")
            return ring if np.array_equal(ring[0], ring[-1]) else np.vstack([ring, ring[:1]])

        visit(document)
        polygons = [p for p in polygons if p]
        if not polygons:
            raise CorruptDataError(f"{path} holds no Polygon or MultiPolygon (an area needs one)")
        return cls(polygons, source=path.name)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which (N, 2) lon/lat points lie in the area."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        inside = np.zeros(len(points), dtype=bool)
        for rings in self.polygons:
            inside |= points_in_rings(points, rings)
        return inside

    def contains_centres(self, corners: np.ndarray) -> np.ndarray:
        """Which (N, 4, 2) footprints have their centre in the area (unknown footprints: none)."""
        return self.contains(np.asarray(corners, dtype=np.float64).mean(axis=1))
