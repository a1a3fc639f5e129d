"""The embedding store: the contract every rsir step reads and writes (docs/store.md).

One directory; one complete HDF5 file per (model, dataset, split) -- ``<root>/<model>/<dataset>/<split>.h5``
-- or per shard of a split, that readers join in shard order. Each file holds

- ``embeddings``   float32 (N, D): one row per sample (every value finite);
- ``ids``          UTF-8 strings (N,): the dataset's own sample names (unique);
- ``labels``       uint8 (N, C): multi-hot over the dataset's full label set;
- ``dates``        UTF-8 strings (N,): acquisition dates, ISO 8601 (``""`` unknown);
- ``footprint_crs`` (N,), ``footprint_bounds`` float64 (N, 4) in that CRS (left, bottom, right,
  top), ``footprint_lonlat`` float64 (N, 4, 2): corners (ul, ur, lr, ll) as EPSG:4326 lon/lat;
- attributes: schema version, rsir version, provenance (model, weights checksum, bands and where
  they came from, normalisation, input size, pooling; dataset, split, label names), times, and the
  commit record (``rows_committed``, ``complete``, ``content_digest``).

Binary codes live beside the file, one file per code table (:mod:`rsir_cli.store.codes`). Files
are complete before they get their names; a run in progress is a folder of committed segments
(:mod:`rsir_cli.store.runs`), so a kill or a full disk at any single write loses no committed row.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli import __version__, fileio, suggest
from rsir_cli.errors import StoreError
from rsir_cli.geo import Footprints
from rsir_cli.store import codes as code_tables
from rsir_cli.store import hdf5
from rsir_cli.store.codes import Codes
from rsir_cli.store.layout import (
    DATABASE_SPLIT,
    HEADER,
    QUERY_SPLIT,
    READABLE_SCHEMAS,
    SCHEMA_VERSION,
    Shard,
    SplitLocation,
    check_name,
    entry_names,
    split_of,
)
from rsir_cli.store.records import SplitData, SplitSummary
from rsir_cli.store.runs import (
    COLUMNS,
    DEFAULT_COMMIT_SECONDS,
    ContentDigest,
    RunLock,
    SplitWriter,
    combine_digests,
    partial_progress,
    remove_debris,
    row_bytes,
)

__all__ = [
    "DATABASE_SPLIT",
    "QUERY_SPLIT",
    "SCHEMA_VERSION",
    "Codes",
    "EmbeddingStore",
    "Shard",
    "SplitData",
    "SplitRows",
    "SplitSummary",
    "SplitWriter",
]

log = logging.getLogger(__name__)


@dataclass
class SplitRows:
    """A split's big arrays as rows on disk (:meth:`EmbeddingStore.open_rows`)."""

    embeddings: hdf5.OnDiskRows  # (N, D) float32
    codes: dict[str, hdf5.OnDiskRows]  # name -> (N, bits / 8) uint8, packed


def _check_schema(path: Path, attrs: Mapping[str, Any]) -> None:
    version = attrs.get("schema_version")
    if version is None:
        raise StoreError(f"{path} is not an rsir store file (no schema_version attribute); move it out of the store")
    if int(version) not in READABLE_SCHEMAS:
        raise StoreError(
            f"{path} was written with store schema version {version}, but this rsir (version {__version__}) reads "
            f"versions {', '.join(map(str, READABLE_SCHEMAS))}; use an rsir release that reads schema {version}, "
            "or re-create the file with the rsir embed command that made it, adding --overwrite"
        )


