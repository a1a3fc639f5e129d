"""`rsir embed`: run an encoder over a dataset's splits and write the embeddings to the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rsir_cli.cli import output
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
from rsir_cli.cli.registry import command


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
    date: Annotated[
        Optional[str],
        typer.Option("--date", help="folder/scene: the acquisition date of the imagery (YYYY-MM-DD), for -tl models."),
    ] = None,
    model_bands: Annotated[
        Optional[str],
        typer.Option(
            "--model-bands",
            help="Models that take any bands (dofa-base): the band set, as SENSOR:BAND,... e.g. "
            "planetscope:blue,green,red,nir or landsat8:B2,B3,B4,B5 (default: the model's).",
        ),
    ] = None,
    wavelengths: Annotated[
        Optional[str],
        typer.Option("--wavelengths", help="With --model-bands: central wavelengths in µm, one per band."),
    ] = None,
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

        rsir embed -m prithvi-eo2-300m-tl -d reben

        rsir embed -m dofa-base -d folder --data-dir planet/ --model-bands planetscope:blue,green,red,nir --bands 1,2,3,4
    """
    from rsir_cli.bands import parse_wavelengths
    from rsir_cli.embedding import ArchiveOptions, EmbedOptions, EmbedRequest, embed_dataset
    from rsir_cli.raster import parse_band_indexes
    from rsir_cli.store import Shard

    request = EmbedRequest(
        model=model,
        dataset=dataset,
        store=store,
        splits=split_list(split) if split is not None else None,
        data_dir=data_dir,
        archive=ArchiveOptions(name, labels, parse_band_indexes(bands) if bands else None, units, _date(date)),
        model_bands=model_bands,
        wavelengths=parse_wavelengths(wavelengths) if wavelengths else None,
        weights=weights,
        random_weights=random_weights,
        options=EmbedOptions(
            device=device,
            precision=precision,
            batch_size=batch_size,
            workers=workers,
            limit=limit,
            shard=Shard.parse(shard) if shard else None,
            overwrite=overwrite,
            compile=compile_model,
        ),
    )
    with output.progress_bars() as progress:
        outcome = embed_dataset(request, progress)
    if json_output:
        output.print_json([r.to_dict() for r in outcome.results])
        return
    rows = [
        [
            r.model + (" (random)" if r.random_weights else ""),
            r.dataset,
            r.split,
            f"{r.rows:,}",
            f"{r.rows_new:,}" if r.state != "up to date" else "up to date",
            f"{r.images_per_second:,.1f}" if r.rows_new else "-",
            f"{r.device} {r.precision}",
        ]
        for r in outcome.results
    ]
    output.print_table(
        output.make_table(
            f"Embedded into {store}",
            ["model", "dataset", "split", "rows", "new", "img/s", "device"],
            rows,
            numeric=("rows", "new", "img/s"),
            kinds={"model": "name", "dataset": "name", "split": "name", "device": "name"},
        )
    )
    if all(r.state == "up to date" for r in outcome.results):
        output.note("nothing to do: every split is complete and current (--overwrite embeds again)")


def _date(text: str | None) -> str | None:
    if text is None:
        return None
    from rsir_cli.dates import iso_date

    value = iso_date(text)
    if not value:
        raise typer.BadParameter(f"{text!r} is not a date; give YYYY-MM-DD", param_hint="--date")
    return value
