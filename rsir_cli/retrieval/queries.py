"""Queries that are already in the store: by id, by place (``--point``), by area, and several at once.

Several examples (``--id`` / ``--point`` repeated, ``--not-id``) are combined by one rule, on
float embeddings and on binary codes alike: a database row scores

    score(x) = min over positives d(x, p)  -  min over negatives d(x, n)     (no negatives: 0)

and rows are ranked by ascending score (ties: the lower row). Why this rule: it needs no average
of binary codes (which has no meaning), one positive alone is exactly the plain search, and by the
triangle inequality no row can score above a copy of a negative example
(``d(x, p) - d(x, n) <= d(n, p)``), so near-duplicates of what the user rejected sink to the
bottom while near-duplicates of every positive rise to the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsir_cli import suggest
from rsir_cli.errors import DataNotFoundError
from rsir_cli.geo import AreaOfInterest, point_in_quads
from rsir_cli.pixels import PixelWindow
from rsir_cli.retrieval.database import Database
from rsir_cli.store import QUERY_SPLIT, SplitData


@dataclass
class Query:
    """One query: its embedding, and what is known about it (labels, footprint, image)."""

    id: str
    embedding: np.ndarray
    labels: np.ndarray | None = None
    crs: str = ""
    bounds: tuple[float, float, float, float] = (np.nan, np.nan, np.nan, np.nan)
    lonlat: np.ndarray = field(default_factory=lambda: np.full((4, 2), np.nan))
    window: PixelWindow | None = None
    nodata_fraction: float = 0.0
    split: str | None = None  # a stored sample's split
    rgb: np.ndarray | None = None  # (3, H, W) B04, B03, B02 in model units, for the figure
    tile: str | None = None  # the tile it was cut from
    positives: list[Query] = field(default_factory=list)  # a combined query's examples (the rule above)
    negatives: list[Query] = field(default_factory=list)  # examples to move away from

    @property
    def combined(self) -> bool:
        return bool(self.positives or self.negatives)


def _splits(database: Database) -> list[SplitData]:
    """Where stored queries are looked for: the query split (val) first, then the database split."""
    store, model, dataset = database.store, database.model, database.dataset
    names = [s for m, d, s in store.entries() if m == model and d == dataset]
    out = []
    if QUERY_SPLIT in names and QUERY_SPLIT != database.split:
        out.append(store.read(model, dataset, QUERY_SPLIT, embeddings=True, footprints=True))
    out.append(database.data)
    return out


def _query(data: SplitData, row: int) -> Query:
    assert data.embeddings is not None and data.footprints is not None
    return Query(
        data.ids[row],
        np.asarray(data.embeddings[row], dtype=np.float32),
        labels=np.asarray(data.labels[row]),
        crs=data.footprints.crs[row],
        bounds=tuple(float(v) for v in data.footprints.bounds[row]),  # type: ignore[arg-type]
        lonlat=np.asarray(data.footprints.lonlat[row]),
        split=data.split,
    )


def stored_queries(database: Database, sample_ids: Sequence[str]) -> list[Query]:
    """Samples already in the store, by id (no encoder runs; their labels are known).

    Raises:
        DataNotFoundError: an id in neither split (the message says how to list ids).
    """
    splits = _splits(database)
    index = [{name: row for row, name in enumerate(data.ids)} for data in splits]
    out = []
    for sample_id in sample_ids:
        for data, rows in zip(splits, index, strict=True):
            if sample_id in rows:
                out.append(_query(data, rows[sample_id]))
                break
        else:
            listed = suggest.quoted(
                "info", model=database.model, dataset=database.dataset, ids=True, store=database.store.root
            )
            raise DataNotFoundError(
                f"no sample {sample_id!r} in {database.model}/{database.dataset} (looked in split(s) "
                f"{', '.join(d.split for d in splits)}); ids are the dataset's own sample names: {listed} lists them"
            )
    return out


def point_queries(database: Database, points: Sequence[tuple[float, float]]) -> list[Query]:
    """For each (lon, lat), the stored chip whose footprint holds it (the nearest centre among several).

    Raises:
        DataNotFoundError: no stored chip covers a point (the message names the nearest one).
    """
    splits = _splits(database)
    out = []
    for lon, lat in points:
        best: tuple[float, SplitData, int] | None = None
        nearest: tuple[float, str] | None = None
        for data in splits:
            assert data.footprints is not None
            corners = data.footprints.lonlat
            centres = corners.mean(axis=1)
            distance = np.hypot(centres[:, 0] - lon, centres[:, 1] - lat)
            distance = np.where(np.isfinite(distance), distance, np.inf)
            inside = point_in_quads(corners, lon, lat)
            if inside.any():
                row = int(np.flatnonzero(inside)[np.argmin(distance[inside])])
                if best is None or distance[row] < best[0]:
                    best = (float(distance[row]), data, row)
            if np.isfinite(distance).any():
                row = int(np.argmin(distance))
                if nearest is None or distance[row] < nearest[0]:
                    nearest = (float(distance[row]), data.ids[row])
        if best is None:
            hint = f"; the nearest chip is {nearest[1]} ({nearest[0]:.3f} degrees away)" if nearest else ""
            raise DataNotFoundError(
                f"no stored chip of {database.model}/{database.dataset} covers the point {lon:g},{lat:g} "
                f"(--point takes LON,LAT in degrees){hint}"
            )
        query = _query(best[1], best[2])
        out.append(query)
    return out


def area_queries(database: Database, area: AreaOfInterest) -> list[Query]:
    """Every stored chip of the query split (else the database split) whose centre lies in ``area``.

    Raises:
        DataNotFoundError: no stored chip lies in the area.
    """
    data = _splits(database)[0]
    assert data.footprints is not None
    rows = np.flatnonzero(area.contains_centres(data.footprints.lonlat))
    if not len(rows):
        raise DataNotFoundError(f"no stored chip of {data.model}/{data.dataset}/{data.split} lies in {area.source}")
    return [_query(data, int(row)) for row in rows]


def candidate_rows(database: Database, area: AreaOfInterest) -> np.ndarray:
    """Database rows whose footprint centre lies in ``area`` (``--aoi``).

    Raises:
        DataNotFoundError: none does.
    """
    rows = np.flatnonzero(area.contains_centres(database.footprints.lonlat))
    if not len(rows):
        raise DataNotFoundError(
            f"no chip of {database.model}/{database.dataset}/{database.split} lies in {area.source} "
            "(a chip is in the area when its footprint's centre is)"
        )
    return rows


def combine(positives: Sequence[Query], negatives: Sequence[Query]) -> Query:
    """One query standing for several examples (see the module docstring for the rule)."""
    first = positives[0]
    names = [q.id for q in positives]
    label = " + ".join(names) if len(names) <= 3 else f"{names[0]} + {len(names) - 1} more"
    if negatives:
        label += " - " + " - ".join(q.id for q in negatives) if len(negatives) <= 3 else f" - {len(negatives)} more"
    return Query(
        label,
        first.embedding,
        labels=first.labels if len(positives) == 1 else None,
        crs=first.crs,
        bounds=first.bounds,
        lonlat=first.lonlat,
        split=first.split,
        positives=list(positives),
        negatives=list(negatives),
    )


def example_scores(vectors: np.ndarray, query: Query, distance: str, hasher: object | None) -> np.ndarray:
    """The combined score of every row of ``vectors`` for an example query (module docstring)."""
    positives = query.positives or [query]
    positive = np.min([all_distances(vectors, _vector(q, hasher), distance) for q in positives], axis=0)
    if not query.negatives:
        return positive
    negative = np.min([all_distances(vectors, _vector(q, hasher), distance) for q in query.negatives], axis=0)
    return positive - negative


def _vector(query: Query, hasher: object | None) -> np.ndarray:
    vector = np.asarray(query.embedding, dtype=np.float32)[None]
    return hasher.transform(vector)[0] if hasher is not None else vector[0]  # type: ignore[attr-defined]


def all_distances(vectors: np.ndarray, query: np.ndarray, distance: str) -> np.ndarray:
    """The distance of ``query`` to every row (float64), in the engine's conventions (search/base.py)."""
    if distance == "hamming":
        table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)
        return table[np.bitwise_xor(vectors, query)].sum(axis=1).astype(np.float64)
    data = np.asarray(vectors, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if distance == "l1":
        return np.abs(data - q).sum(axis=1)
    if distance == "l2":
        return np.sqrt(((data - q) ** 2).sum(axis=1))
    if distance == "cosine":
        norms = np.linalg.norm(data, axis=1) * np.linalg.norm(q)
        return 1.0 - (data @ q) / np.where(norms > 0, norms, 1.0)
    return -(data @ q)  # dot


def read_area(path: Path) -> AreaOfInterest:
    """``--aoi`` / ``--queries-in``: a GeoJSON file of polygons in EPSG:4326."""
    return AreaOfInterest.read(path)
