"""Writing one store file: an embedding run as committed segments, then one complete file.

A run writes into ``<stem>.partial/`` (see :mod:`rsir_cli.store.layout`):

1. ``header.json`` (the run's settings) is written once, atomically, when the run starts;
2. each commit writes the rows buffered since the last one as a segment file
   ``rows-<start>-<stop>.h5``, built whole in memory and renamed into place after an fsync
   (:mod:`rsir_cli.fileio`): the rename *is* the commit, one atomic step, so a kill or a full disk at
   any single write leaves either the segment whole or no trace of it but a temporary file;
3. ``finish`` joins the segments into ``<stem>.h5`` the same way (complete before it is renamed),
   then removes the folder.

A restarted run takes the longest chain of intact segments from row 0 (a damaged or stray one is
dropped, with a warning) and continues after it; a run whose settings differ is refused. One
process at a time writes a run: it holds an ``flock`` on ``lock`` (released by the kernel when the
process dies, however it dies).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli import fileio
from rsir_cli.errors import StoreError
from rsir_cli.geo import Footprints
from rsir_cli.store import hdf5
from rsir_cli.store.layout import HEADER, LOCK, parse_segment, segment_name

try:  # POSIX; elsewhere a run is not protected against a second writer
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: columns of a store file, in file order: name -> (dtype, per-row shape given dim and labels)
STRING_COLUMNS = ("ids", "dates", "footprint_crs")
COLUMNS = ("embeddings", "ids", "labels", "dates", "footprint_crs", "footprint_bounds", "footprint_lonlat")
#: a commit at most this often (seconds) unless the caller commits itself; 0 commits every batch
DEFAULT_COMMIT_SECONDS = 1.0
#: and at least every this many buffered rows
MAX_PENDING_ROWS = 8192
#: attributes that belong to the commit record, not to the run's settings
COMMIT_KEYS = ("rows_committed", "complete", "completed", "content_digest")


def column_shape(name: str, dim: int, n_labels: int) -> tuple[int, ...]:
    return {"embeddings": (dim,), "labels": (n_labels,), "footprint_bounds": (4,), "footprint_lonlat": (4, 2)}.get(
        name, ()
    )


def column_dtype(name: str) -> Any:
    if name in STRING_COLUMNS:
        return str
    return {"embeddings": np.float32, "labels": np.uint8}.get(name, np.float64)


def row_bytes(dim: int, n_labels: int) -> int:
    """Bytes one row takes in a file (strings estimated generously)."""
    return 4 * dim + n_labels + 8 * 4 + 8 * 8 + 3 * 64


class ContentDigest:
    """A digest of a split's embeddings and ids that does not depend on how rows were batched."""

    def __init__(self) -> None:
        self._embeddings = hashlib.blake2b(digest_size=16)
        self._ids = hashlib.blake2b(digest_size=16)

    def update(self, embeddings: np.ndarray, ids: Sequence[str]) -> None:
        self._embeddings.update(np.ascontiguousarray(embeddings, dtype="<f4").tobytes())
        self._ids.update("".join(f"{i}\n" for i in ids).encode("utf-8"))

    def hexdigest(self) -> str:
        return "blake2b:" + hashlib.blake2b(self._embeddings.digest() + self._ids.digest(), digest_size=16).hexdigest()


def combine_digests(digests: Sequence[str]) -> str:
    """The digest of a split stored as several files (shards), in file order."""
    if len(digests) == 1:
        return digests[0]
    return "blake2b:" + hashlib.blake2b("\n".join(digests).encode(), digest_size=16).hexdigest()


