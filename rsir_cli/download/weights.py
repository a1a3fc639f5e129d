"""Model weights: Hugging Face files through ``huggingface_hub``, plain URLs through :func:`fetch`.

Hugging Face files go into the Hugging Face cache (its resume, its offline mode ``HF_HUB_OFFLINE=1``;
``--mirror`` becomes the hub endpoint); plain URLs (torchvision's ViT-B/16) go to
``rsir_cli.config.weights_dir()``. Either way the file's sha256 is recorded with
``rsir_cli.models.weights.record_weights``, which is where `rsir embed` finds it. A host that does not
resolve fails at once, with the way to fetch the file by hand (``--weights PATH``) or from a mirror.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import socket
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rsir_cli import config
from rsir_cli.download.http import DEFAULT_RETRY, RetryPolicy, UnreachableError, fetch
from rsir_cli.download.locks import exclusive
from rsir_cli.download.reports import DownloadResult, FileReport
from rsir_cli.download.urls import apply_mirror, check_mirror, host_of, redact
from rsir_cli.errors import DownloadError, UsageError, WeightsError
from rsir_cli.fileio import sha256_file
from rsir_cli.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from rsir_cli.models.registry import ModelConfig

log = logging.getLogger(__name__)

HUB = "https://huggingface.co"


class _HubProgressBar:
    """Stands in for tqdm inside ``huggingface_hub`` and forwards its byte counts to an rsir progress bar.

    The hub calls ``tqdm_class(desc=..., total=..., initial=..., ...)`` and then ``update(n)``; its
    Xet path also sets ``total`` and calls ``set_postfix_str`` / ``refresh``. Anything else it may call
    is accepted and ignored, so a newer hub cannot break a download over a progress bar.
    """

    def __init__(self, progress: Progress, **kwargs: Any) -> None:
        self.total = kwargs.get("total")
        self.n = kwargs.get("initial") or 0
        self.format_dict: dict[str, Any] = {}
        description = redact(str(kwargs.get("desc") or "download"))
        self._task = progress.task(description, total=self.total, unit="B", completed=self.n)

    def update(self, n: float | None = 1) -> None:
        if n:
            self.n += n
            self._task.advance(n)

    def close(self) -> None:
        self._task.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None  # set_postfix_str, refresh, set_description, ...

    def __enter__(self) -> _HubProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hub_offline() -> bool:
    from huggingface_hub import constants

    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline() if callable(is_offline) else constants.HF_HUB_OFFLINE)


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _resolvable(url: str) -> bool:
    """Whether the URL's host name resolves (no DNS, no route: nothing to retry)."""
    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return False
    return True


def _hub_url(endpoint: str | None, repo_id: str, filename: str, revision: str | None) -> str:
    return f"{endpoint or HUB}/{repo_id}/resolve/{revision or 'main'}/{filename}"


def _how_to_place(config_name: str, url: str, where: str) -> str:
    return (
        f"fetch {url} on a machine with network access and either pass it to rsir embed --model {config_name} "
        f"with --weights PATH, or {where}"
    )


