"""The 2026 flow through the CLI: Prithvi-EO-2.0-TL on BigEarthNet v2.0, hashed, evaluated, searched with a tile.

Random weights (a checkpoint cannot be downloaded here); the numbers mean nothing, the plumbing
does: dates and footprints reach the time/location inputs, every command works on the result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir_cli.datasets import open_split
from rsir_cli.store import EmbeddingStore
from tests.cli import assert_usage_error, run
from tests.fakedata import write_raster
from tests.fakedata_reben import make_reben

MODEL = "prithvi-eo2-300m-tl"
PRITHVI = ("B02", "B03", "B04", "B8A", "B11", "B12")


@pytest.mark.slow
def test_prithvi_eo2_tl_on_reben_embed_hash_evaluate_search(tmp_path: Path) -> None:
    data = tmp_path / "reben"
    make_reben(data, {"train": 0, "validation": 3, "test": 4}, {"validation": 0, "test": 0}, nodata_patches=0)
    store = tmp_path / "store"
    common = ["--store", store, "--workers", "0", "--batch-size", "4"]
    embedded = run("embed", "-m", MODEL, "-d", "reben", "--data-dir", data, "--random-weights", *common, "--json")
    assert embedded.exit_code == 0, embedded.output
    assert [(r["split"], r["rows"]) for r in json.loads(embedded.stdout)] == [("val", 3), ("test", 4)]
    test = EmbeddingStore(store).read(MODEL, "reben", "test", footprints=True)
    assert all(len(d) == 10 for d in test.dates) and np.isfinite(test.footprints.lonlat).all()
    assert set(test.attrs["inputs_given"]) == {"time", "location"} and test.attrs["inputs"] == ["time", "location"]
    assert [s["input"] for s in test.attrs["band_sources"]] == list(PRITHVI)

    hashed = run("hash", "--method", "itq", "--bits", "32", "--store", store)
    assert hashed.exit_code == 0, hashed.output
    evaluated = run("evaluate", "--hash", "none,itq", "--bits", "32", "--k", "3", "--store", store, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    columns = {(c["column"], c["method"]) for c in json.loads(evaluated.stdout)["results"]}
    assert columns == {("reBEN-19", "none"), ("reBEN-19", "itq")}

    # A tile cut from a test patch, with its acquisition date in its name: it finds that patch first.
    reader = open_split("reben", "test", data)
    sample = reader.load(2, PRITHVI)
    left, _, _, top = sample.bounds
    tile = tmp_path / f"tile_{sample.date.replace('-', '')}.tif"
    write_raster(tile, sample.image.astype(np.uint16), descriptions=list(PRITHVI), crs=sample.crs, left=left, top=top)
    found = run("search", tile, "--store", store, "--k", "2", "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["results"][0]["matches"][0]["id"] == reader.ids[2]

    undated = tmp_path / "tile.tif"
    undated.write_bytes(tile.read_bytes())
    assert_usage_error(run("search", undated, "--store", store), "takes the acquisition date.*pass --date YYYY-MM-DD")
    dated = run("search", undated, "--date", sample.date, "--store", store, "--k", "1", "--json")
    assert json.loads(dated.stdout)["results"][0]["matches"][0]["id"] == reader.ids[2]


def test_two_dates_give_two_embeddings_through_embed_images() -> None:
    """The dates reach the model: the same pixels on two dates embed differently (and the same date alike)."""
    from rsir_cli.embedding import embed_images
    from rsir_cli.models import build_encoder, get_model_config

    config = get_model_config(MODEL)
    small = config.__class__(**{**config.__dict__, "depth": 1, "name": "tiny-tl"})
    encoder = build_encoder(small, None, True)
    images = np.random.default_rng(0).integers(0, 3000, (2, 6, 32, 32)).astype(np.float32)
    images[1] = images[0]
    corners = np.tile(np.array([[14.0, 48.0], [14.1, 48.0], [14.1, 47.9], [14.0, 47.9]]), (2, 1, 1))
    same = embed_images(encoder, images, device="cpu", dates=["2020-06-01"] * 2, lonlat=corners)
    other = embed_images(encoder, images, device="cpu", dates=["2020-06-01", "2021-01-15"], lonlat=corners)
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.allclose(other[0], other[1])


def _chips(root: Path, bands: int, count: int = 3) -> list[Path]:
    root.mkdir(parents=True)
    rng = np.random.default_rng(5)
    paths = []
    for i in range(count):
        path = root / f"chip{i}.tif"
        write_raster(path, rng.integers(100, 4000, (bands, 32, 32)).astype(np.uint16), left=500000.0 + 320 * i)
        paths.append(path)
    return paths


@pytest.mark.slow
def test_dofa_embeds_an_rgb_nir_archive_with_its_own_wavelengths(tmp_path: Path) -> None:
    chips = _chips(tmp_path / "planet", 4)
    store = tmp_path / "store"
    result = run("embed", "-m", "dofa-base", "-d", "folder", "--data-dir", tmp_path / "planet", "--random-weights",
                 "--model-bands", "planetscope:blue,green,red,nir", "--bands", "1,2,3,4", "--store", store,
                 "--workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    attrs = EmbeddingStore(store).attrs("dofa-base", "planet", "all")
    assert attrs["sensor"] == "planetscope" and len(attrs["wavelengths"]) == 4
    assert attrs["wavelengths"][3] == pytest.approx(0.865)  # PlanetScope's NIR, not Sentinel-2's B08 (0.842)
    assert [s["from"].split(",")[0] for s in attrs["band_sources"]] == ["band 1", "band 2", "band 3", "band 4"]
    found = run("search", chips[1], "--bands", "1,2,3,4", "--store", store, "--k", "1", "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["results"][0]["matches"][0]["id"] == "chip1"


def test_a_time_model_on_undated_imagery_says_how_to_give_the_date(tmp_path: Path) -> None:
    _chips(tmp_path / "mine", 6, count=1)
    args = ["embed", "-m", MODEL, "-d", "folder", "--data-dir", tmp_path / "mine", "--random-weights",
            "--bands", "1,2,3,4,5,6", "--store", tmp_path / "store"]  # fmt: skip
    assert_usage_error(run(*args), "takes each image's acquisition date.*pass --date YYYY-MM-DD")
    assert not (tmp_path / "store").exists()  # nothing written
    assert run(*args, "--date", "not-a-date").exit_code == 2
