"""Generators of small datasets in the exact on-disk formats rsir reads (committed, seeded).

- :func:`make_bigearthnet`: BigEarthNet-S2 v1.0 patch folders (12 single-band uint16 GeoTIFFs at
  120/60/20 px, ``_labels_metadata.json``) plus official-style split CSVs (S2 name, S1 name).
- :func:`make_forestnet`: ForestNet's ``{split}.csv`` files and ``images/visible/composite.png`` +
  ``images/infrared/composite.npy`` per example; :func:`forestnet_zip` packs such a tree the way the
  real ``ForestNetDataset.zip`` holds it, under ``deep/downloads/ForestNetDataset/``.

Images are drawn per class from distinct spectral signatures plus noise, so that retrieval on them
is meaningful (same-label samples look alike).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from rsir_cli.datasets import bigearthnet as ben
from rsir_cli.datasets import forestnet as fn

UTM33_WKT = (
    'PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],'
    'AUTHORITY["EPSG","4326"]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
    'PARAMETER["central_meridian",15],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],'
    'PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],'
    'AXIS["Northing",NORTH],AUTHORITY["EPSG","32633"]]'
)
BAND_SIZE = {"B01": 20, "B09": 20, "B05": 60, "B06": 60, "B07": 60, "B8A": 60, "B11": 60, "B12": 60}


def write_band(path: Path, array: np.ndarray, left: float, top: float, pixel: float, crs: str = "EPSG:32633") -> None:
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": crs,
        "transform": from_origin(left, top, pixel, pixel),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(np.uint16), 1)


def write_raster(
    path: Path,
    array: np.ndarray,
    *,
    left: float = 500000.0,
    top: float = 5000040.0,
    pixel: float = 10.0,
    crs: str | None = "EPSG:32633",
    descriptions: list[str] | None = None,
    nodata: float | None = None,
    scales: list[float] | None = None,
    offsets: list[float] | None = None,
    **profile: object,
) -> Path:
    """Write a multi-band GeoTIFF (C, H, W) with band descriptions, nodata, scales and offsets."""
    import rasterio
    from rasterio.transform import from_origin

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    options = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "transform": from_origin(left, top, pixel, pixel),
        **profile,
    }
    if crs:
        options["crs"] = crs
    if nodata is not None:
        options["nodata"] = nodata
    with rasterio.open(path, "w", **options) as dst:
        dst.write(array)
        for i, text in enumerate(descriptions or []):
            dst.set_band_description(i + 1, text)
        if scales is not None:
            dst.scales = scales
        if offsets is not None:
            dst.offsets = offsets
    return path


def make_bigearthnet(
    root: Path,
    splits: dict[str, int] | None = None,
    seed: int = 0,
    n_classes: int = 4,
    with_s1_column: bool = True,
) -> dict[str, list[str]]:
    """Write a small BigEarthNet-S2 v1.0 tree under ``root``; returns patch names per split.

    Each patch gets one or two of ``n_classes`` labels (drawn from the 43 official names); its
    bands are the label's signature (a smooth field scaled per band) plus noise.
    """
    splits = splits or {"val": 6, "test": 10}
    rng = np.random.default_rng(seed)
    patch_dir = root / "BigEarthNet-v1.0"
    patch_dir.mkdir(parents=True, exist_ok=True)
    (root / "splits").mkdir(exist_ok=True)
    class_labels = [ben.LABELS_43[i] for i in (11, 17, 23, 39, 22, 2, 29, 41)[:n_classes]]
    signatures = rng.uniform(300, 4000, size=(n_classes, len(ben.BANDS)))
    names: dict[str, list[str]] = {}
    counter = 0
    for split, count in splits.items():
        names[split] = []
        rows = []
        for _ in range(count):
            counter += 1
            name = f"S2A_MSIL2A_20170613T101031_{counter}_{seed}"
            primary = int(rng.integers(n_classes))
            labels = {primary}
            if rng.random() < 0.3:
                labels.add(int(rng.integers(n_classes)))
            folder = patch_dir / name
            folder.mkdir(exist_ok=True)
            left, top = 400000.0 + 1200 * counter, 5340000.0
            for b, band in enumerate(ben.BANDS):
                size = BAND_SIZE.get(band, 120)
                base = signatures[primary, b] * (1 + 0.1 * np.linspace(-1, 1, size)[None, :])
                noise = rng.normal(0, 60, size=(size, size))
                write_band(folder / f"{name}_{band}.tif", np.clip(base + noise, 0, 20000), left, top, 1200 / size)
            meta = {
                "labels": [class_labels[i] for i in sorted(labels)],
                "coordinates": {"ulx": left, "uly": top, "lrx": left + 1200, "lry": top - 1200},
                "projection": UTM33_WKT,
                "tile_source": "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608.SAFE",
                "acquisition_date": "2017-06-13 10:10:31",
            }
            (folder / f"{name}_labels_metadata.json").write_text(json.dumps(meta))
            names[split].append(name)
            rows.append([name, name.replace("S2A_MSIL2A", "S1A_IW_GRDH_1SDV")] if with_s1_column else [name])
        with open(root / "splits" / f"{split}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    return names


def make_forestnet(
    root: Path, splits: dict[str, int] | None = None, seed: int = 0, size: int = 332
) -> dict[str, list[str]]:
    """Write a small ForestNet tree (``root/ForestNetDataset``); returns example names per split."""
    from PIL import Image

    splits = splits or {"val": 5, "test": 8}
    rng = np.random.default_rng(seed)
    base = root / "ForestNetDataset"
    base.mkdir(parents=True, exist_ok=True)
    signatures = rng.uniform(20, 230, size=(len(fn.LABELS_12), 6))
    names: dict[str, list[str]] = {}
    for split, count in splits.items():
        rows = []
        names[split] = []
        for i in range(count):
            label_index = int(rng.integers(len(fn.LABELS_12)))
            lat, lon = float(rng.uniform(-5, 3)), float(rng.uniform(95, 140))
            example = f"examples/{lat:.6f}_{lon:.6f}_{split}{i}"
            folder = base / example / "images"
            (folder / "visible").mkdir(parents=True, exist_ok=True)
            (folder / "infrared").mkdir(parents=True, exist_ok=True)
            pixels = signatures[label_index][None, None, :] + rng.normal(0, 8, size=(size, size, 6))
            pixels = np.clip(pixels, 0, 255).astype(np.uint8)
            Image.fromarray(pixels[:, :, :3], mode="RGB").save(folder / "visible" / "composite.png")
            np.save(folder / "infrared" / "composite.npy", pixels[:, :, 3:])
            label = fn.LABELS_12[label_index]
            merged = fn.LABELS_4[fn.MERGE_12_TO_4[label_index]]
            rows.append(
                {
                    "label": label,
                    "merged_label": merged,
                    "latitude": lat,
                    "longitude": lon,
                    "year": 2012,
                    "example_path": example,
                }
            )
            names[split].append(example.split("/")[-1])
        with open(base / f"{split}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["label", "merged_label", "latitude", "longitude", "year", "example_path"]
            )
            writer.writeheader()
            writer.writerows(rows)
    return names


def forestnet_zip(root: Path) -> bytes:
    """``root/ForestNetDataset`` as the real ``ForestNetDataset.zip`` lays it out.

    The official download script (``unzip ForestNetDataset.zip; mv deep/downloads/ForestNetDataset .;
    rm -r deep``) and the projects that read the unzipped data show every member under
    ``deep/downloads/ForestNetDataset/``, with the folder entries above it.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("deep/"), b"")
        archive.writestr(zipfile.ZipInfo(f"{fn.ARCHIVE_FOLDER}/"), b"")
        base = root / "ForestNetDataset"
        archive.write(base, f"{fn.ARCHIVE_FOLDER}/ForestNetDataset")
        for path in sorted(base.rglob("*")):
            archive.write(path, f"{fn.ARCHIVE_FOLDER}/ForestNetDataset/{path.relative_to(base).as_posix()}")
    return buffer.getvalue()
