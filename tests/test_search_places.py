"""`rsir search` by place (--point), by area (--aoi, --queries-in) and by several examples (--id, --not-id)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely.geometry

from rsir_cli.geo import Footprints
from rsir_cli.store import EmbeddingStore
from tests.cli import assert_one_line_error, assert_usage_error, run

DIM = 16
GRID = 8  # an 8 x 8 grid of 0.01-degree chips around (14, 48)


def _footprints(n: int, offset: int = 0) -> Footprints:
    corners = np.zeros((n, 4, 2))
    for i in range(n):
        r, c = divmod(i + offset, GRID)
        lon, lat = 14.0 + c * 0.01, 48.0 - r * 0.01
        corners[i] = [(lon, lat), (lon + 0.01, lat), (lon + 0.01, lat - 0.01), (lon, lat - 0.01)]
    return Footprints(["EPSG:4326"] * n, np.full((n, 4), np.nan), corners)


def _write(store: Path, split: str, embeddings: np.ndarray, ids: list[str], footprints: Footprints) -> None:
    writer = EmbeddingStore(store).writer(
        "m", "mine", split, attrs={"label_names": ["a", "b"]}, dim=DIM, n_labels=2, rows_expected=len(ids)
    )
    labels = np.stack([np.arange(len(ids)) % 2, 1 - np.arange(len(ids)) % 2], axis=1).astype(np.uint8)
    writer.append(embeddings.astype(np.float32), ids, labels, footprints)
    writer.finish()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A 64-chip database grid and 6 query chips over its first cells."""
    rng = np.random.default_rng(0)
    root = tmp_path / "store"
    _write(root, "test", rng.normal(size=(GRID * GRID, DIM)), [f"db{i}" for i in range(GRID * GRID)],
           _footprints(GRID * GRID))  # fmt: skip
    _write(root, "val", rng.normal(size=(6, DIM)), [f"q{i}" for i in range(6)], _footprints(6, offset=20))
    return root


def _matches(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"][0]["matches"]


def test_a_point_inside_a_chip_makes_that_chip_the_query(store: Path) -> None:
    # db27 is row 3, column 3: lon 14.03..14.04, lat 47.96..47.97 (q0..q5 lie over db20..db25)
    found = _matches(run("search", "--point", "14.035,47.965", "--store", store, "--k", "3", "--json"))
    assert found[0]["id"] == "db27" and found[0]["distance"] == 0.0
    # a query chip covers the point: the query split is looked in first
    query = json.loads(run("search", "--point", "14.045,47.975", "--store", store, "--json").stdout)["results"][0]
    assert query["query"] == "q0" and query["split"] == "val"
    assert_one_line_error(
        run("search", "--point", "20,10", "--store", store), "no stored chip .* covers the point 20,10"
    )
    assert run("search", "--point", "200,10", "--store", store).exit_code == 2


def test_aoi_keeps_only_candidates_inside_the_area(store: Path, tmp_path: Path) -> None:
    area = shapely.geometry.Polygon([(14.005, 47.995), (14.036, 47.99), (14.05, 47.955), (14.01, 47.96)])
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(area)}))
    found = _matches(run("search", "--id", "q0", "--aoi", path, "--store", store, "--k", "64", "--json"))
    data = EmbeddingStore(store).read("m", "mine", "test", footprints=True)
    inside = {i for i, c in zip(data.ids, data.footprints.lonlat, strict=True)
              if area.contains(shapely.geometry.Point(c.mean(axis=0)))}  # fmt: skip
    assert 3 < len(inside) < 20 and {m["id"] for m in found} == inside  # every candidate, nothing else
    queries = run("search", "--queries-in", path, "--store", store, "--k", "1", "--json")
    names = {r["query"] for r in json.loads(queries.stdout)["results"]}
    assert names and all(n.startswith("q") for n in names)
    empty = tmp_path / "far.geojson"
    empty.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}))
    assert_one_line_error(run("search", "--id", "q0", "--aoi", empty, "--store", store), "no chip .* lies in far")


@pytest.mark.parametrize("codes", [False, True])
def test_positive_and_negative_examples(tmp_path: Path, codes: bool) -> None:
    """Planted: a near-copy of the positive ranks first, a near-copy of the negative last."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, DIM))
    positive, negative = rng.normal(size=DIM) * 3, rng.normal(size=DIM) * 3
    base[7] = positive + 0.01
    base[31] = negative + 0.01
    ids = [f"db{i}" for i in range(40)]
    store = tmp_path / "store"
    _write(store, "test", base, ids, _footprints(40))
    _write(store, "val", np.stack([positive, negative]), ["pos", "neg"], _footprints(2))
    args = ["search", "--id", "pos", "--not-id", "neg", "--store", store, "--k", "40", "--json"]
    if codes:
        assert run("hash", "--store", store, "--method", "lsh", "--bits", "64").exit_code == 0
        args += ["--hash", "lsh", "--bits", "64"]
    result = json.loads(run(*args).stdout)["results"][0]
    ranked = [m["id"] for m in result["matches"]]
    assert ranked[0] == "db7" and ranked[-1] == "db31" and len(ranked) == 40
    assert result["examples"] == {"positive": ["pos"], "negative": ["neg"],
                                  "rule": "min distance to a positive minus min distance to a negative"}  # fmt: skip
    # The rule, by brute force (L1; ties by the lower row).
    if not codes:
        score = np.abs(base - positive).sum(1) - np.abs(base - negative).sum(1)
        assert ranked == [ids[i] for i in np.lexsort((np.arange(40), score))]
    # Two positives: a near-copy of each is at the top.
    two = _matches(run("search", "--id", "pos", "--id", "db31", "--store", store, "--k", "3", "--json",
                       *(["--hash", "lsh", "--bits", "64"] if codes else [])))  # fmt: skip
    assert {m["id"] for m in two[:2]} == {"db7", "db31"}


def test_bad_combinations_are_usage_errors(store: Path) -> None:
    assert_usage_error(run("search", "--not-id", "q0", "--store", store), "needs at least one positive example")
    assert_usage_error(run("search", "--store", store), "give what to search with")
    assert_usage_error(
        run("search", "--id", "q0", "--id", "q1", "--store", store, "--backend", "milvus", "--distance", "l2"),
        "combined by the exact engine",
    )


def test_a_k_larger_than_the_candidates_returns_them_all(store: Path) -> None:
    result = run("search", "--id", "q0", "--store", store, "--k", "1000000000", "--json")
    assert result.exit_code == 0 and len(_matches(result)) == GRID * GRID
    assert "returning all 64" in result.stderr
