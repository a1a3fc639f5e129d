"""A small BigEarthNet v2.0 (reBEN) in the exact on-disk layout of the Zenodo release (seeded).

What it writes under ``root`` (as the real archives extract, checked against real reBEN files)::

    metadata.parquet                                            the recommended patches
    metadata_for_patches_with_snow_cloud_or_shadow.parquet      the flagged ones
    BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_<band>.tif      12 bands per patch
    Reference_Maps/<tile>/<patch_id>/<patch_id>_reference_map.tif   (``reference_maps=True``)

- Parquet: the real columns and types (``patch_id`` string, ``labels`` list<element: string> sorted
  by name, ``split`` train / validation / test, ``country``, ``s1_name``, ``s2v1_name`` strings,
  ``contains_seasonal_snow`` and ``contains_cloud_or_shadow`` booleans), rows sorted by patch_id,
  zstd-compressed, as the release's DuckDB export writes them.
- Band files: uncompressed striped single-band uint16 GeoTIFFs, nodata 0, at the native size
  (120 / 60 / 20 px for 10 / 20 / 60 m), in the tile's UTM CRS, footprint ``1200 m`` from the
  tile's upper-left corner by the patch id's last two fields (column, row).
- Reference maps: deflate-compressed uint16 CORINE codes at 120 x 120, nodata 0.

Pixels are a per-class spectral signature plus noise, so that retrieval on them is meaningful.
``nodata_patches`` patches get a corner of zeros (nodata) in every band, which GDAL leaves out of
its bilinear sums: the readers must handle that exactly as GDAL does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsir_cli.datasets import reben
from rsir_cli.datasets.patchbands import BANDS, NATIVE_SIZE

# product (tile folder), UTM EPSG code, tile upper-left x / y, country, S1 product of the same area
TILES: tuple[tuple[str, int, float, float, str, str], ...] = (
    ("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP", 32633, 300000.0, 5400000.0, "Austria",
     "S1B_IW_GRDH_1SDV_20170612T165809_33UUP"),
    ("S2B_MSIL2A_20180525T094029_N9999_R036_T35VNL", 32635, 499980.0, 6800040.0, "Finland",
     "S1A_IW_GRDH_1SDV_20180524T160000_35VNL"),
    ("S2A_MSIL2A_20170717T113321_N9999_R080_T29SNC", 32629, 600000.0, 4400040.0, "Portugal",
     "S1B_IW_GRDH_1SDV_20170716T183000_29SNC"),
)  # fmt: skip

# One CORINE Land Cover 2018 code per BigEarthNet-19 class (the reference maps hold CLC codes).
CLC_CODE = dict(zip(reben.LABELS, (111, 121, 211, 221, 231, 242, 243, 244, 311, 312, 313, 321, 322, 324, 331,
                                   411, 421, 511, 523), strict=True))  # fmt: skip


@dataclass
class FakeReben:
    """What :func:`make_reben` wrote: patch ids per parquet split, in file order."""

    root: Path
    splits: dict[str, list[str]] = field(default_factory=dict)  # metadata.parquet
    flagged: dict[str, list[str]] = field(default_factory=dict)  # the snow / cloud / shadow parquet


def write_band(
    path: Path, array: np.ndarray, left: float, top: float, pixel: float, epsg: int, **profile: object
) -> None:
    """One single-band uint16 GeoTIFF as reBEN stores it (nodata 0; plain unless ``profile`` says otherwise)."""
    import rasterio
    from rasterio.transform import from_origin

    options = {
        "driver": "GTiff",
        "width": array.shape[-1],
        "height": array.shape[-2],
        "count": 1 if array.ndim == 2 else array.shape[0],
        "dtype": "uint16",
        "crs": f"EPSG:{epsg}",
        "transform": from_origin(left, top, pixel, pixel),
        "nodata": 0,
        **profile,
    }
    with rasterio.open(path, "w", **options) as dst:
        dst.write(array.astype(np.uint16).reshape(options["count"], *array.shape[-2:]))


def make_reben(
    root: Path,
    splits: dict[str, int] | None = None,
    flagged: dict[str, int] | None = None,
    *,
    seed: int = 0,
    n_classes: int = 5,
    nodata_patches: int = 1,
    reference_maps: bool = True,
) -> FakeReben:
    """Write a small reBEN under ``root``.

    Args:
        root: the dataset root (created).
        splits: patches per parquet split in ``metadata.parquet`` (default 3 train, 6 validation, 10 test).
        flagged: patches per split with snow, cloud or shadow (default 1 validation, 2 test), on disk and
            in the second parquet, as in the release.
        seed: the random seed.
        n_classes: how many of the 19 classes the patches draw their labels from.
        nodata_patches: how many patches get a corner of nodata (zeros) in every band.
        reference_maps: also write ``Reference_Maps/`` (torchgeo's reader needs it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    splits = {"train": 3, "validation": 6, "test": 10} if splits is None else splits
    flagged = {"validation": 1, "test": 2} if flagged is None else flagged
    rng = np.random.default_rng(seed)
    classes = list(rng.choice(len(reben.LABELS), size=n_classes, replace=False))
    signatures = rng.uniform(300, 4000, size=(n_classes, len(BANDS)))
    used: set[tuple[int, int, int]] = set()
    rows: dict[bool, list[dict[str, object]]] = {False: [], True: []}
    wanted = [(split, False) for split, n in splits.items() for _ in range(n)]
    wanted += [(split, True) for split, n in flagged.items() for _ in range(n)]
    for number, (split, is_flagged) in enumerate(wanted):
        tile = int(rng.integers(len(TILES)))
        column, row = int(rng.integers(0, 92)), int(rng.integers(0, 92))
        while (tile, column, row) in used:
            column, row = int(rng.integers(0, 92)), int(rng.integers(0, 92))
        used.add((tile, column, row))
        product, epsg, tile_left, tile_top, country, s1_product = TILES[tile]
        patch_id = f"{product}_{column}_{row}"
        primary = int(rng.integers(n_classes))
        members = {primary} | ({int(rng.integers(n_classes))} if rng.random() < 0.4 else set())
        labels = sorted(reben.LABELS[classes[c]] for c in members)
        left, top = tile_left + 1200.0 * column, tile_top - 1200.0 * row
        folder = root / reben.PATCH_FOLDER / product / patch_id
        folder.mkdir(parents=True, exist_ok=True)
        for b, band in enumerate(BANDS):
            size = NATIVE_SIZE[band]
            base = signatures[primary, b] * (1 + 0.1 * np.linspace(-1, 1, size)[None, :])
            pixels = np.clip(base + rng.normal(0, 60, size=(size, size)), 1, 20000)
            if number < nodata_patches:
                pixels[: size // 3, : size // 4] = 0  # a corner outside the swath: nodata
            write_band(folder / f"{patch_id}_{band}.tif", pixels, left, top, 1200 / size, epsg)
        if reference_maps:
            maps = root / "Reference_Maps" / product / patch_id
            maps.mkdir(parents=True, exist_ok=True)
            codes = np.array([CLC_CODE[name] for name in labels])
            write_band(maps / f"{patch_id}_reference_map.tif", rng.choice(codes, size=(120, 120)), left, top, 10.0,
                       epsg, compress="deflate")  # fmt: skip
        snow = is_flagged and rng.random() < 0.5
        rows[is_flagged].append(
            {
                "patch_id": patch_id,
                "labels": labels,
                "split": split,
                "country": country,
                "s1_name": f"{s1_product}_{column}_{row}",
                "s2v1_name": f"{'_'.join(product.split('_')[:3])}_{column}_{row}",
                "contains_seasonal_snow": snow,
                "contains_cloud_or_shadow": is_flagged and not snow,
            }
        )
    schema = pa.schema(
        [
            ("patch_id", pa.string()),
            ("labels", pa.list_(pa.field("element", pa.string()))),
            ("split", pa.string()),
            ("country", pa.string()),
            ("s1_name", pa.string()),
            ("s2v1_name", pa.string()),
            ("contains_seasonal_snow", pa.bool_()),
            ("contains_cloud_or_shadow", pa.bool_()),
        ]
    )
    result = FakeReben(root)
    for is_flagged, name in ((False, reben.METADATA), (True, reben.FLAGGED_METADATA)):
        ordered = sorted(rows[is_flagged], key=lambda r: str(r["patch_id"]))
        pq.write_table(pa.Table.from_pylist(ordered, schema=schema), root / name, compression="zstd")
        target = result.flagged if is_flagged else result.splits
        for split in flagged if is_flagged else splits:
            target[split] = [str(r["patch_id"]) for r in ordered if r["split"] == split]
    return result
