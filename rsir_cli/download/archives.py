"""Safe extraction of dataset archives that does not depend on the interpreter's patch level.

rsir never calls ``tarfile``'s or ``zipfile``'s own extraction (nor trusts the ``data`` filter, which
has had bypasses: CVE-2025-4517, fixed only in 3.11.13 / 3.12.11 / 3.13.4). It reads the members
and writes them itself:

- The format comes from the file's name (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
  ``.tar.zst``/``.tzst``) and the first bytes must agree; a ``.zip`` is never read as a tar nor a tar
  as a zip. Compressed tars are streamed (one pass, nothing decompressed to disk first).
- Refused, whole archive: symbolic and hard links (neither dataset has one), device files, FIFOs,
  absolute names, ``..`` components, Windows drives, UNC names and backslashes, encrypted zip
  members, a name that appears twice, and any member outside the dataset's own folders
  (``produces``, under one of the ``inside`` folders). macOS metadata (``__MACOSX/``, ``._name``)
  is skipped.
- Only folders and regular files are created, inside a fresh temporary folder in the target:
  each one below a folder opened with ``O_NOFOLLOW`` (``dir_fd``), files with ``O_CREAT | O_EXCL``,
  every parent's real path checked to lie inside the real target. Nothing outside it is written.
- Damage is an error: a zip CRC, a gzip/bzip2 CRC or length, a zstd frame that is cut or fails its
  checksum, a tar without its end-of-archive marker or with a broken header.
- Only when everything extracted are the ``produces`` folders renamed into the target, each
  replacing only its own older copy; anything else the archive held is never moved.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from rsir_cli.download.zstd import ZstdReader, ZstdStreamError
from rsir_cli.errors import DiskFullError, DownloadError
from rsir_cli.fileio import disk_full, format_bytes, free_bytes, is_disk_full
from rsir_cli.progress import NULL_PROGRESS, Progress, ProgressTask

CHUNK = 1 << 20
SCRATCH_PREFIX = ".extract-"
# name suffix -> format; the longest suffix wins (".tar.gz" before ".gz")
FORMATS = {
    ".tar.gz": "gz",
    ".tgz": "gz",
    ".tar.bz2": "bz2",
    ".tar.zst": "zst",
    ".tzst": "zst",
    ".tar": "tar",
    ".zip": "zip",
}
_MAGIC = {
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "gz": (b"\x1f\x8b",),
    "bz2": (b"BZh",),
    "zst": (b"\x28\xb5\x2f\xfd",),
}
_DIR_FD = (
    os.open in os.supports_dir_fd
    and os.mkdir in os.supports_dir_fd
    and hasattr(os, "O_NOFOLLOW")
    and hasattr(os, "O_DIRECTORY")
)
# tarfile's reasons for a header it cannot read (stable names since Python 3.2, not in __all__):
# a zero block is the end-of-archive marker; an empty or short block means the file was cut.
_TAR_END = getattr(tarfile, "EOFHeaderError", ())
_TAR_CUT = tuple(
    getattr(tarfile, name) for name in ("EmptyHeaderError", "TruncatedHeaderError") if hasattr(tarfile, name)
)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class UnsafeArchiveError(DownloadError):
    """An archive holds a member rsir will not write (a link, a device, a path outside its folders)."""


class DamagedArchiveError(DownloadError):
    """An archive is truncated or fails a CRC/checksum: not the published file."""


class _Refused(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"member {name!r} {reason}")


class _WriteFailed(Exception):
    """An OSError while writing the extracted tree (a full disk), as opposed to reading the archive."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def archive_format(name: str) -> str:
    """``"zip"``, ``"tar"``, ``"gz"``, ``"bz2"`` or ``"zst"`` for an archive's file name.

    Raises:
        DownloadError: a name with none of the supported suffixes.
    """
    lower = name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if lower.endswith(suffix):
            return FORMATS[suffix]
    raise DownloadError(f"{name} is not a supported archive (.zip, .tar, .tar.gz, .tar.bz2 or .tar.zst)")


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive member, or a refusal for a name that could leave the target.

    Raises:
        _Refused: absolute, ``..``, a Windows drive or UNC prefix, a backslash, a NUL byte.
    """
    if "\x00" in name:
        raise _Refused(name, "has a NUL byte in its name")
    if name.startswith(("/", "\\")):
        raise _Refused(name, "is an absolute path")
    if PureWindowsPath(name).drive:
        raise _Refused(name, "starts with a Windows drive or network share")
    if "\\" in name:
        raise _Refused(name, "has a backslash in its name (a Windows path separator)")
    if os.name == "nt" and ":" in name:
        raise _Refused(name, "has a colon in its name (a Windows drive or stream)")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise _Refused(name, "climbs out with '..'")
    return parts


def is_mac_metadata(parts: tuple[str, ...]) -> bool:
    """macOS archivers add ``__MACOSX/`` and ``._name`` (AppleDouble) entries: skipped, never written."""
    return parts[0] == "__MACOSX" or parts[-1].startswith("._")


class _Layout:
    """Which member paths an archive may hold: ``produces`` under one of the ``inside`` folders, and
    the folders above those."""

    def __init__(self, produces: Sequence[str], inside: Sequence[str]) -> None:
        self.produces = tuple(produces)
        self.prefixes = [PurePosixPath(folder).parts if folder else () for folder in inside]

    def allows(self, parts: tuple[str, ...], is_dir: bool) -> bool:
        for prefix in self.prefixes:
            n = len(prefix)
            if parts[:n] == prefix and len(parts) > n and parts[n] in self.produces:
                return True
            if is_dir and len(parts) <= n and prefix[: len(parts)] == parts:
                return True
        return False

    def describe(self) -> str:
        folders = ", ".join(f"{name}/" for name in self.produces)
        places = [("/".join(p) + "/" if p else "the top level") for p in self.prefixes]
        return f"{folders} (in {' or '.join(places)})"


class _Tree:
    """Creates folders and regular files below one fresh folder, never following a link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC) if _DIR_FD else -1
        self._cached: tuple[tuple[str, ...], int] = ((), self._root_fd)

    def close(self) -> None:
        self._forget()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def _forget(self) -> None:
        parts, fd = self._cached
        if parts and fd >= 0:
            os.close(fd)
        self._cached = ((), self._root_fd)

    def _inside(self, name: str, parts: tuple[str, ...]) -> None:
        real = os.path.realpath(os.path.join(self.real_root, *parts))
        if os.path.commonpath([real, self.real_root]) != self.real_root:
            raise _Refused(name, f"would be written outside the target (at {real})")

    def folder(self, name: str, parts: tuple[str, ...]) -> int:
        """Create folder ``parts`` (and its parents); returns its descriptor (-1 without ``dir_fd``)."""
        if self._cached[0] == parts:
            return self._cached[1]
        self._forget()
        fd = self._root_fd
        try:
            for i in range(len(parts)):
                if _DIR_FD:
                    child = self._step(name, fd, parts[i])
                    if fd != self._root_fd:
                        os.close(fd)
                    fd = child
                else:
                    self._step_by_path(name, parts[: i + 1])
        except OSError as error:
            if fd != self._root_fd:
                os.close(fd)
            raise _WriteFailed(error) from None
        except BaseException:
            if fd != self._root_fd:
                os.close(fd)
            raise
        self._cached = (parts, fd)
        self._inside(name, parts)
        return fd

    @staticmethod
    def _step(name: str, parent: int, component: str) -> int:
        """Make (or reuse) folder ``component`` of ``parent`` and open it, refusing a link or a file."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(component, 0o755, dir_fd=parent)
        try:
            return os.open(component, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=parent)
        except OSError as error:
            if is_disk_full(error):
                raise
            # ELOOP (a link) or ENOTDIR (a file): never walk through either
            raise _Refused(name, "clashes with another member (a file or link where a folder goes)") from None

    def _step_by_path(self, name: str, parts: tuple[str, ...]) -> None:
        """The same without ``dir_fd`` (Windows): check each folder is a real folder, not a link or junction."""
        path = os.path.join(self.real_root, *parts)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755)
        info = os.lstat(path)
        reparse = getattr(info, "st_file_attributes", 0) & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0)
        if not stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode) or reparse:
            raise _Refused(name, "clashes with another member (a file or link where a folder goes)")

    def file(self, name: str, parts: tuple[str, ...], source: BinaryIO, mtime: float | None) -> None:
        """Write a new regular file ``parts`` from ``source`` (refused if anything already has that name)."""
        parent = self.folder(name, parts[:-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
        try:
            if _DIR_FD:
                fd = os.open(parts[-1], flags, 0o644, dir_fd=parent)
            else:
                fd = os.open(os.path.join(self.real_root, *parts), flags, 0o644)
        except FileExistsError:
            raise _Refused(name, "appears twice in the archive (or clashes with a folder of that name)") from None
        except OSError as error:
            raise _WriteFailed(error) from None
        out = os.fdopen(fd, "wb")
        try:
            while True:
                block = source.read(CHUNK)  # reading errors (CRC, truncation) propagate as themselves
                if not block:
                    break
                try:
                    out.write(block)
                except OSError as error:
                    raise _WriteFailed(error) from None
            if mtime is not None and os.utime in os.supports_fd:
                with contextlib.suppress(OSError, OverflowError, ValueError):
                    os.utime(out.fileno(), (mtime, mtime))
        except BaseException:
            with contextlib.suppress(OSError):
                out.close()
            raise
        try:
            out.close()
        except OSError as error:
            raise _WriteFailed(error) from None


class _CountingReader:
    """A read-only file wrapper that advances a progress bar by the (compressed) bytes read."""

    def __init__(self, handle: BinaryIO, task: ProgressTask) -> None:
        self._handle = handle
        self._task = task
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.count += len(data)
        self._task.advance(len(data))
        return data


def _check_magic(archive: Path, name: str, kind: str) -> None:
    with open(archive, "rb") as handle:
        head = handle.read(512)
    if kind == "tar":
        ok = head[257:262] == b"ustar"
    else:
        ok = head.startswith(_MAGIC[kind])
    if not ok:
        what = {"zip": "a zip", "tar": "a tar", "gz": "a gzip", "bz2": "a bzip2", "zst": "a zstd"}[kind]
        raise DamagedArchiveError(f"{name} is not {what} file (its first bytes say otherwise); nothing was extracted")


def _end_recorder(state: dict[str, BaseException]) -> type[tarfile.TarInfo]:
    """A TarInfo class that remembers why the member loop ended: tarfile ends silently on a cut or
    broken header after the first one; only a zero block is the real end-of-archive marker."""

    class Header(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
            try:
                return super().fromtarfile(tar)
            except tarfile.HeaderError as error:
                state["end"] = error
                raise

    return Header


def _decompressed(raw: _CountingReader, kind: str) -> tuple[BinaryIO, Callable[[], None]]:
    """The tar byte stream, and a check to call once it has been read to its very end."""
    if kind == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), lambda: None  # checks CRC and length at the end
    if kind == "bz2":
        return bz2.BZ2File(raw), lambda: None  # raises EOFError on a cut stream
    if kind == "zst":
        reader = ZstdReader(raw)
        return reader, reader.finish
    return raw, lambda: None  # type: ignore[return-value]


def _extract_tar(
    archive: Path,
    kind: str,
    tree: _Tree,
    layout: _Layout,
    select: Callable[[tuple[str, ...]], bool] | None,
    task: ProgressTask,
) -> None:
    with open(archive, "rb") as handle:
        raw = _CountingReader(handle, task)
        stream, finish = _decompressed(raw, kind)
        state: dict[str, BaseException] = {}
        # "r|": a plain tar stream; decompression is ours (above), never tarfile's guess.
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_end_recorder(state)) as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # stream mode keeps every header otherwise: GBs for BigEarthNet
                parts = member_parts(member.name)
                if member.issym() or member.islnk():
                    kind_of = "symbolic" if member.issym() else "hard"
                    raise _Refused(
                        member.name, f"is a {kind_of} link to {member.linkname!r}; dataset archives hold none"
                    )
                if member.ischr() or member.isblk():
                    raise _Refused(member.name, "is a device file")
                if member.isfifo():
                    raise _Refused(member.name, "is a FIFO")
                if not (member.isreg() or member.isdir()):
                    raise _Refused(member.name, f"is not a regular file or folder (tar type {member.type!r})")
                if not parts or is_mac_metadata(parts):
                    continue  # "./" (the archive's own top folder) or macOS metadata
                if not layout.allows(parts, member.isdir()):
                    raise _Refused(member.name, f"lies outside the dataset's folders {layout.describe()}")
                if select is not None and not select(parts):
                    continue
                if member.isdir():
                    tree.folder(member.name, parts)
                else:
                    source = tar.extractfile(member)
                    if source is None:  # not reached: regular members always have one
                        raise _Refused(member.name, "has no data")
                    tree.file(member.name, parts, source, member.mtime)
        end = state.get("end")
        if not isinstance(end, _TAR_END):
            cut = end is None or isinstance(end, _TAR_CUT)
            reason = (
                "ends before its end-of-archive marker (the file is cut short)"
                if cut
                else f"has a damaged header ({end})"
            )
            raise DamagedArchiveError(f"{archive.name} {reason}; nothing was extracted")
        while stream.read(CHUNK):  # the rest (tar padding) reaches the end, where CRCs are checked
            pass
        finish()


def _zip_plan(archive: zipfile.ZipFile, layout: _Layout) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every member checked before anything is written; returns what to write."""
    seen: set[tuple[str, ...]] = set()
    plan = []
    for info in archive.infolist():
        parts = member_parts(info.filename)
        if info.flag_bits & 0x1:
            raise _Refused(info.filename, "is encrypted")
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_IFMT(mode):  # 3: made on Unix, mode bits in external_attr
            if stat.S_ISLNK(mode):
                raise _Refused(info.filename, "is a symbolic link; dataset archives hold none")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _Refused(info.filename, "is a device file, FIFO or socket")
        if not parts or is_mac_metadata(parts):
            continue
        if parts in seen:
            raise _Refused(info.filename, "appears twice in the archive")
        seen.add(parts)
        if not layout.allows(parts, info.is_dir()):
            raise _Refused(info.filename, f"lies outside the dataset's folders {layout.describe()}")
        plan.append((info, parts))
    return plan


