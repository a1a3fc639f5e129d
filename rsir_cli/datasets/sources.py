"""Where a dataset comes from: URLs, checksums, sizes and what each archive unpacks to.

Pure data, kept beside each reader (as torchgeo keeps ``url`` / ``md5`` on its dataset classes): a
dataset module that `rsir download` can fetch declares ``SOURCE = DatasetSource(...)`` and hands
it to its ``DEFINITION`` (``source=SOURCE``). The download package finds it through the registry,
``rsir_cli.datasets.get_dataset(name).source``; nothing here downloads or touches the disk.

A new dataset declares its source like this (BigEarthNet v2.0 as the example)::

    SOURCE = DatasetSource(
        name="reben",
        description="BigEarthNet v2.0 (reBEN, Zenodo record 10891137)",
        files=(
            RemoteFile(
                name="BigEarthNet-S2.tar.zst",
                url="https://zenodo.org/records/10891137/files/BigEarthNet-S2.tar.zst?download=1",
                dest=f"{DOWNLOADS}/BigEarthNet-S2.tar.zst",   # archives are kept in .downloads/
                approx_size=int(63.25 * GB), md5="<published md5>",
                produces=("BigEarthNet-S2",),                  # the only top-level folder it may hold
                extracted_size=...,                            # for the disk check
            ),
            RemoteFile(name="metadata.parquet", url="https://zenodo.org/records/10891137/files/metadata.parquet?download=1",
                       dest="metadata.parquet", approx_size=..., md5="<published md5>"),
        ),
    )
    DEFINITION = RebenDefinition(name="reben", ..., source=SOURCE)

and registers its module in ``rsir_cli/datasets/__init__.py``. Archives may be ``.zip``, ``.tar``,
``.tar.gz``, ``.tar.bz2`` or ``.tar.zst``; the format is decided by ``name`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

GB = 1_000_000_000
MB = 1_000_000
#: the folder of a dataset directory that holds its archives and download records
DOWNLOADS = ".downloads"


def _plain_relative(path: str, what: str) -> None:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or "\\" in path or ".." in parts or "." in path.split("/"):
        raise ValueError(f"{what} must be a plain relative POSIX path, not {path!r}")


@dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset.

    Attributes:
        name: the file's name: shown to the user, decides an archive's format (``.zip``, ``.tar.zst``, ...)
            and keys its trust-on-first-use checksum.
        url: where it is published (``--mirror`` replaces the scheme and host, keeping the path).
        dest: where it goes, relative to the dataset directory (POSIX separators).
        size: the exact size in bytes, checked when set.
        approx_size: a planning size for the disk check and ``--dry-run`` when the exact one is unknown.
        md5: the published md5, checked while streaming.
        sha256: the published sha256, checked while streaming.
        produces: for an archive, the top-level folder(s) its extraction creates in the dataset
            directory; only these are replaced, and an archive holding anything else is refused.
            Empty for a plain file.
        inside: for an archive, the folder(s) of the archive that hold the ``produces`` entries,
            tried in order; ``""`` is the archive's top level. ForestNet's zip holds
            ``deep/downloads/ForestNetDataset/``.
        extracted_size: for an archive, its size on disk once extracted (an estimate, for the disk check).
    """

    name: str
    url: str
    dest: str
    size: int | None = None
    approx_size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    produces: tuple[str, ...] = ()
    inside: tuple[str, ...] = ("",)
    extracted_size: int | None = None

    def __post_init__(self) -> None:
        # A typo in a source table should fail at import, not in the middle of a 66 GB download.
        _plain_relative(self.dest, "RemoteFile.dest")
        for entry in self.produces:
            if "/" in entry:
                raise ValueError(f"RemoteFile.produces names top-level folders, not paths: {entry!r}")
            _plain_relative(entry, "RemoteFile.produces")
        for folder in self.inside:
            if folder:
                _plain_relative(folder, "RemoteFile.inside")

    @property
    def is_archive(self) -> bool:
        return bool(self.produces)

    @property
    def planned_size(self) -> int | None:
        return self.size if self.size is not None else self.approx_size

    @property
    def has_published_checksum(self) -> bool:
        return bool(self.md5 or self.sha256)


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from: its files, in download order."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]


__all__ = ["DOWNLOADS", "GB", "MB", "DatasetSource", "RemoteFile"]
