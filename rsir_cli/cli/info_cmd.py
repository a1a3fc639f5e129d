"""`rsir info`: what the store holds, and the models and datasets rsir knows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.options import STORE_DEFAULT, DatasetOption, JsonOption, ModelOption, StoreOption
from rsir_cli.cli.registry import command

if TYPE_CHECKING:
    from rsir_cli.models import ModelConfig, WeightsSource


@command("info", "Show what the store holds (and the known models and datasets).")
def info(
    store: StoreOption = STORE_DEFAULT,
    models: Annotated[bool, typer.Option("--models", help="List the registered models instead.")] = False,
    datasets: Annotated[bool, typer.Option("--datasets", help="List the registered datasets instead.")] = False,
    ids: Annotated[
        bool, typer.Option("--ids", help="List the sample ids of one split (what `rsir search --id` takes).")
    ] = False,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    split: Annotated[
        Optional[str], typer.Option("--split", help="With --ids: the split (default: the database split).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Show what the store holds: model, dataset, split, rows, dimension, codes, complete or not.

    Example:

        rsir info --store rsir-store

        rsir info --models --json

        rsir info --ids --model prithvi --dataset bigearthnet --split val
    """
    if models:
        _show_models(json_output)
        return
    if datasets:
        _show_datasets(json_output)
        return
    from rsir_cli.errors import StoreError
    from rsir_cli.store import EmbeddingStore

    if ids:
        _show_ids(EmbeddingStore(store), model, dataset, split, json_output)
        return
    if not store.is_dir():
        raise StoreError(f"the store {store} does not exist; pass the --store your embed run wrote to")
    summaries = EmbeddingStore(store).summaries()
    if json_output:
        output.print_json({"store": str(store), "splits": [s.to_dict() for s in summaries]})
        return
    if not summaries:
        from rsir_cli import suggest

        output.note(f"The store {store} is empty. Fill it with {suggest.embed('prithvi', 'bigearthnet', store=store)}.")
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
        output.print_json(
            [
                {"name": c.name, "description": c.description, "weights": c.weights.to_dict(), **c.provenance()}
                for c in configs
            ]
        )
        return
    rows = [
        [
            c.name,
            _bands_cell(c),
            c.embed_dim,
            c.input_size,
            c.pooling,
            ", ".join(c.inputs) or "-",
            _weights_cell(c.weights),
        ]
        for c in configs
    ]
    output.print_table(
        output.make_table(
            "Models",
            ["model", "bands", "dim", "input", "pooling", "extra", "weights"],
            rows,
            numeric=("dim", "input"),
            kinds={"model": "name"},  # weights: "repo file", wrapped between the two
        )
    )


def _bands_cell(config: ModelConfig) -> str:
    if config.any_bands:
        return f"any (wavelengths); default {' '.join(config.read_bands)}"
    filled = f" ({' '.join(config.fill_bands)} filled)" if config.fill_bands else ""
    return " ".join(config.read_bands) + filled


def _weights_cell(weights: WeightsSource) -> str:
    if weights.source == "huggingface":
        return f"{weights.repo_id} {weights.filename}"
    if weights.source == "url":
        return str(weights.url)
    return "-"


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


def _show_ids(store: Any, model: str | None, dataset: str | None, split: str | None, json_output: bool) -> None:
    from rsir_cli.retrieval import resolve_entry

    model, dataset, split = resolve_entry(store, model, dataset, split)
    names = store.read(model, dataset, split, embeddings=False).ids
    if json_output:
        output.print_json({"model": model, "dataset": dataset, "split": split, "ids": names})
        return
    output.stdout.print("\n".join(names), soft_wrap=True, markup=False, highlight=False)
