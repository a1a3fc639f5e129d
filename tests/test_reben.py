"""BigEarthNet v2.0 (reBEN) reader: torchgeo's BigEarthNetV2 and rasterio as the truth, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rsir_cli.datasets import get_dataset, open_split, reben
from rsir_cli.datasets.patchbands import BANDS, read_band_gdal, upsample_bilinear
from rsir_cli.errors import CorruptDataError, DataNotFoundError, UsageError
from tests.fakedata_reben import TILES, FakeReben, make_reben, write_band

PRITHVI_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> FakeReben:
    """A reBEN tree shared by the tests that only read it: 3 train, 6 validation, 10 test, 3 flagged."""
    return make_reben(tmp_path_factory.mktemp("reben") / "reben")


@pytest.fixture
def small(tmp_path: Path) -> FakeReben:
    """A tree of one's own to damage: 2 validation and 2 test patches, none flagged."""
    return make_reben(tmp_path / "reben", {"validation": 2, "test": 2}, {}, reference_maps=False, nodata_patches=0)


def _rewrite_parquet(path: Path, change) -> None:  # noqa: ANN001  (a function of a pyarrow table)
    import pyarrow.parquet as pq

    pq.write_table(change(pq.read_table(path)), path)


@pytest.mark.slow
def test_labels_and_bands_equal_torchgeo_bigearthnetv2(tree: FakeReben) -> None:
    """Every patch of every split: labels and all 12 bands equal torchgeo 0.8's reader on the same files."""
    pytest.importorskip("torchgeo.datasets", reason="torchgeo (with its datasets extra) is not installed")
    from torchgeo.datasets import BigEarthNetV2

    (tree.root / "BigEarthNet-S1").mkdir(exist_ok=True)  # torchgeo checks that the S1 folder exists
    nodata_seen = False
    for split in ("train", "val", "test"):
        theirs = BigEarthNetV2(tree.root, split=split, bands="s2")
        ours = open_split("reben", split, tree.root)
        assert len(ours) == len(theirs) == len(tree.splits[reben.SPLITS[split]])
        assert ours.ids == list(theirs.metadata_df["patch_id"])
        for i in range(len(ours)):
            expected = theirs[i]
            sample = ours.load(i, BANDS)
            np.testing.assert_array_equal(sample.labels, expected["label"].numpy(), err_msg=ours.ids[i])
            np.testing.assert_array_equal(sample.image, expected["image"].numpy(), err_msg=ours.ids[i])
            six = ours.load(i, PRITHVI_BANDS).image
            np.testing.assert_array_equal(six, expected["image"].numpy()[[BANDS.index(b) for b in PRITHVI_BANDS]])
            nodata_seen |= bool((sample.image == 0).any())
    assert nodata_seen  # the nodata patch (GDAL leaves its zeros out of the bilinear sums) was among them


def test_labels_equal_the_parquet_names(tree: FakeReben) -> None:
    import pyarrow.parquet as pq

    rows = {r["patch_id"]: r["labels"] for r in pq.read_table(tree.root / reben.METADATA).to_pylist()}
    reader = open_split("reben", "test", tree.root)
    for i, patch in enumerate(reader.ids):
        names = [reben.LABELS[j] for j in np.flatnonzero(reader.load(i, ("B02",)).labels)]
        assert sorted(names) == rows[patch]


def test_label_order_is_torchgeos_and_bigearthnet19s() -> None:
    from rsir_cli.datasets import bigearthnet

    assert reben.LABELS == bigearthnet.LABELS_19
    assert reben.LABELS[0] == "Urban fabric" and reben.LABELS[-1] == "Marine waters"
    assert list(get_dataset("reben").label_sets) == ["19"]


def test_footprints_equal_rasterio_and_the_patch_grid(tree: FakeReben) -> None:
    import rasterio

    tiles = {product: (epsg, left, top) for product, epsg, left, top, *_ in TILES}
    for split in ("val", "test"):
        reader = open_split("reben", split, tree.root)
        for i, patch in enumerate(reader.ids):
            sample = reader.load(i, ("B05", "B02"))
            with rasterio.open(reader.band_path(patch, "B02")) as src:
                assert sample.crs == f"EPSG:{src.crs.to_epsg()}"
                assert sample.bounds == tuple(src.bounds)
            epsg, tile_left, tile_top = tiles[reben.tile_of(patch)]
            column, row = (int(v) for v in patch.split("_")[-2:])
            left, top = tile_left + 1200 * column, tile_top - 1200 * row
            assert sample.crs == f"EPSG:{epsg}"
            assert sample.bounds == (left, top - 1200, left + 1200, top)


