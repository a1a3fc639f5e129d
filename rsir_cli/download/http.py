"""One verified file over HTTP: a streaming GET, ``Range`` resume, retries with backoff, md5/sha256.

The standard library only (``urllib.request``): one streaming GET per try, ``Range: bytes=N-`` to
resume a ``.part`` file, exponential backoff on 408/425/429/5xx and dropped connections, no retry
on other 4xx, and none on a host name that does not resolve (this machine has no route to it; the
message says how to fetch the file by hand or from a ``--mirror``). Credentials in the URL are
sent as basic auth and never shown (see :mod:`rsir_cli.download.urls`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rsir_cli import __version__
from rsir_cli.download.urls import host_of, hostname_of, redact, split_credentials
from rsir_cli.errors import DownloadError
from rsir_cli.fileio import format_bytes, fsync_dir
from rsir_cli.progress import NULL_PROGRESS, Progress, ProgressTask

if TYPE_CHECKING:
    from email.message import Message

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Answers worth another try; any other 4xx is final (a wrong URL does not heal by waiting).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


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
class FetchResult:
    """A verified file."""

    path: Path
    size: int
    md5: str
    sha256: str
    resumed_from: int
    downloaded_bytes: int
    requests: int


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


class _Unresolvable(Exception):
    """The host name does not resolve: no answer will come by waiting (final)."""


class UnreachableError(DownloadError):
    """The host's name does not resolve: the message says how to fetch the file some other way."""


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


class TransferBar:
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

    def close(self) -> None:
        if self._task is not None:
            self._task.close()


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    match = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", header or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    plain_url, authorization = split_credentials(url)
    request = urllib.request.Request(
        plain_url, headers={"User-Agent": f"rsir/{__version__}", "Accept-Encoding": "identity"}
    )
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    if authorization:
        # Unredirected: urllib copies only ordinary headers to a redirect's target, so the
        # credentials go to the mirror named and nowhere else.
        request.add_unredirected_header("Authorization", authorization)
    return urllib.request.urlopen(request, timeout=timeout)


def _transfer(url: str, part: _PartialFile, expected_size: int | None, task: TransferBar, timeout: float) -> bool:
    """One GET from where ``part`` ends; True when the file is complete.

    Raises:
        _Transient: worth another try (the caller backs off).
        _WrongSize: the server's file has another size than expected (final).
        _Unresolvable: the host name does not resolve (final).
        DownloadError: final (4xx, a write error).
    """
    shown = redact(url)
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
                log.warning("%s: the server refused to resume at byte %d; starting over", shown, offset)
                task.advance(-offset)
                part.truncate()
                return False
            if error.code in RETRY_STATUSES:
                raise _Transient(f"HTTP {error.code} {error.reason}", _retry_after(error.headers)) from None
            check = "the user name and password in --mirror" if error.code in (401, 403) else "the URL (or --mirror)"
            raise DownloadError(
                f"{shown} answered HTTP {error.code} {error.reason}; check {check} and try again"
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, socket.gaierror):
            raise _Unresolvable(
                f"cannot resolve the host name {hostname_of(url)} ({reason.strerror or reason})"
            ) from None
        raise _Transient(f"cannot reach {host_of(url)}: {reason}") from None

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
                log.warning("%s ignores HTTP Range requests; downloading from the start", host_of(url))
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
            handle.flush()
            os.fsync(handle.fileno())
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
    manual: str = "",
    progress: Progress = NULL_PROGRESS,
    retry: RetryPolicy = DEFAULT_RETRY,
    description: str | None = None,
) -> FetchResult:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming, retrying and verifying as it streams.

    ``dest`` appears only once the whole file verified (size, md5, sha256 or sha256 prefix, as
    given); a file that fails verification is deleted. An interrupted transfer leaves ``dest.part``,
    which the next call resumes with ``Range: bytes=N-`` after hashing what it holds.

    Args:
        url: where to fetch from (it may carry ``user:password@``, sent as basic auth, never shown).
        dest: the final path.
        size: the exact size expected, if known.
        md5: the md5 expected, if published.
        sha256: the sha256 expected, if published or recorded.
        sha256_prefix: a prefix the sha256 must start with (torchvision's file names carry one).
        mismatch_hint: what to do when the file does not verify (appended to the message).
        manual: what to do when the host cannot be reached at all; by default, save the file by hand as ``dest``.
        progress: where the transfer bar goes.
        retry: how often and how patiently to try.
        description: the bar's label (default: the file name).

    Returns:
        The verified file's path, size, checksums and how much of it this call transferred.

    Raises:
        DownloadError: a final HTTP error, an unresolvable host (at once, no retries), retries used
            up (one line, with the last reason), or a failed verification.
    """
    shown = redact(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _PartialFile(dest.with_name(dest.name + ".part"))
    if part.path.exists():
        log.info("%s: checking the %s already downloaded", dest.name, format_bytes(part.path.stat().st_size))
    part.catch_up()
    if size is not None and part.size > size:
        part.truncate()
    resumed_from = part.size
    task = TransferBar(progress, description or dest.name, size, part.size)
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
                    f"{shown} serves {error.total:,} bytes, expected {size:,}: not the expected file; "
                    + (mismatch_hint or "check the URL (or --mirror)")
                ) from None
            except _Unresolvable as error:
                how = manual or (
                    f"fetch {shown} on a machine with network access and save it as {dest}, then run the same "
                    "command again"
                )
                raise UnreachableError(
                    f"downloading {dest.name}: {error}; pass --mirror URL (a host serving the same paths), or {how}"
                ) from None
            except _Transient as error:
                failures = 1 if part.size > before else failures + 1  # progress earns a fresh set of tries
                if failures >= retry.attempts:
                    kept = f"; {format_bytes(part.size)} kept, run the same command to resume" if part.size else ""
                    raise DownloadError(
                        f"downloading {dest.name} from {shown} failed after {failures} tries: {error}{kept}"
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
            f"{dest.name} from {shown} failed verification ({'; '.join(problems)}); the bad file was deleted"
            + (f"; {mismatch_hint}" if mismatch_hint else "; run again to download it afresh, or check --mirror")
        )
    os.replace(part.path, dest)
    fsync_dir(dest.parent)
    return FetchResult(
        path=dest,
        size=part.size,
        md5=got_md5,
        sha256=got_sha256,
        resumed_from=resumed_from,
        downloaded_bytes=part.size - resumed_from,
        requests=requests,
    )


__all__ = ["DEFAULT_RETRY", "FetchResult", "RetryPolicy", "TransferBar", "UnreachableError", "fetch"]
