"""Installing a dataset: plan and disk check, verified files, safe extraction, the completion marker.

The files of a dataset come from its ``SOURCE`` beside its reader (``rsir_cli/datasets/<name>.py``,
found through ``rsir_cli.datasets.get_dataset(name).source``). They land where the reader looks
(``rsir_cli.config.dataset_dir(name)`` or ``--data-dir``)::

    <dir>/.downloads/<archive>            the archive (kept, unless --delete-archive)
    <dir>/.downloads/<archive>.part       a transfer in progress; resumed with HTTP Range
    <dir>/.downloads/verified.json        size, mtime and checksums of verified files (no re-hashing)
    <dir>/BigEarthNet-v1.0/ ...           an archive's own folder(s), renamed into place when complete
    <dir>/splits/{train,val,test}.csv     plain files are verified as ``.part`` and renamed
    <dir>/.rsir-complete.json             written last: sources (redacted), sizes, checksums

Only the marker makes a dataset complete: a killed transfer leaves a ``.part`` file, a killed
extraction a temporary folder, and neither looks complete; the next run resumes the one and
discards the other. Files without a published checksum are trusted on first use: the sha256 of the
first download that verified completely (size, archive CRCs, a clean extraction) is recorded in
``<cache>/known-checksums.json`` and every later download must match it. An archive that fails its
extraction is never recorded (neither in ``verified.json`` nor as trusted); one without a published
checksum is deleted then, so the next run fetches it afresh (one that matched its published
checksum is kept: fetching it again would give the same bytes).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsir_cli import __version__, config
from rsir_cli.datasets.sources import DOWNLOADS, MB, DatasetSource, RemoteFile
from rsir_cli.download.archives import DamagedArchiveError, UnsafeArchiveError, extract_archive
from rsir_cli.download.http import DEFAULT_RETRY, RetryPolicy, fetch
from rsir_cli.download.locks import exclusive
from rsir_cli.download.reports import DownloadResult, FileReport
from rsir_cli.download.urls import apply_mirror, redact
from rsir_cli.errors import DownloadError, UsageError
from rsir_cli.fileio import format_bytes, free_bytes, hash_file, read_json, write_json
from rsir_cli.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from rsir_cli.datasets.base import DatasetDefinition

log = logging.getLogger(__name__)

MARKER = ".rsir-complete.json"


def _definitions() -> list[DatasetDefinition]:
    from rsir_cli.datasets import dataset_names, get_dataset

    return [get_dataset(name) for name in dataset_names()]


def downloadable_datasets() -> list[str]:
    """The registered datasets that have a download source."""
    return [definition.name for definition in _definitions() if definition.source is not None]


def is_dataset(name: str) -> bool:
    """Whether ``name`` is a dataset `rsir download` can fetch."""
    return name.strip().lower() in downloadable_datasets()


def dataset_source(name: str) -> DatasetSource:
    """The source of dataset ``name``, from its module's ``SOURCE``.

    Raises:
        UsageError: unknown dataset, or one that is the user's own files.
    """
    from rsir_cli.datasets import get_dataset

    definition = get_dataset(name)
    if definition.source is None:
        raise UsageError(
            f"dataset {definition.name} is your own files and has nothing to download; "
            f"downloadable datasets: {', '.join(downloadable_datasets())}"
        )
    return definition.source


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _known_checksums_path() -> Path:
    return config.cache_dir() / "known-checksums.json"


def _state_path(target: Path) -> Path:
    return target / DOWNLOADS / "verified.json"


def _known_key(source: DatasetSource, remote: RemoteFile) -> str:
    return f"{source.name}/{remote.name}"


def _is_complete(target: Path, source: DatasetSource) -> dict[str, Any] | None:
    """The marker's content when the dataset is complete on disk, else None."""
    marker = read_json(target / MARKER) or {}
    if marker.get("dataset") != source.name:
        return None
    for remote in source.files:
        paths = [target / name for name in remote.produces] if remote.is_archive else [target / remote.dest]
        if not all(path.exists() for path in paths):
            log.info("%s is marked complete but %s is missing; downloading again", target, remote.name)
            return None
    return marker


