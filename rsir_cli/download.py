"""`rsir download`: datasets and model weights, resumable, verified and extracted safely.

Datasets land where the readers look (``rsir_cli.config.dataset_dir(name)`` or ``--data-dir``)::

    <dir>/.downloads/<archive>            the verified archive (kept, unless delete_archive)
    <dir>/.downloads/<archive>.part       a transfer in progress; resumed with HTTP Range
    <dir>/.downloads/verified.json        size, mtime and checksums of verified files (no re-hashing)
    <dir>/BigEarthNet-v1.0/ ...           what the archive holds, renamed into place when complete
    <dir>/splits/{train,val,test}.csv     plain files are verified as ``.part`` and renamed
    <dir>/.rsir-complete.json             written last: sources, sizes, checksums

Only the marker makes a dataset complete: a killed transfer leaves a ``.part`` file, a killed
extraction a temporary sibling folder, and neither looks complete; the next run resumes the one
and discards the other. Files without a published checksum are trusted on first use: the sha256 of
the first download that verified (size, archive CRCs, extraction) is recorded in
``<cache>/known-checksums.json`` and every later download must match it.

Weights: Hugging Face files go through ``huggingface_hub`` (its cache, resume, offline mode); plain
URLs (torchvision's ViT-B/16) go to ``rsir_cli.config.weights_dir()``. Either way the file's sha256
is recorded with ``rsir_cli.models.weights.record_weights``, which is where `rsir embed` finds it.

HTTP uses the standard library (``urllib.request``): one streaming GET per try, ``Range: bytes=N-``
to resume, exponential backoff on 408/425/429/5xx and network errors, no retry on other 4xx.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from rsir_cli import __version__, config
from rsir_cli.errors import DownloadError, UsageError, WeightsError
from rsir_cli.progress import NULL_PROGRESS, Progress, ProgressTask

log = logging.getLogger(__name__)

GB = 1_000_000_000
MB = 1_000_000
MARKER = ".rsir-complete.json"
DOWNLOADS = ".downloads"
CHUNK = 1 << 20
# Answers worth another try; any other 4xx is final (a wrong URL does not heal by waiting).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset source.

    Attributes:
        name: the file's name, shown to the user and the key of its trust-on-first-use checksum.
        url: where it is published (``--mirror`` replaces the scheme and host).
        dest: where it goes, relative to the dataset directory (POSIX separators).
        size: the exact size in bytes, checked when set.
        approx_size: a planning size for the disk check and ``--dry-run`` when the exact one is unknown.
        md5: the published md5, checked while streaming.
        sha256: the published sha256, checked while streaming.
        produces: for an archive, the top-level entries its extraction must create; empty for a plain file.
        extracted_size: for an archive, its size on disk once extracted (an estimate).
    """

    name: str
    url: str
    dest: str
    size: int | None = None
    approx_size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    produces: tuple[str, ...] = ()
    extracted_size: int | None = None

    @property
    def is_archive(self) -> bool:
        return bool(self.produces)

    @property
    def planned_size(self) -> int | None:
        return self.size if self.size is not None else self.approx_size


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from: its files, in download order."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]


# The official BigEarthNet-19 splits, as torchgeo pins them (torchgeo/datasets/bigearthnet.py,
# BigEarthNet.splits_metadata): the rsim/BigEarthNet-MM_19-classes_models repository on
# git.tu-berlin.de at commit 9a5be07346ab0884b2d9517475c27ef9db9b5104, with torchgeo's md5s.
_BEN_SPLITS_COMMIT = "9a5be07346ab0884b2d9517475c27ef9db9b5104"
_BEN_SPLITS_MD5 = {
    "train": "623e501b38ab7b12fe44f0083c00986d",
    "val": "22efe8ed9cbd71fa10742ff7df2b7978",
    "test": "697fb90677e30571b9ac7699b7e5b432",
}
# Split sizes are not published; rows x ~82 bytes (269,695 / 123,723 / 125,866 rows).
_BEN_SPLITS_APPROX = {"train": 22 * MB, "val": 11 * MB, "test": 11 * MB}

