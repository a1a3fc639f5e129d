"""`rsir export`: write one split of the store as a GeoParquet file other tools open."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rsir_cli.cli import output
from rsir_cli.cli.options import (
    STORE_DEFAULT,
    DatasetOption,
    JsonOption,
    ModelOption,
    StoreOption,
    split_list,
)
from rsir_cli.cli.registry import command


@command("export", "Write a split of the store as GeoParquet (QGIS, DuckDB, geopandas open it).")
def export(
    file: Annotated[
        Optional[Path],
        typer.Argument(metavar="FILE.parquet", help="The file to write (or --out).", show_default=False),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="The file to write.", dir_okay=False, show_default=False)
    ] = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    split: Annotated[
        Optional[str], typer.Option("--split", help="Store split to export (default: the only one).")
    ] = None,
    codes: Annotated[
        str,
        typer.Option(
            "--codes",
            help="Code tables to add as `code_<name>` columns: all (every current one), none, or names, "
            "e.g. itq-64-s42,trivial-32.",
        ),
    ] = "all",
    stac: Annotated[bool, typer.Option("--stac", help="Also write a STAC item (FILE.json) beside the file.")] = False,
    store: StoreOption = STORE_DEFAULT,
    json_output: JsonOption = False,
) -> None:
    """Write one (model, dataset, split) of the store as a GeoParquet 1.1 file.

    One row per chip: id, labels, date, the footprint (WKB polygon in longitude/latitude, with
    a bbox covering), the float embedding and the stored binary codes; rows in spatial order
    (Hilbert curve), zstd. The file's metadata carries the provenance (model, weights
    checksum, bands, normalisation, pooling, each hasher and its parameters), so `rsir import`
    reads it back bit for bit. --model, --dataset and --split may be left out when the store
    holds only one. See docs/geoparquet.md for the columns.

    Examples:

        rsir export prithvi-test.parquet --model prithvi --dataset bigearthnet --split test

        rsir export --out val.parquet --split val --codes itq-64-s42 --stac

        rsir export all.parquet --codes none --store my-store
    """
    from rsir_cli.errors import UsageError
    from rsir_cli.exchange import export_split
    from rsir_cli.fileio import format_bytes
    from rsir_cli.store import EmbeddingStore

    if file is not None and out is not None and file != out:
        raise UsageError(f"give the file once: {file} or --out {out}")
    target = out or file
    if target is None:
        raise UsageError("give the file to write: rsir export FILE.parquet (or --out FILE.parquet)")
    wanted = codes.strip().lower()
    tables = None if wanted == "all" else [] if wanted == "none" else split_list(codes)
    with output.progress_bars() as progress:
        result = export_split(
            EmbeddingStore(store), model, dataset, split, target, codes=tables, stac=stac, progress=progress
        )
    if json_output:
        output.print_json(result.to_dict())
        return
    columns = ["file", "split", "rows", "row groups", "dim", "codes", "size"]
    row = [
        str(result.path),
        f"{result.model}/{result.dataset}/{result.split}",
        f"{result.rows:,}",
        str(result.row_groups),
        str(result.dim),
        ", ".join(result.codes) or "none",
        format_bytes(result.bytes),
    ]
    output.print_table(output.make_table("Exported", columns, [row], numeric=("rows", "row groups", "dim", "size")))
    if result.stac:
        output.note(f"STAC item: {result.stac}")
    for name, why in result.skipped_codes.items():
        if why != "not asked for":
            output.note(f"code table {name} left out: {why}")
