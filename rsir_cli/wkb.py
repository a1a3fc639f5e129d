"""Well-Known Binary (WKB) for footprints: an exact encoder for quadrilaterals, a small decoder.

rsir's footprint is a quadrilateral: corners upper-left, upper-right, lower-right, lower-left as
(x, y) = (longitude, latitude). :func:`encode_quads` writes each one as a little-endian 2D WKB
Polygon (93 bytes: one exterior ring of 5 points, the first repeated last), counter-clockwise as
GeoParquet and RFC 7946 recommend, so the ring reads ul, ll, lr, ur, ul. Coordinates are copied
as float64, never computed, so a round trip is bit for bit.

:func:`quad_corners` goes the other way for any geometry another tool wrote
(the OGC Simple Features types in ISO or extended WKB, either byte order, with or without Z/M):

- a Polygon (or a MultiPolygon of one part) whose exterior ring has 4 distinct vertices and no
  holes gives those 4 vertices, ordered clockwise starting from the one nearest the upper-left
  corner of its bounding box (so rsir's own rings come back exactly as written);
- any other geometry (more vertices, holes, several parts, lines) gives the corners of its
  bounding box, and a Point gives a footprint of zero area (all four corners at the point: it
  still has a place on a map, for an area filter and for ``--point``);
- an empty geometry gives NaN corners (location unknown), like a null one.

Only numpy and :mod:`struct`: no shapely in product code.
"""

from __future__ import annotations

import struct

import numpy as np

from rsir_cli.errors import CorruptDataError

POLYGON_BYTES = 93  # 1 (byte order) + 4 (type) + 4 (rings) + 4 (points) + 5 points * 16
_HEADER = struct.pack("<BIII", 1, 3, 1, 5)
_TYPE_NAMES = {
    1: "Point",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}
# Extended WKB (PostGIS/GEOS) flags in the type word.
_EWKB_Z, _EWKB_M, _EWKB_SRID = 0x80000000, 0x40000000, 0x20000000


