"""WKB footprints against shapely (GEOS): rsir's encoder byte for byte, its decoder on every geometry kind."""

from __future__ import annotations

import numpy as np
import pytest

from rsir_cli.errors import CorruptDataError
from rsir_cli.wkb import POLYGON_BYTES, encode_quads, parse_wkb, quad_corners, quad_corners_many

shapely = pytest.importorskip("shapely", reason="shapely (with geopandas) is the independent WKB reference")

# A rotated rectangle (as a UTM box is in lon/lat), corners ul, ur, lr, ll, with awkward float values.
QUAD = np.array([[14.9171, 48.2351], [14.93337, 48.23601], [14.93458, 48.22523], [14.91832, 48.22432]])


def _many(geometries: list[bytes | None]) -> np.ndarray:
    """Pack WKB values as Arrow would (one buffer, offsets, validity) and decode them together."""
    data = b"".join(g or b"" for g in geometries)
    lengths = [len(g) if g is not None else 0 for g in geometries]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    valid = np.array([g is not None for g in geometries])
    return quad_corners_many(np.frombuffer(data, np.uint8), offsets, valid)


def test_encoded_polygons_are_the_bytes_shapely_writes_counter_clockwise() -> None:
    quads = np.stack([QUAD, QUAD + [1.0, -2.0], np.full((4, 2), np.nan)])
    data, valid = encode_quads(quads)
    assert valid.tolist() == [True, True, False]
    assert len(data) == 2 * POLYGON_BYTES
    for i, chunk in enumerate((data[:POLYGON_BYTES], data[POLYGON_BYTES:])):
        ul, ur, lr, ll = quads[i]
        expected = shapely.Polygon([ul, ll, lr, ur])  # counter-clockwise, starting at ul
        assert chunk.tobytes() == shapely.to_wkb(expected, byte_order=1, output_dimension=2)
        polygon = shapely.from_wkb(chunk.tobytes())
        assert polygon.exterior.is_ccw and polygon.is_valid
        np.testing.assert_array_equal(np.asarray(polygon.exterior.coords)[0], ul)


def test_rsir_polygons_come_back_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    quads = QUAD[None] + rng.normal(scale=10, size=(50, 1, 2))  # shifted copies, float64 noise
    data, _ = encode_quads(quads)
    offsets = np.arange(51) * POLYGON_BYTES
    back = quad_corners_many(data, offsets, np.ones(50, bool))
    assert back.tobytes() == quads.tobytes()


@pytest.mark.parametrize("start", range(4))
@pytest.mark.parametrize("clockwise", [True, False])
@pytest.mark.parametrize("byte_order", [0, 1])
def test_a_quadrilateral_from_any_start_orientation_and_byte_order_gives_ul_ur_lr_ll(
    start: int, clockwise: bool, byte_order: int
) -> None:
    ring = QUAD if clockwise else QUAD[[0, 3, 2, 1]]
    ring = np.roll(ring, -start, axis=0)
    wkb = shapely.to_wkb(shapely.Polygon(ring), byte_order=byte_order)
    np.testing.assert_array_equal(quad_corners(wkb), QUAD)
    np.testing.assert_array_equal(_many([wkb])[0], QUAD)


def _box_corners(geometry: object) -> np.ndarray:
    x0, y0, x1, y1 = shapely.bounds(geometry)
    return np.array([[x0, y1], [x1, y1], [x1, y0], [x0, y0]])


@pytest.mark.parametrize(
    "geometry",
    [
        shapely.Polygon([(0, 0), (4, 0), (5, 2), (4, 4), (0, 4), (-1, 2)]),  # six vertices
        shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], holes=[[(2, 2), (3, 2), (3, 3), (2, 3)]]),
        shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 7)]),
        shapely.LineString([(1, 2), (3, -4), (0, 0)]),
        shapely.MultiPoint([(1, 2), (-3, 4)]),
        shapely.GeometryCollection([shapely.Point(9, 9), shapely.box(0, 0, 1, 1)]),
    ],
    ids=["hexagon", "hole", "two-parts", "line", "multipoint", "collection"],
)
def test_other_shapes_give_the_corners_of_their_bounding_box(geometry: object) -> None:
    wkb = shapely.to_wkb(geometry)
    np.testing.assert_array_equal(quad_corners(wkb), _box_corners(geometry))
    np.testing.assert_array_equal(_many([wkb])[0], _box_corners(geometry))


def test_a_multipolygon_of_one_quadrilateral_is_that_quadrilateral() -> None:
    wkb = shapely.to_wkb(shapely.MultiPolygon([shapely.Polygon(QUAD)]))
    np.testing.assert_array_equal(quad_corners(wkb), QUAD)


def test_a_point_is_a_footprint_of_zero_area_and_an_empty_geometry_is_unknown() -> None:
    point = shapely.to_wkb(shapely.Point(12.5, -7.25))
    np.testing.assert_array_equal(quad_corners(point), np.tile([12.5, -7.25], (4, 1)))
    for empty in (shapely.Polygon(), shapely.Point(), shapely.MultiPolygon()):
        assert np.isnan(quad_corners(shapely.to_wkb(empty))).all()


@pytest.mark.parametrize("flavor", ["iso", "extended"])
def test_z_coordinates_and_srids_are_read_and_dropped(flavor: str) -> None:
    polygon = shapely.Polygon([(*xy, 100.0 + i) for i, xy in enumerate(QUAD)])
    wkb = shapely.to_wkb(polygon, flavor=flavor, output_dimension=3)
    np.testing.assert_array_equal(quad_corners(wkb), QUAD)
    with_srid = shapely.to_wkb(shapely.set_srid(polygon, 4326), include_srid=True, output_dimension=3)
    np.testing.assert_array_equal(quad_corners(with_srid), QUAD)
    kind, parts = parse_wkb(wkb)
    assert kind == "Polygon" and parts[0][0].shape == (5, 2)


def test_many_geometries_mixed_with_nulls_decode_like_one_by_one() -> None:
    rsir_polygon = encode_quads(QUAD[None])[0].tobytes()
    geometries = [
        rsir_polygon,
        None,
        shapely.to_wkb(shapely.Point(1, 2)),
        shapely.to_wkb(shapely.Polygon(QUAD[::-1]), byte_order=0),
        shapely.to_wkb(shapely.box(0, 0, 2, 1)),
        shapely.to_wkb(shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 0), (0, 0)])),  # 93 bytes, 3 distinct vertices
    ]
    out = _many(geometries)
    assert np.isnan(out[1]).all()
    for i, geometry in enumerate(geometries):
        if geometry is not None:
            np.testing.assert_array_equal(out[i], quad_corners(geometry))
    np.testing.assert_array_equal(out[0], QUAD)
    np.testing.assert_array_equal(out[5], _box_corners(shapely.from_wkb(geometries[5])))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x03\x00\x00",
        b"\x02\x03\x00\x00\x00",
        b"\x01\x09\x00\x00\x00\x00\x00\x00\x00",
        b"\x01\x01\x00\x00\x00" + b"\x00" * 8,
    ],
    ids=["empty", "truncated-type", "byte-order", "unknown-type", "truncated-point"],
)
def test_bad_wkb_is_a_corrupt_data_error(data: bytes) -> None:
    with pytest.raises(CorruptDataError, match="not valid WKB"):
        quad_corners(data)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(CorruptDataError, match="after its end"):
        quad_corners(shapely.to_wkb(shapely.Point(1, 2)) + b"\x00")