def _normalise(value: Any) -> Any:
    """Compare attributes read back from a file with freshly built ones (tuples vs lists, numpy scalars)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 12)
    if value is None:
        return ""
    return value


def _rows(attrs: Mapping[str, Any]) -> int:
    return int(attrs.get("rows_committed") or 0)


class EmbeddingStore:
    """A directory of store files. Cheap to construct; touches the disk only when asked."""

    def __init__(self, root: str | Path, *, commit_seconds: float | None = None) -> None:
        self.root = Path(root)
        if commit_seconds is None:  # RSIR_COMMIT_SECONDS: how often a run commits (0: every batch)
            commit_seconds = float(os.environ.get("RSIR_COMMIT_SECONDS") or DEFAULT_COMMIT_SECONDS)
        self.commit_seconds = commit_seconds

    # ----------------------------------------------------------------------------------- paths
    def location(self, model: str, dataset: str, split: str) -> SplitLocation:
        check_name("model", model)
        check_name("dataset", dataset)
        check_name("split", split)
        return SplitLocation(self.root / model / dataset, split)

    def path(self, model: str, dataset: str, split: str, shard: Shard | None = None) -> Path:
        """Where the complete file of a split (or shard) is."""
        return self.location(model, dataset, split).final(shard)

    def entries(self) -> list[tuple[str, str, str]]:
        """Every (model, dataset, split) with a file or a run in progress, sorted."""
        return sorted(entry_names(self.root))

    def embed_hint(self, model: str, dataset: str, split: str | Sequence[str], **extra: object) -> str:
        """The backticked `rsir embed` that makes ``split``: like the store's other splits of the pair
        (their data folder, weights, archive options...), or a plain one when there are none."""
        attrs = self._sibling_attrs(model, dataset)
        if attrs is not None:
            return suggest.embed_like(attrs, split, store=self.root, **extra)
        return suggest.embed(model, dataset, split, store=self.root, **extra)

    def _sibling_attrs(self, model: str, dataset: str) -> dict[str, Any] | None:
        folder = self.root / model / dataset
        if not folder.is_dir():
            return None
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            try:
                if entry.suffix == ".h5" and entry.is_file():
                    return hdf5.read_attrs(entry)
                if entry.name.endswith(".partial") and entry.is_dir():
                    header = _read_header(entry)
                    if header:
                        return dict(header.get("attrs") or {})
            except StoreError:
                continue
        return None

    def split_files(self, model: str, dataset: str, split: str) -> list[Path]:
        """The complete files of one split in row order: ``<split>.h5``, or all its shards in shard order.

        Raises:
            StoreError: the split is still being embedded, a shard is missing or unfinished, or the
                shards come from runs with different shard counts.
        """
        location = self.location(model, dataset, split)
        stems = location.stems()
        if stems.get(split, (False, False))[0]:
            return [location.final()]
        shards: dict[int, dict[int, tuple[bool, bool]]] = {}
        for name, state in stems.items():
            shard = split_of(name)[1]
            if shard is not None:
                shards.setdefault(shard.count, {})[shard.index] = state
        if not shards:
            if split in stems:  # only a run in progress
                raise self._incomplete(location.partial(), model, dataset, split)
            return []
        if len(shards) > 1:
            raise StoreError(
                f"{location.folder}: shards of {split!r} from runs with different shard counts {sorted(shards)}"
            )
        count, states = next(iter(shards.items()))
        missing = [i for i in range(1, count + 1) if i not in states]
        unfinished = [i for i, (final, _) in sorted(states.items()) if not final]
        if missing or unfinished:
            parts = []
            if missing:
                parts.append(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} are missing")
            if unfinished:
                parts.append(f"shard(s) {', '.join(f'{i}/{count}' for i in unfinished)} are still being embedded")
            first = (missing or unfinished)[0]
            raise StoreError(
                f"{location.folder}: split {split!r} is sharded {count} ways but {' and '.join(parts)}; run "
                + suggest.quoted(
                    "embed", model=model, dataset=dataset, split=split, shard=f"{first}/{count}", store=self.root
                )
                + " (and the same for the others)"
            )
        return [location.final(Shard(i, count)) for i in range(1, count + 1)]

    def _incomplete(self, partial: Path, model: str, dataset: str, split: str) -> StoreError:
        done, header = partial_progress(partial)
        expected = (header or {}).get("rows_expected", "?")
        return StoreError(
            f"{model}/{dataset}/{split} is incomplete ({done} of {expected} rows embedded); run the same "
            f"rsir embed command again to finish it (e.g. {self.embed_hint(model, dataset, split)})"
        )

    # ---------------------------------------------------------------------------------- writing
    def writer(
        self,
        model: str,
        dataset: str,
        split: str,
        *,
        attrs: Mapping[str, Any],
        dim: int,
        n_labels: int,
        rows_expected: int,
        shard: Shard | None = None,
        overwrite: bool = False,
        resume_keys: Sequence[str] = (),
    ) -> SplitWriter:
        """Open a split (or shard) for appending: a new run, the run in progress, or the complete file.

        Args:
            attrs: provenance attributes (model, weights checksum, bands, ... dataset, split).
            dim: embedding dimension.
            n_labels: size of the dataset's full label set.
            rows_expected: how many samples the file will hold when complete.
            shard: which shard the file holds (None: the whole split).
            overwrite: start a new run even if one is in progress or the file is complete (the
                complete file is replaced only when the new one is complete).
            resume_keys: attributes that must equal the existing run's (or file's) to continue it.

        Returns:
            A writer; ``up_to_date`` is True when the complete file already holds this run.

        Raises:
            StoreError: a run or file with other settings exists (the message names --overwrite),
                another process is writing it, or it is damaged.
            DiskFullError: the disk cannot hold the run.
        """
        location = self.location(model, dataset, split)
        final, folder = location.final(shard), location.partial(shard)
        header = {
            "schema_version": SCHEMA_VERSION,
            "dim": dim,
            "n_labels": n_labels,
            "rows_expected": rows_expected,
            "attrs": {
                **dict(attrs),
                "schema_version": SCHEMA_VERSION,
                "rsir_version": __version__,
                "created": _now(),
                "model": model,
                "dataset": dataset,
                "split": split,
                "shard": str(shard) if shard else "",
                "embedding_dim": dim,
                "rows_expected": rows_expected,
            },
        }
        keys = (*resume_keys, "rows_expected", "embedding_dim")
        lock = RunLock(folder)
        lock.acquire()
        try:
            remove_debris(location.folder)
            writer = SplitWriter(
                final,
                folder,
                lock,
                header,
                commit_seconds=self.commit_seconds,
                on_finish=(lambda: self._after_overwrite(location, shard)) if overwrite else None,
            )
            existing = _read_header(folder)
            if overwrite:
                self._require_room(folder, rows_expected, dim, n_labels)
                writer.start()
            elif existing is not None:
                self._compare(folder / HEADER, existing.get("attrs") or {}, header["attrs"], keys, "an unfinished run")
                writer.resume()
                log.info("resuming %s at row %d of %d", final, writer.rows_done, rows_expected)
            elif final.exists():
                self._continue_from_file(writer, final, header["attrs"], keys)
            else:
                self._require_room(folder, rows_expected, dim, n_labels)
                writer.start()
        except BaseException:
            lock.release()
            if folder.is_dir() and not _read_header(folder):
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return writer

    def _continue_from_file(
        self, writer: SplitWriter, final: Path, wanted: dict[str, Any], keys: Sequence[str]
    ) -> None:
        existing = hdf5.read_attrs(final)
        _check_schema(final, existing)
        self._compare(final, existing, wanted, keys, "a complete file" if existing.get("complete") else "a file")
        if existing.get("complete"):
            writer.up_to_date = True
            writer.rows_done = writer.rows_expected
            return
        # A file of the older in-place format (schema 1) that a run left unfinished: keep its rows.
        rows = _rows(existing)
        arrays = hdf5.read_arrays(final, COLUMNS, rows)
        n = len(arrays["ids"])
        if n != rows or any(v is not None and len(v) != rows for v in arrays.values()):
            raise StoreError(
                f"{final} is damaged (its commit record says {rows} rows, it holds {n}); re-create it with the "
                "rsir embed command that made it, adding --overwrite"
            )
        arrays["dates"] = arrays["dates"] if arrays["dates"] is not None else [""] * rows
        writer.salvage(arrays, rows)
        writer.resume()
        final.unlink()
        log.info("continuing %s (older format) at row %d", final, rows)

    @staticmethod
    def _compare(
        path: Path, existing: Mapping[str, Any], wanted: Mapping[str, Any], keys: Sequence[str], what: str
    ) -> None:
        for key in keys:
            if _normalise(existing.get(key)) != _normalise(wanted.get(key)):
                raise StoreError(
                    f"{path} holds {what} made with different settings ({key}: {existing.get(key)!r} there, "
                    f"{wanted.get(key)!r} now); run with the same settings"
                    + (" to resume" if "unfinished" in what else "")
                    + ", or add --overwrite to embed it again with these"
                )

    @staticmethod
    def _require_room(folder: Path, rows: int, dim: int, n_labels: int) -> None:
        # segments, then the complete file beside them for a moment
        fileio.require_free(folder, 2 * rows * row_bytes(dim, n_labels), f"embedding {rows:,} rows")

    def _after_overwrite(self, location: SplitLocation, shard: Shard | None) -> None:
        """After --overwrite completes: files of the same split in another shard layout are stale."""
        keep = location.final(shard).name
        for name, (final, _) in location.stems().items():
            if final and f"{name}.h5" != keep and (split_of(name)[1] is None) != (shard is None or shard.count == 1):
                log.info("removing %s (replaced by %s)", location.folder / f"{name}.h5", keep)
                (location.folder / f"{name}.h5").unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------- reading
    def read(
        self,
        model: str,
        dataset: str,
        split: str,
        *,
        embeddings: bool = True,
        footprints: bool = False,
    ) -> SplitData:
        """Read one complete split (joining shards).

        Raises:
            StoreError: the split is missing, unfinished or damaged (the message says what to run).
        """
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(
                f"the store {self.root} has no {split!r} split for model {model!r} and dataset {dataset!r}; run "
                + self.embed_hint(model, dataset, split)
            )
        names = ["ids", "labels", "dates"]
        if embeddings:
            names.append("embeddings")
        if footprints:
            names += ["footprint_crs", "footprint_bounds", "footprint_lonlat"]
        parts: list[dict[str, Any]] = []
        attrs: dict[str, Any] = {}
        for path in files:
            file_attrs = self._complete_attrs(path, model, dataset, split)
            attrs = attrs or file_attrs
            arrays = hdf5.read_arrays(path, tuple(names), _rows(file_attrs))
            n = len(arrays["ids"])
            if arrays["dates"] is None:
                arrays["dates"] = [""] * n
            parts.append(arrays)
        return SplitData(
            model=model,
            dataset=dataset,
            split=split,
            attrs=attrs,
            ids=[i for part in parts for i in part["ids"]],
            labels=np.concatenate([part["labels"] for part in parts]),
            embeddings=np.concatenate([part["embeddings"] for part in parts]) if embeddings else None,
            footprints=Footprints.concat(
                [Footprints(p["footprint_crs"], p["footprint_bounds"], p["footprint_lonlat"]) for p in parts]
            )
            if footprints
            else None,
            dates=[d for part in parts for d in part["dates"]],
            files=files,
        )

    @contextmanager
    def open_rows(self, model: str, dataset: str, split: str, *, codes: Sequence[str] = ()) -> Iterator[SplitRows]:
        """The embeddings of a complete split, and the bits of code tables ``codes``, read row by row.

        For readers that must not hold a whole split (``rsir export``): indexing reads only the rows
        asked for. The files stay open while the context lasts.

        Raises:
            StoreError: the split or a code table is missing, unfinished or damaged.
        """
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(f"the store {self.root} has no {split!r} split for {model}/{dataset}")
        rows = [_rows(self._complete_attrs(path, model, dataset, split)) for path in files]
        location = self.location(model, dataset, split)
        with ExitStack() as stack:
            embeddings = stack.enter_context(
                hdf5.open_rows([(p, "embeddings", n) for p, n in zip(files, rows, strict=True)])
            )
            tables = {}
            for name in codes:
                if not location.code_file(name).is_file():
                    self.read_codes(model, dataset, split, name)  # raises the usual "no codes named" error
                tables[name] = stack.enter_context(hdf5.open_rows([(location.code_file(name), "bits", sum(rows))]))
            yield SplitRows(embeddings, tables)

    def _complete_attrs(self, path: Path, model: str, dataset: str, split: str) -> dict[str, Any]:
        attrs = hdf5.read_attrs(path)
        _check_schema(path, attrs)
        if not attrs.get("complete"):  # only the older in-place format has unfinished files
            raise StoreError(
                f"{path} is incomplete ({attrs.get('rows_committed')} of {attrs.get('rows_expected')} rows); run "
                f"the same rsir embed command again to finish it (e.g. {self.embed_hint(model, dataset, split)})"
            )
        return attrs

    def attrs(self, model: str, dataset: str, split: str) -> dict[str, Any]:
        """The provenance attributes of a complete split (of its first file)."""
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(
                f"the store {self.root} has no {split!r} split for {model}/{dataset}; run "
                + self.embed_hint(model, dataset, split)
            )
        return self._complete_attrs(files[0], model, dataset, split)

    def content_digest(self, model: str, dataset: str, split: str) -> str:
        """A digest of a complete split's embeddings and ids (what its code tables were computed from)."""
        digests = []
        for path in self.split_files(model, dataset, split):
            attrs = self._complete_attrs(path, model, dataset, split)
            digest = str(attrs.get("content_digest") or "")
            if not digest:  # a file of the older format: compute it
                arrays = hdf5.read_arrays(path, ("embeddings", "ids"), _rows(attrs))
                computed = ContentDigest()
                computed.update(arrays["embeddings"], arrays["ids"])
                digest = computed.hexdigest()
            digests.append(digest)
        if not digests:
            raise StoreError(f"the store {self.root} has no {split!r} split for {model}/{dataset}")
        return combine_digests(digests)

    def summaries(self) -> list[SplitSummary]:
        """One summary per split in the store; damaged or unfinished ones are listed as such."""
        out = []
        for model, dataset, split in self.entries():
            location = self.location(model, dataset, split)
            try:
                files, partials = [], []
                for name, (final, partial) in sorted(location.stems().items()):
                    if final:
                        files.append(location.folder / f"{name}.h5")
                    elif partial:
                        partials.append(location.folder / f"{name}.partial")
                rows = expected = dim = 0
                complete = not partials
                random_weights = False
                for path in files:
                    attrs = hdf5.read_attrs(path)
                    _check_schema(path, attrs)
                    rows += _rows(attrs)
                    expected += int(attrs.get("rows_expected") or 0)
                    dim = int(attrs.get("embedding_dim") or 0)
                    complete &= bool(attrs.get("complete"))
                    random_weights |= bool(attrs.get("random_weights"))
                for folder in partials:
                    done, header = partial_progress(folder)
                    header = header or {}
                    rows += done
                    expected += int(header.get("rows_expected") or 0)
                    dim = dim or int(header.get("dim") or 0)
                    random_weights |= bool((header.get("attrs") or {}).get("random_weights"))
                codes = code_tables.table_names(location.codes) if complete else []
                shard_note = str(len(files) + len(partials)) if len(files) + len(partials) > 1 else ""
                out.append(
                    SplitSummary(
                        model, dataset, split, rows, expected, dim, complete, codes, files, random_weights, shard_note
                    )
                )
            except StoreError as error:
                out.append(SplitSummary(model, dataset, split, 0, 0, 0, False, [], [], False, "", error=str(error)))
        return out

    # ------------------------------------------------------------------------------------ codes
    def write_codes(
        self,
        model: str,
        dataset: str,
        split: str,
        name: str,
        bits: np.ndarray,
        *,
        attrs: Mapping[str, Any],
        hasher: Mapping[str, np.ndarray],
        hasher_attrs: Mapping[str, Any],
    ) -> None:
        """Store the packed codes of a whole split with its hasher, beside the split (atomically).

        Raises:
            StoreError: the split is missing or has a different number of rows.
        """
        location = self.location(model, dataset, split)
        path = location.code_file(name)
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(f"no {split!r} split for {model}/{dataset} in {self.root}")
        rows = sum(_rows(self._complete_attrs(p, model, dataset, split)) for p in files)
        if len(bits) != rows:
            more = "more" if rows > len(bits) else "fewer"
            raise StoreError(f"{len(bits)} codes for a split of {more} rows ({rows}, {location.folder})")
        fileio.remove_stale_tmp(path.parent)
        code_tables.write_table(
            path,
            bits,
            attrs={
                **dict(attrs),
                "created": _now(),
                "rows": rows,
                "content_digest": self.content_digest(model, dataset, split),
            },
            hasher=hasher,
            hasher_attrs=hasher_attrs,
        )

    def code_names(self, model: str, dataset: str, split: str) -> list[str]:
        return code_tables.table_names(self.location(model, dataset, split).codes)

    def read_codes(self, model: str, dataset: str, split: str, name: str) -> Codes:
        """Read one code table of a split. Raises StoreError if it is missing."""
        path = self.location(model, dataset, split).code_file(name)
        if not path.is_file():
            have = self.code_names(model, dataset, split)
            from rsir_cli.hashing import CodeSpec

            spec = CodeSpec.parse(name)
            make = (
                suggest.quoted(
                    "hash",
                    method=spec.method,
                    bits=spec.bits,
                    seed=spec.seed,
                    model=model,
                    dataset=dataset,
                    store=self.root,
                )  # fmt: skip
                if spec is not None
                else "rsir hash"
            )
            raise StoreError(
                f"{model}/{dataset}/{split} has no codes named {name!r}; make them with {make} "
                f"(it has: {', '.join(have) or 'none'})"
            )
        return code_tables.read_table(path, name)


def _read_header(folder: Path) -> dict[str, Any] | None:
    return fileio.read_json(folder / HEADER) if folder.is_dir() else None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
