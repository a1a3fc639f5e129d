"""A tiny progress protocol, so library code can report progress without knowing about Rich.

The CLI passes a Rich-backed reporter; library callers and tests pass nothing (``NULL_PROGRESS``).
"""

from __future__ import annotations

from typing import Protocol


class ProgressTask(Protocol):
    """One bar: advance it as work is done, close it when the work ends."""

    def advance(self, amount: float = 1) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    """Creates progress tasks (bars)."""

    def task(
        self, description: str, total: float | None, unit: str = "items", completed: float = 0
    ) -> ProgressTask: ...


class _NullTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _NullProgress:
    def task(self, description: str, total: float | None, unit: str = "items", completed: float = 0) -> ProgressTask:
        return _NullTask()


NULL_PROGRESS: Progress = _NullProgress()
