"""Files other tools write (Clay, Earth Index, Planet styles) import with options; bad files get one clear line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsir_cli.errors import CorruptDataError, DataNotFoundError, ImportFormatError
from rsir_cli.geoparquet_read import GeoParquetReader, read_geoparquet

geopandas = pytest.importorskip("geopandas", reason="geopandas writes the foreign files, as other tools do")
shapely = pytest.importorskip("shapely")
pyproj = pytest.importorskip("pyproj")

RNG = np.random.default_rng(7)
N, DIM = 12, 10


def _boxes(n: int = N) -> list[object]:
    """Small lon/lat chips over Alaska (the Clay sample's tile), one per row."""
    return [shapely.box(-167.0 + 0.01 * i, 64.9, -166.99 + 0.01 * i, 64.91) for i in range(n)]


def _expected_corners(geometries: list[object]) -> np.ndarray:
    out = []
    for g in geometries:
        x0, y0, x1, y1 = g.bounds
        out.append([[x0, y1], [x1, y1], [x1, y0], [x0, y0]])
    return np.array(out)


def test_clay_style_file_without_ids_and_with_date32_embeddings_column(tmp_path: Path) -> None:
    """Clay v1 release: index, source_url, date (date32), embeddings (list<float32>), geometry (geopandas)."""
    vectors = RNG.standard_normal((N, DIM)).astype(np.float32)
    frame = geopandas.GeoDataFrame(
        {
            "index": np.arange(N),
            "source_url": ["s3://bucket/03WVN_20220610.tif"] * N,
            "date": [dt.date(2022, 6, 10)] * N,
            "embeddings": list(vectors),
        },
        geometry=_boxes(),
        crs="EPSG:4326",
    )
    path = tmp_path / "clay.gpq"
    frame.to_parquet(path)
    table, info = read_geoparquet(path)
    assert info.foreign and info.ids_generated and info.columns["embedding"] == "embeddings"
    assert info.provenance["model"] == "imported"
    assert table.ids == [f"row-{i}" for i in range(N)]
    assert table.embeddings.tobytes() == vectors.tobytes()
    assert table.dates == ["2022-06-10"] * N
    np.testing.assert_array_equal(table.lonlat, _expected_corners(_boxes()))
    assert table.crs is None and table.codes == {}


def test_planet_style_file_in_web_mercator_with_timestamps(tmp_path: Path) -> None:
    """Planet sample: EPSG:3857 polygons, a datetime column, extra columns, embedding list<float32>."""
    lonlat_boxes = _boxes()
    mercator = geopandas.GeoSeries(lonlat_boxes, crs="EPSG:4326").to_crs("EPSG:3857")
    vectors = RNG.standard_normal((N, DIM)).astype(np.float32)
    frame = geopandas.GeoDataFrame(
        {
            "id": [f"chip-{i}" for i in range(N)],
            "datetime": [dt.datetime(2023, 5, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3)))] * N,
            "cloud_percent": RNG.integers(0, 100, N),
            "embedding": list(vectors),
        },
        geometry=mercator,
    )
    path = tmp_path / "planet.parquet"
    frame.to_parquet(path)
    table, info = read_geoparquet(path)
    assert info.geometry_crs == "EPSG:3857"
    assert table.ids == [f"chip-{i}" for i in range(N)]
    assert table.dates == ["2023-05-02"] * N  # 23:30 at UTC-3 is the next day in UTC
    # Reprojected back by rsir (rasterio) and by pyproj independently: the same lon/lat corners.
    to_lonlat = pyproj.Transformer.from_crs("EPSG:3857", "OGC:CRS84", always_xy=True)
    for row, polygon in enumerate(mercator):
        x0, y0, x1, y1 = polygon.bounds
        lon, lat = to_lonlat.transform([x0, x1, x1, x0], [y1, y1, y0, y0])
        np.testing.assert_allclose(table.lonlat[row], np.stack([lon, lat], axis=1), atol=1e-9)


