"""`rsir embed`: run an encoder over a dataset's splits and write the embeddings to the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rsir_cli.cli import output
from rsir_cli.cli.app import command
from rsir_cli.cli.options import (
    STORE_DEFAULT,
    BandsOption,
    DataDirOption,
    DeviceOption,
    JsonOption,
    StoreOption,
    UnitsOption,
    split_list,
)

# Your own imagery: these datasets take --name, --labels, --bands and --units.
_USER_ARCHIVES = ("folder", "scene")


@command("embed", "Embed a dataset's splits with a model into the store (resumable).")
def embed(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model: prithvi, prithvi-rgb, vit, vit-tv, or a model .yaml.")
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            help="Dataset: bigearthnet, forestnet; or your own imagery: folder (a folder of GeoTIFF chips), "
            "scene (one large GeoTIFF, or a folder of band files, cut into 120 px chips).",
        ),
    ],
    split: Annotated[
        Optional[str],
        typer.Option(
            "--split",
            help="Comma-separated splits (queries = val, database = test). Default: val,test; 'all' for folder/scene.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    name: Annotated[
        Optional[str],
        typer.Option(
            "--name", help="folder/scene: the dataset's name in the store (default: the folder or file name)."
        ),
    ] = None,
    labels: Annotated[
        Optional[Path],
        typer.Option(
            "--labels", help="folder/scene: a labels CSV (id column, then 'labels' or 0/1 columns).", dir_okay=False
        ),
    ] = None,
    bands: BandsOption = None,
    units: UnitsOption = "auto",
    weights: Annotated[
        Optional[Path],
        typer.Option("--weights", help="Checkpoint file (default: what `rsir download` fetched).", dir_okay=False),
    ] = None,
    random_weights: Annotated[
        bool, typer.Option("--random-weights", help="Use RANDOM weights: a smoke test, recorded as such in the store.")
    ] = False,
    store: StoreOption = STORE_DEFAULT,
    device: DeviceOption = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, or bf16 / fp16 autocast (fast on GPUs).")
    ] = "fp32",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.")] = 32,
    workers: Annotated[
        Optional[int],
        typer.Option("--workers", "-j", min=0, help="Data loader processes (default: cores - 1, at most 16)."),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="Embed only the first N samples of each split.")
    ] = None,
    shard: Annotated[
        Optional[str],
        typer.Option("--shard", help="Embed shard i of n (e.g. 2/8) into its own file; readers join the shards."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over instead of resuming / refusing a complete file.")
    ] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the encoder (GPU; pays off on long runs).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Embed a dataset's splits with a model and store the embeddings, labels and footprints.

    Killed or interrupted runs continue where they stopped when run again with the same options.

    Examples:

        rsir embed --model prithvi --dataset bigearthnet

        rsir embed -m prithvi -d forestnet --device cuda --precision bf16 --batch-size 256

        rsir embed -m prithvi -d bigearthnet --split test --shard 3/8

        rsir embed -m prithvi -d scene --data-dir S2B_T33UUP_20200601/IMG_DATA --name t33uup

        rsir embed -m prithvi -d folder --data-dir my_chips/ --labels my_chips/labels.csv --bands 2,3,4,9,12,13
    """
    from rsir_cli.datasets import get_dataset, open_split
    from rsir_cli.embedding import EmbedOptions, embed_split
    from rsir_cli.models import build_encoder, get_model_config
    from rsir_cli.raster import band_map, parse_band_indexes
    from rsir_cli.store import EmbeddingStore, Shard

    config = get_model_config(model)
    definition = get_dataset(dataset)
    splits = split_list(split) if split is not None else list(definition.default_splits)
    if not splits:
        raise typer.BadParameter("give at least one split", param_hint="--split")
    dataset_options: dict[str, object] = {}
    if definition.name in _USER_ARCHIVES:
        band_indexes = band_map(parse_band_indexes(bands), config.read_bands, config.name) if bands else None
        dataset_options = {"dataset_name": name, "labels": labels, "band_indexes": band_indexes, "units": units}
    elif name or labels or bands or units != "auto":
        raise typer.BadParameter(
            f"--name, --labels, --bands and --units apply to your own imagery ({', '.join(_USER_ARCHIVES)}), "
            f"not to {definition.name}",
            param_hint="--dataset",
        )
    # Fail on bad data before loading a model.
    readers = [open_split(dataset, split_name, data_dir, **dataset_options) for split_name in splits]
    for reader in readers:
        reader.check(config.read_bands)
    encoder = build_encoder(config, weights, random_weights)
    if encoder.weights.random:
        output.stderr.print(
            "[bold magenta]RANDOM WEIGHTS:[/bold magenta] a smoke run; these embeddings mean nothing.", markup=True
        )
    options = EmbedOptions(
        device=device,
        precision=precision,
        batch_size=batch_size,
        workers=workers,
        limit=limit,
        shard=Shard.parse(shard) if shard else None,
        overwrite=overwrite,
        compile=compile_model,
    )
    target = EmbeddingStore(store)
    results = []
    with output.progress_bars() as progress:
        for reader in readers:
            results.append(embed_split(target, encoder, reader, options, progress))
    if json_output:
        output.print_json([r.to_dict() for r in results])
        return
    rows = [
        [
            r.model + (" (random)" if r.random_weights else ""),
            r.dataset,
            r.split,
            f"{r.rows:,}",
            f"{r.rows_new:,}",
            f"{r.images_per_second:,.1f}",
            f"{r.device} {r.precision}",
        ]
        for r in results
    ]
    output.print_table(
        output.make_table(
            f"Embedded into {store}",
            ["model", "dataset", "split", "rows", "new", "img/s", "device"],
            rows,
            numeric=("rows", "new", "img/s"),
        )
    )
