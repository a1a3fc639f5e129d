"""GeoParquet export/import: a bit-for-bit round trip, independent readers, real places, foreign files, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsir_cli.geo import lonlat_corners
from rsir_cli.geoparquet import EmbeddingTable, hilbert_keys, jsonable, spatial_order, write_geoparquet
from rsir_cli.geoparquet_read import GeoParquetReader, read_geoparquet
from rsir_cli.stac import EMBEDDINGS_EXTENSION, write_stac_item

LABEL_NAMES = ["Pastures", "Coniferous forest", "Water bodies", "Never used"]


def make_table(n: int = 23, dim: int = 16, seed: int = 0) -> EmbeddingTable:
    """Rows in four UTM zones with awkward values: unknown places, dates of two precisions, odd ids."""
    rng = np.random.default_rng(seed)
    zones = rng.integers(29, 33, n)
    crs = [f"EPSG:{32600 + z}" for z in zones]
    easting, northing = rng.uniform(4e5, 6e5, n), rng.uniform(5e6, 6e6, n)
    bounds = np.stack([easting, northing - 1200, easting + 1200, northing], axis=1)
    lonlat = lonlat_corners(crs, bounds)
    for row in (3, 11):  # no place known
        lonlat[row] = np.nan
        bounds[row] = np.nan
        crs[row] = ""
    labels = (rng.random((n, len(LABEL_NAMES))) < 0.4).astype(np.uint8)
    labels[:, 3] = 0  # a label no row has must survive too
    dates = [["2017-06-13", "2019", ""][i % 3] for i in range(n)]
    ids = [f"S2A_{i:03d}" for i in range(n)]
    ids[5] = "<script>alert('x')</script> é"
    return EmbeddingTable(
        ids=ids,
        embeddings=rng.standard_normal((n, dim)).astype(np.float32),
        labels=labels,
        label_names=list(LABEL_NAMES),
        dates=dates,
        lonlat=lonlat,
        crs=crs,
        bounds=bounds,
        codes={
            "itq_32_s42": rng.integers(0, 256, (n, 4), dtype=np.uint8),
            "lsh_64_s7": rng.integers(0, 256, (n, 8), dtype=np.uint8),
        },
    )


PROVENANCE = {
    "model": "prithvi",
    "weights_sha256": "ab" * 32,
    "bands": ["B02", "B03", "B04", "B8A", "B11", "B12"],
    "mean": [775.2290211032589, 1080.992780391705],
    "pooling": "mean_patch",
    "dataset": "bigearthnet",
    "split": "test",
}


def assert_same_table(got: EmbeddingTable, want: EmbeddingTable) -> None:
    assert got.ids == want.ids
    assert got.embeddings.dtype == np.float32 and got.embeddings.tobytes() == want.embeddings.tobytes()
    assert got.label_names == want.label_names
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.dates == want.dates
    assert got.lonlat.tobytes() == want.lonlat.tobytes()  # NaN where unknown, bit for bit elsewhere
    assert got.crs == want.crs
    assert got.bounds is not None and got.bounds.tobytes() == want.bounds.tobytes()
    assert sorted(got.codes) == sorted(want.codes)
    for name, codes in want.codes.items():
        assert got.codes[name].dtype == np.uint8 and got.codes[name].tobytes() == codes.tobytes()


def test_round_trip_is_bit_for_bit_in_the_store_order(tmp_path: Path) -> None:
    table = make_table()
    rotation = np.random.default_rng(1).standard_normal((16, 32)).astype(np.float32)
    provenance = {**PROVENANCE, "codes": {"itq_32_s42": {"hasher": {"rotation": rotation}, "seed": np.int64(42)}}}
    path = tmp_path / "split.parquet"
    result = write_geoparquet(path, table, metadata=provenance, row_group_rows=5)
    assert result.rows == 23 and result.row_groups == 5

    back, info = read_geoparquet(path)
    assert_same_table(back, table)
    assert not info.foreign and info.dim == 16 and info.code_names == ["itq_32_s42", "lsh_64_s7"]
    assert info.provenance["model"] == "prithvi" and info.provenance == jsonable(provenance)
    again = np.asarray(info.provenance["codes"]["itq_32_s42"]["hasher"]["rotation"], dtype=np.float32)
    assert again.tobytes() == rotation.tobytes()  # float32 -> JSON -> float32 is exact

    # Blocks of any size give the same rows.
    reader = GeoParquetReader(path)
    assert_same_table(EmbeddingTable.concat(list(reader.blocks(rows=4))), table)


def test_rows_are_in_hilbert_order_with_unknown_places_last(tmp_path: Path) -> None:
    table = make_table()
    path = tmp_path / "split.parquet"
    write_geoparquet(path, table, metadata={}, row_group_rows=5)
    stored = pq.read_table(path)
    rows = stored.column("row").to_pylist()
    assert rows == spatial_order(table.lonlat).tolist()
    assert rows[-2:] == [3, 11]  # the two rows without a place, in their own order
    assert stored.column("id").to_pylist() == [table.ids[r] for r in rows]
    # File order reads that order back.
    in_file_order = EmbeddingTable.concat(list(GeoParquetReader(path).blocks(order="file")))
    assert in_file_order.ids == [table.ids[r] for r in rows]


def test_hilbert_keys_walk_every_cell_through_neighbours() -> None:
    # Independent property of the curve: on a 2^k grid the keys are a permutation and each step
    # moves to an edge neighbour.
    x, y = np.meshgrid(np.arange(8), np.arange(8))
    keys = hilbert_keys(x.ravel(), y.ravel(), order=3)
    assert sorted(keys.tolist()) == list(range(64))
    path = np.stack([x.ravel(), y.ravel()], axis=1)[np.argsort(keys)]
    assert (np.abs(np.diff(path, axis=0)).sum(axis=1) == 1).all()


def test_geoparquet_metadata_schema_and_row_group_statistics(tmp_path: Path) -> None:
    table = make_table()
    path = tmp_path / "split.parquet"
    write_geoparquet(path, table, metadata=PROVENANCE, row_group_rows=5)
    parquet = pq.ParquetFile(path)
    geo = json.loads(parquet.schema_arrow.metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    known = table.lonlat[np.isfinite(table.lonlat).all(axis=(1, 2))].reshape(-1, 2)
    assert column["bbox"] == [*known.min(axis=0).tolist(), *known.max(axis=0).tolist()]
    schema = parquet.schema_arrow
    assert schema.field("embedding").type == pa.list_(pa.float32(), 16)
    assert schema.field("code_itq_32_s42").type == pa.binary(4)
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    # Each row group's bbox statistics (what a reader prunes with) cover its rows' footprints.
    names = [parquet.metadata.schema.column(i).path for i in range(parquet.metadata.num_columns)]
    xmin = names.index("bbox.xmin")
    stored = pq.read_table(path).column("bbox").to_pylist()
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        boxes = [b for b in stored[start : start + rows] if b is not None]
        start += rows
        if boxes:
            stats = parquet.metadata.row_group(group).column(xmin).statistics
            assert stats.min == min(b["xmin"] for b in boxes) and stats.max == max(b["xmin"] for b in boxes)


def test_geopandas_reads_the_file_with_the_right_crs_and_polygons(tmp_path: Path) -> None:
    geopandas = pytest.importorskip("geopandas", reason="geopandas is the independent GeoParquet reader")
    pyproj = pytest.importorskip("pyproj")
    table = make_table()
    path = tmp_path / "split.parquet"
    write_geoparquet(path, table, metadata=PROVENANCE, row_group_rows=5)
    frame = geopandas.read_parquet(path)
    assert frame.crs == pyproj.CRS("OGC:CRS84")
    assert [axis.direction for axis in frame.crs.axis_info] == ["east", "north"]  # longitude first
    by_id = frame.set_index("id")
    for row, sample in enumerate(table.ids):
        polygon = by_id.geometry[sample]
        if row in (3, 11):
            assert polygon is None
            continue
        assert polygon.geom_type == "Polygon" and polygon.exterior.is_ccw
        ring = np.asarray(polygon.exterior.coords)
        np.testing.assert_array_equal(ring[[0, 3, 2, 1]], table.lonlat[row])  # ul, ur, lr, ll
        assert list(by_id.labels[sample]) == [n for n, hot in zip(LABEL_NAMES, table.labels[row], strict=True) if hot]
    # geopandas filters by the bbox covering, as the GeoParquet 1.1 spec intends.
    x, y = table.lonlat[0].mean(axis=0)
    near = geopandas.read_parquet(path, bbox=(x - 1e-3, y - 1e-3, x + 1e-3, y + 1e-3))
    assert table.ids[0] in set(near["id"]) and len(near) < len(frame)


def test_bigearthnet_footprints_fall_on_the_patches_own_coordinates(tmp_path: Path, ben_samples: Path) -> None:
    """Real patches: UTM box in the JSON -> rsir lon/lat -> file -> geopandas -> back to UTM with pyproj."""
    geopandas = pytest.importorskip("geopandas", reason="geopandas is the independent GeoParquet reader")
    pyproj = pytest.importorskip("pyproj")
    patches = sorted(p for p in ben_samples.iterdir() if p.is_dir())
    metas = [json.loads(next(p.glob("*_labels_metadata.json")).read_text()) for p in patches]
    crs = [f"EPSG:{pyproj.CRS.from_wkt(m['projection']).to_epsg()}" for m in metas]
    boxes = np.array([[m["coordinates"][k] for k in ("ulx", "lry", "lrx", "uly")] for m in metas], dtype=float)
    n = len(patches)
    table = EmbeddingTable(
        ids=[p.name for p in patches],
        embeddings=np.zeros((n, 4), np.float32),
        labels=np.zeros((n, 0), np.uint8),
        label_names=[],
        dates=[m["acquisition_date"][:10] for m in metas],
        lonlat=lonlat_corners(crs, boxes),
        crs=crs,
        bounds=boxes,
    )
    path = tmp_path / "ben.parquet"
    write_geoparquet(path, table, metadata={})
    frame = geopandas.read_parquet(path).set_index("id")
    for patch, meta, zone in zip(patches, metas, crs, strict=True):
        utm = frame.loc[[patch.name]].to_crs(zone).geometry.iloc[0]
        coords = meta["coordinates"]
        np.testing.assert_allclose(utm.bounds, (coords["ulx"], coords["lry"], coords["lrx"], coords["uly"]), atol=1e-3)
        assert abs(utm.area - 1200 * 1200) < 1.0  # a 120 x 120 pixel patch at 10 m


def test_duckdb_spatial_reads_geometry_and_embeddings(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb", reason="DuckDB is a second independent reader")
    table = make_table()
    path = tmp_path / "split.parquet"
    write_geoparquet(path, table, metadata=PROVENANCE, row_group_rows=5)
    connection = duckdb.connect()
    _load_spatial(connection)
    rows = connection.execute(
        "SELECT id, ST_XMin(geometry), ST_YMax(geometry), ST_GeometryType(geometry)::VARCHAR, len(embedding), "
        "embedding::FLOAT[] FROM read_parquet(?) WHERE geometry IS NOT NULL",
        [str(path)],
    ).fetchall()
    assert len(rows) == len(table) - 2
    index = {sample: i for i, sample in enumerate(table.ids)}
    for sample, xmin, ymax, kind, dim, vector in rows:
        row = index[sample]
        assert kind == "POLYGON" and dim == 16
        assert xmin == table.lonlat[row, :, 0].min() and ymax == table.lonlat[row, :, 1].max()
        assert np.asarray(vector, np.float32).tobytes() == table.embeddings[row].tobytes()
    # The covering columns are plain structs any SQL engine can filter on.
    x, y = table.lonlat[0].mean(axis=0)
    hit = connection.execute(
        "SELECT id FROM read_parquet(?) WHERE bbox.xmin <= ? AND bbox.xmax >= ? AND bbox.ymin <= ? AND bbox.ymax >= ?",
        [str(path), x, x, y, y],
    ).fetchall()
    assert (table.ids[0],) in hit


def _load_spatial(connection: object) -> None:
    """Load DuckDB's spatial extension from the duckdb-ext-spatial wheel (no network), else skip."""
    try:
        import duckdb_ext  # type: ignore[import-not-found]
    except ImportError:
        try:
            connection.execute("LOAD spatial")  # type: ignore[attr-defined]
            return
        except Exception as error:
            pytest.skip(f"DuckDB's spatial extension is not installed (pip install duckdb-ext-spatial): {error}")
    import duckdb

    found = list(Path(duckdb_ext.__path__[0]).glob(f"extensions/v{duckdb.__version__}/*/spatial.duckdb_extension"))
    if not found:
        pytest.skip(f"duckdb-ext-spatial has no build for DuckDB {duckdb.__version__}")
    connection.execute(f"LOAD '{found[0]}'")  # type: ignore[attr-defined]