def _extract_zip(
    archive_path: Path,
    tree: _Tree,
    layout: _Layout,
    select: Callable[[tuple[str, ...]], bool] | None,
    task: ProgressTask,
) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        plan = _zip_plan(archive, layout)
        plan = [(info, parts) for info, parts in plan if select is None or select(parts)]
        needed = sum(info.file_size for info, _ in plan)
        free, where = free_bytes(tree.root)
        if needed > free:
            raise DiskFullError(
                f"{archive_path.name} unpacks to {format_bytes(needed)} but only {format_bytes(free)} is free in "
                f"{where}; free some space (or pass --data-dir on a larger disk) and run the same command again"
            )
        for info, parts in plan:
            if info.is_dir():
                tree.folder(info.filename, parts)
            else:
                # zipfile checks the member's CRC when its last byte is read (BadZipFile otherwise).
                with archive.open(info) as source:
                    tree.file(info.filename, parts, source, None)
            task.advance(info.compress_size)
        task.advance(max(0, archive_path.stat().st_size - sum(info.compress_size for info, _ in plan)))  # headers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale(target: Path, names: Iterable[str]) -> None:
    """Scratch folders and set-aside old copies left by killed runs (never a live run's)."""
    for name in names:
        for entry in target.glob(name):
            pid = entry.name.rsplit(".", 2)[-2] if entry.name.count(".") >= 2 else ""
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


