"""The embedding store: the HDF5 contract shared by every step (the only module that imports h5py).

Layout: one file per (model, dataset, split) -- ``<root>/<model>/<dataset>/<split>.h5`` -- or, for a
sharded embedding run, one file per shard (``<split>.shard-<i>-of-<n>.h5``) that readers join in
shard order. Each file holds

- ``embeddings``   float32 (N, D), chunked, appended batch by batch;
- ``ids``          UTF-8 strings (N,): the dataset's own sample names;
- ``labels``       uint8 (N, C): multi-hot over the dataset's full label set;
- ``footprint_crs`` (N,) strings, ``footprint_bounds`` float64 (N, 4) in that CRS (left, bottom,
  right, top), ``footprint_lonlat`` float64 (N, 4, 2): the corners (upper-left, upper-right,
  lower-right, lower-left) in EPSG:4326 longitude/latitude; NaN where a sample has no location;
- ``codes/<name>/bits`` uint8 (N, bits/8): binary codes packed 8 bits per byte (``numpy.packbits``,
  big bit order), and ``codes/<name>/hasher/*``: the fitted hasher's parameters, so that a new
  query is hashed exactly like the database;
- attributes: the schema version, the rsir version, provenance (model, weights checksum, bands,
  normalisation, input size, pooling; dataset, split, label names), creation time, and the commit
  record (``rows_committed``, ``rows_expected``, ``complete``).

Writing is append-only: a batch is written to every dataset, then ``rows_committed`` is advanced
and the file flushed. A run that is killed and restarted truncates whatever lies past the last
commit and continues from there, so no sample is ever duplicated or lost.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rsir_cli import __version__
from rsir_cli.errors import StoreError
from rsir_cli.geo import Footprints

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
QUERY_SPLIT = "val"
DATABASE_SPLIT = "test"

_STR = h5py.string_dtype("utf-8")
_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_\-]+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)\.h5$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Attributes stored as JSON text (HDF5 has no nested types); everything else is a scalar.
_JSON_ATTRS = {"bands", "mean", "std", "label_names", "model_config", "fill_bands", "extra"}


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
        start = total * (self.index - 1) // self.count
        stop = total * self.index // self.count
        return start, stop

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class SplitData:
    """One split as read from the store (all shards joined)."""

    model: str
    dataset: str
    split: str
    attrs: dict[str, Any]
    ids: list[str]
    labels: np.ndarray
    embeddings: np.ndarray | None = None
    footprints: Footprints | None = None
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def label_names(self) -> list[str]:
        return list(self.attrs["label_names"])


@dataclass
class SplitSummary:
    """What ``rsir info`` shows for one split."""

    model: str
    dataset: str
    split: str
    rows: int
    rows_expected: int
    dim: int
    complete: bool
    codes: list[str]
    files: list[Path]
    random_weights: bool
    shards: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.rows,
            "rows_expected": self.rows_expected,
            "dim": self.dim,
            "complete": self.complete,
            "codes": self.codes,
            "files": [str(f) for f in self.files],
            "random_weights": self.random_weights,
            "shards": self.shards,
            "error": self.error,
        }


@dataclass
class Codes:
    """Packed binary codes of one split, with the hasher that made them."""

    name: str
    bits: np.ndarray  # (N, nbytes) uint8, packed
    attrs: dict[str, Any]
    hasher: dict[str, np.ndarray]
    hasher_attrs: dict[str, Any]

    @property
    def n_bits(self) -> int:
        return int(self.attrs["n_bits"])


def _encode_attr(key: str, value: Any) -> Any:
    if key in _JSON_ATTRS or isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return ""
    return value


def _decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and (key in _JSON_ATTRS or value[:1] in ("[", "{")):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def _check_name(kind: str, name: str) -> str:
    if not _NAME_RE.match(name):
        raise StoreError(f"invalid {kind} name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def _open(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist") from None
    except BlockingIOError:
        raise StoreError(f"{path} is open for writing by another rsir process; wait for it to finish") from None
    except OSError as error:
        text = str(error)
        if "lock" in text.lower():
            raise StoreError(f"{path} is locked by another process (a running `rsir embed`?): {text}") from None
        raise StoreError(
            f"{path} is damaged or not an rsir store file ({text}); move it away, or re-create it "
            "with `rsir embed ... --overwrite`"
        ) from None


def _check_schema(path: Path, attrs: Mapping[str, Any]) -> None:
    version = attrs.get("schema_version")
    if version is None:
        raise StoreError(f"{path} is not an rsir store file (no schema_version attribute)")
    if int(version) != SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written with store schema version {version}, but this rsir (version "
            f"{__version__}) reads version {SCHEMA_VERSION}; re-create it with `rsir embed ... --overwrite` "
            f"or use an rsir release that reads schema {version}"
        )


class SplitWriter:
    """Append-only, resumable writer of one store file (one split, or one shard of it).

    Use :meth:`EmbeddingStore.writer` to get one. ``rows_done`` tells where a resumed run continues.
    """

    def __init__(self, path: Path, file: h5py.File) -> None:
        self.path = path
        self._file = file
        self.rows_done = int(file.attrs["rows_committed"])
        self.rows_expected = int(file.attrs["rows_expected"])

    @property
    def ids_done(self) -> list[str]:
        return list(self._file["ids"].asstr()[: self.rows_done])

    def append(
        self,
        embeddings: np.ndarray,
        ids: Sequence[str],
        labels: np.ndarray,
        footprints: Footprints | None = None,
    ) -> None:
        """Append one batch and commit it (all datasets written, then the commit record, then flush)."""
        n = len(ids)
        if embeddings.shape[0] != n or labels.shape[0] != n:
            raise StoreError("a batch's embeddings, ids and labels differ in length")
        if self.rows_done + n > self.rows_expected:
            raise StoreError(f"{self.path}: more rows than expected ({self.rows_expected})")
        f = self._file
        start, stop = self.rows_done, self.rows_done + n
        footprints = footprints or Footprints.empty(n)
        for name, values in (
            ("embeddings", np.asarray(embeddings, dtype=np.float32)),
            ("labels", np.asarray(labels, dtype=np.uint8)),
            ("ids", np.asarray(list(ids), dtype=object)),
            ("footprint_crs", np.asarray(footprints.crs, dtype=object)),
            ("footprint_bounds", footprints.bounds),
            ("footprint_lonlat", footprints.lonlat),
        ):
            dataset = f[name]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = values
        f.attrs["rows_committed"] = stop
        f.flush()
        self.rows_done = stop

    def finish(self) -> None:
        """Mark the file complete (only when every expected row is written) and close it."""
        if self.rows_done != self.rows_expected:
            raise StoreError(f"{self.path}: {self.rows_done} of {self.rows_expected} rows written; not complete")
        self._file.attrs["complete"] = True
        self._file.attrs["completed"] = _now()
        self.close()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class EmbeddingStore:
    """A directory of store files. Cheap to construct; touches the disk only when asked."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------------------------- paths
    def path(self, model: str, dataset: str, split: str, shard: Shard | None = None) -> Path:
        _check_name("model", model)
        _check_name("dataset", dataset)
        _check_name("split", split)
        name = (
            f"{split}.h5" if shard is None or shard.count == 1 else f"{split}.shard-{shard.index}-of-{shard.count}.h5"
        )
        return self.root / model / dataset / name

    def split_files(self, model: str, dataset: str, split: str) -> list[Path]:
        """The files of one split in row order: ``<split>.h5``, or all its shards in shard order."""
        single = self.path(model, dataset, split)
        if single.exists():
            return [single]
        folder = single.parent
        shards: dict[int, set[int]] = {}
        paths: dict[tuple[int, int], Path] = {}
        if folder.is_dir():
            for candidate in folder.iterdir():
                match = _SHARD_RE.match(candidate.name)
                if match and match.group("split") == split:
                    index, count = int(match.group("index")), int(match.group("count"))
                    shards.setdefault(count, set()).add(index)
                    paths[(index, count)] = candidate
        if not shards:
            return []
        if len(shards) > 1:
            raise StoreError(f"{folder}: shards of {split!r} from runs with different shard counts {sorted(shards)}")
        count, indexes = next(iter(shards.items()))
        missing = sorted(set(range(1, count + 1)) - indexes)
        if missing:
            listed = ", ".join(f"{i}/{count}" for i in missing)
            raise StoreError(
                f"{folder}: split {split!r} is sharded {count} ways but shard(s) {listed} are missing; "
                f"run `rsir embed ... --split {split} --shard i/{count}` for them"
            )
        return [paths[(i, count)] for i in range(1, count + 1)]

    def entries(self) -> list[tuple[str, str, str]]:
        """Every (model, dataset, split) that has at least one file, sorted."""
        found: set[tuple[str, str, str]] = set()
        if not self.root.is_dir():
            return []
        for path in self.root.glob("*/*/*.h5"):
            match = _SHARD_RE.match(path.name)
            split = match.group("split") if match else path.stem
            found.add((path.parent.parent.name, path.parent.name, split))
        return sorted(found)

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
        """Open a file for appending: create it, or resume it when its settings match.

        Args:
            attrs: provenance attributes (model, weights checksum, bands, ... dataset, split).
            dim: embedding dimension.
            n_labels: size of the dataset's full label set.
            rows_expected: how many samples this file will hold when complete.
            shard: which shard this file holds (None: the whole split).
            overwrite: start over even if a file exists.
            resume_keys: attributes that must equal the existing file's to resume it.

        Raises:
            StoreError: the existing file is complete, damaged or was written with other settings.
        """
        path = self.path(model, dataset, split, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not overwrite:
            f = _open(path, "r+")
            try:
                existing = _decode_attrs(f.attrs)
                _check_schema(path, existing)
                if existing.get("complete"):
                    raise StoreError(f"{path} is already complete; pass --overwrite to embed it again")
                wanted = {**dict(attrs), "rows_expected": rows_expected, "embedding_dim": dim}
                for key in (*resume_keys, "rows_expected", "embedding_dim"):
                    if _normalise(existing.get(key)) != _normalise(wanted.get(key)):
                        raise StoreError(
                            f"{path} holds an unfinished run with different settings ({key}: "
                            f"{existing.get(key)!r} there, {wanted.get(key)!r} now); rerun with the same "
                            "settings to resume, or pass --overwrite to start over"
                        )
                committed = int(existing["rows_committed"])
                for name in ("embeddings", "labels", "ids", "footprint_crs", "footprint_bounds", "footprint_lonlat"):
                    if f[name].shape[0] != committed:  # a batch written past the last commit: drop it
                        f[name].resize(committed, axis=0)
                f.flush()
            except BaseException:
                f.close()
                raise
            log.info("resuming %s at row %d of %d", path, committed, rows_expected)
            return SplitWriter(path, f)

        tmp = path.with_suffix(".h5.tmp")
        tmp.unlink(missing_ok=True)
        f = _open(tmp, "w")
        try:
            chunk_rows = max(1, min(1024, (1 << 20) // max(1, 4 * dim)))
            f.create_dataset("embeddings", (0, dim), maxshape=(None, dim), dtype=np.float32, chunks=(chunk_rows, dim))
            # A dataset without labels (a user's own archive) has zero label columns; HDF5 cannot
            # take a chunk wider than that, so let h5py choose the chunks then.
            f.create_dataset(
                "labels",
                (0, n_labels),
                maxshape=(None, n_labels),
                dtype=np.uint8,
                chunks=(1024, n_labels) if n_labels else True,
            )
            f.create_dataset("ids", (0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
            f.create_dataset("footprint_crs", (0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
            f.create_dataset("footprint_bounds", (0, 4), maxshape=(None, 4), dtype=np.float64, chunks=(1024, 4))
            f.create_dataset(
                "footprint_lonlat", (0, 4, 2), maxshape=(None, 4, 2), dtype=np.float64, chunks=(1024, 4, 2)
            )
            header = {
                "schema_version": SCHEMA_VERSION,
                "rsir_version": __version__,
                "created": _now(),
                "model": model,
                "dataset": dataset,
                "split": split,
                "shard": str(shard) if shard else "",
                "embedding_dim": dim,
                "rows_expected": rows_expected,
                "rows_committed": 0,
                "complete": False,
            }
            for key, value in {**dict(attrs), **header}.items():
                f.attrs[key] = _encode_attr(key, value)
            f.flush()
            f.close()
            tmp.replace(path)  # the file appears only once its header is whole
            if overwrite:
                self._remove_other_layouts(model, dataset, split, keep=path)
        except BaseException:
            if f.id.valid:
                f.close()
            tmp.unlink(missing_ok=True)
            raise
        return SplitWriter(path, _open(path, "r+"))

    def _remove_other_layouts(self, model: str, dataset: str, split: str, keep: Path) -> None:
        """After --overwrite, files of the same split from a different shard layout are stale."""
        folder = keep.parent
        for candidate in folder.glob(f"{split}*.h5"):
            match = _SHARD_RE.match(candidate.name)
            same_split = candidate.name == f"{split}.h5" or (match and match.group("split") == split)
            if same_split and candidate != keep and (match is None) != (_SHARD_RE.match(keep.name) is None):
                log.info("removing %s (replaced by %s)", candidate, keep.name)
                candidate.unlink()

    # ---------------------------------------------------------------------------------- reading
    def read(
        self,
        model: str,
        dataset: str,
        split: str,
        *,
        embeddings: bool = True,
        footprints: bool = False,
        require_complete: bool = True,
    ) -> SplitData:
        """Read one split (joining shards). Raises StoreError with what to run when it is missing."""
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(
                f"the store {self.root} has no {split!r} split for model {model!r} and dataset {dataset!r}; "
                f"run `rsir embed --model {model} --dataset {dataset} --split {split}`"
                + (f" --store {self.root}" if str(self.root) != "rsir-store" else "")
            )
        parts_ids: list[list[str]] = []
        parts_labels, parts_emb, parts_fp = [], [], []
        attrs: dict[str, Any] = {}
        for path in files:
            with _open(path, "r") as f:
                file_attrs = _decode_attrs(f.attrs)
                _check_schema(path, file_attrs)
                if require_complete and not file_attrs.get("complete"):
                    raise StoreError(
                        f"{path} is incomplete ({file_attrs.get('rows_committed')} of "
                        f"{file_attrs.get('rows_expected')} rows); run the same `rsir embed` command again to finish it"
                    )
                n = int(file_attrs["rows_committed"])
                if not attrs:
                    attrs = file_attrs
                parts_ids.append(list(f["ids"].asstr()[:n]))
                parts_labels.append(f["labels"][:n])
                if embeddings:
                    parts_emb.append(f["embeddings"][:n])
                if footprints:
                    parts_fp.append(
                        Footprints(
                            list(f["footprint_crs"].asstr()[:n]), f["footprint_bounds"][:n], f["footprint_lonlat"][:n]
                        )
                    )
        return SplitData(
            model=model,
            dataset=dataset,
            split=split,
            attrs=attrs,
            ids=[i for part in parts_ids for i in part],
            labels=np.concatenate(parts_labels),
            embeddings=np.concatenate(parts_emb) if embeddings else None,
            footprints=Footprints.concat(parts_fp) if footprints else None,
            files=files,
        )

    def attrs(self, model: str, dataset: str, split: str) -> dict[str, Any]:
        """The provenance attributes of a split (of its first file)."""
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(f"the store {self.root} has no {split!r} split for {model}/{dataset}")
        with _open(files[0], "r") as f:
            attrs = _decode_attrs(f.attrs)
        _check_schema(files[0], attrs)
        return attrs

    def summaries(self) -> list[SplitSummary]:
        """One summary per split in the store; damaged files are listed with their error."""
        out = []
        for model, dataset, split in self.entries():
            try:
                files = self.split_files(model, dataset, split)
                rows = expected = dim = 0
                complete = True
                random_weights = False
                codes: list[str] | None = None
                for path in files:
                    with _open(path, "r") as f:
                        attrs = _decode_attrs(f.attrs)
                        _check_schema(path, attrs)
                        rows += int(attrs["rows_committed"])
                        expected += int(attrs["rows_expected"])
                        dim = int(attrs["embedding_dim"])
                        complete &= bool(attrs.get("complete"))
                        random_weights |= bool(attrs.get("random_weights"))
                        names = sorted(f["codes"].keys()) if "codes" in f else []
                        codes = names if codes is None else sorted(set(codes) & set(names))
                shard_note = f"{len(files)}" if len(files) > 1 else ""
                out.append(
                    SplitSummary(
                        model,
                        dataset,
                        split,
                        rows,
                        expected,
                        dim,
                        complete,
                        codes or [],
                        files,
                        random_weights,
                        shard_note,
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
        """Store packed codes of a whole split (split across its shard files) with the hasher.

        An existing entry of the same name is replaced; the new one is written under a temporary
        name first and renamed, so a crash never leaves half a code table under the real name.
        """
        _check_name("code", name)
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(f"no {split!r} split for {model}/{dataset} in {self.root}")
        offset = 0
        for path in files:
            with _open(path, "r+") as f:
                n = int(f.attrs["rows_committed"])
                part = bits[offset : offset + n]
                if part.shape[0] != n:
                    raise StoreError(f"{len(bits)} codes for a split of more rows (file {path})")
                offset += n
                group = f.require_group("codes")
                tmp_name = f"{name}.tmp"
                if tmp_name in group:
                    del group[tmp_name]
                entry = group.create_group(tmp_name)
                entry.create_dataset(
                    "bits", data=np.ascontiguousarray(part, dtype=np.uint8), chunks=True if n else None
                )
                for key, value in {**dict(attrs), "created": _now()}.items():
                    entry.attrs[key] = _encode_attr(key, value)
                params = entry.create_group("hasher")
                for key, value in hasher.items():
                    params.create_dataset(key, data=np.asarray(value))
                for key, value in hasher_attrs.items():
                    params.attrs[key] = _encode_attr(key, value)
                if name in group:
                    del group[name]
                group.move(tmp_name, name)
                f.flush()
        if offset != len(bits):
            raise StoreError(f"{len(bits)} codes for a split of {offset} rows")

    def code_names(self, model: str, dataset: str, split: str) -> list[str]:
        files = self.split_files(model, dataset, split)
        names: set[str] | None = None
        for path in files:
            with _open(path, "r") as f:
                found = {k for k in f["codes"].keys() if not k.endswith(".tmp")} if "codes" in f else set()
            names = found if names is None else names & found
        return sorted(names or ())

    def read_codes(self, model: str, dataset: str, split: str, name: str) -> Codes:
        """Read one code table of a split, joined across shards. Raises StoreError if it is missing."""
        files = self.split_files(model, dataset, split)
        if not files:
            raise StoreError(f"no {split!r} split for {model}/{dataset} in {self.root}")
        parts = []
        attrs: dict[str, Any] = {}
        hasher: dict[str, np.ndarray] = {}
        hasher_attrs: dict[str, Any] = {}
        for path in files:
            with _open(path, "r") as f:
                if "codes" not in f or name not in f["codes"]:
                    raise StoreError(
                        f"{path} has no codes named {name!r}; run `rsir hash` for {model}/{dataset} first "
                        f"(it has: {', '.join(self.code_names(model, dataset, split)) or 'none'})"
                    )
                entry = f["codes"][name]
                parts.append(entry["bits"][...])
                if not attrs:
                    attrs = _decode_attrs(entry.attrs)
                    hasher = {k: v[...] for k, v in entry["hasher"].items()}
                    hasher_attrs = _decode_attrs(entry["hasher"].attrs)
        return Codes(name, np.concatenate(parts), attrs, hasher, hasher_attrs)


def _normalise(value: Any) -> Any:
    """Compare attributes read back from HDF5 with freshly built ones (tuples vs lists, numpy scalars)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, float):
        return round(value, 12)
    if value is None:
        return ""
    return value