DATASETS: dict[str, DatasetSource] = {
    "bigearthnet": DatasetSource(
        name="bigearthnet",
        description="BigEarthNet-S2 v1.0 (Zenodo record 12687186) and the official train/val/test splits",
        files=(
            *(
                RemoteFile(
                    name=f"{split}.csv",
                    url=(
                        "https://git.tu-berlin.de/rsim/BigEarthNet-MM_19-classes_models/-/raw/"
                        f"{_BEN_SPLITS_COMMIT}/splits/{split}.csv?inline=false"
                    ),
                    dest=f"splits/{split}.csv",
                    approx_size=_BEN_SPLITS_APPROX[split],
                    md5=_BEN_SPLITS_MD5[split],
                )
                for split in ("train", "val", "test")
            ),
            RemoteFile(
                name="BigEarthNet-S2-v1.0.tar.gz",
                url="https://zenodo.org/records/12687186/files/BigEarthNet-S2-v1.0.tar.gz?download=1",
                dest=f"{DOWNLOADS}/BigEarthNet-S2-v1.0.tar.gz",
                # Zenodo lists "66.0 GB"; the exact byte count is not published.
                approx_size=66 * GB,
                md5="5a64e9ce38deb036a435a7b59494924c",
                produces=("BigEarthNet-v1.0",),
                # 590,326 patches x 165.5 kB of files (4 x 29,192 + 6 x 7,560 + 2 x 1,160 bytes of
                # uncompressed GeoTIFF + ~1 kB JSON, measured on the real sample patches) = 97.7 GB of
                # data; 196.6 kB per patch on a 4 KiB-block file system = 116 GB on disk.
                extracted_size=117 * GB,
            ),
        ),
    ),
    "forestnet": DatasetSource(
        name="forestnet",
        description="ForestNet (Stanford ML Group); no checksum is published: trusted on first use",
        files=(
            RemoteFile(
                name="ForestNetDataset.zip",
                url="http://download.cs.stanford.edu/deep/ForestNetDataset.zip",
                dest=f"{DOWNLOADS}/ForestNetDataset.zip",
                approx_size=3 * GB,  # "about 3 GB"; the exact size is not published
                produces=("ForestNetDataset",),
                extracted_size=4 * GB,  # an estimate (PNG and .npy composites compress little)
            ),
        ),
    ),
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to try a request.

    Attributes:
        attempts: tries per request before giving up (a try that received data resets the count).
        backoff: seconds before the second try; doubles with each further try.
        max_wait: the longest wait between tries.
        timeout: seconds without any data before a connection counts as lost.
    """

    attempts: int = 5
    backoff: float = 2.0
    max_wait: float = 60.0
    timeout: float = 60.0


DEFAULT_RETRY = RetryPolicy()


@dataclass
class FileReport:
    """What happened to one file."""

    name: str
    url: str
    destination: Path
    size: int | None
    status: str  # downloaded, resumed, present, would download, partial
    md5: str | None = None
    sha256: str | None = None
    checksum: str = ""  # how the file was verified
    downloaded_bytes: int = 0
    resumed_from: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "destination": str(self.destination),
            "size": self.size,
            "status": self.status,
            "md5": self.md5,
            "sha256": self.sha256,
            "checksum": self.checksum,
            "downloaded_bytes": self.downloaded_bytes,
            "resumed_from": self.resumed_from,
        }


@dataclass
class DownloadResult:
    """What `rsir download NAME` did (or would do, for a dry run)."""

    name: str
    kind: str  # dataset or weights
    status: str  # complete, already complete, dry run
    destination: Path
    files: list[FileReport]
    disk_needed: int | None = None
    disk_free: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "destination": str(self.destination),
            "files": [f.to_dict() for f in self.files],
            "disk_needed": self.disk_needed,
            "disk_free": self.disk_free,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------------------------
# Small helpers


def format_bytes(n: float | None) -> str:
    """``1234567`` -> ``1.2 MB`` (decimal units, like the progress bars)."""
    if n is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def check_mirror(mirror: str | None) -> str | None:
    """Validate ``--mirror``: an ``http(s)://host[:port][/prefix]`` URL, returned without a trailing slash.

    Raises:
        UsageError: not an http(s) URL with a host.
    """
    if mirror is None:
        return None
    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"--mirror must be an http:// or https:// URL with a host (and maybe a path), not {mirror!r}")
    return mirror.rstrip("/")


def apply_mirror(url: str, mirror: str | None) -> str:
    """Point ``url`` at ``mirror``: its scheme and host (and path prefix) replace the original's.

    ``https://zenodo.org/records/1/files/a.tar.gz?download=1`` with mirror
    ``http://127.0.0.1:8000/data`` becomes ``http://127.0.0.1:8000/data/records/1/files/a.tar.gz?download=1``.
    """
    mirror = check_mirror(mirror)
    if not mirror:
        return url
    target, source = urlsplit(mirror), urlsplit(url)
    return urlunsplit((target.scheme, target.netloc, target.path.rstrip("/") + source.path, source.query, ""))


def dataset_names() -> list[str]:
    return list(DATASETS)


def dataset_source(name: str) -> DatasetSource:
    """The source of dataset ``name``.

    Raises:
        UsageError: unknown dataset.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[key]


@contextlib.contextmanager
def _exclusive(lock_path: Path, what: Path) -> Iterator[None]:
    """Hold an advisory lock so two `rsir download` runs never write the same files at once.

    ``flock`` locks die with their process, so a killed run leaves no stale lock behind.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one run at a time is then the user's care
            yield
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DownloadError(
                f"another `rsir download` is writing {what}; wait for it to finish, then run this again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------
# Resumable, verified HTTP


class _Transient(Exception):
    """A failure worth another try (network error, 5xx, a cut transfer)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _WrongSize(Exception):
    """The server's file has another size than expected: not the file we want (final)."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.total = total


class _PartialFile:
    """A ``.part`` file and the md5 / sha256 of the bytes it holds, kept up to date while appending."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset_hashes()

    def _reset_hashes(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def catch_up(self) -> None:
        """Hash what is on disk beyond what was hashed (a resumed file is hashed before appending)."""
        on_disk = self.path.stat().st_size if self.path.exists() else 0
        if on_disk < self.size:  # someone truncated it: hash from the start
            self._reset_hashes()
        if on_disk > self.size:
            with open(self.path, "rb") as handle:
                handle.seek(self.size)
                while block := handle.read(CHUNK):
                    self.update(block)

    def truncate(self) -> None:
        with open(self.path, "wb"):
            pass
        self._reset_hashes()

    def update(self, block: bytes) -> None:
        self.md5.update(block)
        self.sha256.update(block)
        self.size += len(block)


@dataclass
class FetchResult:
    """A verified file."""

    path: Path
    size: int
    md5: str
    sha256: str
    resumed_from: int
    downloaded_bytes: int
    requests: int


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    match = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", header or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"rsir/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


class _TransferBar:
    """A progress bar opened once the total is known (from the size table or the first answer).

    Without a total a bar shows no ETA; the real sizes of the big archives are only estimates,
    so the bar waits for the server's Content-Length.
    """

    def __init__(self, progress: Progress, description: str, total: int | None, completed: int) -> None:
        self._progress = progress
        self._description = description
        self._completed = completed
        self._task: ProgressTask | None = None
        if total is not None:
            self.start(total)

    def start(self, total: int | None) -> None:
        if self._task is None:
            self._task = self._progress.task(self._description, total=total, unit="B", completed=self._completed)

    def advance(self, amount: float) -> None:
        self._completed += int(amount)
        if self._task is not None:
            self._task.advance(amount)

    def finish(self, total: int) -> None:
        """Fill the bar: container overhead (zip directories, tar padding) is not counted per member."""
        if total > self._completed:
            self.advance(total - self._completed)

    def close(self) -> None:
        if self._task is not None:
            self._task.close()


def _transfer(url: str, part: _PartialFile, expected_size: int | None, task: _TransferBar, timeout: float) -> bool:
    """One GET from where ``part`` ends; True when the file is complete.

    Raises:
        _Transient: worth another try (the caller backs off).
        _WrongSize: the server's file has another size than expected (final).
        DownloadError: final (4xx, a write error).
    """
    offset = part.size
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        with contextlib.closing(error):
            if error.code == 416 and offset:
                # Range not satisfiable: we already hold every byte, or the server's file changed.
                _, total = _content_range(error.headers.get("Content-Range"))
                if total == offset:
                    return True
                log.warning("%s: the server refused to resume at byte %d; starting over", url, offset)
                task.advance(-offset)
                part.truncate()
                return False
            if error.code in RETRY_STATUSES:
                raise _Transient(f"HTTP {error.code} {error.reason}", _retry_after(error.headers)) from None
            raise DownloadError(
                f"{url} answered HTTP {error.code} {error.reason}; check the URL (or --mirror) and try again"
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise _Transient(f"cannot reach {urlsplit(url).netloc}: {reason}") from None

    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        total: int | None = None
        if status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:  # a server that resumes elsewhere cannot be trusted with this file
                task.advance(-offset)
                part.truncate()
                raise _Transient(f"the server resumed at byte {start}, not {offset}")
        else:
            if offset:
                log.warning("%s ignores HTTP Range requests; downloading from the start", urlsplit(url).netloc)
                task.advance(-offset)
                part.truncate()
                offset = 0
            total = int(length) if length and length.isdigit() else None
        if total is None and length and length.isdigit():
            total = offset + int(length)
        if expected_size is not None and total is not None and total != expected_size:
            raise _WrongSize(total)
        task.start(total)
        with open(part.path, "ab") as handle:
            while True:
                try:
                    block = response.read1(CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    raise _Transient(f"connection lost after {part.size:,} bytes: {error}") from None
                if not block:
                    break
                try:
                    handle.write(block)
                except OSError as error:  # a full disk is not worth another try
                    raise DownloadError(f"cannot write {part.path}: {error.strerror or error}") from None
                part.update(block)
                task.advance(len(block))
    if total is not None and part.size < total:
        raise _Transient(f"connection closed after {part.size:,} of {total:,} bytes")
    return True


def fetch(
    url: str,
    dest: Path,
    *,
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    mismatch_hint: str = "",
    progress: Progress = NULL_PROGRESS,
    retry: RetryPolicy = DEFAULT_RETRY,
    description: str | None = None,
) -> FetchResult:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming, retrying and verifying as it streams.

    ``dest`` appears only once the whole file verified (size, md5, sha256 or sha256 prefix, as
    given); a file that fails verification is deleted. An interrupted transfer leaves ``dest.part``,
    which the next call resumes with ``Range: bytes=N-`` after hashing what it holds.

    Raises:
        DownloadError: a final HTTP error, retries used up (one line, with the last reason), or a
            failed verification.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _PartialFile(dest.with_name(dest.name + ".part"))
    if part.path.exists():
        log.info("%s: checking the %s already downloaded", dest.name, format_bytes(part.path.stat().st_size))
    part.catch_up()
    if size is not None and part.size > size:
        part.truncate()
    resumed_from = part.size
    task = _TransferBar(progress, description or dest.name, size, part.size)
    failures = requests = 0
    try:
        while size is None or part.size < size:
            part.catch_up()
            before = part.size
            requests += 1
            try:
                if _transfer(url, part, size, task, retry.timeout):
                    break
                continue
            except _WrongSize as error:
                raise DownloadError(
                    f"{url} serves {error.total:,} bytes, expected {size:,}: not the expected file; "
                    + (mismatch_hint or "check the URL (or --mirror)")
                ) from None
            except _Transient as error:
                failures = 1 if part.size > before else failures + 1  # progress earns a fresh set of tries
                if failures >= retry.attempts:
                    kept = f"; {format_bytes(part.size)} kept, run the same command to resume" if part.size else ""
                    raise DownloadError(
                        f"downloading {dest.name} from {url} failed after {failures} tries: {error}{kept}"
                    ) from None
                wait = min(retry.max_wait, retry.backoff * 2 ** (failures - 1))
                if error.retry_after is not None:
                    wait = min(retry.max_wait, max(wait, error.retry_after))
                log.warning(
                    "%s: %s; trying again in %.1f s (try %d of %d)",
                    dest.name,
                    error,
                    wait,
                    failures + 1,
                    retry.attempts,
                )
                time.sleep(wait)
    finally:
        task.close()
    got_md5, got_sha256 = part.md5.hexdigest(), part.sha256.hexdigest()
    problems = []
    if size is not None and part.size != size:
        problems.append(f"size is {part.size:,} bytes, expected {size:,}")
    if md5 and got_md5 != md5.lower():
        problems.append(f"md5 is {got_md5}, expected {md5.lower()}")
    if sha256 and got_sha256 != sha256.lower():
        problems.append(f"sha256 is {got_sha256}, expected {sha256.lower()}")
    if sha256_prefix and not got_sha256.startswith(sha256_prefix.lower()):
        problems.append(f"sha256 is {got_sha256[:16]}..., expected {sha256_prefix.lower()}...")
    if problems:
        part.path.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest.name} from {url} failed verification ({'; '.join(problems)}); the bad file was deleted"
            + (f"; {mismatch_hint}" if mismatch_hint else "; run again to download it afresh, or check --mirror")
        )
    os.replace(part.path, dest)
    return FetchResult(
        path=dest,
        size=part.size,
        md5=got_md5,
        sha256=got_sha256,
        resumed_from=resumed_from,
        downloaded_bytes=part.size - resumed_from,
        requests=requests,
    )


def hash_file(path: Path, progress: Progress = NULL_PROGRESS) -> tuple[str, str]:
    """(md5, sha256) of a file, with a progress bar for big ones."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    task = progress.task(f"verify {path.name}", total=path.stat().st_size, unit="B")
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            md5.update(block)
            sha256.update(block)
            task.advance(len(block))
    task.close()
    return md5.hexdigest(), sha256.hexdigest()


# ----------------------------------------------------------------------------------------------
# Safe extraction


class _UnsafeMember(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name!r} {reason}")


def _check_member_name(name: str) -> None:
    """Refuse absolute names and any ``..`` component, on POSIX and Windows spellings alike."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise _UnsafeMember(name, "is an absolute path")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise _UnsafeMember(name, "climbs out with '..'")


def _strict_tar_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    # The `data` filter would quietly strip a leading '/'; we refuse the archive instead, then
    # let the filter refuse links out of the target, device files and odd permissions.
    _check_member_name(member.name)
    return tarfile.data_filter(member, dest)


class _CountingReader:
    """A read-only file wrapper that advances a progress bar by the bytes read."""

    def __init__(self, handle: BinaryIO, task: _TransferBar) -> None:
        self._handle = handle
        self._task = task

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._task.advance(len(data))
        return data


def _extract_tar(archive: Path, into: Path, task: _TransferBar) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise DownloadError(
            "safe extraction needs Python 3.10.12, 3.11.4, 3.12 or newer (the tarfile `data` filter); upgrade Python"
        )
    with open(archive, "rb") as raw:
        # Stream mode ("r|*"): one pass over a 66 GB archive, no seeking.
        with tarfile.open(fileobj=_CountingReader(raw, task), mode="r|*") as tar:  # type: ignore[call-overload]
            tar.extractall(into, filter=_strict_tar_filter)


def _zip_link_target(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):  # 3: made on Unix, mode bits in external_attr
        return archive.read(info).decode("utf-8", "replace")
    return None


def _check_zip(archive: zipfile.ZipFile) -> int:
    """Refuse unsafe members before writing anything; returns the total uncompressed size."""
    total = 0
    for info in archive.infolist():
        _check_member_name(info.filename)
        if info.flag_bits & 0x1:
            raise _UnsafeMember(info.filename, "is encrypted")
        link = _zip_link_target(archive, info)
        if link is not None:
            if link.startswith(("/", "\\")) or PureWindowsPath(link).drive:
                raise _UnsafeMember(info.filename, f"is a symlink to the absolute path {link!r}")
            resolved = os.path.normpath(os.path.join(os.path.dirname(info.filename), link))
            if resolved == ".." or resolved.startswith(("../", "..\\")):
                raise _UnsafeMember(info.filename, f"is a symlink pointing outside the target ({link!r})")
        total += info.file_size
    return total


def _extract_zip(archive_path: Path, into: Path, task: _TransferBar) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        needed = _check_zip(archive)
        free = shutil.disk_usage(into).free
        if needed > free:
            raise DownloadError(
                f"{archive_path.name} unpacks to {format_bytes(needed)} but only {format_bytes(free)} is free in {into}"
            )
        for info in archive.infolist():
            # zipfile checks each member's CRC as it writes it; a damaged archive raises BadZipFile.
            archive.extract(info, into)
            task.advance(info.compress_size)


def _move_into_place(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, replacing an older ``target`` (a rename cannot overwrite a folder)."""
    if target.exists() or target.is_symlink():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    os.replace(source, target)


def extract_archive(
    archive: Path, target: Path, produces: Sequence[str], progress: Progress = NULL_PROGRESS
) -> list[str]:
    """Extract ``archive`` into ``target`` safely and atomically; returns the top-level entries created.

    Members with absolute paths, ``..`` components, links that point outside the target, device
    files or encryption make the whole archive refused. Everything is extracted into a temporary
    sibling folder first and renamed into place only when the archive extracted completely and holds
    the entries ``produces`` names, so a failed or killed extraction never leaves a half tree.

    Raises:
        DownloadError: unsafe, damaged or unexpected archive (nothing is left in ``target``).
    """
    target.mkdir(parents=True, exist_ok=True)
    scratch = target / f".extract-{archive.name}.tmp"
    if scratch.exists():  # left by a killed run
        shutil.rmtree(scratch)
    scratch.mkdir()
    size = archive.stat().st_size
    task = _TransferBar(progress, f"extract {archive.name}", size, 0)
    try:
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, scratch, task)
            else:
                _extract_tar(archive, scratch, task)
        except (_UnsafeMember, tarfile.FilterError) as error:
            raise DownloadError(
                f"refusing {archive.name}: member {error}; nothing was extracted. The archive is not the "
                "published one: delete it and check the source (or --mirror)"
            ) from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise DownloadError(
                f"{archive.name} is damaged ({type(error).__name__}: {error}); nothing was extracted. Delete "
                f"{archive} and run again"
            ) from None
        entries = sorted(entry.name for entry in scratch.iterdir())
        missing = [name for name in produces if name not in entries]
        if missing:
            raise DownloadError(
                f"{archive.name} does not hold {', '.join(m + '/' for m in missing)} (it holds "
                f"{', '.join(entries[:5]) or 'nothing'}); nothing was extracted. Check the source (or --mirror)"
            )
        for name in entries:
            _move_into_place(scratch / name, target / name)
        task.finish(size)
        return entries
    finally:
        task.close()
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Datasets


def _known_checksums_path() -> Path:
    return config.cache_dir() / "known-checksums.json"


def _state_path(target: Path) -> Path:
    return target / DOWNLOADS / "verified.json"


def _disk_free(path: Path) -> tuple[int, Path]:
    """Free bytes on the file system that will hold ``path`` (its nearest existing ancestor)."""
    probe = path.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free, probe


def _is_complete(target: Path, source: DatasetSource) -> dict[str, Any] | None:
    """The marker's content when the dataset is complete on disk, else None."""
    marker = _read_json(target / MARKER)
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
        have_final = dest.is_file() and not force
        if not have_final:
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


def _known_key(source: DatasetSource, remote: RemoteFile) -> str:
    return f"{source.name}/{remote.name}"


def _verified_on_disk(
    dest: Path, remote: RemoteFile, state: dict[str, Any], known: dict[str, Any] | None, progress: Progress
) -> dict[str, Any] | None:
    """The checksums of ``dest`` if it is there and verified (by an earlier run's record, or by hashing now)."""
    if not dest.is_file():
        return None
    info = dest.stat()
    entry = state.get(remote.dest)
    if entry and entry.get("size") == info.st_size and entry.get("mtime_ns") == info.st_mtime_ns:
        return entry
    md5, sha256 = hash_file(dest, progress)
    expected_sha = remote.sha256 or (known or {}).get("sha256")
    ok = (
        (remote.size is None or info.st_size == remote.size)
        and (not remote.md5 or md5 == remote.md5.lower())
        and (not expected_sha or sha256 == expected_sha.lower())
    )
    if not ok:
        log.warning("%s does not match its checksum; downloading it again", dest)
        dest.unlink()
        return None
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "md5": md5, "sha256": sha256}


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
        reports.append(
            FileReport(
                name=remote.name,
                url=remote.url,
                destination=dest,
                size=remote.planned_size,
                status=status,
                md5=remote.md5,
                sha256=remote.sha256 or (known.get(_known_key(source, remote)) or {}).get("sha256"),
                checksum=_checksum_label(remote, known.get(_known_key(source, remote))),
            )
        )
    download, extract, margin = _plan_disk(target, files, force)
    free, _ = _disk_free(target)
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

    Raises:
        UsageError: unknown dataset or bad mirror.
        DownloadError: not enough disk, network failure after retries, failed verification, unsafe archive.
    """
    started = time.perf_counter()
    source = dataset_source(name)
    target = Path(data_dir) if data_dir is not None else config.dataset_dir(source.name)
    files = [dataclasses.replace(remote, url=apply_mirror(remote.url, mirror)) for remote in source.files]
    known = {} if force else _read_json(_known_checksums_path())

    def done(marker: dict[str, Any]) -> DownloadResult:
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

    if not force and (marker := _is_complete(target, source)):
        return done(marker)
    if dry_run:
        return _dataset_plan(source, target, files, force, known)

    download, extract, margin = _plan_disk(target, files, force)
    free, where = _disk_free(target)
    if download + extract + margin > free:
        raise DownloadError(
            f"not enough free disk space for {source.name} in {where}: it needs {format_bytes(download + extract + margin)} "
            f"({format_bytes(download)} to download + {format_bytes(extract)} extracted + {format_bytes(margin)} margin) "
            f"and {format_bytes(free)} is free; free some space or pass --data-dir on a larger disk"
        )

    target.mkdir(parents=True, exist_ok=True)
    with _exclusive(target / DOWNLOADS / ".lock", target):
        if not force and (marker := _is_complete(target, source)):  # a concurrent run finished it
            return done(marker)
        (target / MARKER).unlink(missing_ok=True)
        state = {} if force else _read_json(_state_path(target))
        reports: list[FileReport] = []
        for remote in files:
            reports.append(_fetch_dataset_file(source, remote, target, state, known, force, progress, retry))
            _write_json(_state_path(target), state)
        for remote in files:
            if remote.is_archive:
                extract_archive(target / remote.dest, target, remote.produces, progress)
        # Trust on first use: the archive verified (size, CRCs, a clean extraction); remember it.
        known_all = _read_json(_known_checksums_path())
        for remote, report in zip(files, reports, strict=True):
            if not remote.md5 and not remote.sha256 and _known_key(source, remote) not in known:
                known_all[_known_key(source, remote)] = {
                    "sha256": report.sha256,
                    "size": report.size,
                    "url": remote.url,
                    "recorded": _now(),
                }
                report.checksum = "sha256 recorded now (none published)"
        if known_all:
            _write_json(_known_checksums_path(), known_all)
        notes = []
        if delete_archive:
            for remote in files:
                if remote.is_archive:
                    (target / remote.dest).unlink(missing_ok=True)
                    state.pop(remote.dest, None)
                    notes.append(f"deleted {remote.dest} after a verified extraction")
            _write_json(_state_path(target), state)
        _write_json(
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
                        "url": remote.url,
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


def _fetch_dataset_file(
    source: DatasetSource,
    remote: RemoteFile,
    target: Path,
    state: dict[str, Any],
    known: dict[str, Any],
    force: bool,
    progress: Progress,
    retry: RetryPolicy,
) -> FileReport:
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
            progress=progress,
            retry=retry,
            description=remote.name,
        )
        info = dest.stat()
        entry = {"size": result.size, "mtime_ns": info.st_mtime_ns, "md5": result.md5, "sha256": result.sha256}
        report.status = "resumed" if result.resumed_from else "downloaded"
        report.downloaded_bytes = result.downloaded_bytes
        report.resumed_from = result.resumed_from
    state[remote.dest] = entry
    report.size, report.md5, report.sha256 = entry["size"], entry["md5"], entry["sha256"]
    return report


# ----------------------------------------------------------------------------------------------
# Weights


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
        self._task = progress.task(str(kwargs.get("desc") or "download"), total=self.total, unit="B", completed=self.n)

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

    def __exit__(self, *exc: Any) -> None:
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
    import socket

    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return False
    return True


def _hub_url(endpoint: str | None, repo_id: str, filename: str, revision: str | None) -> str:
    return f"{endpoint or 'https://huggingface.co'}/{repo_id}/resolve/{revision or 'main'}/{filename}"


def _how_to_place(config_name: str, url: str, where: str) -> str:
    return (
        f"fetch {url} on a machine with network access and either pass it to `rsir embed --model {config_name} "
        f"--weights PATH`, or {where}"
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

    Hugging Face files go into the Hugging Face cache through ``huggingface_hub`` (which resumes and
    honours ``HF_HUB_OFFLINE=1``; ``mirror`` becomes the hub endpoint); plain URLs go to
    ``config.weights_dir()``. Files already recorded are not fetched again unless ``force``.

    Raises:
        UsageError: unknown model, or a model without a weights source.
        WeightsError: offline or unreachable without a cached copy (says how to place the file by
            hand), or a file whose checksum differs from the expected or recorded one.
        DownloadError: network failure after retries.
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


def _check_recorded(cfg: Any, sha256: str, recorded: dict[str, Any], force: bool, path: Path) -> None:
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
    cfg: Any,
    key: str,
    recorded: dict[str, Any],
    mirror: str | None,
    force: bool,
    dry_run: bool,
    progress: Progress,
) -> DownloadResult:
    from rsir_cli.models.weights import record_weights, sha256_file

    weights = cfg.weights
    repo_id, filename, revision = str(weights.repo_id), str(weights.filename), weights.revision
    endpoint = check_mirror(mirror)
    url = _hub_url(endpoint, repo_id, filename, revision)
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

    import inspect

    from huggingface_hub import hf_hub_download
    from huggingface_hub import utils as errors

    offline = _hub_offline()
    unreachable = not offline and not _resolvable(endpoint or "https://huggingface.co")
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
        reason = "offline mode (HF_HUB_OFFLINE=1) is on" if offline else f"cannot reach {endpoint or 'huggingface.co'}"
        log.debug("hub error: %s", error)
        raise WeightsError(f"{reason} and {filename} of {repo_id} is not in the Hugging Face cache: {manual}") from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.EntryNotFoundError) as error:
        raise WeightsError(
            f"{url} does not exist ({type(error).__name__}); check the model config's weights: block (or --mirror)"
        ) from None
    except errors.HfHubHTTPError as error:
        raise DownloadError(f"downloading {url} failed: {str(error).splitlines()[0]}; run again to resume") from None
    except OSError as error:  # a transfer that ended short, a full disk
        raise DownloadError(f"downloading {url} failed: {str(error).splitlines()[0]}; run again to resume") from None
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
    record_weights(key, path, sha256, url)
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
    cfg: Any,
    key: str,
    recorded: dict[str, Any],
    mirror: str | None,
    force: bool,
    dry_run: bool,
    progress: Progress,
    retry: RetryPolicy,
) -> DownloadResult:
    from rsir_cli.models.weights import record_weights, sha256_file

    weights = cfg.weights
    url = apply_mirror(str(weights.url), mirror)
    filename = str(weights.filename or PurePosixPath(urlsplit(url).path).name)
    dest = config.weights_dir() / filename
    prefix = weights.sha256_prefix
    checksum = f"sha256 starts with {prefix} (published in the file name)" if prefix else "sha256 recorded"
    if dry_run:
        report = FileReport(filename, url, dest, weights.size, "would download", checksum=checksum)
        return DownloadResult(cfg.name, "weights", "dry run", dest, [report])
    with _exclusive(dest.parent / ".lock", dest.parent):
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
                    progress=progress,
                    retry=retry,
                    description=filename,
                )
            except DownloadError as error:
                raise DownloadError(f"{error}; or {manual}") from None
            sha256, size = result.sha256, result.size
            status = "resumed" if result.resumed_from else "downloaded"
        _check_recorded(cfg, sha256, recorded, force, dest)
        record_weights(key, dest, sha256, url)
    report = FileReport(filename, url, dest, size, status, sha256=sha256, checksum=checksum)
    return DownloadResult(cfg.name, "weights", "complete", dest, [report])


# ----------------------------------------------------------------------------------------------
# Entry point


def is_dataset(name: str) -> bool:
    return name.strip().lower() in DATASETS


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

    Raises:
        UsageError: ``name`` is neither a dataset nor a model.
    """
    if is_dataset(name):
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
            f"unknown name {name!r}: give a dataset ({', '.join(DATASETS)}) or a model "
            f"({', '.join(model_names())}, or a path to a model .yaml)"
        ) from None
    return download_weights(name, mirror=mirror, force=force, dry_run=dry_run, progress=progress, retry=retry)


__all__ = [
    "DATASETS",
    "DEFAULT_RETRY",
    "DatasetSource",
    "DownloadResult",
    "FetchResult",
    "FileReport",
    "RemoteFile",
    "RetryPolicy",
    "apply_mirror",
    "check_mirror",
    "download",
    "download_dataset",
    "download_weights",
    "extract_archive",
    "fetch",
    "format_bytes",
    "hash_file",
]
