"""The end-to-end demo on real sample imagery: what `rsir demo` (and ./scripts/demo.sh) runs.

It prepares the data (six labelled BigEarthNet patches, a Sentinel-2 scene and a query tile cut
from it) and lists the `rsir` commands of the main job; the command layer runs them one by one,
showing each, so the demo doubles as a tutorial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsir_cli import samples

log = logging.getLogger(__name__)

SCENE_NAME = "s2-scene"
QUERY_CHIP = 137  # a chip in the scene's interior (row 8, column 9 of 16 x 16)


@dataclass
class DemoPlan:
    """The demo's inputs on disk and the commands to run, in order."""

    workdir: Path
    store: Path
    bigearthnet: Path
    scene: Path
    query_tile: Path
    figure: Path
    geojson: Path
    random_weights: bool
    steps: list[tuple[str, list[str]]] = field(default_factory=list)


def write_query_tile(scene_dir: Path, path: Path, chip: int = QUERY_CHIP) -> str:
    """Cut one chip of the scene into its own GeoTIFF, bands shuffled and named in descriptions.

    The file holds the six Prithvi bands at the chip's 10 m grid (20 m bands already resampled the
    way the scene reader resamples them), in the order B12, B02, B8A, B04, B11, B03, so the search
    has to map bands by their descriptions. Returns the chip's id in the store.
    """
    import rasterio
    from rasterio.transform import from_bounds

    from rsir_cli.datasets import open_split

    reader = open_split("scene", "all", scene_dir, dataset_name=SCENE_NAME)
    order = ("B12", "B02", "B8A", "B04", "B11", "B03")
    sample = reader.load(chip, order)
    image = np.rint(sample.image).clip(0, 65535).astype(np.uint16)
    left, bottom, right, top = sample.bounds
    height, width = image.shape[1:]
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": len(order),
        "dtype": "uint16",
        "crs": sample.crs,
        "transform": from_bounds(left, bottom, right, top, width, height),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        for i, band in enumerate(order, start=1):
            dst.set_band_description(i, band)
    return reader.ids[chip]


def store_of(workdir: Path, random_weights: bool) -> Path:
    """The demo's store: real and random weights apart, so that neither run is refused by the other's."""
    return workdir / ("store-random" if random_weights else "store")


def start_over(workdir: Path, *, random_weights: bool) -> list[Path]:
    """Delete what a demo run made in ``workdir`` (its store and outputs; the sample data stay)."""
    import shutil

    removed = []
    workdir = workdir.resolve()
    for path in (store_of(workdir, random_weights), workdir / "matches.png", workdir / "matches.geojson",
                 workdir / "matches.html", workdir / "query-tile.tif"):  # fmt: skip
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def plan(workdir: Path, *, random_weights: bool, device: str = "auto", model: str = "prithvi") -> DemoPlan:
    """Fetch the sample imagery (cached) and lay out the demo's commands."""
    workdir = workdir.resolve()
    store = store_of(workdir, random_weights)
    bigearthnet = samples.bigearthnet_tree(workdir / "data" / "bigearthnet")
    scene = samples.sentinel2_scene()
    query_tile = workdir / "query-tile.tif"
    write_query_tile(scene, query_tile)
    result = DemoPlan(
        workdir=workdir,
        store=store,
        bigearthnet=bigearthnet,
        scene=scene,
        query_tile=query_tile,
        figure=workdir / "matches.png",
        geojson=workdir / "matches.geojson",
        random_weights=random_weights,
    )
    weights = ["--random-weights"] if random_weights else []
    common = ["--store", str(store)]
    if not random_weights:
        result.steps.append((f"Fetch the {model} weights", ["download", model]))
    scene_args = ["-m", model, "-d", SCENE_NAME]
    search_args = ["search", str(query_tile), *scene_args, "--k", "8", "--device", device]
    # fmt: off
    result.steps += [
        ("Embed the six labelled BigEarthNet patches (3 queries, 3 database)",
         ["embed", "-m", model, "-d", "bigearthnet", "--data-dir", str(bigearthnet), *weights, "--device", device, *common]),
        ("Embed a Sentinel-2 scene, cut into 120 x 120 px chips (your own archive)",
         ["embed", "-m", model, "-d", "scene", "--data-dir", str(scene), "--name", SCENE_NAME, *weights, "--device", device,
          *common]),
        ("Hash every embedding into 32-bit codes (the paper's trivial hash)",
         ["hash", "--method", "trivial", "--bits", "32", *common]),
        ("... and with ITQ, a learned hash that the paper lacks", ["hash", "--method", "itq", "--bits", "32", *common]),
        ("Evaluate retrieval like the paper (queries = val, database = test)",
         ["evaluate", "-m", model, "-d", "bigearthnet", *common]),
        ("Index the scene's codes into Milvus Lite (a local file)",
         ["index", *scene_args, "--split", "all", "--hash", "trivial", "--bits", "32", *common]),
        ("Search the archive with a GeoTIFF tile (bands in another order, named in its metadata)",
         [*search_args, "--figure", str(result.figure), "--geojson", str(result.geojson), *common]),
        ("The same search answered by Milvus, on 32-bit codes",
         [*search_args, "--hash", "trivial", "--bits", "32", "--backend", "milvus", *common]),
    ]
    # fmt: on
    return result
