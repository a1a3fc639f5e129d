"""Where things live in a store directory, and the names of its files.

::

    <root>/<model>/<dataset>/<split>.h5                   a complete split (never written again)
    <root>/<model>/<dataset>/<split>.shard-<i>-of-<n>.h5  or one complete file per shard
    <root>/<model>/<dataset>/<stem>.partial/              an embedding run in progress
        header.json                                       its settings, written once
        rows-<start>-<stop>.h5                            committed segments (rows [start, stop))
        lock                                              held (flock) by the writing process
    <root>/<model>/<dataset>/<split>.codes/<code>.h5      binary codes of a whole split + hasher

``<stem>`` is the file name without ``.h5``. Names of models, datasets, splits and codes are
restricted to letters, digits, ``.``, ``_`` and ``-`` so that no name can reach outside its folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rsir_cli.errors import StoreError

SCHEMA_VERSION = 2
#: schema versions this rsir reads (1: rsir 0.1-0.2, files changed in place; read only)
READABLE_SCHEMAS = (1, 2)
QUERY_SPLIT = "val"
DATABASE_SPLIT = "test"

PARTIAL_SUFFIX = ".partial"
CODES_SUFFIX = ".codes"
HEADER = "header.json"
LOCK = "lock"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_\-]+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)$")
_SEGMENT_RE = re.compile(r"^rows-(?P<start>\d{10})-(?P<stop>\d{10})\.h5$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``: a contiguous block of the split, in dataset order."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"i/n"`` (1-based), e.g. ``"2/8"``."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise StoreError(f"--shard must look like i/n (for example 2/8), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise StoreError(f"--shard {text}: need 1 <= i <= n")
        return cls(index, count)

    def bounds(self, total: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of a split of ``total`` rows that this shard covers."""
        return total * (self.index - 1) // self.count, total * self.index // self.count

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_name(kind: str, name: str) -> str:
    if not _NAME_RE.match(name):
        raise StoreError(f"invalid {kind} name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def stem(split: str, shard: Shard | None = None) -> str:
    """``test`` or ``test.shard-3-of-8``."""
    check_name("split", split)
    return split if shard is None or shard.count == 1 else f"{split}.shard-{shard.index}-of-{shard.count}"


def split_of(stem_name: str) -> tuple[str, Shard | None]:
    """The split (and shard) a file stem names."""
    match = _SHARD_RE.match(stem_name)
    if match:
        return match.group("split"), Shard(int(match.group("index")), int(match.group("count")))
    return stem_name, None


def segment_name(start: int, stop: int) -> str:
    return f"rows-{start:010d}-{stop:010d}.h5"


def parse_segment(name: str) -> tuple[int, int] | None:
    match = _SEGMENT_RE.match(name)
    if not match:
        return None
    start, stop = int(match.group("start")), int(match.group("stop"))
    return (start, stop) if stop > start else None


@dataclass(frozen=True)
class SplitLocation:
    """The folder of one (model, dataset) and the names of a split's files in it."""

    folder: Path
    split: str

    def final(self, shard: Shard | None = None) -> Path:
        return self.folder / f"{stem(self.split, shard)}.h5"

    def partial(self, shard: Shard | None = None) -> Path:
        return self.folder / f"{stem(self.split, shard)}{PARTIAL_SUFFIX}"

    @property
    def codes(self) -> Path:
        return self.folder / f"{self.split}{CODES_SUFFIX}"

    def code_file(self, name: str) -> Path:
        return self.codes / f"{check_name('code', name)}.h5"

    def stems(self) -> dict[str, tuple[bool, bool]]:
        """Every stem of this split in the folder -> (has a complete file, has a run in progress)."""
        found: dict[str, tuple[bool, bool]] = {}
        if not self.folder.is_dir():
            return found
        for entry in self.folder.iterdir():
            if entry.name.startswith("."):
                continue
            if entry.name.endswith(".h5") and entry.is_file():
                name, is_final = entry.name[: -len(".h5")], True
            elif entry.name.endswith(PARTIAL_SUFFIX) and entry.is_dir():
                name, is_final = entry.name[: -len(PARTIAL_SUFFIX)], False
            else:
                continue
            if split_of(name)[0] != self.split:
                continue
            final, partial = found.get(name, (False, False))
            found[name] = (final or is_final, partial or not is_final)
        return found


def entry_names(root: Path) -> set[tuple[str, str, str]]:
    """Every (model, dataset, split) with a complete file or a run in progress under ``root``."""
    found: set[tuple[str, str, str]] = set()
    if not root.is_dir():
        return found
    for model_dir in root.iterdir():
        if not model_dir.is_dir() or model_dir.name.startswith("."):
            continue
        for dataset_dir in model_dir.iterdir():
            if not dataset_dir.is_dir() or dataset_dir.name.startswith("."):
                continue
            for entry in dataset_dir.iterdir():
                name = entry.name
                if name.startswith("."):
                    continue
                if name.endswith(".h5") and entry.is_file():
                    file_stem = name[: -len(".h5")]
                elif name.endswith(PARTIAL_SUFFIX) and entry.is_dir():
                    file_stem = name[: -len(PARTIAL_SUFFIX)]
                else:
                    continue
                split = split_of(file_stem)[0]
                if _NAME_RE.match(split):
                    found.add((model_dir.name, dataset_dir.name, split))
    return found
