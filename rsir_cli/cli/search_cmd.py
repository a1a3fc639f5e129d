"""`rsir search`: find the stored images most like a GeoTIFF tile, or like a stored sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.app import command
from rsir_cli.cli.options import (
    STORE_DEFAULT,
    BandsOption,
    BitsOption,
    DatasetOption,
    DeviceOption,
    HashOption,
    JsonOption,
    KOption,
    ModelOption,
    StoreOption,
    TokenOption,
    UnitsOption,
    UriOption,
)


def _numbers(text: str, count: int, option: str, example: str) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count:
        raise typer.BadParameter(f"give {count} comma-separated numbers, e.g. {option} {example}", param_hint=option)
    return values


def _window(text: str) -> Any:
    from rsir_cli.raster import PixelWindow

    values = _numbers(text, 4, "--window", "0,0,120,120")
    if any(v != int(v) for v in values) or min(values) < 0 or values[2] < 1 or values[3] < 1:
        raise typer.BadParameter(
            "col,row,width,height are whole pixels (width and height at least 1)", param_hint="--window"
        )
    return PixelWindow(*(int(v) for v in values))


def _check_output(path: Path | None, suffixes: tuple[str, ...], option: str) -> None:
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise typer.BadParameter(f"{path} should end in {' or '.join(suffixes)}", param_hint=option)
    if not path.parent.is_dir():
        raise typer.BadParameter(f"the folder {path.parent} does not exist", param_hint=option)
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder", param_hint=option)


def _location(lonlat: Any) -> str:
    import numpy as np

    corners = np.asarray(lonlat, dtype=float)
    if not np.all(np.isfinite(corners)):
        return "-"
    lon, lat = corners.mean(axis=0)
    return f"{lat:.4f}, {lon:.4f}"


@command("search", "Search the store with a GeoTIFF tile or a stored sample.")
def search(
    tile: Annotated[
        Optional[Path],
        typer.Argument(
            metavar="TILE",
            help="GeoTIFF to search with (or a folder of single-band files named *B02*, *B8A*, ...).",
            show_default=False,
        ),
    ] = None,
    sample_id: Annotated[
        Optional[str], typer.Option("--id", help="Query with a sample already in the store (its labels are known).")
    ] = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    split: Annotated[
        Optional[str], typer.Option("--split", help="Database split (default: test, or all for your own imagery).")
    ] = None,
    hash_method: HashOption = None,
    bits: BitsOption = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Seed of the code table, for seeded hashes (lsh, itq).")
    ] = None,
    distance: Annotated[
        Optional[str],
        typer.Option("--distance", help="l1 (default for embeddings), l2, cosine, dot; hamming for codes."),
    ] = None,
    k: KOption = 10,
    bands: BandsOption = None,
    units: UnitsOption = "auto",
    window: Annotated[
        Optional[str], typer.Option("--window", help="Search only this pixel window: col,row,width,height.")
    ] = None,
    bbox: Annotated[
        Optional[str],
        typer.Option("--bbox", help="Search only this box, in the tile's CRS: minx,miny,maxx,maxy."),
    ] = None,
    chip_size: Annotated[
        Optional[int],
        typer.Option(
            "--chip-size", min=1, help="Chip size in tile pixels (default: the ground size of one database patch)."
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights", help="Checkpoint (default: what `rsir download` fetched); must be the store's.", dir_okay=False
        ),
    ] = None,
    device: DeviceOption = "auto",
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="exact (in process, the default) or milvus: the collection `rsir index` built (see --uri).",
        ),
    ] = "exact",
    uri: UriOption = None,
    token: TokenOption = None,
    precision: Annotated[
        Optional[str], typer.Option("--precision", help="fp32, bf16 or fp16 (default: the store's; fp32 on a CPU).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Chips embedded per batch.")] = 16,
    json_output: JsonOption = False,
    geojson: Annotated[
        Optional[Path],
        typer.Option(
            "--geojson",
            help="Write the footprints (EPSG:4326) of queries and matches to this GeoJSON file.",
            dir_okay=False,
        ),
    ] = None,
    figure: Annotated[
        Optional[Path],
        typer.Option(
            "--figure", help="Write a PNG of the queries and their matches, framed by label agreement.", dir_okay=False
        ),
    ] = None,
    store: StoreOption = STORE_DEFAULT,
) -> None:
    """Search the store with a GeoTIFF tile, or with a sample already in it.

    The tile is read like the database it is searched against: in the
    store model's bands and units, cut into chips of the database's patch
    size (120 px at 10 m for BigEarthNet), embedded by the same model and,
    with --hash, hashed by the stored hasher. Bands come from the file's
    band descriptions (B02, B8A, red, ...) or --bands. --window or --bbox
    (in the tile's CRS) picks one region of a large tile.

    Examples:

        rsir search tile.tif --k 10

        rsir search T33UUP.tif --bbox 399960,5790240,401160,5791440 --figure m.png

        rsir search tile.tif --window 0,0,1200,1200 --geojson matches.geojson

        rsir search chip.tif --bands 2,3,4,9,12,13 --hash trivial --bits 32

        rsir search --id S2A_MSIL2A_20170613T101031_0_45_84 --json

        rsir search tile.tif --hash trivial --bits 32 --backend milvus
    """
    from rsir_cli import retrieval
    from rsir_cli.store import EmbeddingStore

    if (tile is None) == (sample_id is None):
        raise typer.BadParameter(
            "give a TILE to search with, or --id SAMPLE_ID (one of them)", param_hint="TILE / --id"
        )
    if sample_id is not None and (bands or window or bbox or chip_size or weights or units != "auto"):
        raise typer.BadParameter(
            "--bands, --units, --window, --bbox, --chip-size and --weights apply to a TILE query", param_hint="--id"
        )
    backend = backend.strip().lower()
    if backend not in ("exact", "milvus"):
        raise typer.BadParameter(f"choose exact or milvus, not {backend!r}", param_hint="--backend")
    if backend == "milvus" and not (hash_method and hash_method.strip().lower() != "none"):
        from rsir_cli.search.milvus import metric_for

        distance = distance or "l2"  # Milvus has no L1, the paper's default
        metric_for(distance)  # refuse l1 before a model is loaded
    if window is not None and bbox is not None:
        raise typer.BadParameter("give --window or --bbox, not both", param_hint="--window / --bbox")
    pixel_window = _window(window) if window is not None else None
    box = _numbers(bbox, 4, "--bbox", "399960,5790240,401160,5791440") if bbox is not None else None
    _check_output(geojson, (".geojson", ".json"), "--geojson")
    _check_output(figure, (".png",), "--figure")

    target = EmbeddingStore(store)
    model, dataset, split = retrieval.resolve_entry(target, model, dataset, split)
    plan = None
    if tile is not None:  # check the tile before reading the database or loading a model
        plan = _plan(retrieval, target.attrs(model, dataset, split), tile, bands, units, pixel_window, box, chip_size)
    database = retrieval.open_database(
        target,
        model=model,
        dataset=dataset,
        split=split,
        hash_method=hash_method,
        bits=bits,
        seed=seed,
        distance=distance,
    )
    tile_info: dict[str, Any] = {}
    if plan is not None:
        queries, tile_info = _embed_tile(
            retrieval,
            database,
            plan,
            weights=weights,
            device=device,
            precision=precision,
            batch_size=batch_size,
            keep_rgb=retrieval.FIGURE_MAX_QUERIES if figure is not None else 0,
        )
    else:
        queries = [retrieval.stored_query(database, str(sample_id))]
    engine = retrieval.make_backend(
        database, backend, device=device if device.startswith("cuda") else "cpu", uri=uri, token=token
    )
    try:
        results = retrieval.search(database, engine, queries, k)
    finally:
        close = getattr(engine, "close", None)  # a Milvus connection (Milvus Lite: frees the file)
        if close is not None:
            close()

    if database.random_weights:
        output.stderr.print(f"[bold magenta]{retrieval.RANDOM_WEIGHTS_WARNING}[/bold magenta]", markup=True)
    # Render everything first, then write: a failure leaves no half-written file behind.
    writes: list[tuple[Path, bytes]] = []
    if geojson is not None:
        collection = retrieval.results_geojson(database, results)
        writes.append((geojson, (json.dumps(collection, indent=1) + "\n").encode()))
    if figure is not None:
        png, notes = retrieval.retrieval_picture(database, results)
        for note in notes[:5]:
            output.note(f"figure: {note}")
        if len(notes) > 5:
            output.note(f"figure: ... and {len(notes) - 5} more")
        writes.append((figure, png))
    for path, data in writes:
        retrieval.write_atomic(path, data)
        output.note(f"wrote {path}")

    if json_output:
        document = {**database.describe(), **tile_info, "k": k, "results": [r.to_dict() for r in results]}
        if database.random_weights:
            document["warning"] = retrieval.RANDOM_WEIGHTS_WARNING
        output.print_json(document)
        return
    _print_table(retrieval, database, results, k)


def _plan(
    retrieval: Any,
    attrs: dict[str, Any],
    tile: Path,
    bands: str | None,
    units: str,
    window: Any,
    bbox: list[float] | None,
    chip_size: int | None,
) -> Any:
    from rsir_cli.models import config_from_provenance, load_plugins
    from rsir_cli.raster import parse_band_indexes

    load_plugins()
    config = config_from_provenance(attrs)
    band_numbers = parse_band_indexes(bands) if bands else None
    return retrieval.plan_tile(
        tile, config, attrs, bands=band_numbers, units=units, window=window, bbox=bbox, chip_size=chip_size
    )


def _embed_tile(
    retrieval: Any,
    database: Any,
    plan: Any,
    *,
    weights: Path | None,
    device: str,
    precision: str | None,
    batch_size: int,
    keep_rgb: int,
) -> tuple[list[Any], dict[str, Any]]:
    """Load the store's model and embed the tile's chips; notes on stderr; the tile's facts for --json."""
    from rsir_cli.devices import resolve_device

    device = resolve_device(device)
    stored = str(database.attrs.get("precision") or "fp32")
    if precision is None:
        precision = "fp32" if device == "cpu" else stored
        if precision != stored:
            output.note(f"the store was embedded in {stored}; querying in fp32 on the CPU")
    encoder = retrieval.load_encoder(database.attrs, weights)
    with output.progress_bars() as progress:
        found = retrieval.tile_queries(
            plan,
            encoder,
            device=device,
            precision=precision,
            batch_size=batch_size,
            keep_rgb=keep_rgb,
            progress=progress,
        )
    tile = plan.path
    region = found.region
    used = len(found.queries) + len(found.skipped)
    if found.chips_total > 1:
        output.note(
            f"{tile.name}: {found.chips_total} chips of {found.chip_size} px in the {region.width} x {region.height} px "
            f"region (partial chips at the right and bottom edges are not searched)"
        )
    if found.skipped:
        output.note(f"skipped {len(found.skipped)} of {used} chips that are mostly nodata")
    info = {
        "tile": str(tile),
        "region": region.as_list(),
        "chip_size": found.chip_size,
        "chips": found.chips_total,
        "chips_skipped": [{"query": name, "nodata_fraction": round(f, 4)} for name, f in found.skipped],
        "bands_from": found.bands_mapped_by,
    }
    return found.queries, info


def _print_table(retrieval: Any, database: Any, results: list[Any], k: int) -> None:
    several = len(results) > 1
    rows = []
    for result in results:
        for match in result.matches:
            row = [
                str(match.rank),
                match.id,
                retrieval.format_distance(match.distance, database.distance),
                "; ".join(match.labels) if match.labels is not None else "-",
                _location(match.lonlat),
            ]
            rows.append(([result.query.id] if several else []) + row)
    columns = (["query"] if several else []) + ["rank", "id", "distance", "labels", "location (lat, lon)"]
    code = f", {database.code}" if database.code else ""
    title = f"Top {k} in {database.model} / {database.dataset} / {database.split} ({database.distance}{code})"
    if not several and results:
        q = results[0]
        title += f" for {q.query.id}" + (f" [{'; '.join(q.labels)}]" if q.labels else "")
    if database.random_weights:
        title += " -- RANDOM WEIGHTS"
    kinds = {"query": "id", "id": "id", "labels": "labels"}
    table = output.make_table(title, columns, rows, numeric=("rank", "distance"), kinds=kinds)
    if database.random_weights:
        table.caption = Text(retrieval.RANDOM_WEIGHTS_WARNING, style="bold magenta")
    output.print_table(table)