def test_stac_item_describes_the_file(tmp_path: Path) -> None:
    geopandas = pytest.importorskip("geopandas")
    table = make_table()
    path = tmp_path / "split.parquet"
    result = write_geoparquet(path, table, metadata=PROVENANCE)
    item_path = write_stac_item(result, table.dates, model_url="https://huggingface.co/ibm-nasa-geospatial")
    item = json.loads(item_path.read_text())
    assert item_path == tmp_path / "split.json" and item["type"] == "Feature"
    assert EMBEDDINGS_EXTENSION in item["stac_extensions"]
    asset = item["assets"]["embeddings"]
    assert (tmp_path / asset["href"]).resolve() == path.resolve() and asset["file:size"] == path.stat().st_size
    np.testing.assert_allclose(item["bbox"], geopandas.read_parquet(path).total_bounds)
    properties = item["properties"]
    assert properties["datetime"] is None
    assert (
        properties["start_datetime"] == "2017-06-13T00:00:00Z" and properties["end_datetime"] == "2019-12-31T23:59:59Z"
    )
    assert properties["table:row_count"] == len(table) and properties["rsir:dimensions"] == 16
    assert properties["emb:runtime_parameters"]["bands"] == PROVENANCE["bands"]
    columns = [c["name"] for c in properties["table:columns"]]
    assert columns == pq.read_schema(path).names
    assert {"rel": "emb:model", "href": "https://huggingface.co/ibm-nasa-geospatial", "title": "prithvi"} in item[
        "links"
    ]


def test_a_failed_export_leaves_the_previous_file_whole_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "split.parquet"
    write_geoparquet(path, make_table(seed=1), metadata={}, row_group_rows=5)
    before = path.read_bytes()

    class Failing:
        """Embeddings on a disk that fails on the third row group."""

        def __init__(self, values: np.ndarray) -> None:
            self.values, self.shape, self.reads = values, values.shape, 0

        def __getitem__(self, rows: np.ndarray) -> np.ndarray:
            self.reads += 1
            if self.reads == 3:
                raise OSError("read error")
            return self.values[rows]

    table = make_table(seed=2)
    table.embeddings = Failing(table.embeddings)
    with pytest.raises(OSError, match="read error"):
        write_geoparquet(path, table, metadata={}, row_group_rows=5)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.parquet"]