def test_dates_come_from_the_product_name(tree: FakeReben) -> None:
    dates = {TILES[0][0]: "2017-06-13", TILES[1][0]: "2018-05-25", TILES[2][0]: "2017-07-17"}
    reader = open_split("reben", "test", tree.root)
    seen = set()
    for i, patch in enumerate(reader.ids):
        date = reader.load(i, ("B02",)).date
        assert date == dates[reben.tile_of(patch)]
        seen.add(date)
    assert len(seen) > 1


def test_split_sizes_and_the_flagged_patches(tree: FakeReben) -> None:
    assert get_dataset("reben").default_splits == ("val", "test")
    sizes = {split: len(open_split("reben", split, tree.root)) for split in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 6, "test": 10}
    with_flagged = open_split("reben", "test", tree.root, include_flagged=True)
    assert with_flagged.ids == tree.splits["test"] + tree.flagged["test"]
    assert len(open_split("reben", "val", tree.root, include_flagged=True)) == 7
    assert with_flagged.describe()["metadata_files"] == [
        str(tree.root / reben.METADATA),
        str(tree.root / reben.FLAGGED_METADATA),
    ]


def test_flagged_rows_of_one_parquet_are_dropped_unless_asked(small: FakeReben) -> None:
    import pyarrow as pa

    column = reben.FLAG_COLUMNS.index("contains_seasonal_snow") + 6
    flag = pa.array([True, False, False, False])  # the rows are sorted by patch id: the first one has snow
    _rewrite_parquet(small.root / reben.METADATA, lambda t: t.set_column(column, "contains_seasonal_snow", flag))
    snowy = sorted(small.splits["validation"] + small.splits["test"])[0]
    split = "val" if snowy in small.splits["validation"] else "test"
    assert snowy not in open_split("reben", split, small.root).ids
    assert snowy in open_split("reben", split, small.root, include_flagged=True).ids


