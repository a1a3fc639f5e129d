"""Typed errors. Library code raises these; the CLI turns them into one red line and exit 1.

Every message says what went wrong and what to do next.
"""

from __future__ import annotations


class RsirError(Exception):
    """Base class of every error a user can fix (bad input, missing data, wrong options)."""


class UsageError(RsirError):
    """Options that contradict each other or name something unknown."""


class DataNotFoundError(RsirError):
    """A dataset, split, patch, band file or tile is missing."""


class CorruptDataError(RsirError):
    """A file exists but cannot be read as what it claims to be."""


class WeightsError(RsirError):
    """Model weights are missing, unreadable or do not fit the model."""


class StoreError(RsirError):
    """The embedding store is missing, incomplete or incompatible."""


class DownloadError(RsirError):
    """A download failed, was cut off for good, or did not verify."""


class BackendError(RsirError):
    """A search backend (Milvus) is unreachable, refuses the request or lacks a collection."""


class MissingDependencyError(RsirError):
    """An optional dependency is not installed; the message names the install command."""


class DiskFullError(RsirError):
    """A write found no space left; what was committed before it is intact."""


class ImportFormatError(RsirError):
    """A file to import lacks a column rsir needs, or holds values it cannot take (mixed lengths, nulls, duplicates)."""