def download_weights(
    model: str,
    *,
    mirror: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress = NULL_PROGRESS,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> DownloadResult:
    """Fetch the weights of ``model`` (a registered name or a model .yaml) and record their sha256.

    Files already recorded are not fetched again unless ``force``.

    Args:
        model: a registered model name or the path of a model .yaml.
        mirror: for Hugging Face files the hub endpoint, for plain URLs the host that replaces the original.
        force: fetch again, and accept a checksum that differs from the one recorded first.
        dry_run: only say what would be fetched.
        progress: where the bars go.
        retry: how often and how patiently to try (plain URLs; the hub has its own retries).

    Returns:
        What was done.

    Raises:
        UsageError: unknown model, or a model without a weights source.
        WeightsError: offline or unreachable without a cached copy (says how to place the file by
            hand), or a file whose checksum differs from the expected or recorded one.
        DownloadError: network failure after retries, or a host that does not resolve.
    """
    from rsir_cli.models.registry import get_model_config
    from rsir_cli.models.weights import read_manifest, weights_key

    started = time.perf_counter()
    cfg = get_model_config(model)
    weights = cfg.weights
    if not weights.downloadable:
        raise UsageError(f"model {cfg.name} has no weights to download (its config has no weights: source)")
    key = weights_key(cfg)
    recorded = read_manifest().get(key) or {}
    if not force and recorded:
        path = Path(str(recorded.get("path", "")))
        if path.is_file() and path.stat().st_size == recorded.get("size"):
            report = FileReport(
                name=str(weights.filename),
                url=str(recorded.get("source", "")),
                destination=path,
                size=path.stat().st_size,
                status="present",
                sha256=recorded.get("sha256"),
                checksum="sha256 recorded by an earlier download",
            )
            return DownloadResult(
                cfg.name,
                "weights",
                "already complete",
                path,
                [report],
                seconds=time.perf_counter() - started,
                notes=["--force downloads it again"],
            )
    if weights.source == "huggingface":
        result = _download_hub(cfg, key, recorded, mirror, force, dry_run, progress)
    else:
        result = _download_url(cfg, key, recorded, mirror, force, dry_run, progress, retry)
    result.seconds = time.perf_counter() - started
    return result


def _check_recorded(cfg: ModelConfig, sha256: str, recorded: dict[str, Any], force: bool, path: Path) -> None:
    """The expected sha256 prefix, and the sha256 recorded at the first download (trust on first use)."""
    prefix = cfg.weights.sha256_prefix
    if prefix and not sha256.startswith(str(prefix).lower()):
        raise WeightsError(
            f"{path} has sha256 {sha256[:16]}..., expected {prefix}...: not the published file; delete it and run "
            f"`rsir download {cfg.name} --force`"
        )
    if recorded.get("sha256") and recorded["sha256"] != sha256 and not force:
        raise WeightsError(
            f"{path} has sha256 {sha256[:16]}..., but {recorded['sha256'][:16]}... was recorded when it was first "
            f"downloaded; if the publisher changed it on purpose, run `rsir download {cfg.name} --force` to accept it"
        )


def _download_hub(
    cfg: ModelConfig,
    key: str,
    recorded: dict[str, Any],
    mirror: str | None,
    force: bool,
    dry_run: bool,
    progress: Progress,
) -> DownloadResult:
    from rsir_cli.models.weights import record_weights

    weights = cfg.weights
    repo_id, filename, revision = str(weights.repo_id), str(weights.filename), weights.revision
    endpoint = check_mirror(mirror)
    url = _hub_url(endpoint, repo_id, filename, revision)
    shown = redact(url)
    cache = _hub_cache()
    repo_folder = cache / f"models--{repo_id.replace('/', '--')}"
    if dry_run:
        report = FileReport(
            filename,
            url,
            repo_folder,
            weights.size,
            "would download",
            checksum="sha256 checked against the Hub's LFS etag, then recorded",
        )
        return DownloadResult(
            cfg.name, "weights", "dry run", repo_folder, [report], notes=[f"Hugging Face cache: {cache}"]
        )

    from huggingface_hub import hf_hub_download
    from huggingface_hub import utils as errors

    offline = _hub_offline()
    unreachable = not offline and not _resolvable(endpoint or HUB)
    manual = _how_to_place(
        cfg.name,
        _hub_url(None, repo_id, filename, revision),
        f"run `hf download {repo_id} {filename}` there and copy its Hugging Face cache folder "
        f"models--{repo_id.replace('/', '--')} into {cache}, then run this again",
    )
    kwargs: dict[str, Any] = {}
    if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = lambda **options: _HubProgressBar(progress, **options)
    # The hub retries a failed request five times with backoff and logs each try; a host that does
    # not even resolve will not answer the sixth time, so say so at once (the cache still serves).
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        path = Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                endpoint=endpoint,
                local_files_only=offline or unreachable,
                force_download=force and not (offline or unreachable),
                **kwargs,
            )
        )
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as error:
        log.debug("hub error: %s", redact(str(error)))
        if offline:
            reason = "offline mode (HF_HUB_OFFLINE=1) is on"
        else:
            reason = f"cannot resolve {host_of(endpoint or HUB)} (pass --mirror URL for a Hugging Face mirror)"
        raise WeightsError(f"{reason} and {filename} of {repo_id} is not in the Hugging Face cache: {manual}") from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.EntryNotFoundError) as error:
        raise WeightsError(
            f"{shown} does not exist ({type(error).__name__}); check the model config's weights: block (or --mirror)"
        ) from None
    except (errors.HfHubHTTPError, OSError) as error:  # an HTTP error, a transfer that ended short, a full disk
        first_line = redact(str(error).splitlines()[0]) if str(error) else type(error).__name__
        raise DownloadError(f"downloading {shown} failed: {first_line}; run again to resume") from None
    finally:
        hub_log.setLevel(level)

    sha256 = sha256_file(path)
    # The Hub names a large (LFS) file's blob by its sha256: an end-to-end check of the transfer.
    blob = Path(os.path.realpath(path)).name
    if re.fullmatch(r"[0-9a-f]{64}", blob) and blob != sha256:
        raise WeightsError(
            f"{path} has sha256 {sha256[:16]}... but the Hub published {blob[:16]}...: the cached file is damaged; "
            f"run `rsir download {cfg.name} --force`"
        )
    _check_recorded(cfg, sha256, recorded, force, path)
    record_weights(key, path, sha256, shown)
    report = FileReport(
        filename,
        url,
        path,
        path.stat().st_size,
        "present" if offline or unreachable else "downloaded",
        sha256=sha256,
        checksum="sha256 equals the Hub's LFS etag" if blob == sha256 else "sha256 recorded",
    )
    notes = ["offline: taken from the Hugging Face cache"] if offline or unreachable else []
    return DownloadResult(cfg.name, "weights", "complete", path, [report], notes=notes)


