"""`rsir search` as a library: one request in, one outcome out (:func:`run_search`).

The package's rooms, one concern each:

- :mod:`~rsir_cli.retrieval.database`: which split is searched, its vectors, the backend holding them;
- :mod:`~rsir_cli.retrieval.tiles`: a GeoTIFF tile checked, cut into chips and embedded like the database;
- :mod:`~rsir_cli.retrieval.queries`: queries already in the store (by id, place, area) and the rule
  that combines several examples;
- :mod:`~rsir_cli.retrieval.results`: matches, and their GeoJSON;
- :mod:`~rsir_cli.retrieval.pictures`: the PNG figure and the HTML page.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsir_cli import fileio
from rsir_cli.errors import UsageError
from rsir_cli.pixels import PixelWindow
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.retrieval.database import Database, make_backend, open_database, resolve_entry
from rsir_cli.retrieval.queries import (
    Query,
    area_queries,
    candidate_rows,
    combine,
    point_queries,
    read_area,
    stored_queries,
)
from rsir_cli.retrieval.results import RANDOM_WEIGHTS_WARNING, Match, QueryResult, results_geojson, search
from rsir_cli.retrieval.tiles import load_encoder, plan_tile, tile_queries
from rsir_cli.store import EmbeddingStore

__all__ = [
    "RANDOM_WEIGHTS_WARNING",
    "Database",
    "Match",
    "Query",
    "QueryResult",
    "SearchOutcome",
    "SearchRequest",
    "make_backend",
    "open_database",
    "resolve_entry",
    "run_search",
    "search",
]


@dataclass
class SearchRequest:
    """One `rsir search`: what to search with, in which store split, and what to write."""

    store: Path
    tiles: Sequence[Path] = ()
    ids: Sequence[str] = ()
    not_ids: Sequence[str] = ()
    points: Sequence[tuple[float, float]] = ()
    aoi: Path | None = None
    queries_in: Path | None = None
    model: str | None = None
    dataset: str | None = None
    split: str | None = None
    hash_method: str | None = None
    bits: int | None = None
    seed: int | None = None
    distance: str | None = None
    k: int = 10
    bands: Sequence[int] | None = None
    units: str = "auto"
    window: PixelWindow | None = None
    bbox: Sequence[float] | None = None
    chip_size: int | None = None
    date: str | None = None
    weights: Path | None = None
    device: str = "auto"
    precision: str | None = None
    batch_size: int = 16
    backend: str = "exact"
    uri: str | None = None
    token: str | None = None
    geojson: Path | None = None
    figure: Path | None = None
    html: Path | None = None


@dataclass
class SearchOutcome:
    """What a search found, what it wrote, and what the user should know."""

    database: Database
    results: list[QueryResult]
    tiles: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def random_weights(self) -> bool:
        return self.database.random_weights

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {**self.database.describe()}
        if len(self.tiles) == 1:
            document.update(self.tiles[0])
        elif self.tiles:
            document["tiles"] = self.tiles
        document["k"] = len(self.results[0].matches) if self.results else 0
        document["seconds"] = {key: round(value, 4) for key, value in self.seconds.items()}
        document["results"] = [r.to_dict() for r in self.results]
        if self.random_weights:
            document["warning"] = RANDOM_WEIGHTS_WARNING
        return document


def _check(request: SearchRequest) -> None:
    if request.not_ids and not (request.ids or request.points):
        raise UsageError("--not-id needs at least one positive example (--id or --point)")
    sources = [bool(request.tiles), bool(request.ids or request.points), request.queries_in is not None]
    if sum(sources) != 1:
        raise UsageError(
            "give what to search with: TILE(s), or --id / --point examples (with --not-id), or --queries-in AREA "
            "(one of them)"
        )
    tile_only = (request.bands, request.window, request.bbox, request.chip_size, request.weights, request.date)
    if not request.tiles and (any(v is not None for v in tile_only) or request.units != "auto"):
        raise UsageError("--bands, --units, --window, --bbox, --chip-size, --date and --weights apply to a TILE query")
    if request.backend not in ("exact", "milvus"):
        raise UsageError(f"--backend: choose exact or milvus, not {request.backend!r}")
    if len(request.tiles) > 1 and (request.window is not None or request.bbox is not None):
        raise UsageError("--window and --bbox pick a region of one tile; give one TILE with them")


def run_search(request: SearchRequest, progress: Progress = NULL_PROGRESS) -> SearchOutcome:
    """Search the store: everything cheap is checked before a model is loaded or a vector read.

    Order: the options; the store split; each tile (bands, region); the backend (a Milvus collection
    is checked to exist and be current); only then is the model loaded, once, and each tile embedded.

    Raises:
        UsageError: contradictory options.
        StoreError / BackendError / WeightsError / DataNotFoundError / CorruptDataError: as raised by
            the rooms of this package, each with what to do.
    """
    began = time.perf_counter()
    _check(request)
    store = EmbeddingStore(request.store)
    model, dataset, split = resolve_entry(store, request.model, request.dataset, request.split)
    distance = request.distance
    codes = request.hash_method is not None and request.hash_method.strip().lower() not in ("", "none")
    if request.backend == "milvus" and not codes:
        from rsir_cli.search.milvus import metric_for

        distance = distance or "l2"  # Milvus has no L1, the paper's default
        metric_for(distance)  # refuse l1 before anything is read
    attrs = store.attrs(model, dataset, split)
    plans = [
        plan_tile(
            Path(tile),
            attrs,
            bands=request.bands,
            units=request.units,
            window=request.window,
            bbox=request.bbox,
            chip_size=request.chip_size,
            date=request.date,
        )
        for tile in request.tiles
    ]
    area = read_area(request.aoi) if request.aoi is not None else None
    database = open_database(
        store,
        model=model,
        dataset=dataset,
        split=split,
        hash_method=request.hash_method,
        bits=request.bits,
        seed=request.seed,
        distance=distance,
    )
    rows = candidate_rows(database, area) if area is not None else None
    outcome = SearchOutcome(database, [])
    candidates = len(rows) if rows is not None else len(database)
    k = min(request.k, candidates)
    if k < request.k:
        outcome.notes.append(f"--k {request.k} is more than the {candidates} candidates; returning all {k}")
    queries = _stored_queries(database, request)
    if queries and queries[0].combined and request.backend == "milvus":
        raise UsageError("several examples are combined by the exact engine; drop --backend milvus")
    device = "cpu" if not request.device.startswith("cuda") else request.device
    with make_backend(database, request.backend, device, uri=request.uri, token=request.token, rows=rows) as engine:
        outcome.seconds["start"] = time.perf_counter() - began
        if plans:
            queries = _embed_tiles(request, database, plans, outcome, progress)
        searched = time.perf_counter()
        outcome.results = search(database, engine, queries, k, rows)
        outcome.seconds["search"] = time.perf_counter() - searched
    if area is not None:
        outcome.notes.append(f"searched the {len(rows)} of {len(database)} chips whose centre lies in {area.source}")
    _write_outputs(request, outcome)
    outcome.seconds["total"] = time.perf_counter() - began
    return outcome


def _stored_queries(database: Database, request: SearchRequest) -> list[Query]:
    if request.queries_in is not None:
        return area_queries(database, read_area(request.queries_in))
    positives = stored_queries(database, request.ids) + point_queries(database, request.points)
    if not positives:
        return []
    negatives = stored_queries(database, request.not_ids)
    if len(positives) == 1 and not negatives:
        return positives
    return [combine(positives, negatives)]


def _embed_tiles(
    request: SearchRequest, database: Database, plans: list[Any], outcome: SearchOutcome, progress: Progress
) -> list[Query]:
    from rsir_cli.devices import resolve_device

    device = resolve_device(request.device)
    stored = database.provenance.precision
    precision = request.precision
    if precision is None:
        precision = "fp32" if device == "cpu" else stored
        if precision != stored:
            outcome.notes.append(f"the store was embedded in {stored}; querying in fp32 on the CPU")
    loading = time.perf_counter()
    encoder, weights_note = load_encoder(database.attrs, request.weights)
    outcome.seconds["model"] = time.perf_counter() - loading
    outcome.notes.append(f"query encoder: {database.model} with {weights_note}")
    queries: list[Query] = []
    embedding = time.perf_counter()
    keep = 8 if request.figure is not None or request.html is not None else 0
    for plan in plans:
        found = tile_queries(
            plan,
            encoder,
            device=device,
            precision=precision,
            batch_size=request.batch_size,
            keep_rgb=max(0, keep - len(queries)),
            progress=progress,
        )
        queries += found.queries
        outcome.tiles.append(found.describe(plan.path))
        region = found.region
        if found.chips_total > 1:
            outcome.notes.append(
                f"{plan.path.name}: {found.chips_total} chips of {found.chip_size} px in the {region.width} x "
                f"{region.height} px region (partial chips at the right and bottom edges are not searched)"
            )
        if found.skipped:
            used = len(found.queries) + len(found.skipped)
            outcome.notes.append(
                f"{plan.path.name}: skipped {len(found.skipped)} of {used} chips that are mostly nodata"
            )
    outcome.seconds["embed"] = time.perf_counter() - embedding
    if len(plans) > 1:
        outcome.notes.append(
            f"{len(plans)} tiles: {outcome.seconds['embed'] / len(plans):.3f} s per tile after "
            f"{outcome.seconds['start'] + outcome.seconds['model']:.2f} s to start"
        )
    return queries


def _write_outputs(request: SearchRequest, outcome: SearchOutcome) -> None:
    """Render everything first, then write: a failure leaves no half-written file behind."""
    import json

    from rsir_cli.retrieval.pictures import retrieval_picture, search_page

    database, results = outcome.database, outcome.results
    writes: list[tuple[Path, bytes]] = []
    if request.geojson is not None:
        writes.append((request.geojson, (json.dumps(results_geojson(database, results), indent=1) + "\n").encode()))
    notes: list[str] = []
    if request.figure is not None:
        png, notes = retrieval_picture(database, results)
        writes.append((request.figure, png))
    if request.html is not None:
        page, page_notes = search_page(database, results)
        notes = notes or page_notes
        writes.append((request.html, page.encode("utf-8")))
    outcome.notes += [f"figure: {note}" for note in notes[:5]]
    if len(notes) > 5:
        outcome.notes.append(f"figure: ... and {len(notes) - 5} more")
    for path, data in writes:
        fileio.write_output(path, data)
        outcome.written.append(path)
