"""`rsir info`: what the store holds, and the models and datasets rsir knows."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.app import command
from rsir_cli.cli.options import STORE_DEFAULT, JsonOption, StoreOption


@command("info", "Show what the store holds (and the known models and datasets).")
def info(
    store: StoreOption = STORE_DEFAULT,
    models: Annotated[bool, typer.Option("--models", help="List the registered models instead.")] = False,
    datasets: Annotated[bool, typer.Option("--datasets", help="List the registered datasets instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Show what the store holds: model, dataset, split, rows, dimension, codes, complete or not.

    Example:

        rsir info --store rsir-store

        rsir info --models --json
    """
    if models:
        _show_models(json_output)
        return
    if datasets:
        _show_datasets(json_output)
        return
    from rsir_cli.store import EmbeddingStore

    summaries = EmbeddingStore(store).summaries()
    if json_output:
        output.print_json({"store": str(store), "splits": [s.to_dict() for s in summaries]})
        return
    if not summaries:
        output.note(f"The store {store} is empty. Fill it with `rsir embed --model prithvi --dataset bigearthnet`.")
        return
    rows = []
    for s in summaries:
        state = (
            Text("error", style="red")
            if s.error
            else Text("complete", style="green")
            if s.complete
            else Text("incomplete", style="yellow")
        )
        model = Text(
            s.model + (" (random weights)" if s.random_weights else ""), style="magenta" if s.random_weights else ""
        )
        rows.append(
            [
                model,
                s.dataset,
                s.split,
                f"{s.rows:,}" + ("" if s.complete else f" / {s.rows_expected:,}"),
                s.dim or "",
                ", ".join(s.codes) or "-",
                s.shards or "1",
                state,
            ]
        )
    output.print_table(
        output.make_table(
            f"Store {store}",
            ["model", "dataset", "split", "rows", "dim", "codes", "files", "state"],
            rows,
            numeric=("rows", "dim", "files"),
            kinds={"dataset": "name", "split": "name"},
        )
    )
    for s in summaries:
        if s.error:
            output.stderr.print(f"[red]{s.model}/{s.dataset}/{s.split}:[/red] {s.error}", markup=True, highlight=False)


def _show_models(json_output: bool) -> None:
    from rsir_cli.models import get_model_config, model_names

    configs = [get_model_config(name) for name in model_names()]
    if json_output:
        output.print_json([{"name": c.name, "description": c.description, **c.provenance()} for c in configs])
        return
    rows = [[c.name, ", ".join(c.read_bands), c.input_size, c.pooling, c.embed_dim, c.description] for c in configs]
    output.print_table(
        output.make_table(
            "Models",
            ["model", "bands read", "input", "pooling", "dim", "description"],
            rows,
            numeric=("input", "dim"),
            kinds={"model": "name"},
        )
    )


def _show_datasets(json_output: bool) -> None:
    from rsir_cli.datasets import dataset_names, get_dataset

    definitions = [get_dataset(name) for name in dataset_names()]
    if json_output:
        output.print_json(
            [
                {
                    "name": d.name,
                    "description": d.description,
                    "splits": list(d.splits),
                    "label_sets": list(d.label_sets),
                }
                for d in definitions
            ]
        )
        return
    rows = [[d.name, ", ".join(d.splits), ", ".join(d.label_sets) or "-", d.description] for d in definitions]
    output.print_table(
        output.make_table(
            "Datasets", ["dataset", "splits", "label sets", "description"], rows, kinds={"dataset": "name"}
        )
    )