def _plan_disk(target: Path, files: Sequence[RemoteFile], force: bool) -> tuple[int, int, int]:
    """(bytes still to download, bytes to extract, margin) for what is not on disk yet."""
    download = extract = 0
    for remote in files:
        dest = target / remote.dest
        if not (dest.is_file() and not force):
            part = dest.with_name(dest.name + ".part")
            have = part.stat().st_size if part.is_file() and not force else 0
            download += max(0, (remote.planned_size or 0) - have)
        if remote.is_archive and (force or not all((target / name).exists() for name in remote.produces)):
            extract += remote.extracted_size or 0
    # Room for file-system overhead, the marker and logs; estimates are estimates.
    margin = int(0.02 * (download + extract)) + 100 * MB
    return download, extract, margin


def _checksum_label(remote: RemoteFile, known: dict[str, Any] | None) -> str:
    if remote.md5:
        return "md5 (published)"
    if remote.sha256:
        return "sha256 (published)"
    if known:
        return f"sha256 (recorded on first download, {known.get('recorded', '?')})"
    return "none published: sha256 recorded after the first verified download"


def _verified_on_disk(
    dest: Path, remote: RemoteFile, state: dict[str, Any], known: dict[str, Any] | None, progress: Progress
) -> dict[str, Any] | None:
    """The checksums of ``dest`` if it is there and verified (by an earlier run's record, or by hashing now).

    A file put there by hand is accepted when it matches what is published (or recorded).
    """
    if not dest.is_file():
        return None
    info = dest.stat()
    entry = state.get(remote.dest)
    if entry and entry.get("size") == info.st_size and entry.get("mtime_ns") == info.st_mtime_ns:
        return entry
    digests = hash_file(dest, ("md5", "sha256"), progress)
    expected_sha = remote.sha256 or (known or {}).get("sha256")
    ok = (
        (remote.size is None or info.st_size == remote.size)
        and (not remote.md5 or digests["md5"] == remote.md5.lower())
        and (not expected_sha or digests["sha256"] == expected_sha.lower())
    )
    if not ok:
        log.warning("%s does not match its checksum; downloading it again", dest)
        dest.unlink()
        return None
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, **digests}


def _dataset_plan(
    source: DatasetSource, target: Path, files: Sequence[RemoteFile], force: bool, known: dict[str, Any]
) -> DownloadResult:
    reports = []
    for remote in files:
        dest = target / remote.dest
        part = dest.with_name(dest.name + ".part")
        if dest.is_file() and not force:
            status = "present"
        elif part.is_file() and not force:
            status = f"partial ({format_bytes(part.stat().st_size)} to resume from)"
        else:
            status = "would download"
        trusted = known.get(_known_key(source, remote))
        reports.append(
            FileReport(
                name=remote.name,
                url=remote.url,
                destination=dest,
                size=remote.planned_size,
                status=status,
                md5=remote.md5,
                sha256=remote.sha256 or (trusted or {}).get("sha256"),
                checksum=_checksum_label(remote, trusted),
            )
        )
    download, extract, margin = _plan_disk(target, files, force)
    free, _ = free_bytes(target)
    notes = [
        f"needs {format_bytes(download + extract + margin)} free: {format_bytes(download)} to download + "
        f"{format_bytes(extract)} extracted + {format_bytes(margin)} margin; {format_bytes(free)} free"
    ]
    if download + extract + margin > free:
        notes.append("not enough free disk space there: free some, or pass --data-dir on a larger disk")
    estimated = [remote.name for remote in files if remote.size is None]
    if estimated:
        notes.append(f"sizes are estimates (not published) for {', '.join(estimated)}")
    return DownloadResult(
        name=source.name,
        kind="dataset",
        status="dry run",
        destination=target,
        files=reports,
        disk_needed=download + extract + margin,
        disk_free=free,
        notes=notes,
    )


