"""`rsir bench-milvus`: the paper's Milvus speed experiment (latency, throughput, recall, memory)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.options import (
    STORE_DEFAULT,
    CsvOption,
    DatasetOption,
    JsonOption,
    KOption,
    ModelOption,
    StoreOption,
    TokenOption,
    UriOption,
    split_list,
)
from rsir_cli.cli.registry import command

COLUMNS = [
    "size", "vectors", "index", "insert s", "index s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "q/s", "recall",
    "MB",
]  # fmt: skip
NUMERIC = ("size", "insert s", "index s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "q/s", "recall", "MB")


def _sizes(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in split_list(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise typer.BadParameter("give positive whole numbers, e.g. 10000,50000,100000", param_hint="--sizes")
    return values


@command("bench-milvus", "Benchmark Milvus like the paper's speed experiment.")
def bench_milvus(
    uri: UriOption = None,
    token: TokenOption = None,
    sizes: Annotated[
        str, typer.Option("--sizes", help="Database sizes: the first N test vectors (comma-separated).")
    ] = "10000,50000,100000",
    queries: Annotated[int, typer.Option("--queries", min=1, help="Queries (the first N val vectors).")] = 1000,
    k: KOption = 20,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    seeded: Annotated[
        bool, typer.Option("--seeded", help="Use seeded synthetic vectors even when the store has embeddings.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic vectors.")] = 0,
    nlist: Annotated[int, typer.Option("--nlist", min=1, help="IVF clusters (the paper: 128).")] = 128,
    nprobe: Annotated[int, typer.Option("--nprobe", min=1, help="IVF clusters searched per query.")] = 16,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Queries per call in the throughput run.")] = 100,
    server_pid: Annotated[
        Optional[int],
        typer.Option(
            "--server-pid",
            envvar="RSIR_MILVUS_SERVER_PID",
            help="Process id of a local Milvus server, for its memory (default: found on localhost when unique).",
        ),
    ] = None,
    store: StoreOption = STORE_DEFAULT,
    json_output: JsonOption = False,
    csv_path: CsvOption = None,
) -> None:
    """Run the paper's Milvus speed experiment and compare with the exact engine.

    1,000 val queries, one search call each, top 20, against the first 10K /
    50K / 100K test vectors: 768-d floats in IVF_FLAT (nlist 128, L2), 768-bit
    binary and 32-bit trivial codes in BIN_IVF_FLAT (HAMMING). Where Milvus
    cannot build an index (Milvus Lite: BIN_FLAT only), FLAT / BIN_FLAT runs and
    the table says so. Without store embeddings, seeded synthetic vectors of the
    same shapes are used and labelled SEEDED. Each row reports insert and index
    time, single-query latency (mean, p50, p95, p99), batched throughput,
    tie-aware recall@k against the exact engine, and memory. Without --uri the
    run uses a temporary Milvus Lite file in the store folder, .bench-tmp (removed
    afterwards; a run that was killed leaves it to the next run to remove). Its
    collections (rsir_bench_*) are dropped afterwards.

    Examples:

        rsir bench-milvus

        rsir bench-milvus --uri http://localhost:19530 --json > bench.json

        rsir bench-milvus --sizes 10000 --queries 200 --csv bench.csv
    """
    from contextlib import ExitStack

    from rsir_cli import bench
    from rsir_cli.search import milvus
    from rsir_cli.store import EmbeddingStore

    size_list = _sizes(sizes)
    if csv_path is not None and not csv_path.parent.is_dir():
        raise typer.BadParameter(f"the folder {csv_path.parent} does not exist", param_hint="--csv")
    data = bench.load_data(
        EmbeddingStore(store), model, dataset, n_queries=queries, n_database=max(size_list), seeded=seeded, seed=seed
    )
    if data.seeded:
        output.note(f"[bold magenta]SEEDED:[/bold magenta] {data.source}")
    with ExitStack() as scratch:
        lite_file = None if uri else scratch.enter_context(bench.scratch_folder(store)) / "bench.db"
        target = milvus.resolve_target(uri or str(lite_file), token, store)
        with output.progress_bars() as progress:
            report = bench.run_bench(
                target, data, sizes=size_list, k=k, nlist=nlist, nprobe=nprobe, batch=batch, server_pid=server_pid,
                progress=progress,
            )  # fmt: skip
    if not uri:
        report.settings["uri"] = "a temporary Milvus Lite file"
    document = report.to_dict()
    if csv_path is not None:
        # Every CSV row says what data and which Milvus it measured (a CSV has no header block).
        labelled = [
            {**row, "data": report.settings["data"], "milvus": report.settings["milvus"]} for row in document["rows"]
        ]
        _write_csv(csv_path, labelled)
    if json_output:
        output.print_json(document)
        return
    rows = [_cells(row) for row in document["rows"]]
    settings = report.settings
    title = (
        f"bench-milvus: {settings['milvus']}, {settings['queries']} queries, top {settings['k']}"
        f"{' -- SEEDED synthetic vectors' if data.seeded else ''}"
    )
    kinds = {"vectors": "name", "index": "name"}
    table = output.make_table(title, COLUMNS, rows, numeric=NUMERIC, kinds=kinds, keys=("size", "vectors", "index"))
    fallbacks = sorted({row["note"] for row in document["rows"] if row["engine"] == "milvus" and row["note"]})
    caption = [
        f"data: {settings['data']}",
        f"IVF: nlist {settings['nlist']}, nprobe {settings['nprobe']}; q/s: batches of {settings['batch']} queries; "
        "recall: tie-aware recall@k against the exact engine",
        "MB: RSS of the Milvus process after the searches; for exact, the size of the database array",
        *(f"* {note}" for note in fallbacks),
        *settings["notes"],
    ]
    table.caption = Text("\n".join(caption), style="bold magenta" if data.seeded else "dim")
    table.caption_justify = "left"
    output.print_table(table)


def _cells(row: dict) -> list[str]:
    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    index = "exact" if row["engine"] == "exact" else row["index"].split(" (")[0] + ("*" if row["note"] else "")
    return [
        f"{row['size']:,}", row["vectors"], index, number(row["insert_s"], 2), number(row["index_s"], 2),
        number(row["mean_ms"], 3), number(row["p50_ms"], 3), number(row["p95_ms"], 3), number(row["p99_ms"], 3),
        number(row["throughput_qps"], 0), number(row["recall"], 4), number(row["memory_mb"], 0),
    ]  # fmt: skip


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    from rsir_cli.fileio import write_output

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()) if rows else ["size"])
    writer.writeheader()
    writer.writerows(rows)
    write_output(path, buffer.getvalue())
    output.note(f"wrote {path}")
