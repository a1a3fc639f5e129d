"""`rsir export` and `rsir import` through the CLI: round trip bit for bit, real places, foreign files, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir_cli.geo import Footprints
from rsir_cli.provenance import Provenance
from rsir_cli.store import EmbeddingStore
from tests.cli import assert_one_line_error, assert_usage_error, run
from tests.test_cli_evaluate import clustered, reference_map

geopandas = pytest.importorskip("geopandas", reason="geopandas is the independent GeoParquet reader and writer")
shapely = pytest.importorskip("shapely")
pyproj = pytest.importorskip("pyproj")

DIM, LABELS = 24, 43
ATTRS = {
    "weights_sha256": "f" * 64,
    "bands": ["B02", "B03", "B04"],
    "mean": [1.5, 2.25, 3.125],
    "pooling": "mean_patch",
    "random_weights": False,
    "model_config": {"name": "alpha", "embed_dim": DIM, "weights": {"source": "huggingface", "repo_id": "org/alpha"}},
    "dataset_options": {"units": "dn"},
}


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (what an untouched store keeps)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _footprints(rng: np.random.Generator, n: int) -> Footprints:
    """UTM boxes with lon/lat corners; every fifth row has no place."""
    x0 = rng.uniform(4e5, 6e5, n).round()
    y0 = rng.uniform(5.2e6, 5.4e6, n).round()
    bounds = np.stack([x0, y0, x0 + 1200, y0 + 1200], axis=1)
    lon, lat = rng.uniform(10, 12, n), rng.uniform(47, 48, n)
    lonlat = np.stack(
        [np.stack([lon, lat + 0.01], 1), np.stack([lon + 0.02, lat + 0.01], 1), np.stack([lon + 0.02, lat], 1)]
        + [np.stack([lon, lat], 1)],
        axis=1,
    )
    crs = ["EPSG:32632"] * n
    for row in range(0, n, 5):
        crs[row], bounds[row], lonlat[row] = "", np.nan, np.nan
    return Footprints(crs, bounds, lonlat)


def _write(root: Path, split: str, embeddings: np.ndarray, labels: np.ndarray, footprints: Footprints) -> list[str]:
    n = len(embeddings)
    ids = [f"{split}-{i:03d}" for i in range(n)]
    dates = [("2017-06-13", "2018-01-02", "")[i % 3] for i in range(n)]
    writer = EmbeddingStore(root).writer(
        "alpha",
        "bigearthnet",
        split,
        attrs={**ATTRS, "label_names": [f"l{i}" for i in range(LABELS)]},
        dim=DIM,
        n_labels=LABELS,
        rows_expected=n,
    )
    writer.append(embeddings, ids, labels, footprints, dates)
    writer.finish()
    return ids


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """A store like `rsir embed` leaves one (val 40, test 120 rows) with two code tables; and what was written."""
    root = tmp_path / "store"
    rng = np.random.default_rng(3)
    centres = rng.integers(-4, 5, (8, DIM))
    written = {}
    for split, n in (("val", 40), ("test", 120)):
        embeddings, labels = clustered(rng, n, DIM, LABELS, centres)
        embeddings += rng.random(embeddings.shape, dtype=np.float32) / 7  # values that are not round
        footprints = _footprints(rng, n)
        ids = _write(root, split, embeddings, labels, footprints)
        written[split] = {"embeddings": embeddings, "labels": labels, "footprints": footprints, "ids": ids}
    for method, bits in (("itq", "16"), ("lsh", "16")):
        assert run("hash", "--method", method, "--bits", bits, "--store", root).exit_code == 0
    return root, written


def test_round_trip_is_bit_for_bit_and_evaluate_prints_the_same(source: tuple[Path, dict], tmp_path: Path) -> None:
    root, written = source
    copy = tmp_path / "copy"
    for split in ("val", "test"):
        exported = run("export", tmp_path / f"{split}.parquet", "--split", split, "--store", root, "--json")
        assert exported.exit_code == 0, exported.output
        assert json.loads(exported.stdout)["codes"] == ["itq-16-s42", "lsh-16-s42"]
        imported = run("import", tmp_path / f"{split}.parquet", "--store", copy, "--json")
        assert imported.exit_code == 0, imported.output
        document = json.loads(imported.stdout)
        assert (document["model"], document["dataset"], document["split"]) == ("alpha", "bigearthnet", split)
        assert document["state"] == "imported" and document["codes"] == ["itq-16-s42", "lsh-16-s42"]

    original, back = EmbeddingStore(root), EmbeddingStore(copy)
    for split, truth in written.items():
        data = back.read("alpha", "bigearthnet", split, footprints=True)
        assert data.embeddings.tobytes() == truth["embeddings"].tobytes()  # bit for bit
        assert data.ids == truth["ids"]
        np.testing.assert_array_equal(data.labels, truth["labels"])
        assert data.dates == [("2017-06-13", "2018-01-02", "")[i % 3] for i in range(len(data))]
        assert data.footprints.crs == truth["footprints"].crs
        np.testing.assert_array_equal(data.footprints.bounds, truth["footprints"].bounds)  # NaN rows too
        np.testing.assert_array_equal(data.footprints.lonlat, truth["footprints"].lonlat)
        before = original.attrs("alpha", "bigearthnet", split)
        after = back.attrs("alpha", "bigearthnet", split)
        assert after == {
            **before,
            "created": after["created"],
            "completed": after["completed"],
            "source_created": before["created"],
            "imported_from": str((tmp_path / f"{split}.parquet").resolve()),
        }
        assert not Provenance.from_attrs(after).imported  # rsir's own model: a tile can still be searched
        for name in ("itq-16-s42", "lsh-16-s42"):
            a, b = (
                original.read_codes("alpha", "bigearthnet", split, name),
                back.read_codes("alpha", "bigearthnet", split, name),
            )
            assert a.bits.tobytes() == b.bits.tobytes() and a.hasher_attrs == b.hasher_attrs
            assert a.hasher.keys() == b.hasher.keys()
            for key in a.hasher:
                assert a.hasher[key].dtype == b.hasher[key].dtype and a.hasher[key].tobytes() == b.hasher[key].tobytes()

    options = ["--hash", "none,itq,lsh", "--bits", "16", "--seeds", "1"]
    first, second = (run("evaluate", "--store", s, *options, "--json") for s in (root, copy))
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert json.loads(first.stdout) == json.loads(second.stdout)
    codes = {(c["method"], c["bits"]): c["codes"] for c in json.loads(second.stdout)["results"]}
    assert codes[("itq", 16)] == codes[("lsh", 16)] == "store"  # the imported tables are current
    tables = [run("evaluate", "--store", s, *options, env={"COLUMNS": "160"}).stdout for s in (root, copy)]
    assert tables[0] == tables[1] and "ITQ (16)" in tables[0]


def test_importing_again_is_up_to_date_and_other_content_needs_overwrite(
    source: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = source
    copy = tmp_path / "copy"
    assert run("export", tmp_path / "val.parquet", "--split", "val", "--store", root).exit_code == 0
    assert run("import", tmp_path / "val.parquet", "--store", copy).exit_code == 0
    tree = _tree(copy)
    again = run("import", tmp_path / "val.parquet", "--store", copy, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["state"] == "up to date"
    assert _tree(copy) == tree

    # The same names with other rows: the test split exported, imported as val.
    assert run("export", tmp_path / "test.parquet", "--split", "test", "--store", root).exit_code == 0
    other = run("import", tmp_path / "test.parquet", "--split", "val", "--store", copy)
    assert_one_line_error(other, r"already holds alpha/bigearthnet/val with other content; add --overwrite")
    assert _tree(copy) == tree
    replaced = run("import", tmp_path / "test.parquet", "--split", "val", "--store", copy, "--overwrite", "--json")
    assert replaced.exit_code == 0 and json.loads(replaced.stdout)["state"] == "replaced"
    assert EmbeddingStore(copy).read("alpha", "bigearthnet", "val").ids[0] == "test-000"


def test_export_options_and_their_errors(source: tuple[Path, dict], tmp_path: Path) -> None:
    root, written = source
    assert_usage_error(
        run("export", tmp_path / "x.parquet", "--store", root), r"several splits .*pick one with --split"
    )
    assert_usage_error(run("export", "--split", "val", "--store", root), r"give the file to write")
    missing = run("export", tmp_path / "x.parquet", "--split", "val", "--codes", "pca-16", "--store", root)
    assert_one_line_error(missing, r"no code table 'pca-16' .*`rsir hash --method pca --bits 16 --model alpha")
    assert not (tmp_path / "x.parquet").exists()
    plain = run(
        "export", "--out", tmp_path / "x.parquet", "--split", "val", "--codes", "none", "--stac", "--store", root
    )
    assert plain.exit_code == 0, plain.output
    frame = geopandas.read_parquet(tmp_path / "x.parquet")
    assert not [c for c in frame.columns if c.startswith("code_")]
    item = json.loads((tmp_path / "x.json").read_text())
    assert item["properties"]["table:row_count"] == 40
    assert any(
        link["rel"] == "emb:model" and link["href"] == "https://huggingface.co/org/alpha" for link in item["links"]
    )
    # A table made before the embeddings changed is left out, and the note says how to refresh it.
    rng = np.random.default_rng(9)
    embeddings, labels = clustered(rng, 40, DIM, LABELS, rng.integers(-4, 5, (8, DIM)))
    writer = EmbeddingStore(root).writer(
        "alpha",
        "bigearthnet",
        "val",
        attrs={**ATTRS, "label_names": [f"l{i}" for i in range(LABELS)]},
        dim=DIM,
        n_labels=LABELS,
        rows_expected=40,
        overwrite=True,
    )
    writer.append(embeddings, written["val"]["ids"], labels)
    writer.finish()
    stale = run("export", tmp_path / "y.parquet", "--split", "val", "--store", root, "--json")
    assert stale.exit_code == 0, stale.output
    assert json.loads(stale.stdout)["codes"] == []
    assert "stale" in stale.output and "`rsir hash --method lsh --bits 16 --seed 42 --model alpha" in stale.output


def _sample_tree(ben_samples: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ben"
    (root / "splits").mkdir(parents=True)
    (root / "BigEarthNet-v1.0").symlink_to(ben_samples, target_is_directory=True)
    names = sorted(p.name for p in ben_samples.iterdir() if p.is_dir())
    (root / "splits" / "test.csv").write_text("".join(f"{n},S1_{n}\n" for n in names))
    return root


@pytest.mark.network
def test_real_bigearthnet_patches_export_to_their_own_places(
    ben_samples: Path, tmp_path: Path, fake_encoder: str
) -> None:
    store = tmp_path / "store"
    embedded = run(
        "embed", "-m", fake_encoder, "--random-weights", "-d", "bigearthnet", "--split", "test",
        "--data-dir", _sample_tree(ben_samples, tmp_path), "--store", store, "--workers", "0",
    )  # fmt: skip
    assert embedded.exit_code == 0, embedded.output
    path = tmp_path / "ben.parquet"
    exported = run("export", path, "--store", store)  # the store's only split
    assert exported.exit_code == 0, exported.output
    frame = geopandas.read_parquet(path).set_index("id")
    assert frame.crs == pyproj.CRS("OGC:CRS84")
    stored = EmbeddingStore(store).read(fake_encoder, "bigearthnet", "test")
    assert sorted(frame.index) == sorted(stored.ids) and len(stored) == 6
    for patch in sorted(p for p in ben_samples.iterdir() if p.is_dir()):
        meta = json.loads(next(patch.glob("*_labels_metadata.json")).read_text())
        zone = f"EPSG:{pyproj.CRS.from_wkt(meta['projection']).to_epsg()}"
        utm = frame.loc[[patch.name]].to_crs(zone).geometry.iloc[0]
        box = meta["coordinates"]
        np.testing.assert_allclose(utm.bounds, (box["ulx"], box["lry"], box["lrx"], box["uly"]), atol=1e-3)
        assert sorted(frame.labels[patch.name]) == sorted(meta["labels"])
        vector = np.asarray(frame.embedding[patch.name], dtype=np.float32)
        assert vector.tobytes() == stored.embeddings[stored.ids.index(patch.name)].tobytes()


def _foreign_file(path: Path, rng: np.random.Generator, n: int, centres: np.ndarray, prefix: str) -> dict:
    """A file in the style of another tool: its own column names, extra columns, geometry in Web Mercator."""
    embeddings, hot = clustered(rng, n, 16, 3, centres)
    names = np.array(["forest", "urban", "water"])
    lon, lat = rng.uniform(6, 9, n), rng.uniform(45, 46, n)
    boxes = [shapely.box(x, y, x + 0.01, y + 0.01) for x, y in zip(lon, lat, strict=True)]
    frame = geopandas.GeoDataFrame(
        {
            "chip_id": [f"{prefix}_{i}" for i in range(n)],
            "clay_embedding": list(embeddings.astype(np.float64)),
            "band_means": [rng.random(4) for _ in range(n)],  # a second numeric list column: no guessing
            "classes": [list(names[np.flatnonzero(row)]) for row in hot],
            "cloud_cover": rng.random(n),
        },
        geometry=geopandas.GeoSeries(boxes, crs="EPSG:4326").to_crs("EPSG:3857"),
    ).rename_geometry("footprint")
    frame.to_parquet(path)
    corners = np.array(
        [[[x, y + 0.01], [x + 0.01, y + 0.01], [x + 0.01, y], [x, y]] for x, y in zip(lon, lat, strict=True)]
    )
    return {"embeddings": embeddings, "labels": hot, "ids": list(frame.chip_id), "lonlat": corners}


def test_another_tools_file_is_imported_with_options_and_hash_evaluate_search_work(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rng = np.random.default_rng(11)
    centres = rng.integers(-4, 5, (6, 16))
    files = {
        split: _foreign_file(tmp_path / f"{split}.parquet", rng, n, centres, split)
        for split, n in (("val", 25), ("test", 80))
    }

    guessed = run("import", tmp_path / "val.parquet", "--store", store)
    assert_one_line_error(guessed, r"cannot tell which column holds the embeddings .*--embedding-column NAME")
    assert _tree(store) == {}
    columns = ["--embedding-column", "clay_embedding", "--geometry-column", "footprint", "--id-column", "chip_id",
               "--label-column", "classes"]  # fmt: skip
    for split in files:
        result = run("import", tmp_path / f"{split}.parquet", "-m", "clay", "-d", "alps", "--split", split, *columns,
                     "--store", store, "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["foreign"] is True
    back = EmbeddingStore(store)
    for split, truth in files.items():
        data = back.read("clay", "alps", split, footprints=True)
        assert data.embeddings.tobytes() == truth["embeddings"].tobytes() and data.ids == truth["ids"]
        assert data.label_names == ["forest", "urban", "water"]
        np.testing.assert_array_equal(data.labels, truth["labels"])
        np.testing.assert_allclose(data.footprints.lonlat, truth["lonlat"], atol=1e-9)  # back from Web Mercator
        attrs = back.attrs("clay", "alps", split)
        assert Provenance.from_attrs(attrs).imported and "model_config" not in attrs
        assert attrs["imported_from"] == str((tmp_path / f"{split}.parquet").resolve())
        assert attrs["source_columns"]["embedding"] == "clay_embedding"

    assert run("hash", "--method", "lsh", "--bits", "32", "--store", store).exit_code == 0
    evaluated = run(
        "evaluate", "--store", store, "--hash", "none,lsh", "--bits", "32", "--seeds", "1", "--k", "10", "--json"
    )
    assert evaluated.exit_code == 0, evaluated.output
    cells = {c["method"]: c for c in json.loads(evaluated.stdout)["results"]}
    val, test = files["val"], files["test"]
    expected_map, expected_p = reference_map(
        val["embeddings"], test["embeddings"], val["labels"], test["labels"], 10, "l1"
    )
    assert cells["none"]["map"] == pytest.approx(expected_map) and cells["none"]["precision"] == pytest.approx(
        expected_p
    )
    assert cells["lsh"]["codes"] == "store"

    found = run("search", "--id", "val_3", "--store", store, "--k", "5", "--json")
    assert found.exit_code == 0, found.output
    (query,) = json.loads(found.stdout)["results"]
    distances = np.abs(test["embeddings"].astype(np.float64) - val["embeddings"][3]).sum(axis=1)
    assert [m["id"] for m in query["matches"]] == [test["ids"][i] for i in np.argsort(distances, kind="stable")[:5]]


def test_a_bad_file_gets_one_line_and_writes_nothing(source: tuple[Path, dict], tmp_path: Path, monkeypatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, _ = source
    tree = _tree(root)
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "embedding": [[1.0, 2.0], [3.0, 4.0]]}), flat)
    assert_one_line_error(
        run("import", flat, "--store", root), r"flat.parquet has no geometry column .*--geometry-column NAME"
    )
    assert _tree(root) == tree

    # Mixed lengths deep in the file: the run has started (and committed a segment) when the bad row comes.
    monkeypatch.setenv("RSIR_COMMIT_SECONDS", "0")
    n = 5000
    vectors = [np.ones(8) * i for i in range(n)]
    vectors[4500] = np.ones(7)
    points = geopandas.GeoSeries([shapely.Point(10 + i * 1e-4, 47) for i in range(n)], crs="EPSG:4326")
    mixed = tmp_path / "mixed.parquet"
    geopandas.GeoDataFrame({"id": [f"c{i}" for i in range(n)], "embedding": vectors}, geometry=points).to_parquet(mixed)
    from rsir_cli.store import SplitWriter

    segments_thrown_away: list[str] = []
    abandon = SplitWriter.abandon

    def spy(writer: SplitWriter) -> None:
        segments_thrown_away.extend(p.name for p in writer.folder.glob("rows-*.h5"))
        abandon(writer)

    monkeypatch.setattr(SplitWriter, "abandon", spy)
    result = run("import", mixed, "--store", root)
    assert_one_line_error(result, r"mixes lengths \(8 .*7 in row 'c4500'\)")
    assert segments_thrown_away == ["rows-0000000000-0000004096.h5"]  # the first block was committed
    assert _tree(root) == tree


def test_labels_of_another_tools_file_take_the_order_rsir_knows(tmp_path: Path) -> None:
    from rsir_cli.datasets.bigearthnet import LABELS_43

    store = tmp_path / "store"
    rng = np.random.default_rng(5)
    boxes = [shapely.box(10 + i / 100, 47, 10.01 + i / 100, 47.01) for i in range(3)]
    frame = geopandas.GeoDataFrame(
        {"id": ["a", "b", "c"], "embedding": list(rng.standard_normal((3, 4))), "labels": [["Pastures"], [], ["Mixed forest", "Pastures"]]},
        geometry=boxes, crs="EPSG:4326",
    )  # fmt: skip
    frame.to_parquet(tmp_path / "ben.parquet")
    assert (
        run("import", tmp_path / "ben.parquet", "-d", "bigearthnet", "--split", "test", "--store", store).exit_code == 0
    )
    data = EmbeddingStore(store).read("imported", "bigearthnet", "test")
    assert data.label_names == list(LABELS_43)  # the official order: BigEarthNet-19 is derived by column
    pastures, mixed = LABELS_43.index("Pastures"), LABELS_43.index("Mixed forest")
    assert [sorted(np.flatnonzero(row)) for row in data.labels] == [[pastures], [], sorted([pastures, mixed])]

    frame["labels"] = [["Pastures"], ["Glacier"], []]
    frame["id"] = ["d", "e", "f"]
    frame.to_parquet(tmp_path / "other.parquet")
    tree = _tree(store)
    refused = run("import", tmp_path / "other.parquet", "-d", "bigearthnet", "--split", "val", "--store", store)
    assert_one_line_error(refused, r"labels 'Glacier' are not among the 43 labels of rsir's 'bigearthnet' dataset")
    assert _tree(store) == tree
    # Without a dataset rsir knows, the split already stored fixes the order of the next one.
    frame["labels"] = [["water"], ["forest"], []]
    frame.to_parquet(tmp_path / "mine_test.parquet")
    frame["labels"] = [["water"], [], []]
    frame.to_parquet(tmp_path / "mine_val.parquet")
    for split in ("test", "val"):
        assert (
            run(
                "import", tmp_path / f"mine_{split}.parquet", "-d", "mine", "--split", split, "--store", store
            ).exit_code
            == 0
        )
    assert EmbeddingStore(store).attrs("imported", "mine", "val")["label_names"] == ["forest", "water"]
    frame["labels"] = [["urban"], [], []]
    frame.to_parquet(tmp_path / "mine_more.parquet")
    more = run("import", tmp_path / "mine_more.parquet", "-d", "mine", "--split", "more", "--store", store)
    assert_one_line_error(more, r"has labels 'urban' that the store's '(test|val)' split of imported/mine lacks")
