"""Matches: running the queries through a backend (or the examples rule), and the GeoJSON of the result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsir_cli.errors import StoreError, UsageError
from rsir_cli.provenance import random_weights_notice
from rsir_cli.retrieval.database import Database
from rsir_cli.retrieval.queries import Query, example_scores
from rsir_cli.search.base import SearchBackend

#: the one text that marks results of a random-weights store
RANDOM_WEIGHTS_WARNING = random_weights_notice("these matches")


@dataclass
class Match:
    """One database row found for a query."""

    rank: int
    row: int
    id: str
    distance: float
    labels: list[str] | None
    crs: str
    bounds: tuple[float, float, float, float]
    lonlat: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "row": self.row,
            "id": self.id,
            "distance": self.distance,
            "labels": self.labels,
            "crs": self.crs or None,
            "bounds": _finite_list(self.bounds),
            "lonlat": _finite_list(self.lonlat),
        }


@dataclass
class QueryResult:
    """A query and its matches, best first."""

    query: Query
    labels: list[str] | None
    matches: list[Match]

    def to_dict(self) -> dict[str, Any]:
        q = self.query
        out = {
            "query": q.id,
            "split": q.split,
            "tile": q.tile,
            "window": q.window.as_list() if q.window else None,
            "crs": q.crs or None,
            "bounds": _finite_list(q.bounds),
            "lonlat": _finite_list(q.lonlat),
            "nodata_fraction": round(q.nodata_fraction, 6),
            "labels": self.labels,
            "matches": [m.to_dict() for m in self.matches],
        }
        if q.combined:
            out["examples"] = {
                "positive": [p.id for p in q.positives],
                "negative": [n.id for n in q.negatives],
                "rule": "min distance to a positive minus min distance to a negative",
            }
        return out


def _finite_list(values: Any) -> Any:
    array = np.asarray(values, dtype=np.float64)
    return array.tolist() if np.all(np.isfinite(array)) else None


def _label_list(names: Sequence[str], row: np.ndarray | None) -> list[str] | None:
    """Names of the set labels; None when the dataset has no labels at all."""
    if row is None or not names:
        return None
    return [names[j] for j in np.flatnonzero(row)]


def format_distance(distance: float, kind: str) -> str:
    return str(int(distance)) if kind == "hamming" else f"{distance:.4g}"


def search(
    database: Database,
    backend: SearchBackend,
    queries: Sequence[Query],
    k: int,
    rows: np.ndarray | None = None,
) -> list[QueryResult]:
    """The ``k`` nearest database rows of every query (ties: lower database row first).

    A query that stands for several examples (:func:`rsir_cli.retrieval.queries.combine`) is ranked
    by the examples rule over the database (or over ``rows``, the ``--aoi`` candidates).

    Raises:
        UsageError: k below 1.
        StoreError: query embeddings of another dimension than the database's.
    """
    if k < 1:
        raise UsageError("--k must be at least 1")
    if not queries:
        return []
    dim = int(database.attrs.get("embedding_dim") or 0)
    for query in queries:
        for example in (query, *query.positives, *query.negatives):  # noqa: B007
            if dim and len(example.embedding) != dim:
                raise StoreError(f"query embeddings have {len(example.embedding)} dimensions, the database {dim}")
    plain = [q for q in queries if not q.combined]
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if plain:
        vectors = np.stack([q.embedding for q in plain]).astype(np.float32)
        if database.hasher is not None:
            vectors = database.hasher.transform(vectors)
        result = backend.search(vectors, k)
        for query, ranked, distances in zip(plain, result.indices, result.distances, strict=True):
            found[id(query)] = (ranked, distances)
    for query in queries:
        if query.combined:
            found[id(query)] = _rank_examples(database, query, k, rows)
    names = database.label_names
    footprints = database.footprints
    results = []
    for query in queries:
        ranked, distances = found[id(query)]
        matches = []
        for rank, (row, distance) in enumerate(zip(ranked, distances, strict=True), start=1):
            if row < 0:
                continue
            row = int(row)
            matches.append(
                Match(
                    rank,
                    row,
                    database.ids[row],
                    int(round(float(distance))) if database.distance == "hamming" else float(distance),
                    _label_list(names, database.labels[row]),
                    footprints.crs[row],
                    tuple(float(v) for v in footprints.bounds[row]),  # type: ignore[arg-type]
                    np.asarray(footprints.lonlat[row]),
                )
            )
        results.append(QueryResult(query, _label_list(names, query.labels), matches))
    return results


def _rank_examples(database: Database, query: Query, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    candidates = np.arange(len(database)) if rows is None else np.asarray(rows, dtype=np.int64)
    scores = example_scores(database.vectors[candidates], query, database.distance, database.hasher)
    order = np.lexsort((candidates, scores))[:k]  # by score, ties by the lower row
    return candidates[order], scores[order]


def results_geojson(database: Database, results: Sequence[QueryResult]) -> dict[str, Any]:
    """The queries' and matches' footprints (EPSG:4326) as a GeoJSON FeatureCollection (RFC 7946).

    Every feature has the same properties (``role`` query/match, query, rank, id, distance,
    labels), so that QGIS reads one attribute table; a query has rank 0 and distance 0.
    """
    from rsir_cli.geo import geojson_feature

    features = []
    for result in results:
        q = result.query
        if np.all(np.isfinite(q.lonlat)):
            properties = {"role": "query", "query": q.id, "rank": 0, "id": q.id, "distance": 0.0}
            features.append(geojson_feature(q.lonlat, {**properties, "labels": "; ".join(result.labels or [])}))
        for match in result.matches:
            properties = {"role": "match", "query": q.id, "rank": match.rank, "id": match.id}
            features.append(
                geojson_feature(
                    match.lonlat,
                    {**properties, "distance": float(match.distance), "labels": "; ".join(match.labels or [])},
                )
            )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    # A foreign member (RFC 7946, 6.1): what was searched; GIS readers ignore it.
    collection["rsir"] = database.describe()
    if database.random_weights:
        collection["rsir"]["warning"] = RANDOM_WEIGHTS_WARNING
    return collection
