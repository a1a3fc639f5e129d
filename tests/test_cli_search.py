"""`rsir search`: real Sentinel-2 chips find themselves; GeoJSON, figure, --id, codes and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rsir_cli import figures
from rsir_cli.cli.app import app
from rsir_cli.datasets import open_split
from rsir_cli.store import EmbeddingStore
from tests.fakedata import write_raster

PRITHVI = ("B02", "B03", "B04", "B8A", "B11", "B12")
# The file's band order for the query chips: shuffled, with extra bands and decorated descriptions.
CHIP_ORDER = ("B12", "B01", "B04", "B8A", "B03", "B11", "B05", "B02")
CHIP_DESCRIPTIONS = ("SWIR 2 (B12)", "B01", "red", "B8A", "B03", "swir16", "B05", "Blue (B02)")
SCENE_BOUNDS = (435730.0, 4160040.0, 455040.0, 4179460.0)  # what every band covers (EPSG:32618)


def run(*args: str) -> object:
    return CliRunner().invoke(app, ["search", *args])


@pytest.fixture(scope="module")
def scene_store(tmp_path_factory: pytest.TempPathFactory, sentinel2_scene: Path) -> Path:
    """The real scene indexed as ``s2`` by the fake encoder (one chip per batch, so that a query
    embedded alone is computed bit for bit like its database row), plus trivial 32-bit codes."""
    import tests.plugins.fake_encoder  # noqa: F401  (registers the fake model in this process)
    from rsir_cli.embedding import EmbedOptions, embed_split
    from rsir_cli.models import build_encoder, get_model_config
    from rsir_cli.stored_codes import hash_store

    store = EmbeddingStore(tmp_path_factory.mktemp("scene-store"))
    reader = open_split("scene", "all", sentinel2_scene, dataset_name="s2")
    encoder = build_encoder(get_model_config("fake"), None, True)
    embed_split(store, encoder, reader, EmbedOptions(device="cpu", batch_size=1, workers=0))
    hash_store(store, "trivial", 32, [None])
    return store.root


def _write_region(sentinel2_scene: Path, path: Path, rows: range, cols: range) -> tuple[float, ...]:
    """Write scene chips rows x cols as one multi-band GeoTIFF (CHIP_ORDER, described); returns its bounds."""
    reader = open_split("scene", "all", sentinel2_scene, dataset_name="s2")
    blocks = [[reader.load(reader.ids.index(f"s2_r{r}_c{c}"), CHIP_ORDER).image for c in cols] for r in rows]
    image = np.concatenate([np.concatenate(row, axis=2) for row in blocks], axis=1)
    assert np.array_equal(image, np.round(image))  # bilinear reads of uint16 files stay integers
    left, top = SCENE_BOUNDS[0] + 1200 * cols[0], SCENE_BOUNDS[3] - 1200 * rows[0]
    write_raster(
        path, image.astype(np.uint16), left=left, top=top, pixel=10, crs="EPSG:32618",
        descriptions=list(CHIP_DESCRIPTIONS),
    )  # fmt: skip
    return left, top - 1200 * len(rows), left + 1200 * len(cols), top


def _thumbnail(pixels: np.ndarray, row: int, column: int) -> np.ndarray:
    """The thumbnail inside a panel's frame (see :func:`rsir_cli.figures.panel_origin`)."""
    x, y = figures.panel_origin(row, column)
    inner = slice(y + figures.FRAME, y + figures.FRAME + figures.THUMB)
    return pixels[inner, x + figures.FRAME : x + figures.FRAME + figures.THUMB]


def _ring_area(ring: list[list[float]]) -> float:
    """Shoelace area: positive for a counter-clockwise ring."""
    xs, ys = np.array(ring).T
    return 0.5 * float(np.sum(xs[:-1] * ys[1:] - xs[1:] * ys[:-1]))