def test_a_file_with_other_column_names_float64_and_extra_columns_imports_with_options(tmp_path: Path) -> None:
    """Earth-Index-like but renamed: tile_name, vec (float64 list), footprint geometry, class label."""
    vectors = RNG.standard_normal((N, DIM))  # float64
    vectors[0, 0] = 0.1  # not a float32 value: rounds to the nearest one
    frame = geopandas.GeoDataFrame(
        {
            "tile_name": [f"21MNT_{i}" for i in range(N)],
            "vec": list(vectors),
            "other_vec": list(vectors[:, :3]),
            "landcover": [["forest", "water"][i % 2] for i in range(N)],
            "footprint": _boxes(),
            "score": RNG.random(N),
        },
        geometry="footprint",
        crs="OGC:CRS84",
    )
    path = tmp_path / "foreign.parquet"
    frame.to_parquet(path)
    with pytest.raises(ImportFormatError, match="cannot tell which column holds the embeddings"):
        GeoParquetReader(path)  # two numeric list columns, neither with a known name
    table, info = read_geoparquet(path, id_column="tile_name", embedding_column="vec", label_column="landcover")
    assert info.columns == {
        "id": "tile_name",
        "embedding": "vec",
        "geometry": "footprint",
        "labels": "landcover",
        "date": None,
    }
    assert table.ids == [f"21MNT_{i}" for i in range(N)]
    assert table.embeddings.dtype == np.float32
    np.testing.assert_array_equal(table.embeddings, vectors.astype(np.float32))
    assert table.embeddings[0, 0] == np.float32(0.1) and float(table.embeddings[0, 0]) != 0.1
    assert table.label_names == ["forest", "water"]
    np.testing.assert_array_equal(table.labels[:, 0], [1, 0] * (N // 2))
    np.testing.assert_array_equal(table.lonlat, _expected_corners(_boxes()))


def test_points_become_footprints_of_zero_area(tmp_path: Path) -> None:
    frame = geopandas.GeoDataFrame(
        {"id": ["a", "b"], "embedding": [np.ones(3, np.float32), np.zeros(3, np.float32)]},
        geometry=[shapely.Point(10.5, 45.25), None],
        crs="EPSG:4326",
    )
    path = tmp_path / "points.parquet"
    frame.to_parquet(path)
    table, _ = read_geoparquet(path)
    np.testing.assert_array_equal(table.lonlat[0], np.tile([10.5, 45.25], (4, 1)))
    assert np.isnan(table.lonlat[1]).all()


def test_a_file_of_fixed_size_float16_vectors_without_geometry_when_not_required(tmp_path: Path) -> None:
    vectors = RNG.standard_normal((4, 6)).astype(np.float16)
    flat = pa.array(vectors.reshape(-1))
    pq.write_table(
        pa.table({"id": ["a", "b", "c", "d"], "emb": pa.FixedSizeListArray.from_arrays(flat, 6)}),
        tmp_path / "f.parquet",
    )
    table, info = read_geoparquet(tmp_path / "f.parquet", require_geometry=False)
    assert info.geometry_crs is None and np.isnan(table.lonlat).all()
    np.testing.assert_array_equal(table.embeddings, vectors.astype(np.float32))  # float16 -> float32 is exact


# ------------------------------------------------------------------------------------ bad files
def _plain(tmp_path: Path, columns: dict[str, pa.Array], name: str = "bad.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


def _geo(tmp_path: Path, embeddings: list[object], ids: list[str] | None = None, name: str = "bad.parquet") -> Path:
    n = len(embeddings)
    frame = geopandas.GeoDataFrame(
        {"id": ids or [f"r{i}" for i in range(n)], "embedding": embeddings},
        geometry=_boxes(n),
        crs="EPSG:4326",
    )
    path = tmp_path / name
    frame.to_parquet(path)
    return path


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_no_geometry_column(tmp_path: Path) -> None:
    path = _plain(tmp_path, {"id": pa.array(["a"]), "embedding": pa.array([[1.0, 2.0]])})
    with pytest.raises(ImportFormatError) as error:
        GeoParquetReader(path)
    assert "bad.parquet has no geometry column" in _one_line(error) and "columns: id, embedding" in str(error.value)


def test_embeddings_of_mixed_length(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(4, np.float32), np.ones(3, np.float32), np.ones(4, np.float32)])
    with pytest.raises(ImportFormatError) as error:
        GeoParquetReader(path).read()
    assert "mixes lengths (4 in row 'r0', 3 in row 'r1')" in _one_line(error)


def test_embeddings_of_mixed_length_across_blocks(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(4, np.float32)] * 3 + [np.ones(5, np.float32)] * 3)
    with pytest.raises(ImportFormatError, match="mixes lengths \\(4 earlier, 5 in row 'r3'\\)"):
        list(GeoParquetReader(path).blocks(rows=3))


def test_null_embedding_and_null_inside_an_embedding(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(2, np.float32), None])
    with pytest.raises(ImportFormatError) as error:
        GeoParquetReader(path).read()
    assert "embedding column 'embedding' is null in row 'r1'" in _one_line(error)
    inner = _plain(
        tmp_path,
        {"id": pa.array(["a", "b"]), "embedding": pa.array([[1.0, 2.0], [3.0, None]])},
        name="inner.parquet",
    )
    with pytest.raises(ImportFormatError, match="embedding of row 'b' holds null values"):
        GeoParquetReader(inner, require_geometry=False).read()


