"""What `rsir download NAME` did (or would do): one report per file, one result per name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsir_cli.download.urls import redact


@dataclass
class FileReport:
    """What happened to one file (its URL is always shown redacted).

    Attributes:
        status: ``downloaded``, ``resumed``, ``present``, ``would download`` or ``partial (...)``.
        checksum: how the file was (or will be) verified, in words.
    """

    name: str
    url: str
    destination: Path
    size: int | None
    status: str
    md5: str | None = None
    sha256: str | None = None
    checksum: str = ""
    downloaded_bytes: int = 0
    resumed_from: int = 0

    def __post_init__(self) -> None:
        self.url = redact(self.url)  # credentials of a --mirror never reach a table, JSON or a marker

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
    """What `rsir download NAME` did (or would do, for a dry run).

    Attributes:
        kind: ``dataset`` or ``weights``.
        status: ``complete``, ``already complete`` or ``dry run``.
        disk_needed: bytes the download and extraction need (datasets).
        disk_free: bytes free where they go (datasets).
    """

    name: str
    kind: str
    status: str
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


__all__ = ["DownloadResult", "FileReport"]
