"""BigEarthNet reader: real sample patches, the official label tables, exact GDAL-equal resampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir_cli.datasets import bigearthnet as ben
from rsir_cli.datasets import open_split
from rsir_cli.errors import CorruptDataError, DataNotFoundError


def _sample_tree(ben_samples: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ben"
    (root / "splits").mkdir(parents=True)
    (root / "BigEarthNet-v1.0").symlink_to(ben_samples, target_is_directory=True)
    names = sorted(p.name for p in ben_samples.iterdir() if p.is_dir())
    (root / "splits" / "test.csv").write_text("".join(f"{n},S1_{n}\n" for n in names))
    return root


@pytest.mark.network
def test_labels_of_real_patches_equal_their_json(ben_samples: Path, tmp_path: Path) -> None:
    reader = open_split("bigearthnet", "test", _sample_tree(ben_samples, tmp_path))
    assert len(reader) == 6
    for i, patch in enumerate(reader.ids):
        meta = json.loads((ben_samples / patch / f"{patch}_labels_metadata.json").read_text())
        sample = reader.load(i, ("B02",))
        assert sorted(ben.LABELS_43[j] for j in np.flatnonzero(sample.labels)) == sorted(meta["labels"])
        c = meta["coordinates"]
        assert sample.bounds == (c["ulx"], c["lry"], c["lrx"], c["uly"])
        assert sample.crs.startswith("EPSG:326")


@pytest.mark.network
def test_fast_reader_equals_rasterio_bilinear_on_real_patches(ben_samples: Path, tmp_path: Path) -> None:
    """tifffile + integer 2x bilinear == rasterio read(out_shape=(120, 120), bilinear), every band."""
    reader = open_split("bigearthnet", "test", _sample_tree(ben_samples, tmp_path))
    for patch in reader.ids:
        for band in ben.BANDS:
            path = reader.band_path(patch, band)
            np.testing.assert_array_equal(ben.read_band(path), ben.read_band_gdal(path), err_msg=f"{patch} {band}")


@pytest.mark.parametrize("size", [60, 20])  # the 20 m and the 60 m bands: factors 2 and 6
def test_fast_upsampling_equals_gdal_on_random_data(tmp_path: Path, size: int) -> None:
    from tests.fakedata import write_band
    from tests.fakedata_reben import write_band as write_reben_band

    rng = np.random.default_rng(1)
    ties = 0
    for trial in range(12):
        high = (4, 8, 65536)[trial % 3]  # small values hit exact .5 roundings
        array = rng.integers(1, high, size=(size, size)).astype(np.uint16)
        path = tmp_path / f"b{trial}.tif"
        if trial % 2:
            write_band(path, array, 0, 1200, 1200 / size)
        else:  # reBEN's files declare nodata 0 (here none of the pixels is 0)
            write_reben_band(path, array, 0, 1200, 1200 / size, 32633)
        factor = 120 // size
        np.testing.assert_array_equal(ben.upsample_bilinear(array, factor), ben.read_band_gdal(path))
        np.testing.assert_array_equal(ben.read_band(path), ben.read_band_gdal(path))
        weights = 4 * factor * factor
        ties += int(np.sum(_exact_sums(array, factor) % weights == weights // 2))
    assert ties > 1000  # exact half-way cases, where GDAL rounds up, were among them


def _exact_sums(array: np.ndarray, factor: int) -> np.ndarray:
    """The bilinear sums times 4 factor^2, from the definition (output centre (o + 0.5) / f - 0.5)."""
    n = array.shape[0]
    centre = (np.arange(n * factor) + 0.5) / factor - 0.5
    low = np.floor(centre).astype(int)
    high_weight = np.rint((centre - low) * 2 * factor).astype(np.int64)
    rows = (2 * factor - high_weight)[:, None] * array[np.clip(low, 0, n - 1)].astype(np.int64)
    rows += high_weight[:, None] * array[np.clip(low + 1, 0, n - 1)]
    return (2 * factor - high_weight)[None, :] * rows[:, np.clip(low, 0, n - 1)] + high_weight[None, :] * rows[
        :, np.clip(low + 1, 0, n - 1)
    ]


def test_official_43_to_19_mapping_entry_by_entry(ben_constants: dict) -> None:
    official = ben_constants["OLD2NEW_LABELS_DICT"]
    assert tuple(official) == ben.LABELS_43  # the official order
    assert ben_constants["NEW_LABELS_ORIGINAL_ORDER"] == ben.LABELS_19
    label_set = ben.LABEL_SETS["19"]
    for source, name in enumerate(ben.LABELS_43):
        target = label_set.mapping[source]
        expected = official[name]
        assert (ben.LABELS_19[target] if target >= 0 else None) == expected, name
    assert sum(1 for t in label_set.mapping if t < 0) == 11


def test_label_set_conversion_is_a_union() -> None:
    labels = np.zeros((2, 43), dtype=np.uint8)
    labels[0, [0, 1]] = 1  # both urban fabrics -> one "Urban fabric"
    labels[1, [3, 40]] = 1  # a dropped label and a marine one
    converted = ben.LABEL_SETS["19"].convert(labels)
    assert converted[0].tolist() == [1] + [0] * 18
    assert converted[1].tolist() == [0] * 18 + [1]


def test_missing_band_file_names_it(ben_root: Path) -> None:
    reader = open_split("bigearthnet", "val", ben_root)
    patch = reader.ids[0]
    reader.band_path(patch, "B8A").unlink()
    with pytest.raises(DataNotFoundError, match=f"{patch}_B8A.tif"):
        reader.load(0, ("B02", "B8A"))


def test_corrupt_geotiff_is_reported(ben_root: Path) -> None:
    reader = open_split("bigearthnet", "val", ben_root)
    reader.band_path(reader.ids[1], "B02").write_bytes(b"II*\x00garbage")
    with pytest.raises(CorruptDataError, match="B02.tif"):
        reader.load(1, ("B02",))


def test_missing_data_dir_says_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="rsir download bigearthnet"):
        open_split("bigearthnet", "val", tmp_path / "nowhere")


def test_split_csv_with_a_byte_order_mark(ben_root: Path) -> None:
    split = ben_root / "splits" / "val.csv"
    split.write_bytes(b"\xef\xbb\xbf" + split.read_bytes())  # as a spreadsheet saves it
    reader = open_split("bigearthnet", "val", ben_root)
    assert not reader.ids[0].startswith("\ufeff")
    assert reader.load(0, ("B02",)).image.shape == (1, 120, 120)


def test_a_patch_listed_twice_is_refused(ben_root: Path) -> None:
    split = ben_root / "splits" / "test.csv"
    lines = split.read_text().splitlines()
    split.write_text("\n".join([*lines, lines[2]]) + "\n")
    patch = lines[2].split(",")[0]
    with pytest.raises(CorruptDataError, match=f"patch {patch} is listed twice \\(lines 3 and {len(lines) + 1}\\)"):
        open_split("bigearthnet", "test", ben_root)


def test_projection_given_as_an_epsg_code(ben_root: Path) -> None:
    reader = open_split("bigearthnet", "val", ben_root)
    patch = reader.ids[0]
    path = reader.patch_dir / patch / f"{patch}_labels_metadata.json"
    meta = json.loads(path.read_text())
    meta["projection"] = "EPSG:32633"
    path.write_text(json.dumps(meta))
    assert reader.load(0, ("B02",)).crs == "EPSG:32633"
    meta["projection"] = "not a CRS"
    path.write_text(json.dumps(meta))
    with pytest.raises(CorruptDataError, match="projection names no CRS"):
        reader.load(0, ("B02",))


def test_acquisition_date_from_the_json(ben_root: Path) -> None:
    reader = open_split("bigearthnet", "val", ben_root)
    assert reader.load(0, ("B02",)).date == "2017-06-13"  # "acquisition_date": "2017-06-13 10:10:31"
    assert ben.date_from_product_name("S2B_MSIL2A_20170924T93020_69_24") == "2017-09-24"
    assert ben.date_from_product_name("not_a_product") == ""


def test_a_band_of_the_wrong_size_is_refused(ben_root: Path) -> None:
    from tests.fakedata import write_band

    reader = open_split("bigearthnet", "val", ben_root)
    write_band(reader.band_path(reader.ids[0], "B05"), np.full((64, 64), 700), 400000, 5340000, 1200 / 64)
    with pytest.raises(CorruptDataError, match=r"B05.tif is 64x64 px, but BigEarthNet stores B05 \(20 m\) as 60x60"):
        reader.load(0, ("B02", "B05"))


def test_a_band_file_with_two_bands_is_refused(ben_root: Path) -> None:
    from tests.fakedata import write_raster

    reader = open_split("bigearthnet", "val", ben_root)
    path = reader.band_path(reader.ids[0], "B02")
    write_raster(path, np.full((2, 120, 120), 700, dtype=np.uint16), left=401200, top=5340000)
    with pytest.raises(CorruptDataError, match="holds 2 bands"):
        reader.load(0, ("B02",))


def test_a_band_in_another_crs_is_refused(ben_root: Path) -> None:
    from tests.fakedata import write_band

    reader = open_split("bigearthnet", "val", ben_root)
    patch = reader.ids[0]
    write_band(reader.band_path(patch, "B8A"), np.full((60, 60), 700), 401200, 5340000, 20, crs="EPSG:32632")
    with pytest.raises(CorruptDataError, match=f"patch {patch}: band B8A is in EPSG:32632 but B02 in EPSG:32633"):
        reader.load(0, ("B02", "B8A"))
    with pytest.raises(CorruptDataError, match="labels JSON says EPSG:32633 but its band files are in EPSG:32632"):
        reader.load(0, ("B8A",))


def test_exact_gdal_reader_equals_the_fast_one(ben_root: Path) -> None:
    fast = open_split("bigearthnet", "test", ben_root)
    gdal = open_split("bigearthnet", "test", ben_root, exact_gdal=True)
    for i in range(3):
        a, b = fast.load(i, ben.BANDS), gdal.load(i, ben.BANDS)
        np.testing.assert_array_equal(a.image, b.image)
        assert (a.crs, a.bounds, a.date) == (b.crs, b.bounds, b.date)