def test_non_finite_values_are_refused_unless_allowed(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(2), np.array([1.0, np.inf]), np.array([1e39, 0.0])])  # 1e39 overflows float32
    with pytest.raises(ImportFormatError) as error:
        GeoParquetReader(path).read()
    assert "embedding of row 'r1' holds NaN or infinite values (2 such rows" in _one_line(error)
    table, _ = read_geoparquet(path, allow_non_finite=True)
    assert np.isinf(table.embeddings[2, 0])


def test_duplicate_and_null_ids(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(2, np.float32)] * 3, ids=["a", "b", "a"])
    with pytest.raises(ImportFormatError) as error:
        GeoParquetReader(path)
    assert "repeats ids (1 duplicates, e.g. 'a')" in _one_line(error)
    nulls = _plain(tmp_path, {"id": pa.array(["a", None]), "embedding": pa.array([[1.0], [2.0]])}, name="nulls.parquet")
    with pytest.raises(ImportFormatError, match="id column 'id' is null in row 1"):
        GeoParquetReader(nulls, require_geometry=False)


def test_a_named_column_that_is_missing_lists_the_columns(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(2, np.float32)])
    with pytest.raises(ImportFormatError) as error:
        GeoParquetReader(path, embedding_column="vec")
    assert (
        _one_line(error)
        == "bad.parquet has no column 'vec' (for the embedding); its columns are: id, embedding, geometry"
    )


def test_an_embedding_column_that_is_not_numbers(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(2, np.float32)])
    with pytest.raises(ImportFormatError, match="column 'id' is (large_)?string, not a list of numbers"):
        GeoParquetReader(path, embedding_column="id")


def test_wkb_without_geoparquet_metadata_needs_its_crs_named(tmp_path: Path) -> None:
    wkb = shapely.to_wkb(shapely.box(1, 2, 3, 4))
    path = _plain(tmp_path, {"id": pa.array(["a"]), "embedding": pa.array([[1.0]]), "geometry": pa.array([wkb])})
    with pytest.raises(ImportFormatError, match="no GeoParquet metadata for it, so its CRS is unknown"):
        GeoParquetReader(path)
    table, _ = read_geoparquet(path, geometry_crs="EPSG:4326")
    np.testing.assert_array_equal(table.lonlat[0], [[1, 4], [3, 4], [3, 2], [1, 2]])


def test_an_undefined_crs_and_a_native_encoding_are_refused(tmp_path: Path) -> None:
    path = _geo(tmp_path, [np.ones(2, np.float32)])
    table = pq.read_table(path)
    geo = json.loads(table.schema.metadata[b"geo"])
    geo["columns"]["geometry"]["crs"] = None
    undefined = tmp_path / "undefined.parquet"
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), undefined)
    with pytest.raises(ImportFormatError, match="is undefined \\(crs: null\\)"):
        GeoParquetReader(undefined)
    native = tmp_path / "native.parquet"
    geopandas.read_parquet(path).to_parquet(native, geometry_encoding="geoarrow")
    with pytest.raises(ImportFormatError, match="not WKB"):
        GeoParquetReader(native)


def test_missing_and_non_parquet_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        GeoParquetReader(tmp_path / "nothing.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(CorruptDataError, match="is not a readable Parquet file"):
        GeoParquetReader(junk)