class RunLock:
    """An exclusive ``flock`` on ``<run>/lock``, held for the life of a writer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None

    def acquire(self) -> None:
        path = self.folder / LOCK
        for _ in range(10):
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise StoreError(
                        f"{self.folder.parent / self.folder.name.removesuffix('.partial')}.h5 is being written by "
                        f"another rsir process{f' (pid {holder})' if holder else ''}; wait for it to finish"
                    ) from None
            try:  # the folder may have been removed (and re-created) by a writer that just finished
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                with contextlib.suppress(OSError):  # the pid is for messages only (a full disk may refuse it)
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, str(os.getpid()).encode(), 0)
                self._fd = fd
                return
            os.close(fd)
        raise StoreError(f"cannot lock {path}: it keeps being replaced by another process")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class SplitWriter:
    """Append-only, resumable, crash-consistent writer of one store file (a split, or a shard).

    Get one from :meth:`rsir_cli.store.EmbeddingStore.writer`. ``rows_done`` tells where a resumed
    run continues; ``up_to_date`` says the complete file already holds this run (nothing to do).
    """

    def __init__(
        self,
        final: Path,
        folder: Path,
        lock: RunLock,
        header: dict[str, Any],
        *,
        up_to_date: bool = False,
        commit_seconds: float = DEFAULT_COMMIT_SECONDS,
        on_finish: Any = None,
    ) -> None:
        self.path = final
        self.folder = folder
        self._lock = lock
        self._header = header
        self.attrs: dict[str, Any] = header["attrs"]
        self.dim = int(header["dim"])
        self.n_labels = int(header["n_labels"])
        self.rows_expected = int(header["rows_expected"])
        self.up_to_date = up_to_date
        self.commit_seconds = commit_seconds
        self._on_finish = on_finish
        self._segments: list[tuple[int, int, Path]] = []
        self._ids: list[str] = []
        self._id_rows: dict[str, int] = {}
        self._pending: list[dict[str, Any]] = []
        self._pending_rows = 0
        self._last_commit = time.monotonic()
        self.rows_done = self.rows_expected if up_to_date else 0
        self._closed = False

    # ------------------------------------------------------------------------------ set-up
    def start(self) -> None:
        """A fresh run: forget any previous segments and write the header."""
        self._clear()
        fileio.write_json(self.folder / HEADER, self._header)

    def resume(self) -> None:
        """Continue a run: keep the longest chain of intact segments from row 0, drop the rest."""
        fileio.remove_stale_tmp(self.folder)
        found = []
        for entry in self.folder.iterdir():
            rows = parse_segment(entry.name)
            if rows is not None:
                found.append((rows[0], rows[1], entry))
            elif entry.name not in (HEADER, LOCK) and entry.is_file():
                log.warning("removing %s: not part of the run", entry)
                entry.unlink()
        found.sort()
        expected = 0
        for start, stop, path in found:
            if start != expected or stop > self.rows_expected or not self._load_segment(start, stop, path):
                log.warning(
                    "%s %s; its rows are embedded again",
                    path.name,
                    "is damaged" if start == expected else "does not follow the committed rows",
                )
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            expected = stop
        self.rows_done = expected

    def _load_segment(self, start: int, stop: int, path: Path) -> bool:
        """Check one segment (every column has its rows) and take its ids; False if damaged."""
        try:
            sizes = hdf5.shapes(path)
            if any(sizes.get(name, (None,))[0] != stop - start for name in COLUMNS):
                return False
            ids = hdf5.read_arrays(path, ("ids",))["ids"]
        except StoreError:
            return False
        self._segments.append((start, stop, path))
        for offset, sample_id in enumerate(ids):
            self._id_rows[sample_id] = start + offset
        self._ids.extend(ids)
        return True

    def salvage(self, columns: Mapping[str, Any], rows: int) -> None:
        """Start from rows recovered elsewhere (a file of the older in-place format)."""
        self.start()
        self._buffer(dict(columns), rows)
        self.commit()

    def _clear(self) -> None:
        for entry in self.folder.iterdir():
            if entry.name != LOCK:
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self._segments, self._ids, self._id_rows, self.rows_done = [], [], {}, 0

    # ------------------------------------------------------------------------------ writing
    @property
    def ids_done(self) -> list[str]:
        """The ids of every committed and buffered row, in order."""
        if self.up_to_date:
            return list(hdf5.read_arrays(self.path, ("ids",))["ids"])
        return list(self._ids)

    def append(
        self,
        embeddings: np.ndarray,
        ids: Sequence[str],
        labels: np.ndarray,
        footprints: Footprints | None = None,
        dates: Sequence[str] | None = None,
    ) -> None:
        """Buffer one batch and commit when a commit is due (see ``commit_seconds``).

        Raises:
            StoreError: rows of the wrong shape, more rows than expected, a non-finite embedding or
                an id already stored (nothing of this batch is kept).
        """
        if self.up_to_date:
            raise StoreError(f"{self.path} is complete; nothing more can be appended")
        n = len(ids)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.uint8)
        if embeddings.shape != (n, self.dim) or labels.shape != (n, self.n_labels):
            raise StoreError(
                f"{self.path}: a batch of {n} ids came with embeddings {embeddings.shape} and labels "
                f"{labels.shape}; expected ({n}, {self.dim}) and ({n}, {self.n_labels})"
            )
        if self.rows_done + self._pending_rows + n > self.rows_expected:
            raise StoreError(f"{self.path}: more rows than expected ({self.rows_expected})")
        finite = np.isfinite(embeddings).all(axis=1)
        if not finite.all():
            bad = int((~finite).sum())
            raise StoreError(
                f"the encoder gave non-finite embeddings (NaN or infinity) for {bad} of {n} samples of a batch, "
                f"e.g. {ids[int(np.flatnonzero(~finite)[0])]!r}; the checkpoint may be damaged (NaN weights) or "
                "the input out of range; nothing of this batch was stored"
            )
        row = self.rows_done + self._pending_rows
        names = [str(i) for i in ids]
        seen: dict[str, int] = {}
        for offset, sample_id in enumerate(names):
            first = self._id_rows.get(sample_id, seen.get(sample_id))
            if first is not None:
                raise StoreError(
                    f"sample id {sample_id!r} comes twice in {self.attrs.get('dataset')}/{self.attrs.get('split')} "
                    f"(rows {first} and {row + offset}); ids must be unique: check the split file"
                )
            seen[sample_id] = row + offset
        self._id_rows.update(seen)
        self._ids.extend(names)
        footprints = footprints or Footprints.empty(n)
        self._buffer(
            {
                "embeddings": embeddings,
                "ids": names,
                "labels": labels,
                "dates": [str(d or "") for d in dates] if dates is not None else [""] * n,
                "footprint_crs": [str(c or "") for c in footprints.crs],
                "footprint_bounds": np.asarray(footprints.bounds, dtype=np.float64).reshape(n, 4),
                "footprint_lonlat": np.asarray(footprints.lonlat, dtype=np.float64).reshape(n, 4, 2),
            },
            n,
        )
        if (
            self.commit_seconds <= 0
            or time.monotonic() - self._last_commit >= self.commit_seconds
            or self._pending_rows >= MAX_PENDING_ROWS
        ):
            self.commit()

    def _buffer(self, columns: dict[str, Any], rows: int) -> None:
        self._pending.append(columns)
        self._pending_rows += rows

    def commit(self) -> None:
        """Write the buffered rows as one segment (durable and atomic); a no-op when none are buffered."""
        if not self._pending_rows:
            return
        start, stop = self.rows_done, self.rows_done + self._pending_rows
        builder = hdf5.FileBuilder()
        for name in COLUMNS:
            parts = [batch[name] for batch in self._pending]
            if name in STRING_COLUMNS:
                builder.add(name, [value for part in parts for value in part])
            else:
                builder.add(name, np.concatenate(parts))
        builder.set_attrs({"format": "rsir-segment", "first_row": start, "rows": stop - start})
        path = self.folder / segment_name(start, stop)
        fileio.write_bytes(path, builder.buffer())
        self._segments.append((start, stop, path))
        self._pending, self._pending_rows = [], 0
        self.rows_done = stop
        self._last_commit = time.monotonic()

    # ------------------------------------------------------------------------------ finishing
    def finish(self) -> None:
        """Join the segments into the complete file (atomically), then remove the run's folder.

        Raises:
            StoreError: rows are missing (the run is not done).
            DiskFullError: no room for the complete file (the segments stay; run again later).
        """
        if self.up_to_date:
            self.close()
            return
        self.commit()
        if self.rows_done != self.rows_expected:
            raise StoreError(f"{self.path}: {self.rows_done} of {self.rows_expected} rows written; not complete")
        size = sum(path.stat().st_size for _, _, path in self._segments) + (1 << 16)
        fileio.require_free(self.path, size, f"completing {self.path.name}")
        # Written through a temporary file (memory stays bounded by a segment, not the split) and
        # renamed into place when complete; a write that fails (a full disk) surfaces as itself.
        with fileio.atomic_writer(self.path, "w+b") as handle:
            recorder = hdf5.RecordingFile(handle)
            builder = None
            try:
                builder = hdf5.FileBuilder(recorder)
                targets = {
                    name: builder.reserve(
                        name, (self.rows_expected, *column_shape(name, self.dim, self.n_labels)), column_dtype(name)
                    )
                    for name in COLUMNS
                }
                digest = ContentDigest()
                for start, _, path in self._segments:
                    arrays = hdf5.read_arrays(path, COLUMNS)
                    for name in COLUMNS:
                        builder.fill(targets[name], start, arrays[name])
                    digest.update(arrays["embeddings"], arrays["ids"])
                builder.set_attrs(
                    {
                        **self.attrs,
                        "rows_committed": self.rows_expected,
                        "complete": True,
                        "completed": _now(),
                        "content_digest": digest.hexdigest(),
                    }
                )
                builder.close()
            except Exception:
                if builder is not None:
                    with contextlib.suppress(Exception):  # HDF5 must not write to the handle later
                        builder.close()
                if recorder.error is not None:
                    raise recorder.error from None
                raise
        # The complete file is in place: the run's folder is garbage now. Rename it first, so that a
        # kill while it is being deleted cannot leave something that looks like a run to resume.
        done = self.folder.with_name(f".{self.folder.name}.done-{os.getpid()}")
        os.replace(self.folder, done)
        fileio.fsync_dir(self.folder.parent)
        self._lock.release()
        shutil.rmtree(done, ignore_errors=True)
        self._closed = True
        if self._on_finish is not None:
            self._on_finish()

    def abandon(self) -> None:
        """Throw the run away: its committed segments and its folder (for all-or-nothing writers
        such as `rsir import`); a complete file from before is left as it was."""
        if self._closed:
            return
        self._closed = True
        self._pending, self._pending_rows = [], 0
        done = self.folder.with_name(f".{self.folder.name}.done-{os.getpid()}")
        os.replace(self.folder, done)
        self._lock.release()
        shutil.rmtree(done, ignore_errors=True)

    def close(self) -> None:
        """Commit what is buffered (work is never thrown away) and release the run."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.up_to_date:
                self.commit()
        finally:
            empty = self.folder.is_dir() and not any(p.name not in (LOCK,) for p in self.folder.iterdir())
            self._lock.release()
            if empty:  # only the lock: nothing was started here (e.g. the file was up to date)
                shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
            return
        try:
            self.close()
        except Exception as error:  # keep the original error; this one (e.g. a full disk) is secondary
            log.warning("could not commit the last rows: %s", error)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def remove_debris(folder: Path) -> None:
    """Remove what killed runs left in a split's folder: temporary files, finished runs' folders."""
    fileio.remove_stale_tmp(folder)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = _DONE.match(entry.name)
        if match and entry.is_dir() and not fileio.process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


_DONE = re.compile(r"^\..+\.partial\.done-(\d+)$")


def partial_progress(folder: Path) -> tuple[int, dict[str, Any] | None]:
    """Rows committed by a run in progress (from its segment names) and its header, without opening HDF5."""
    header = fileio.read_json(folder / HEADER)
    spans = sorted(s for s in (parse_segment(p.name) for p in folder.iterdir()) if s is not None)
    done = 0
    for start, stop in spans:
        if start != done:
            break
        done = stop
    return done, header
