"""One `rsir download` at a time per folder: an advisory lock that dies with its process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rsir_cli.errors import DownloadError


@contextlib.contextmanager
def exclusive(lock_path: Path, what: Path) -> Iterator[None]:
    """Hold an advisory lock so two `rsir download` runs never write the same files at once.

    ``flock`` locks die with their process, so a killed run leaves no stale lock behind.

    Raises:
        DownloadError: another run holds the lock.
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
                f"another rsir download is writing {what}; wait for it to finish, then run this again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