def test_a_metadata_file_of_ones_own(small: FakeReben, tmp_path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(small.root / reben.METADATA)
    mine = tmp_path / "mine.parquet"
    pq.write_table(table.filter(pc.equal(table["patch_id"], small.splits["test"][1])), mine)
    assert open_split("reben", "test", small.root, metadata=mine).ids == [small.splits["test"][1]]


def test_missing_parquet_says_how_to_download(small: FakeReben) -> None:
    (small.root / reben.METADATA).unlink()
    with pytest.raises(DataNotFoundError, match=r"metadata\.parquet.*rsir download reben"):
        open_split("reben", "val", small.root)


@pytest.mark.parametrize(
    "column", ["patch_id", "labels", "split", "contains_seasonal_snow", "contains_cloud_or_shadow"]
)
def test_a_missing_column_is_named(small: FakeReben, column: str) -> None:
    _rewrite_parquet(small.root / reben.METADATA, lambda t: t.drop_columns([column]))
    with pytest.raises(CorruptDataError, match=f"no column '{column}'"):
        open_split("reben", "val", small.root)


def test_the_flag_columns_are_not_needed_when_flagged_patches_are_kept(small: FakeReben) -> None:
    _rewrite_parquet(small.root / reben.METADATA, lambda t: t.drop_columns(list(reben.FLAG_COLUMNS)))
    assert len(open_split("reben", "val", small.root, include_flagged=True)) == 2


def test_a_column_of_the_wrong_type_is_named(small: FakeReben) -> None:
    import pyarrow.compute as pc

    def labels_as_text(table):  # noqa: ANN001, ANN202
        return table.set_column(1, "labels", pc.binary_join(table["labels"], ";"))

    _rewrite_parquet(small.root / reben.METADATA, labels_as_text)
    with pytest.raises(CorruptDataError, match="column 'labels' holds string, not a list of strings"):
        open_split("reben", "val", small.root)


def test_not_a_parquet_file(small: FakeReben) -> None:
    (small.root / reben.METADATA).write_bytes(b"patch_id,labels\n")
    with pytest.raises(CorruptDataError, match="not a readable parquet file"):
        open_split("reben", "val", small.root)


def test_an_unknown_label_is_named_with_its_patch(small: FakeReben) -> None:
    import pyarrow as pa

    path = small.root / reben.METADATA
    first = sorted(small.splits["validation"] + small.splits["test"])[0]
    labels = pa.array([["Arable land", "Vineyards"]] + [["Pastures"]] * 3, type=pa.list_(pa.string()))
    _rewrite_parquet(path, lambda t: t.set_column(1, "labels", labels))
    split = "val" if first in small.splits["validation"] else "test"
    with pytest.raises(CorruptDataError, match=f"{first} has the label 'Vineyards'"):
        open_split("reben", split, small.root)


def test_a_duplicated_patch_id_is_refused(small: FakeReben) -> None:
    import pyarrow as pa

    path = small.root / reben.METADATA
    _rewrite_parquet(path, lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    with pytest.raises(CorruptDataError, match="more than once"):
        open_split("reben", "test", small.root)


def test_missing_patch_folder_and_band_file_are_named(small: FakeReben) -> None:
    import shutil

    reader = open_split("reben", "test", small.root)
    first, second = reader.ids
    reader.band_path(first, "B8A").unlink()
    with pytest.raises(DataNotFoundError, match=f"band file .*{first}_B8A.tif is missing"):
        reader.load(0, PRITHVI_BANDS)
    shutil.rmtree(reader.band_path(second, "B02").parent)
    with pytest.raises(DataNotFoundError, match=f"patch folder .*{second} .*is missing"):
        reader.load(1, PRITHVI_BANDS)


def test_missing_patch_folder_tree_says_how_to_get_it(small: FakeReben) -> None:
    import shutil

    shutil.rmtree(small.root / reben.PATCH_FOLDER)
    with pytest.raises(DataNotFoundError, match=r"no BigEarthNet-S2/ folder.*rsir download reben"):
        open_split("reben", "val", small.root)


def test_a_band_of_the_wrong_size_is_refused(small: FakeReben) -> None:
    reader = open_split("reben", "val", small.root)
    path = reader.band_path(reader.ids[0], "B11")
    write_band(path, np.full((120, 120), 500), 0, 1200, 10, 32633)  # a 20 m band stored at 10 m
    with pytest.raises(CorruptDataError, match=r"B11.tif is 120x120 px, but BigEarthNet stores B11 \(20 m\) as 60x60"):
        reader.load(0, ("B11",))
    with pytest.raises(CorruptDataError, match="120x120 px"):
        open_split("reben", "val", small.root, exact_gdal=True).load(0, ("B11",))


def test_a_band_file_with_two_bands_is_refused(small: FakeReben) -> None:
    reader = open_split("reben", "val", small.root)
    path = reader.band_path(reader.ids[1], "B05")
    write_band(path, np.full((2, 60, 60), 500), 0, 1200, 20, 32633)
    with pytest.raises(CorruptDataError, match="holds 2 bands"):
        reader.load(1, ("B05",))


def test_bands_in_different_crs_or_places_are_refused(small: FakeReben) -> None:
    import rasterio

    reader = open_split("reben", "test", small.root)
    patch = reader.ids[0]
    with rasterio.open(reader.band_path(patch, "B02")) as src:
        left, top = src.bounds.left, src.bounds.top
    write_band(reader.band_path(patch, "B12"), np.full((60, 60), 500), left, top, 20, 32632)
    with pytest.raises(CorruptDataError, match=f"patch {patch}: band B12 is in EPSG:32632 but B02 in EPSG:"):
        reader.load(0, ("B02", "B12"))
    write_band(reader.band_path(patch, "B12"), np.full((60, 60), 500), left + 1200, top, 20, int(src.crs.to_epsg()))
    with pytest.raises(CorruptDataError, match=f"patch {patch}: band B12 covers"):
        reader.load(0, ("B02", "B12"))


def test_unknown_options_and_splits_are_refused(small: FakeReben) -> None:
    with pytest.raises(UsageError, match="include_flagged"):
        open_split("reben", "val", small.root, drop_snow=True)
    with pytest.raises(UsageError, match="validation"):
        open_split("reben", "validation", small.root)


def test_the_nodata_patch_needs_gdals_masked_kernel(tree: FakeReben) -> None:
    """The corner of zeros: the plain integer kernel would differ from GDAL, the reader does not."""
    reader = open_split("reben", "train", tree.root)
    for i, patch in enumerate(reader.ids):
        path = reader.band_path(patch, "B09")
        raw = read_band_gdal(path, 20)
        if not (raw == 0).any():
            continue
        assert not np.array_equal(upsample_bilinear(raw, 6), read_band_gdal(path))
        np.testing.assert_array_equal(reader.load(i, ("B09",)).image[0], read_band_gdal(path))
        return
    pytest.fail("no nodata patch in the generated tree")


def test_embed_through_the_cli_and_a_parquet_without_labels(
    small: FakeReben, tmp_path: Path, fake_encoder: str
) -> None:
    from rsir_cli.store import EmbeddingStore
    from tests.cli import assert_one_line_error, run

    store = tmp_path / "store"
    common = ["embed", "--model", fake_encoder, "--dataset", "reben", "--data-dir", small.root, "--store", store]
    result = run(*common, "--random-weights", "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    data = EmbeddingStore(store).read("fake", "reben", "val", footprints=True)
    assert data.ids == small.splits["validation"]
    assert list(data.label_names) == list(reben.LABELS)
    lon, lat = data.footprints.lonlat[0].mean(axis=0)
    assert -10 < lon < 30 and 37 < lat < 62  # Austria, Finland or Portugal

    _rewrite_parquet(small.root / reben.METADATA, lambda t: t.drop_columns(["labels"]))
    failed = run(*common, "--random-weights", "--workers", "0", "--overwrite")
    assert_one_line_error(failed, "has no column 'labels'")