@pytest.mark.network
def test_a_chip_written_as_its_own_geotiff_finds_itself(
    scene_store: Path, sentinel2_scene: Path, tmp_path: Path, fake_encoder: str
) -> None:
    from rasterio.warp import transform_bounds

    chip = tmp_path / "chip.tif"
    bounds = _write_region(sentinel2_scene, chip, range(5, 6), range(7, 8))
    geojson, figure = tmp_path / "m.geojson", tmp_path / "m.png"
    result = run(str(chip), "--store", str(scene_store), "--k", "5", "--json", "--geojson", str(geojson),
                 "--figure", str(figure))  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["random_weights"] is True and "RANDOM WEIGHTS" in document["warning"]
    assert document["bands_from"] == "descriptions" and document["chip_size"] == 120 and document["chips"] == 1
    (found,) = document["results"]
    best = found["matches"][0]
    assert best["id"] == "s2_r5_c7" and best["rank"] == 1 and best["distance"] == 0.0
    assert found["matches"][1]["distance"] > 0
    assert best["crs"] == found["crs"] == "EPSG:32618"
    assert best["bounds"] == list(bounds) == found["bounds"]
    np.testing.assert_allclose(best["lonlat"], found["lonlat"], atol=1e-9)
    assert found["labels"] is None and best["labels"] is None  # the scene has no labels

    collection = json.loads(geojson.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 6  # query + 5 matches
    west, south, east, north = transform_bounds("EPSG:32618", "EPSG:4326", *SCENE_BOUNDS)
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        assert len(ring) == 5 and ring[0] == ring[-1]
        assert _ring_area(ring) > 0  # counter-clockwise (RFC 7946)
        for lon, lat in ring:
            assert -180 <= lon <= 180 and -90 <= lat <= 90
            assert west - 1e-9 <= lon <= east + 1e-9 and south - 1e-9 <= lat <= north + 1e-9
        assert set(feature["properties"]) == {"role", "query", "rank", "id", "distance", "labels"}
    query_feature, first_match = collection["features"][:2]
    assert query_feature["properties"]["role"] == "query" and first_match["properties"]["id"] == "s2_r5_c7"
    assert query_feature["geometry"] == first_match["geometry"]
    assert collection["rsir"]["random_weights"] is True

    picture = Image.open(figure)
    assert picture.format == "PNG" and picture.size == figures.figure_size(1, 5)
    pixels = np.asarray(picture.convert("RGB"))
    x, y = figures.panel_origin(0, 1)
    assert tuple(pixels[y + 1, x + 1]) == figures.COLOURS["unknown"]  # labels unknown: grey frame
    thumb = _thumbnail(pixels, 0, 0)
    assert thumb.std() > 20  # a real image, not a placeholder
    # The match at rank 1 is the same chip: the same thumbnail.
    np.testing.assert_array_equal(_thumbnail(pixels, 0, 1), thumb)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.network
def test_table_output_and_hamming_codes(
    scene_store: Path, sentinel2_scene: Path, tmp_path: Path, fake_encoder: str
) -> None:
    from rsir_cli.hashing import unpack

    chip = tmp_path / "chip.tif"
    _write_region(sentinel2_scene, chip, range(11, 12), range(2, 3))
    table = run(str(chip), "--store", str(scene_store), "--k", "3")
    assert table.exit_code == 0, table.output
    assert (
        "s2_r11_c2" in table.stdout and "RANDOM WEIGHTS" in table.stdout and "Top 3 in fake / s2 / all" in table.stdout
    )

    result = run(str(chip), "--store", str(scene_store), "--k", "20", "--hash", "trivial", "--bits", "32", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["code"] == "trivial-32" and document["distance"] == "hamming"
    matches = document["results"][0]["matches"]
    assert matches[0]["distance"] == 0 and "s2_r11_c2" in [m["id"] for m in matches if m["distance"] == 0]
    # Brute force over the stored codes: Hamming distances, ties by lower row.
    store = EmbeddingStore(scene_store)
    codes = store.read_codes("fake", "s2", "all", "trivial-32").bits
    ids = store.read("fake", "s2", "all", embeddings=False).ids
    query = codes[ids.index("s2_r11_c2")]
    distances = unpack(codes ^ query, 32).sum(axis=1)
    order = np.lexsort((np.arange(len(ids)), distances))[:20]
    assert [m["id"] for m in matches] == [ids[i] for i in order]
    assert [m["distance"] for m in matches] == distances[order].tolist()


@pytest.mark.network
def test_a_multi_chip_tile_window_and_bbox(
    scene_store: Path, sentinel2_scene: Path, tmp_path: Path, fake_encoder: str
) -> None:
    tile = tmp_path / "region.tif"
    _write_region(sentinel2_scene, tile, range(2, 4), range(4, 7))
    # Every chip, embedded one per batch like the database, finds itself at distance 0.
    result = run(str(tile), "--store", str(scene_store), "--k", "2", "--json", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["chips"] == 6 and [r["query"] for r in document["results"]][:2] == ["region_r0_c0", "region_r0_c1"]
    for found in document["results"]:
        row, col = (int(part[1:]) for part in found["query"].split("_")[1:])
        assert found["matches"][0]["id"] == f"s2_r{row + 2}_c{col + 4}" and found["matches"][0]["distance"] == 0.0
    # --window picks one chip (pixels of the tile), --bbox another (in the tile's CRS).
    result = run(str(tile), "--store", str(scene_store), "--k", "1", "--json", "--window", "240,120,120,120")
    assert json.loads(result.stdout)["results"][0]["matches"][0]["id"] == "s2_r3_c6"
    left, top = SCENE_BOUNDS[0] + 1200 * 5, SCENE_BOUNDS[3] - 1200 * 2
    bbox = f"{left},{top - 1200},{left + 1200},{top}"
    result = run(str(tile), "--store", str(scene_store), "--k", "1", "--json", "--bbox", bbox)
    (found,) = json.loads(result.stdout)["results"]
    assert found["window"] == [120, 0, 120, 120] and found["matches"][0]["id"] == "s2_r2_c5"


@pytest.mark.network
def test_a_folder_of_band_files_is_a_tile_too(scene_store: Path, sentinel2_scene: Path, fake_encoder: str) -> None:
    """The scene's own band files as the query: the window of a chip reads exactly like the database."""
    window = f"{120 * 7},{120 * 12},120,120"
    result = run(str(sentinel2_scene), "--store", str(scene_store), "--window", window, "--k", "1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["bands_from"] == "file names"
    (found,) = document["results"]
    assert found["matches"][0]["id"] == "s2_r12_c7" and found["matches"][0]["distance"] == 0.0


@pytest.mark.network
def test_search_by_id_uses_the_stored_embedding(scene_store: Path, fake_encoder: str) -> None:
    result = run("--id", "s2_r1_c1", "--store", str(scene_store), "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)["results"]
    assert found["split"] == "all" and found["matches"][0] == {**found["matches"][0], "id": "s2_r1_c1", "distance": 0.0}
    missing = run("--id", "s2_r99_c1", "--store", str(scene_store))
    assert missing.exit_code == 1 and "no sample 's2_r99_c1' in fake/s2" in missing.output


def _bad_inputs(tmp: Path, sentinel2_scene: Path) -> dict[str, tuple[list[str], str, int]]:
    """Bad tiles (exit 1) and option values that do not fit the tile (usage errors, exit 2)."""
    rng = np.random.default_rng(0)
    text = tmp / "notes.tif"
    text.write_text("not a raster\n")
    three = write_raster(tmp / "rgb.tif", rng.integers(0, 3000, (3, 120, 120)).astype(np.uint16), crs="EPSG:32618")
    six = write_raster(tmp / "six.tif", rng.integers(1, 3000, (6, 120, 120)).astype(np.uint16), crs="EPSG:32618")
    one = write_raster(tmp / "one.tif", np.ones((6, 1, 1), np.uint16), descriptions=list(PRITHVI), crs="EPSG:32618")
    empty = write_raster(
        tmp / "empty.tif", np.zeros((6, 120, 120), np.uint16), descriptions=list(PRITHVI), nodata=0, crs="EPSG:32618"
    )
    chip = tmp / "chip.tif"
    _write_region(sentinel2_scene, chip, range(0, 1), range(0, 1))
    return {
        "not a raster": ([str(text)], "notes.tif is not a raster GDAL can read", 1),
        "too few bands": ([str(three)], "rgb.tif has 3 band(s) [1: -, 2: -, 3: -], but model fake needs 6 bands", 1),
        "wrong --bands": ([str(six), "--bands", "1,2,3,4,5,9"], "--bands names band 9 for B12, but six.tif has only 6", 2),
        "--bands count": ([str(six), "--bands", "3,2,1"], "--bands gives 3 band number(s) but model fake reads 6", 2),
        "bbox in lon/lat": ([str(chip), "--bbox", "-75.7,37.7,-75.6,37.8"], "lies outside chip.tif, whose bounds in "
                            "its CRS (EPSG:32618) are 435730,4178260,436930,4179460; give --bbox in the tile's CRS", 2),
        "1 x 1 tile": ([str(one)], "the tile is 1 x 1 px, smaller than half a patch (60 x 60 px", 1),
        "all nodata": ([str(empty)], "the query in empty.tif is mostly nodata (100% of the pixels", 1),
        "unknown model": ([str(chip), "--model", "prithvi"], "has no embeddings of model 'prithvi' (it has: fake)", 1),
    }  # fmt: skip


@pytest.mark.network
def test_bad_input_gives_one_clear_line_and_writes_nothing(
    scene_store: Path, sentinel2_scene: Path, tmp_path: Path, fake_encoder: str
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    for case, (args, message, code) in _bad_inputs(inputs, sentinel2_scene).items():
        result = run(
            *args, "--store", str(scene_store), "--geojson", str(out / "m.geojson"), "--figure", str(out / "m.png")
        )
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == code, (case, result.output)
        assert len(errors) == 1 and message in errors[0], (case, result.output)
        assert "Traceback" not in result.output and "unexpected" not in errors[0], case
        assert list(out.iterdir()) == [], case


def test_usage_errors(tmp_path: Path) -> None:
    assert run("--store", str(tmp_path)).exit_code == 2
    assert run("tile.tif", "--id", "x", "--store", str(tmp_path)).exit_code == 2
    assert run("tile.tif", "--window", "1,2,3", "--store", str(tmp_path)).exit_code == 2
    assert run("tile.tif", "--window", "0,0,9,9", "--bbox", "0,0,1,1").exit_code == 2
    assert run("tile.tif", "--figure", str(tmp_path / "m.jpg")).exit_code == 2
    result = run("--id", "x", "--store", str(tmp_path / "none"))
    assert result.exit_code == 1 and "none does not exist" in result.output  # a missing store is an error
    (tmp_path / "empty").mkdir()
    result = run("--id", "x", "--store", str(tmp_path / "empty"))
    assert result.exit_code == 1 and "is empty; embed a dataset first, e.g. `rsir embed" in result.output


@pytest.fixture
def labelled_store(tmp_path: Path, fake_encoder: str) -> tuple[Path, Path]:
    """A folder archive of 8 labelled chips (two look-alike classes), embedded with saved weights."""
    import torch

    from rsir_cli.embedding import EmbedOptions, embed_split
    from rsir_cli.models import build_encoder, get_model_config

    rng = np.random.default_rng(1)
    root = tmp_path / "chips"
    root.mkdir()
    rows = ["id,labels"]
    for i in range(8):
        label = ("forest", "water;beach", "water", "urban")[i % 4]
        level = 3000 if "water" in label else 800
        data = (level + rng.normal(0, 50, (6, 48, 48))).clip(1).astype(np.uint16)
        write_raster(root / f"c{i}.tif", data, left=700000 + 480 * i, crs="EPSG:32632", descriptions=list(PRITHVI))
        rows.append(f"c{i},{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    config = get_model_config(fake_encoder)
    random_model = build_encoder(config, None, True)
    weights = tmp_path / "fake.pt"
    torch.save(random_model.module.state_dict(), weights)
    encoder = build_encoder(config, weights)
    store = EmbeddingStore(tmp_path / "store")
    reader = open_split("folder", "all", root, labels=tmp_path / "labels.csv")
    embed_split(store, encoder, reader, EmbedOptions(device="cpu", workers=0))
    return store.root, weights


def test_labelled_archive_by_id_with_figure_frames(labelled_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, _ = labelled_store
    figure = tmp_path / "f.png"
    result = run("--id", "c1", "--store", str(store), "--k", "8", "--json", "--figure", str(figure))
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)["results"]
    assert found["labels"] == ["beach", "water"] and "RANDOM" not in result.output
    by_id = {m["id"]: m for m in found["matches"]}
    assert found["matches"][0]["id"] == "c1" and by_id["c6"]["labels"] == ["water"]
    pixels = np.asarray(Image.open(figure).convert("RGB"))
    colours = {"forest": (215, 25, 28), "beach;water": (0, 158, 60), "water": (245, 140, 0), "urban": (215, 25, 28)}
    for rank, match in enumerate(found["matches"]):
        x, y = figures.panel_origin(0, rank + 1)
        assert tuple(pixels[y + 1, x + 1]) == colours[";".join(match["labels"])], match
    # Data moved away: placeholders, and a note that says so.
    (tmp_path / "chips").rename(tmp_path / "moved")
    result = run("--id", "c1", "--store", str(store), "--k", "2", "--figure", str(figure))
    assert result.exit_code == 0 and "placeholders" in result.output
    x, y = figures.panel_origin(0, 1)
    placeholder = (y + figures.FRAME + 10, x + figures.FRAME + figures.THUMB - 8)  # clear of its text
    assert tuple(np.asarray(Image.open(figure).convert("RGB"))[placeholder]) == (225, 225, 225)


def test_query_weights_must_be_the_stores(labelled_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, weights = labelled_store
    tile = tmp_path / "chips" / "c2.tif"
    result = run(str(tile), "--store", str(store), "--weights", str(weights), "--k", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["matches"][0]["id"] == "c2"
    import torch

    other = tmp_path / "other.pt"
    state = torch.load(weights, weights_only=True)
    torch.save({key: value + 1 for key, value in state.items()}, other)  # a valid checkpoint, other values
    result = run(str(tile), "--store", str(store), "--weights", str(other))
    assert result.exit_code == 1 and "but the store was embedded with weights" in result.output

    # No --weights: the checkpoint the store was embedded with (it records path and sha256) ...
    result = run(str(tile), "--store", str(store), "--k", "1", "--json")
    assert result.exit_code == 0, result.output
    assert f"with weights {weights} (the store's, sha256 checked)" in result.stderr
    assert json.loads(result.stdout)["results"][0]["matches"][0]["id"] == "c2"
    # ... or, once it has moved, any file `rsir download` recorded with that sha256.
    moved = tmp_path / "elsewhere.pt"
    weights.rename(moved)
    result = run(str(tile), "--store", str(store))
    assert result.exit_code == 1 and "no weights for model 'fake'" in result.output
    from rsir_cli import fileio
    from rsir_cli.models.weights import record_weights

    record_weights("fake/weights.pt", moved, fileio.sha256_file(moved), "a copy")
    result = run(str(tile), "--store", str(store), "--k", "1")
    assert result.exit_code == 0 and f"with weights {moved}" in result.output


def test_search_outputs_are_written_whole(labelled_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, _ = labelled_store
    out = tmp_path / "out"
    out.mkdir()
    result = run(
        "--id", "c1", "--store", str(store), "--geojson", str(out / "m.geojson"), "--html", str(out / "m.html")
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["m.geojson", "m.html"]  # no temporary file left
    assert json.loads((out / "m.geojson").read_text())["type"] == "FeatureCollection"


def test_bigearthnet_by_id_looks_in_val_then_test_and_draws_thumbnails(
    ben_root: Path, tmp_path: Path, fake_encoder: str
) -> None:
    from rsir_cli.datasets import bigearthnet as ben

    store = tmp_path / "store"
    embedded = CliRunner().invoke(
        app,
        ["embed", "-m", fake_encoder, "--random-weights", "-d", "bigearthnet", "--data-dir", str(ben_root),
         "--store", str(store), "--workers", "0"],
    )  # fmt: skip
    assert embedded.exit_code == 0, embedded.output
    val = EmbeddingStore(store).read(fake_encoder, "bigearthnet", "val")
    figure = tmp_path / "f.png"
    result = run("--id", val.ids[0], "--store", str(store), "--k", "10", "--json", "--figure", str(figure))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    (found,) = document["results"]
    assert document["split"] == "test" and found["split"] == "val" and len(found["matches"]) == 10
    expected = sorted(ben.LABELS_43[j] for j in np.flatnonzero(val.labels[0]))
    assert sorted(found["labels"]) == expected
    # L1 ranking against a brute force over the stored test embeddings.
    test = EmbeddingStore(store).read(fake_encoder, "bigearthnet", "test")
    distances = np.abs(test.embeddings - val.embeddings[0]).sum(axis=1)
    assert [m["id"] for m in found["matches"]] == [test.ids[i] for i in np.argsort(distances, kind="stable")]
    pixels = np.asarray(Image.open(figure).convert("RGB"))
    for rank, match in enumerate(found["matches"]):
        shared = set(match["labels"]) & set(found["labels"])
        key = "same" if set(match["labels"]) == set(found["labels"]) else "some" if shared else "none"
        frame = {"same": (0, 158, 60), "some": (245, 140, 0), "none": (215, 25, 28)}[key]
        x, y = figures.panel_origin(0, rank + 1)
        assert tuple(pixels[y + 1, x + 1]) == frame
        assert _thumbnail(pixels, 0, rank + 1).std() > 5  # read from the patch folders, not a placeholder


@pytest.mark.slow
@pytest.mark.network
def test_prithvi_random_weights_chip_finds_itself(sentinel2_scene: Path, tmp_path: Path) -> None:
    """The real encoder (random weights) on a handful of chips: the same path as the fake model."""
    store = tmp_path / "store"
    embedded = CliRunner().invoke(
        app,
        ["embed", "-m", "prithvi", "--random-weights", "-d", "scene", "--data-dir", str(sentinel2_scene),
         "--name", "s2", "--store", str(store), "--limit", "3", "--batch-size", "1", "--workers", "0"],
    )  # fmt: skip
    assert embedded.exit_code == 0, embedded.output
    chip = tmp_path / "chip.tif"
    _write_region(sentinel2_scene, chip, range(0, 1), range(1, 2))
    result = run(str(chip), "--store", str(store), "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["model"] == "prithvi" and document["random_weights"] is True
    best = document["results"][0]["matches"][0]
    assert best["id"] == "s2_r0_c1" and best["distance"] == 0.0


def test_several_tiles_are_searched_in_one_process(labelled_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, weights = labelled_store
    tiles = [str(tmp_path / "chips" / f"c{i}.tif") for i in (2, 5, 7)]
    result = run(*tiles, "--store", str(store), "--weights", str(weights), "--k", "1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [r["matches"][0]["id"] for r in document["results"]] == ["c2", "c5", "c7"]  # each finds itself
    assert [t["tile"] for t in document["tiles"]] == tiles and document["seconds"]["embed"] > 0
    assert "3 tiles:" in result.stderr and "s per tile after" in result.stderr


def test_a_picture_is_diagnosed_as_a_picture(labelled_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, weights = labelled_store
    shot = tmp_path / "screenshot.png"
    Image.fromarray(np.zeros((120, 120, 3), np.uint8)).save(shot)
    result = run(str(shot), "--store", str(store), "--weights", str(weights))
    assert result.exit_code == 1 and "screenshot.png is a PNG picture (3 band(s) of uint8" in result.output
    assert "not a satellite tile" in result.output and "north-up" not in result.output


def test_a_missing_milvus_collection_is_found_before_the_model_loads(
    labelled_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, weights = labelled_store
    weights.rename(tmp_path / "away.pt")  # loading the model would fail: the collection check must come first
    tile = str(tmp_path / "chips" / "c2.tif")
    result = run(tile, "--store", str(store), "--backend", "milvus", "--distance", "l2")
    assert result.exit_code == 1 and "has no collection" in result.output and "no weights" not in result.output