def encode_quads(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WKB Polygons of (N, 4, 2) corners ul, ur, lr, ll: ``(data, valid)``.

    Args:
        corners: (N, 4, 2) float64 (x, y); a row with any NaN has no geometry.

    Returns:
        ``data``: the concatenated WKB of the valid rows (uint8, 93 bytes each, in row order);
        ``valid``: (N,) bool, which rows have a geometry.
    """
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
    valid = np.isfinite(corners).all(axis=(1, 2))
    quads = corners[valid]
    # Counter-clockwise: ul, ll, lr, ur and ul again to close the ring.
    ring = quads[:, [0, 3, 2, 1, 0], :].reshape(len(quads), 10)
    out = np.empty((len(quads), POLYGON_BYTES), dtype=np.uint8)
    out[:, :13] = np.frombuffer(_HEADER, dtype=np.uint8)
    out[:, 13:] = ring.astype("<f8").view(np.uint8).reshape(len(quads), 80)
    return out.reshape(-1), valid


def quad_corners_many(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N, 4, 2) footprint corners of N WKB geometries held in one buffer (see the module doc).

    Args:
        data: uint8 buffer of the concatenated WKB values.
        offsets: (N + 1,) where each value starts and ends in ``data`` (Arrow's binary layout).
        valid: (N,) bool, False for a null geometry (NaN corners).

    Rows in rsir's own layout (93-byte little-endian single-ring quadrilaterals) take a vectorised
    path; anything else is parsed one by one.

    Raises:
        CorruptDataError: a value is not valid WKB.
    """
    data = np.asarray(data, dtype=np.uint8)
    offsets = np.asarray(offsets, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    n = len(valid)
    out = np.full((n, 4, 2), np.nan)
    starts, lengths = offsets[:-1], np.diff(offsets)
    candidates = np.flatnonzero(valid & (lengths == POLYGON_BYTES))
    if len(candidates):
        raw = data[starts[candidates, None] + np.arange(POLYGON_BYTES)[None, :]]
        header = (raw[:, :13] == np.frombuffer(_HEADER, dtype=np.uint8)).all(axis=1)
        rings = np.ascontiguousarray(raw[:, 13:]).view("<f8").reshape(len(raw), 5, 2).astype(np.float64)
        fast = header & (rings[:, 0] == rings[:, 4]).all(axis=1) & _four_distinct(rings[:, :4])
        out[candidates[fast]] = _order_quads(rings[fast, :4])
        done = np.zeros(n, dtype=bool)
        done[candidates[fast]] = True
    else:
        done = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(valid & ~done):
        out[i] = quad_corners(data[starts[i] : offsets[i + 1]].tobytes())
    return out


def quad_corners(geometry: bytes) -> np.ndarray:
    """(4, 2) footprint corners ul, ur, lr, ll of one WKB geometry (see the module doc).

    Raises:
        CorruptDataError: ``geometry`` is not valid WKB.
    """
    kind, parts = parse_wkb(geometry)
    points = [ring for polygon in parts for ring in polygon]
    if not points or not any(len(p) for p in points):
        return np.full((4, 2), np.nan)
    if kind in ("Polygon", "MultiPolygon") and len(parts) == 1 and len(parts[0]) == 1:
        ring = parts[0][0]
        if len(ring) == 5 and np.array_equal(ring[0], ring[4]) and _four_distinct(ring[None, :4])[0]:
            return _order_quads(ring[None, :4])[0]
    xy = np.concatenate([p for p in points if len(p)])
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    return np.array([[x0, y1], [x1, y1], [x1, y0], [x0, y0]], dtype=np.float64)


def parse_wkb(data: bytes) -> tuple[str, list[list[np.ndarray]]]:
    """Decode one WKB geometry to ``(type name, parts)``: parts -> rings -> (K, 2) x, y float64.

    A Point is one part with one "ring" of one vertex, a LineString one ring, a Polygon one part
    with its rings; Multi* and GeometryCollection list their members' parts. Z and M are dropped.

    Raises:
        CorruptDataError: truncated data, an unknown byte order or geometry type.
    """
    try:
        kind, parts, end = _parse(memoryview(bytes(data)), 0)
    except (struct.error, IndexError, ValueError) as error:
        raise CorruptDataError(f"a geometry is not valid WKB ({error})") from None
    if end != len(data):
        raise CorruptDataError(f"a geometry is not valid WKB ({len(data) - end} bytes after its end)")
    return kind, parts


def _parse(buf: memoryview, at: int) -> tuple[str, list[list[np.ndarray]], int]:
    order = buf[at]
    if order not in (0, 1):
        raise ValueError(f"byte order {order}")
    endian = "<" if order == 1 else ">"
    (word,) = struct.unpack_from(endian + "I", buf, at + 1)
    at += 5
    dims = 2
    if word & (_EWKB_Z | _EWKB_M | _EWKB_SRID):  # extended WKB
        dims += bool(word & _EWKB_Z) + bool(word & _EWKB_M)
        if word & _EWKB_SRID:
            at += 4
        code = word & 0x0FFFFFFF
    else:  # ISO: 1000s Z, 2000s M, 3000s ZM
        flavour, code = divmod(word, 1000)
        if flavour > 3:
            raise ValueError(f"geometry type {word}")
        dims += {0: 0, 1: 1, 2: 1, 3: 2}[flavour]
    if code not in _TYPE_NAMES:
        raise ValueError(f"geometry type {word}")
    kind = _TYPE_NAMES[code]

    def coords(count: int, at: int) -> tuple[np.ndarray, int]:
        size = count * dims * 8
        if at + size > len(buf):
            raise ValueError("truncated coordinates")
        values = np.frombuffer(buf, dtype=endian + "f8", count=count * dims, offset=at).reshape(count, dims)
        return values[:, :2].astype(np.float64), at + size

    def count(at: int) -> tuple[int, int]:
        (n,) = struct.unpack_from(endian + "I", buf, at)
        return n, at + 4

    if code == 1:
        point, at = coords(1, at)
        empty = np.isnan(point).all()  # WKB has no empty point: NaN, NaN stands for it
        return kind, [[point[:0] if empty else point]], at
    if code == 2:
        n, at = count(at)
        line, at = coords(n, at)
        return kind, [[line]], at
    if code == 3:
        n, at = count(at)
        rings = []
        for _ in range(n):
            k, at = count(at)
            ring, at = coords(k, at)
            rings.append(ring)
        return kind, [rings], at
    n, at = count(at)  # Multi* and GeometryCollection: a list of geometries
    parts: list[list[np.ndarray]] = []
    for _ in range(n):
        _, member, at = _parse(buf, at)
        parts.extend(member)
    return kind, parts, at


def _four_distinct(quads: np.ndarray) -> np.ndarray:
    """(M,) whether each of (M, 4, 2) quadrilaterals has four distinct vertices."""
    same = (quads[:, :, None, :] == quads[:, None, :, :]).all(axis=3)
    return same.sum(axis=(1, 2)) == 4


def _order_quads(quads: np.ndarray) -> np.ndarray:
    """(M, 4, 2) vertices in ring order -> ul, ur, lr, ll: clockwise from the one nearest the box's upper left."""
    x, y = quads[..., 0], quads[..., 1]
    # Shoelace: positive area is counter-clockwise (x right, y up); reverse those to clockwise.
    area = (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
    quads = np.where((area > 0)[:, None, None], quads[:, ::-1], quads)
    x, y = quads[..., 0], quads[..., 1]
    width = np.maximum(x.max(axis=1) - x.min(axis=1), np.finfo(float).tiny)[:, None]
    height = np.maximum(y.max(axis=1) - y.min(axis=1), np.finfo(float).tiny)[:, None]
    distance = ((x - x.min(axis=1)[:, None]) / width) ** 2 + ((y.max(axis=1)[:, None] - y) / height) ** 2
    start = distance.argmin(axis=1)
    index = (start[:, None] + np.arange(4)[None, :]) % 4
    return np.take_along_axis(quads, index[:, :, None], axis=1)
