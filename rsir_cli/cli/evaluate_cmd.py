"""`rsir evaluate`: mAP@k and P@k like the paper (queries = val, database = test)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.options import (
    STORE_DEFAULT,
    CsvOption,
    DatasetOption,
    DeviceOption,
    JsonOption,
    KOption,
    ModelOption,
    SeedsOption,
    StoreOption,
    split_list,
)
from rsir_cli.cli.registry import command

METRICS = {
    "map": "mAP@{k}",
    "precision": "P@{k}",
    "map_textbook": "mAP@{k} (textbook: AP / min(k, relevant))",
}
METRIC_ALIASES = {"map": "map", "p": "precision", "precision": "precision", "textbook": "map_textbook"}
CSV_COLUMNS = (
    "model", "random_weights", "dataset", "label_set", "method", "bits", "distance", "k", "match", "seeds",
    "n_queries", "n_database", "codes", "map", "map_ci95", "precision", "precision_ci95", "map_textbook",
    "map_textbook_ci95",
)  # fmt: skip


@command("evaluate", "Evaluate retrieval (mAP@k, P@k) like the paper.")
def evaluate(
    model: ModelOption = None,
    dataset: DatasetOption = None,
    hash_methods: Annotated[
        str,
        typer.Option(
            "--hash",
            help="Comma-separated methods: none (float embeddings), binary, trivial, lsh, pca, itq.",
        ),
    ] = "none,binary,trivial,lsh",
    bits: Annotated[
        str, typer.Option("--bits", help="Comma-separated code lengths of trivial/lsh/pca/itq (binary: the dim).")
    ] = "32",
    distance: Annotated[
        Optional[str],
        typer.Option(
            "--distance",
            help="Distance of float embeddings: l1 (the paper, default), l2, cosine, dot. Codes use hamming.",
        ),
    ] = None,
    match: Annotated[
        str, typer.Option("--match", help="Relevance: any (shares a label, the paper) or exact (same label set).")
    ] = "any",
    k: KOption = 20,
    labels: Annotated[
        Optional[str],
        typer.Option("--labels", help="Label sets to report (default all): 43, 19 (BigEarthNet), 12, 4 (ForestNet)."),
    ] = None,
    seeds: SeedsOption = 5,
    metric: Annotated[
        str,
        typer.Option("--metric", help="Tables to print: all, or a comma list of map, p, textbook."),
    ] = "all",
    device: DeviceOption = "auto",
    store: StoreOption = STORE_DEFAULT,
    json_output: JsonOption = False,
    csv_path: CsvOption = None,
) -> None:
    """Evaluate retrieval like the paper: queries = val split, database = test split, top k.

    With no --model or --dataset, every (model, dataset) in the store with both splits is
    evaluated; BigEarthNet is reported with 43 and 19 labels and ForestNet with 12 and 4, from one
    embedding run. Metrics (x100): mAP@k exactly as the paper computes it (AP normalised by the
    relevant images within the top k), P@k, and the textbook mAP@k (normalised by min(k, all
    relevant)). Seeded methods (lsh, itq) show mean +- 95% confidence interval over --seeds seeds
    (42, 84, ...). Float embeddings use L1 unless --distance says otherwise; codes use Hamming.
    Ties in distance go to the lower database row. Stored codes (`rsir hash`) are used when
    current; missing ones are hashed in memory (not written).

    Examples:

        rsir evaluate

        rsir evaluate --model prithvi --dataset bigearthnet --hash none,binary,trivial,lsh --bits 32

        rsir evaluate --hash lsh,pca,itq --bits 32,64 --seeds 5 --json

        rsir evaluate --distance cosine --match exact --k 10 --csv results.csv
    """
    from rsir_cli.evaluation import evaluate_store
    from rsir_cli.store import EmbeddingStore

    try:
        bit_list = [int(b) for b in split_list(bits)]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {bits!r}", param_hint="--bits") from None
    tables = _metric_list(metric)
    with output.progress_bars() as progress:
        result = evaluate_store(
            EmbeddingStore(store),
            model=model,
            dataset=dataset,
            methods=split_list(hash_methods),
            bits=bit_list,
            distance=distance,
            match=match,
            k=k,
            label_sets=split_list(labels) or None,
            seeds=seeds or 5,
            device=device,
            progress=progress,
        )
    data = result.to_dict()
    if csv_path is not None:
        _write_csv(csv_path, data["results"])
    if json_output:
        output.print_json(data)
        return
    for name in tables:
        output.print_table(_paper_table(data, name))
    if any(cell["random_weights"] for cell in data["results"]):
        output.stderr.print(
            "[bold magenta]RANDOM WEIGHTS:[/bold magenta] rows marked so come from a smoke run; their numbers mean nothing.",
            markup=True,
        )
    if csv_path is not None:
        output.note(f"Wrote {csv_path}")


def _metric_list(metric: str) -> list[str]:
    names = split_list(metric.lower())
    if not names or names == ["all"]:
        return list(METRICS)
    out = []
    for name in names:
        if name not in METRIC_ALIASES:
            raise typer.BadParameter(f"unknown metric {name!r}; use all, map, p or textbook", param_hint="--metric")
        out.append(METRIC_ALIASES[name])
    return out


def _cell_text(mean: float | None, ci: float | None) -> str:
    if mean is None or not math.isfinite(mean):
        return "-"
    if ci is None or not math.isfinite(ci):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {ci:.2f}"


def _paper_table(data: dict[str, Any], metric: str) -> Any:
    """The paper's layout: model x method rows, dataset label-set columns, and a Mean column."""
    cells = data["results"]
    columns: list[str] = []
    datasets: dict[str, str] = {}  # column -> its dataset
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in cells:
        if cell["column"] not in columns:
            columns.append(cell["column"])
            datasets[cell["column"]] = cell["dataset"]
        rows.setdefault((cell["model"], cell["title"]), {})[cell["column"]] = cell
    table_rows = []
    previous_model = None
    for (model, title), by_column in rows.items():
        random = any(c["random_weights"] for c in by_column.values())
        name = model + (" (random weights)" if random else "")
        model_cell = Text(name if model != previous_model else "", style="magenta" if random else "")
        previous_model = model
        values = []
        for column in columns:
            cell = by_column.get(column)
            values.append(_cell_text(cell[metric], cell[f"{metric}_ci95"]) if cell else "")
        means = [by_column[c][metric] for c in columns if c in by_column and by_column[c][metric] is not None]
        means = [m for m in means if math.isfinite(m)]
        values.append(f"{sum(means) / len(means):.2f}" if means else "-")
        table_rows.append([model_cell, title, *values])
    title = METRICS[metric].format(k=data["k"]) + f" x100, match {data['match']} (queries val, database test)"
    # Too wide for the terminal: one table per dataset (its label sets together), model and method repeated.
    groups = [[c for c in columns if datasets[c] == d] for d in dict.fromkeys(datasets.values())]
    return output.make_table(
        title, ["model", "method", *columns, "Mean"], table_rows, numeric=(*columns, "Mean"),
        kinds={"method": "name"}, keys=("model", "method"), groups=groups,
    )  # fmt: skip


def _write_csv(path: Path, results: list[dict[str, Any]]) -> None:
    import io

    from rsir_cli.fileio import write_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with io.StringIO(newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in results:
            writer.writerow(
                {
                    **row,
                    "seeds": " ".join("" if s is None else str(s) for s in row["seeds"]),
                    **{
                        key: ("" if row[key] is None or not math.isfinite(row[key]) else f"{row[key]:.4f}")
                        for key in (
                            "map",
                            "map_ci95",
                            "precision",
                            "precision_ci95",
                            "map_textbook",
                            "map_textbook_ci95",
                        )
                    },
                }
            )
        write_output(path, handle.getvalue())  # whole or not at all