def _move_into_place(source: Path, target: Path, replace: bool) -> bool:
    """Rename ``source`` to ``target``, replacing an older ``target`` (a rename cannot overwrite a folder).

    Returns False when ``replace`` is off and ``target`` already exists (``source`` is then discarded).
    """
    if target.exists() or target.is_symlink():
        if not replace:
            return False
        old = target.with_name(f".old-{target.name}.{os.getpid()}.tmp")
        os.replace(target, old)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    try:
        os.replace(source, target)
    except OSError:
        if not replace and target.exists():  # another process got there first
            return False
        raise
    return True


def extract_archive(
    archive: Path,
    target: Path,
    produces: Sequence[str],
    *,
    inside: Sequence[str] = ("",),
    name: str | None = None,
    select: Callable[[tuple[str, ...]], bool] | None = None,
    replace: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> list[str]:
    """Extract ``archive`` safely and atomically; the ``produces`` folders appear in ``target``.

    Args:
        archive: the archive file.
        target: the folder the ``produces`` entries go to (a dataset directory).
        produces: the top-level folder(s) the extraction creates in ``target``; nothing else is touched.
        inside: the archive folder(s) that hold them, tried in order (``""``: the archive's top level).
        name: the name that decides the format (default: the archive's file name).
        select: keep only the members whose path components it accepts (the rest are checked, not written).
        replace: replace an existing ``target/<entry>``; when False an existing one is kept as it is.
        progress: where the extraction bar goes.

    Returns:
        The entries now in ``target`` (``produces``).

    Raises:
        UnsafeArchiveError: a link, device, FIFO, encrypted member or a path that could leave its folders.
        DamagedArchiveError: truncated, failed CRC or checksum, wrong format for its name, or the
            expected folders are missing.
        DiskFullError: the disk filled up (nothing is left behind).
    """
    name = name or archive.name
    kind = archive_format(name)
    target.mkdir(parents=True, exist_ok=True)
    real_target = Path(os.path.realpath(target))
    _remove_stale(real_target, [f"{SCRATCH_PREFIX}{name}.*.tmp", *(f".old-{entry}.*.tmp" for entry in produces)])
    scratch = real_target / f"{SCRATCH_PREFIX}{name}.{os.getpid()}.tmp"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    layout = _Layout(produces, inside)
    size = archive.stat().st_size
    task = progress.task(f"extract {name}", total=size, unit="B")
    tree = _Tree(scratch)
    try:
        try:
            _check_magic(archive, name, kind)
            if kind == "zip":
                _extract_zip(archive, tree, layout, select, task)
            else:
                _extract_tar(archive, kind, tree, layout, select, task)
        except _Refused as error:
            raise UnsafeArchiveError(
                f"refusing {name}: {error}; nothing was extracted. The archive is not the published one: check "
                "its source (or --mirror)"
            ) from None
        except _WriteFailed as error:
            if is_disk_full(error.error):
                raise disk_full(error.error, scratch) from None
            raise DownloadError(f"cannot extract {name} into {target}: {error.error.strerror or error}") from None
        except (tarfile.TarError, zipfile.BadZipFile, ZstdStreamError, EOFError, zlib.error, OSError) as error:
            # Reading errors: CRCs, truncation, invalid compressed data (gzip and bz2 raise OSError).
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DamagedArchiveError(
                f"{name} is damaged ({type(error).__name__}: {text}); nothing was extracted"
            ) from None
        finally:
            tree.close()
        prefix = next(
            (p for p in layout.prefixes if all(scratch.joinpath(*p, entry).exists() for entry in produces)), None
        )
        if prefix is None:
            held = sorted(entry.name for entry in scratch.iterdir())
            raise DamagedArchiveError(
                f"{name} does not hold {layout.describe()} (it holds {', '.join(held[:5]) or 'nothing'}); "
                "nothing was extracted. Check its source (or --mirror)"
            )
        for entry in produces:
            _move_into_place(scratch.joinpath(*prefix, entry), real_target / entry, replace)
        return list(produces)
    finally:
        task.close()
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["DamagedArchiveError", "UnsafeArchiveError", "archive_format", "extract_archive", "member_parts"]