def _already_complete(source: DatasetSource, target: Path, marker: dict[str, Any], started: float) -> DownloadResult:
    reports = [
        FileReport(
            name=str(entry.get("name")),
            url=str(entry.get("url")),
            destination=target / str(entry.get("dest")),
            size=entry.get("size"),
            status="present",
            md5=entry.get("md5"),
            sha256=entry.get("sha256"),
            checksum=str(entry.get("checksum", "")),
        )
        for entry in marker.get("files", [])
    ]
    return DownloadResult(
        source.name,
        "dataset",
        "already complete",
        target,
        reports,
        seconds=time.perf_counter() - started,
        notes=[f"complete since {marker.get('completed', '?')}; --force downloads it again"],
    )


def download_dataset(
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
    """Download, verify and extract dataset ``name`` into ``data_dir`` (default: where the readers look).

    A complete dataset (its marker present, its folders there) is not touched again unless ``force``.

    Args:
        name: a dataset with a ``SOURCE`` (``bigearthnet``, ``forestnet``, ...).
        data_dir: the dataset directory (default ``config.dataset_dir(name)``).
        mirror: ``http(s)://[user:password@]host[/prefix]`` replacing every file URL's scheme and host.
        force: fetch and extract again, and accept a changed first-use checksum.
        dry_run: only say what would be fetched, from where, how big.
        delete_archive: delete the archives once extracted.
        progress: where the bars go.
        retry: how often and how patiently to try each request.

    Returns:
        What was done, per file.

    Raises:
        UsageError: unknown dataset or bad mirror.
        DownloadError: not enough disk, unreachable host, network failure after retries, failed
            verification, an unsafe or damaged archive.
    """
    started = time.perf_counter()
    source = dataset_source(name)
    target = Path(data_dir) if data_dir is not None else config.dataset_dir(source.name)
    files = [dataclasses.replace(remote, url=apply_mirror(remote.url, mirror)) for remote in source.files]
    known = {} if force else (read_json(_known_checksums_path()) or {})

    if not force and (marker := _is_complete(target, source)):
        return _already_complete(source, target, marker, started)
    if dry_run:
        return _dataset_plan(source, target, files, force, known)

    download, extract, margin = _plan_disk(target, files, force)
    free, where = free_bytes(target)
    if download + extract + margin > free:
        raise DownloadError(
            f"not enough free disk space for {source.name} in {where}: it needs {format_bytes(download + extract + margin)} "
            f"({format_bytes(download)} to download + {format_bytes(extract)} extracted + {format_bytes(margin)} margin) "
            f"and {format_bytes(free)} is free; free some space or pass --data-dir on a larger disk"
        )

    target.mkdir(parents=True, exist_ok=True)
    with exclusive(target / DOWNLOADS / ".lock", target):
        if not force and (marker := _is_complete(target, source)):  # a concurrent run finished it
            return _already_complete(source, target, marker, started)
        (target / MARKER).unlink(missing_ok=True)
        state = {} if force else (read_json(_state_path(target)) or {})
        reports: list[FileReport] = []
        entries: list[dict[str, Any]] = []
        for original, remote in zip(source.files, files, strict=True):
            report, entry = _fetch_file(source, original, remote, target, state, known, force, progress, retry)
            reports.append(report)
            entries.append(entry)
            if not remote.is_archive:
                state[remote.dest] = entry
                _save(_state_path(target), state)
        for remote, entry in zip(files, entries, strict=True):
            if remote.is_archive:
                # An archive counts as verified only once it extracted completely (CRCs, no truncation).
                state.pop(remote.dest, None)
                _save(_state_path(target), state)
                _extract(remote, target, progress)
                state[remote.dest] = entry
                _save(_state_path(target), state)
        _trust_on_first_use(source, files, reports, known)
        notes = []
        if delete_archive:
            for remote in files:
                if remote.is_archive:
                    (target / remote.dest).unlink(missing_ok=True)
                    state.pop(remote.dest, None)
                    notes.append(f"deleted {remote.dest} after a verified extraction")
            _save(_state_path(target), state)
        _write_marker(source, target, files, reports, delete_archive)
    return DownloadResult(
        source.name,
        "dataset",
        "complete",
        target,
        reports,
        disk_needed=download + extract + margin,
        disk_free=free,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def _extract(remote: RemoteFile, target: Path, progress: Progress) -> None:
    archive = target / remote.dest
    try:
        extract_archive(archive, target, remote.produces, inside=remote.inside, name=remote.name, progress=progress)
    except (UnsafeArchiveError, DamagedArchiveError) as error:
        if remote.has_published_checksum:
            # It matched the published checksum: downloading it again would give the same bytes.
            raise type(error)(f"{error}; {archive} matches its published checksum and was kept") from None
        archive.unlink(missing_ok=True)
        raise type(error)(f"{error}; {archive} was deleted (run again to download it afresh)") from None


def _trust_on_first_use(
    source: DatasetSource, files: Sequence[RemoteFile], reports: Sequence[FileReport], known: dict[str, Any]
) -> None:
    """Record the sha256 of files without a published checksum, now that they verified completely."""
    known_all = read_json(_known_checksums_path()) or {}
    changed = False
    for remote, report in zip(files, reports, strict=True):
        if not remote.has_published_checksum and _known_key(source, remote) not in known:
            known_all[_known_key(source, remote)] = {
                "sha256": report.sha256,
                "size": report.size,
                "url": redact(remote.url),
                "recorded": _now(),
            }
            report.checksum = "sha256 recorded now (none published)"
            changed = True
    if changed:
        _save(_known_checksums_path(), known_all)


def _write_marker(
    source: DatasetSource,
    target: Path,
    files: Sequence[RemoteFile],
    reports: Sequence[FileReport],
    delete_archive: bool,
) -> None:
    if hasattr(os, "sync"):
        os.sync()  # the extracted files are not fsynced one by one: make them durable before the marker
    _save(
        target / MARKER,
        {
            "dataset": source.name,
            "description": source.description,
            "completed": _now(),
            "rsir_version": __version__,
            "archives_kept": not delete_archive,
            "files": [
                {
                    "name": remote.name,
                    "url": report.url,  # redacted
                    "dest": remote.dest,
                    "size": report.size,
                    "md5": report.md5,
                    "sha256": report.sha256,
                    "checksum": report.checksum,
                    "extracted": list(remote.produces),
                }
                for remote, report in zip(files, reports, strict=True)
            ],
        },
    )


def _fetch_file(
    source: DatasetSource,
    original: RemoteFile,
    remote: RemoteFile,
    target: Path,
    state: dict[str, Any],
    known: dict[str, Any],
    force: bool,
    progress: Progress,
    retry: RetryPolicy,
) -> tuple[FileReport, dict[str, Any]]:
    """One file present and verified: from an earlier run, put there by hand, or downloaded now."""
    dest = target / remote.dest
    trusted = known.get(_known_key(source, remote))
    if force:
        dest.unlink(missing_ok=True)
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
        state.pop(remote.dest, None)
    entry = _verified_on_disk(dest, remote, state, trusted, progress)
    report = FileReport(
        name=remote.name,
        url=remote.url,
        destination=dest,
        size=None,
        status="present",
        checksum=_checksum_label(remote, trusted),
    )
    if entry is None:
        hint = ""
        if trusted:
            hint = (
                f"it differs from the file first downloaded on {trusted.get('recorded', '?')}; if the publisher "
                "changed it on purpose, run again with --force to accept the new file"
            )
        result = fetch(
            remote.url,
            dest,
            size=remote.size if remote.size is not None else (trusted or {}).get("size"),
            md5=remote.md5,
            sha256=remote.sha256 or (trusted or {}).get("sha256"),
            mismatch_hint=hint,
            manual=(
                f"fetch {original.url} on a machine with network access and save it as {dest}, then run the "
                "same command again"
            ),
            progress=progress,
            retry=retry,
            description=remote.name,
        )
        info = dest.stat()
        entry = {"size": result.size, "mtime_ns": info.st_mtime_ns, "md5": result.md5, "sha256": result.sha256}
        report.status = "resumed" if result.resumed_from else "downloaded"
        report.downloaded_bytes = result.downloaded_bytes
        report.resumed_from = result.resumed_from
    report.size, report.md5, report.sha256 = entry["size"], entry["md5"], entry["sha256"]
    return report, entry


__all__ = ["MARKER", "dataset_source", "download_dataset", "downloadable_datasets", "is_dataset"]
