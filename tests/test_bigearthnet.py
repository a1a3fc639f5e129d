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


def test_fast_upsampling_equals_gdal_on_random_data(tmp_path: Path) -> None:
    from tests.fakedata import write_band

    rng = np.random.default_rng(1)
    for trial in range(6):
        high = 8 if trial % 2 else 65536  # small values hit exact .5 roundings
        array = rng.integers(0, high, size=(60, 60)).astype(np.uint16)
        path = tmp_path / f"b{trial}.tif"
        write_band(path, array, 0, 1200, 20)
        np.testing.assert_array_equal(ben.upsample2x_bilinear(array), ben.read_band_gdal(path))


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
