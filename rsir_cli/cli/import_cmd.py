"""`rsir import`: read a GeoParquet embedding file (rsir's own or another tool's) into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.options import STORE_DEFAULT, JsonOption, StoreOption
from rsir_cli.cli.registry import command

#: how the library's messages name the column options
OPTION_NAMES = {
    "id": "--id-column NAME",
    "embedding": "--embedding-column NAME",
    "geometry": "--geometry-column NAME",
    "labels": "--label-column NAME",
    "date": "--date-column NAME",
    "geometry_crs": "--geometry-crs CRS",
}


def _column(flag: str, role: str) -> object:
    return typer.Option(flag, help=f"The column that holds the {role} (default: guessed from its name).")


@command("import", "Read a GeoParquet embedding file (rsir's or another tool's) into the store.")
def import_embeddings(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The .parquet file to import.", dir_okay=False)],
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Model name in the store (default: the file's, or 'imported')."),
    ] = None,
    dataset: Annotated[
        Optional[str],
        typer.Option("--dataset", "-d", help="Dataset name in the store (default: the file's, or its file name)."),
    ] = None,
    split: Annotated[
        Optional[str], typer.Option("--split", help="Split name in the store (default: the file's, or 'all').")
    ] = None,
    id_column: Annotated[Optional[str], _column("--id-column", "sample ids")] = None,
    embedding_column: Annotated[Optional[str], _column("--embedding-column", "embeddings (lists of numbers)")] = None,
    geometry_column: Annotated[Optional[str], _column("--geometry-column", "footprints (WKB)")] = None,
    label_column: Annotated[Optional[str], _column("--label-column", "labels")] = None,
    date_column: Annotated[Optional[str], _column("--date-column", "acquisition dates")] = None,
    geometry_crs: Annotated[
        Optional[str],
        typer.Option("--geometry-crs", help="CRS of the geometry where the file does not say it, e.g. EPSG:4326."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a split the store holds with other content.")
    ] = False,
    store: StoreOption = STORE_DEFAULT,
    json_output: JsonOption = False,
) -> None:
    """Read a GeoParquet file of embeddings into the store as one split.

    A file `rsir export` wrote comes back bit for bit (embeddings, ids, labels, dates,
    footprints, provenance and code tables) under its own model, dataset and split names.
    A file another tool wrote (Clay, Earth Index, Major TOM, TerraTorch...) needs an
    embedding column (lists of numbers) and a WKB geometry column; name them with the
    column options where rsir cannot guess them. Its model is recorded as imported:
    `rsir hash`, `rsir evaluate`, `rsir search --id`, `rsir index` and `rsir bench-milvus`
    work on it, but searching it with a new tile is refused (rsir cannot embed a tile like
    an unknown model). Nothing is written when the file is refused; importing the same file
    again does nothing.

    Examples:

        rsir import prithvi-test.parquet

        rsir import clay.parquet --model clay --dataset alps --embedding-column vector --geometry-column geom

        rsir import chips.parquet --split test --label-column classes --id-column chip_id --overwrite
    """
    from rsir_cli.exchange import import_file
    from rsir_cli.store import EmbeddingStore

    with output.progress_bars() as progress:
        result = import_file(
            EmbeddingStore(store),
            file,
            model=model,
            dataset=dataset,
            split=split,
            id_column=id_column,
            embedding_column=embedding_column,
            geometry_column=geometry_column,
            label_column=label_column,
            date_column=date_column,
            geometry_crs=geometry_crs,
            overwrite=overwrite,
            option_names=OPTION_NAMES,
            progress=progress,
        )
    if json_output:
        output.print_json({"store": str(store), **result.to_dict()})
        return
    state = Text(result.state, style={"up to date": "dim"}.get(result.state, "green"))
    columns = ["split", "state", "rows", "dim", "labels", "codes", "from"]
    row = [
        f"{result.model}/{result.dataset}/{result.split}",
        state,
        f"{result.rows:,}",
        str(result.dim),
        str(len(result.label_names)),
        ", ".join(result.codes) or "none",
        f"{result.source.name} ({'another tool' if result.foreign else 'rsir export'})",
    ]
    output.print_table(output.make_table(f"Imported into {store}", columns, [row], numeric=("rows", "dim", "labels")))
    if result.foreign:
        output.note("columns: " + ", ".join(f"{role} {name}" for role, name in result.columns.items() if name))
        output.note(
            "another tool's embeddings: hash, evaluate, search --id, index and bench-milvus work on them; "
            "rsir cannot embed a new tile like this model, so search by tile is refused"
        )
