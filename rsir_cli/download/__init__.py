"""`rsir download`: datasets and model weights, resumable, verified and extracted safely.

One module per concern:

- :mod:`~rsir_cli.download.http`: one verified file over HTTP (Range resume, retries, md5/sha256, the bar).
- :mod:`~rsir_cli.download.urls`: ``--mirror``, credentials in a URL, redaction of what is shown.
- :mod:`~rsir_cli.download.archives`: safe extraction (``.zip``, ``.tar``, ``.tar.gz``, ``.tar.bz2``,
  ``.tar.zst``) on any Python patch level; :mod:`~rsir_cli.download.zstd` notices a cut zstd stream.
- :mod:`~rsir_cli.download.datasets`: installing a dataset (plan, disk check, markers, trust on first use).
- :mod:`~rsir_cli.download.weights`: Hugging Face and plain-URL weights.
- :mod:`~rsir_cli.download.reports`, :mod:`~rsir_cli.download.locks`: results and the per-folder lock.

What a dataset downloads is declared beside its reader: ``SOURCE`` in ``rsir_cli/datasets/<name>.py``
(see ``rsir_cli/datasets/sources.py``), found through ``rsir_cli.datasets.get_dataset(name).source``.
"""

from __future__ import annotations

from pathlib import Path

from rsir_cli.datasets.sources import DOWNLOADS, DatasetSource, RemoteFile
from rsir_cli.download.archives import DamagedArchiveError, UnsafeArchiveError, extract_archive
from rsir_cli.download.datasets import MARKER, dataset_source, download_dataset, downloadable_datasets, is_dataset
from rsir_cli.download.http import DEFAULT_RETRY, FetchResult, RetryPolicy, UnreachableError, fetch
from rsir_cli.download.reports import DownloadResult, FileReport
from rsir_cli.download.urls import apply_mirror, check_mirror, redact
from rsir_cli.download.weights import download_weights
from rsir_cli.errors import UsageError
from rsir_cli.fileio import format_bytes
from rsir_cli.progress import NULL_PROGRESS, Progress


def download(
    name: str,
    *,
    data_dir: Path | None = None,
    mirror: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    delete_archive: bool = False,
    progress: Progress = NULL_PROGRESS,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> DownloadResult:
    """Download dataset or model ``name`` (see :func:`download_dataset` and :func:`download_weights`).

    Args:
        name: a dataset with a download source, a registered model, or a model .yaml.
        data_dir: a dataset's directory (ignored for weights).
        mirror: ``http(s)://[user:password@]host[/prefix]`` to fetch the same paths from.
        force: fetch again even if complete (and accept a changed first-use checksum).
        dry_run: only say what would be fetched.
        delete_archive: delete a dataset's archives once extracted.
        progress: where the bars go.
        retry: how often and how patiently to try each request.

    Returns:
        What was done (or would be, for a dry run).

    Raises:
        UsageError: ``name`` is neither a dataset nor a model.
        DownloadError: see :func:`download_dataset`.
        WeightsError: see :func:`download_weights`.
    """
    from rsir_cli.datasets import dataset_names

    if name.strip().lower() in dataset_names():  # one without a source gets a clear refusal there
        return download_dataset(
            name,
            data_dir=data_dir,
            mirror=mirror,
            force=force,
            dry_run=dry_run,
            delete_archive=delete_archive,
            progress=progress,
            retry=retry,
        )
    from rsir_cli.models.registry import get_model_config, model_names

    try:
        get_model_config(name)
    except UsageError:
        if name.endswith((".yaml", ".yml")):
            raise
        raise UsageError(
            f"unknown name {name!r}: give a dataset ({', '.join(downloadable_datasets())}) or a model "
            f"({', '.join(model_names())}, or a path to a model .yaml)"
        ) from None
    return download_weights(name, mirror=mirror, force=force, dry_run=dry_run, progress=progress, retry=retry)


__all__ = [
    "DEFAULT_RETRY",
    "DOWNLOADS",
    "MARKER",
    "DamagedArchiveError",
    "DatasetSource",
    "DownloadResult",
    "FetchResult",
    "FileReport",
    "RemoteFile",
    "RetryPolicy",
    "UnreachableError",
    "UnsafeArchiveError",
    "apply_mirror",
    "check_mirror",
    "dataset_source",
    "download",
    "download_dataset",
    "download_weights",
    "downloadable_datasets",
    "extract_archive",
    "fetch",
    "format_bytes",
    "is_dataset",
    "redact",
]
