"""Durable file writes and file hashing: the one place rsir writes a file whole or not at all.

Every file rsir commits (store segments and manifests, code tables, download markers, checksum
records, figures, GeoJSON) is written to a per-process temporary name in the same folder, flushed
and ``fsync``-ed, renamed over the real name (``os.replace``, atomic on POSIX and Windows), and the
folder is ``fsync``-ed so that the rename itself survives a power cut. A reader therefore sees the
old file or the new one, never half of one, and a kill or a full disk at any single write leaves
the previous version intact. Temporary names carry the process id, so two processes never write
the same temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rsir_cli.errors import DiskFullError
from rsir_cli.progress import NULL_PROGRESS, Progress

CHUNK = 1 << 22
TMP_SUFFIX = ".tmp"


def tmp_path(path: Path) -> Path:
    """The temporary sibling of ``path`` that this process writes before renaming it into place."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def is_tmp_name(name: str) -> bool:
    """Whether a file name is one of :func:`tmp_path`'s (left behind by a killed process)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable (a no-op where folders cannot be opened or synced).

    Raises:
        DiskFullError: the file system has no room to record the change.
        OSError: it failed to record it (e.g. EIO).
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full(error, Path(folder) / ".") from None
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def disk_full(error: OSError, path: Path) -> DiskFullError:
    """The one message rsir gives when a write finds no space (``ENOSPC``, ``EDQUOT``)."""
    return DiskFullError(
        f"the disk holding {path.parent} is full ({error.strerror or error}); nothing committed was lost: "
        "free some space and run the same command again"
    )


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[BinaryIO]:
    """A binary handle whose contents replace ``path`` whole when the ``with`` block ends without error.

    The same durable, atomic write as :func:`write_chunks`, for writers that want a file object
    (pyarrow's ``ParquetWriter``): what was written goes to the temporary name, is ``fsync``-ed and
    renamed over ``path``; an error inside the block removes the temporary file and leaves ``path`` as it was.

    Raises:
        DiskFullError: the disk filled up (the temporary file is removed, ``path`` is untouched).
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        # "w+b" for writers that read back what they wrote (HDF5); a large buffer turns their many
        # small writes into few system calls
        with open(tmp, mode, buffering=CHUNK) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(error):
            raise disk_full(error, path) from None  # type: ignore[arg-type]
        raise
    fsync_dir(path.parent)


def write_chunks(path: Path, chunks: Iterable[bytes | memoryview]) -> int:
    """Write ``chunks`` to ``path`` durably and atomically; returns the number of bytes written.

    Raises:
        DiskFullError: the disk filled up (the temporary file is removed, ``path`` is untouched).
        OSError: any other failure to write (the temporary file is removed).
    """
    written = 0
    with atomic_writer(path) as handle:
        for chunk in chunks:
            handle.write(chunk)
            written += len(chunk)
    return written


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` durably and atomically (see :func:`write_chunks`)."""
    view = memoryview(data)
    write_chunks(path, (view[i : i + CHUNK] for i in range(0, len(view), CHUNK)) if len(view) else [b""])


def write_output(path: Path, data: bytes | str) -> None:
    """Write a result file the user asked for (``--csv``, ``--geojson``, ``--figure``): whole or not at all.

    Raises:
        DiskFullError: the disk is full.
        RsirError: any other reason the file cannot be written, in one line.
    """
    from rsir_cli.errors import RsirError

    try:
        write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except DiskFullError:
        raise
    except OSError as error:
        raise RsirError(f"cannot write {path}: {error.strerror or error}") from None


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write JSON durably and atomically (sorted keys, indented, so it diffs and reads well)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete the temporary files that killed processes left in ``folder`` (never a real file)."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    for entry in Path(folder).iterdir():
        if is_tmp_name(entry.name) and entry.is_file():
            pid = entry.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid)):
                continue  # another live process is writing it
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def hash_file(
    path: Path, algorithms: Iterable[str] = ("sha256",), progress: Progress = NULL_PROGRESS, label: str = ""
) -> dict[str, str]:
    """Hex digests of a file, e.g. ``{"md5": ..., "sha256": ...}``, with a progress bar for big files."""
    digests = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    path = Path(path)
    task = progress.task(label or f"verify {path.name}", total=path.stat().st_size, unit="B")
    try:
        with open(path, "rb") as handle:
            for block in iter_blocks(handle):
                for digest in digests.values():
                    digest.update(block)
                task.advance(len(block))
    finally:
        task.close()
    return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_file(path: Path) -> str:
    return hash_file(path)["sha256"]


def iter_blocks(handle: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while block := handle.read(size):
        yield block


def free_bytes(path: Path) -> tuple[int, Path]:
    """Free space on the file system that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free, probe


def require_free(path: Path, needed: int, what: str) -> None:
    """Refuse to start a write of ``needed`` bytes that cannot fit (with a small margin).

    Raises:
        DiskFullError: naming how much is needed and how much is free.
    """
    free, probe = free_bytes(path)
    margin = max(64 << 10, needed // 100)  # file-system and HDF5 overhead
    if needed + margin > free:
        raise DiskFullError(
            f"{what} needs about {format_bytes(needed)} but only {format_bytes(free)} is free on the disk holding "
            f"{probe}; free some space (or pass another --store) and run the same command again"
        )


def format_bytes(n: float | None) -> str:
    """``1234567`` -> ``1.2 MB`` (decimal units, like the progress bars)."""
    if n is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover
