"""`rsir search`: find the stored images most like a GeoTIFF tile, or like a stored sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.options import (  # noqa: I001
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
from rsir_cli.cli.registry import command


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
    from rsir_cli.pixels import PixelWindow

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


@command("search", "Search the store with GeoTIFF tiles, stored samples, places or areas.")
def search(
    tiles: Annotated[
        Optional[list[Path]],
        typer.Argument(
            metavar="[TILE]...",
            help="GeoTIFF(s) to search with (or folders of single-band files named *B02*, *B8A*, ...); "
            "several tiles are searched in one process, the model loaded once.",
            show_default=False,
        ),
    ] = None,
    sample_ids: Annotated[
        Optional[list[str]],
        typer.Option("--id", help="Query with a sample already in the store; repeat to combine several examples."),
    ] = None,
    not_ids: Annotated[
        Optional[list[str]],
        typer.Option("--not-id", help="A stored sample the matches should NOT look like (repeatable)."),
    ] = None,
    points: Annotated[
        Optional[list[str]],
        typer.Option("--point", help="LON,LAT: the stored chip whose footprint holds the point is an example."),
    ] = None,
    aoi: Annotated[
        Optional[Path],
        typer.Option(
            "--aoi", help="A GeoJSON area: only database chips whose centre lies in it are candidates.", dir_okay=False
        ),
    ] = None,
    queries_in: Annotated[
        Optional[Path],
        typer.Option(
            "--queries-in", help="A GeoJSON area: every stored query chip in it is searched with.", dir_okay=False
        ),
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
    date: Annotated[
        Optional[str],
        typer.Option("--date", help="The tile's acquisition date, YYYY-MM-DD, for models that take it (-tl)."),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights",
            help="Checkpoint (default: the one the store was embedded with, or what `rsir download` fetched); "
            "must have the store's sha256.",
            dir_okay=False,
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
    html: Annotated[
        Optional[Path],
        typer.Option(
            "--html",
            help="Write one self-contained HTML page: a map of the footprints and the thumbnails.",
            dir_okay=False,
        ),
    ] = None,
    store: StoreOption = STORE_DEFAULT,
) -> None:
    """Search the store with GeoTIFF tiles, with samples already in it, or by place.

    A tile is read like the database it is searched against: in the
    store model's bands and units, cut into chips of the database's patch
    size (120 px at 10 m for BigEarthNet), embedded by the same model and,
    with --hash, hashed by the stored hasher. Bands come from the file's
    band descriptions (B02, B8A, red, ...) or --bands. --window or --bbox
    (in the tile's CRS) picks one region of a large tile.

    Several examples (--id / --point repeated, --not-id) are combined: a
    database chip scores its distance to the nearest positive example
    minus its distance to the nearest negative one, lowest first.

    Examples:

        rsir search tile.tif --k 10

        rsir search a.tif b.tif c.tif --json

        rsir search T33UUP.tif --bbox 399960,5790240,401160,5791440 --figure m.png

        rsir search chip.tif --bands 2,3,4,9,12,13 --hash trivial --bits 32

        rsir search --id S2A_MSIL2A_20170613T101031_0_45_84 --json

        rsir search --point 14.95,48.25 --aoi area.geojson --html matches.html

        rsir search --id A --id B --not-id C --k 20

        rsir search tile.tif --hash trivial --bits 32 --backend milvus
    """
    from rsir_cli.raster import parse_band_indexes
    from rsir_cli.retrieval import RANDOM_WEIGHTS_WARNING, SearchRequest, run_search

    if window is not None and bbox is not None:
        raise typer.BadParameter("give --window or --bbox, not both", param_hint="--window / --bbox")
    _check_output(geojson, (".geojson", ".json"), "--geojson")
    _check_output(figure, (".png",), "--figure")
    _check_output(html, (".html", ".htm"), "--html")
    request = SearchRequest(
        store=store,
        tiles=list(tiles or []),
        ids=list(sample_ids or []),
        not_ids=list(not_ids or []),
        points=[_point(p) for p in points or []],
        aoi=aoi,
        queries_in=queries_in,
        model=model,
        dataset=dataset,
        split=split,
        hash_method=hash_method,
        bits=bits,
        seed=seed,
        distance=distance,
        k=k,
        bands=parse_band_indexes(bands) if bands else None,
        units=units,
        window=_window(window) if window is not None else None,
        bbox=_numbers(bbox, 4, "--bbox", "399960,5790240,401160,5791440") if bbox is not None else None,
        chip_size=chip_size,
        date=_date(date) if date is not None else None,
        weights=weights,
        device=device,
        precision=precision,
        batch_size=batch_size,
        backend=backend.strip().lower(),
        uri=uri,
        token=token,
        geojson=geojson,
        figure=figure,
        html=html,
    )
    with output.progress_bars() as progress:
        outcome = run_search(request, progress)
    if outcome.random_weights:
        output.stderr.print(f"[bold magenta]{RANDOM_WEIGHTS_WARNING}[/bold magenta]", markup=True)
    for note in outcome.notes:
        output.note(note)
    for path in outcome.written:
        output.note(f"wrote {path}")
    if json_output:
        output.print_json(outcome.to_dict())
        return
    _print_table(outcome.database, outcome.results, k)


def _date(text: str) -> str:
    from rsir_cli.dates import iso_date

    value = iso_date(text)
    if not value:
        raise typer.BadParameter(f"{text!r} is not a date; give YYYY-MM-DD", param_hint="--date")
    return value


def _point(text: str) -> tuple[float, float]:
    lon, lat = _numbers(text, 2, "--point", "14.95,48.25")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise typer.BadParameter(f"{text}: LON,LAT in degrees (lon -180..180, lat -90..90)", param_hint="--point")
    return lon, lat


def _print_table(database: Any, results: list[Any], k: int) -> None:
    from rsir_cli.retrieval.results import RANDOM_WEIGHTS_WARNING, format_distance

    several = len(results) > 1
    rows = []
    for result in results:
        for match in result.matches:
            row = [
                str(match.rank),
                match.id,
                format_distance(match.distance, database.distance),
                "; ".join(match.labels) if match.labels is not None else "-",
                _location(match.lonlat),
            ]
            rows.append(([result.query.id] if several else []) + row)
    columns = (["query"] if several else []) + ["rank", "id", "distance", "labels", "location (lat, lon)"]
    title = f"Top {k} in {database.title()}"
    if not several and results:
        q = results[0]
        labels = "; ".join(q.labels or [])
        labels = labels if len(labels) <= 60 else labels[:59] + "…"  # whole in --json
        title += f" for {q.query.id}" + (f" [{labels}]" if labels else "")
    if database.random_weights:
        title += " -- RANDOM WEIGHTS"
    kinds = {"query": "id", "id": "id", "labels": "labels"}
    table = output.make_table(title, columns, rows, numeric=("rank", "distance"), kinds=kinds)
    if database.random_weights:
        table.caption = Text(RANDOM_WEIGHTS_WARNING, style="bold magenta")
    output.print_table(table)