def _download_url(
    cfg: ModelConfig,
    key: str,
    recorded: dict[str, Any],
    mirror: str | None,
    force: bool,
    dry_run: bool,
    progress: Progress,
    retry: RetryPolicy,
) -> DownloadResult:
    from rsir_cli.models.weights import record_weights

    weights = cfg.weights
    url = apply_mirror(str(weights.url), mirror)
    filename = str(weights.filename or PurePosixPath(urlsplit(url).path).name)
    dest = config.weights_dir() / filename
    prefix = weights.sha256_prefix
    checksum = f"sha256 starts with {prefix} (published in the file name)" if prefix else "sha256 recorded"
    if dry_run:
        report = FileReport(filename, url, dest, weights.size, "would download", checksum=checksum)
        return DownloadResult(cfg.name, "weights", "dry run", dest, [report])
    with exclusive(dest.parent / ".lock", dest.parent):
        status = "present"
        if force:
            dest.unlink(missing_ok=True)
        if dest.is_file():
            sha256 = sha256_file(dest)
            size = dest.stat().st_size
        else:
            manual = _how_to_place(cfg.name, str(weights.url), f"save it as {dest} and run this again")
            try:
                result = fetch(
                    url,
                    dest,
                    sha256=None if force else recorded.get("sha256"),
                    sha256_prefix=prefix,
                    mismatch_hint=f"run again, or {manual}",
                    manual=manual,
                    progress=progress,
                    retry=retry,
                    description=filename,
                )
            except UnreachableError:
                raise
            except DownloadError as error:
                raise DownloadError(f"{error}; or {manual}") from None
            sha256, size = result.sha256, result.size
            status = "resumed" if result.resumed_from else "downloaded"
        _check_recorded(cfg, sha256, recorded, force, dest)
        record_weights(key, dest, sha256, redact(url))
    report = FileReport(filename, url, dest, size, status, sha256=sha256, checksum=checksum)
    return DownloadResult(cfg.name, "weights", "complete", dest, [report])


__all__ = ["download_weights"]
