"""`rsir download`: fetch a dataset or a model's weights, resumable and verified."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rsir_cli.cli import output
from rsir_cli.cli.options import DataDirOption, JsonOption
from rsir_cli.cli.registry import command
from rsir_cli.errors import UsageError


@command("download", "Download a dataset or model weights (resumable, verified, safe extraction).")
def download(
    name: Annotated[
        str,
        typer.Argument(
            help="bigearthnet, forestnet, or a model: prithvi, prithvi-rgb, vit, vit-tv (or a model .yaml).",
            show_default=False,
        ),
    ],
    data_dir: DataDirOption = None,
    mirror: Annotated[
        Optional[str],
        typer.Option(
            "--mirror",
            help="Fetch the same files from another host: a URL such as http://host:port/prefix replaces the "
            "scheme and host of every file URL, keeping its path (for Hugging Face weights: the hub endpoint). "
            "A user:password@ in it is sent as basic auth to that host and never shown.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be fetched, from where, how big; fetch nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Fetch and extract again even if complete (and accept a changed first-use checksum)."
        ),
    ] = False,
    delete_archive: Annotated[
        bool, typer.Option("--delete-archive", help="Delete a dataset's archive once it is verified and extracted.")
    ] = False,
    retries: Annotated[
        int, typer.Option("--retries", min=1, help="Tries per request on network errors and 5xx answers.")
    ] = 5,
    retry_wait: Annotated[
        float, typer.Option("--retry-wait", min=0.0, help="Seconds before the first retry; doubles each time.")
    ] = 2.0,
    json_output: JsonOption = False,
) -> None:
    """Download a dataset or a model's weights, verify them and put them where `rsir embed` looks.

    Datasets go to `<RSIR_DATA or ./rsir-data>/<name>` (or --data-dir): the archive is kept in .downloads/ and extracted beside it, and a .rsir-complete.json marker is written last.

    Weights go to the Hugging Face cache (HF_HUB_OFFLINE=1 is honoured) or the rsir cache, with their sha256 recorded for `rsir embed`.

    An interrupted download resumes where it stopped when run again; a complete one is not fetched again.

    Examples:

        rsir download bigearthnet --dry-run

        rsir download bigearthnet --data-dir /data/bigearthnet

        rsir download forestnet --mirror http://mirror.example.org

        rsir download prithvi && rsir download vit-tv
    """
    from rsir_cli import download as downloads

    try:
        mirror = downloads.check_mirror(mirror)
    except UsageError as error:
        raise typer.BadParameter(str(error), param_hint="--mirror") from None
    retry = downloads.RetryPolicy(attempts=retries, backoff=retry_wait, max_wait=max(retry_wait, 60.0))
    with output.progress_bars() as progress:
        result = downloads.download(
            name,
            data_dir=data_dir if downloads.is_dataset(name) else None,
            mirror=mirror,
            force=force,
            dry_run=dry_run,
            delete_archive=delete_archive,
            progress=progress,
            retry=retry,
        )
    if json_output:
        output.print_json(result.to_dict())
        return
    size = downloads.format_bytes
    if result.status == "dry run":
        rows = [
            [f.name, f.url, size(f.size), _checksum_cell(f.md5, f.sha256, f.checksum), str(f.destination), f.status]
            for f in result.files
        ]
        columns = ["file", "url", "size", "checksum", "destination", "status"]
        title = f"{result.name}: would download"
    else:
        rows = [
            [f.name, f.status, size(f.size), (f.sha256 or "")[:16], str(f.destination), f.checksum]
            for f in result.files
        ]
        columns = ["file", "status", "size", "sha256", "destination", "verified by"]
        title = f"{result.name}: {result.status} in {result.destination}"
    kinds = {"file": "name", "url": "url", "destination": "path", "sha256": "id"}
    table = output.make_table(title, columns, rows, numeric=("size",), kinds=kinds)
    if result.status == "dry run" and result.disk_needed is not None:
        table.caption = f"disk needed: {size(result.disk_needed)}; free: {size(result.disk_free)}"
    output.print_table(table)
    for note in result.notes:
        output.note(note)


def _checksum_cell(md5: str | None, sha256: str | None, how: str) -> str:
    value = f"md5 {md5}" if md5 else f"sha256 {sha256}" if sha256 else ""
    return f"{value}\n{how}" if value else how
