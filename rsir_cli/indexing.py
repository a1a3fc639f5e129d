"""Store split <-> Milvus collection: `rsir index` builds a split's collection, search checks it is current.

A collection built from a store split is named after it (:func:`collection_for`) and carries in its
description what it was built from (:class:`CollectionIdentity`, as ``rsir {json}``): model,
dataset, split, the vectors (a code table's name or ``float-<distance>``), distance, rows,
dimensions, the weights checksum and creation time of the store file, and a digest of the vectors
and ids. :func:`index_database` loads and indexes the vectors, and does nothing when the
collection is current; :func:`open_database_collection` opens it for search after a cheap check
(no digest: a few calls to Milvus, nothing read from the vectors but their shape), so that
``rsir search --backend milvus`` can refuse a missing or stale collection before it embeds a tile.

The backend itself (:mod:`rsir_cli.search.milvus`) knows nothing of stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli.errors import BackendError
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.search.milvus import (
    DEFAULT_NLIST,
    DEFAULT_NPROBE,
    MilvusConnection,
    MilvusIndex,
    MilvusTarget,
    collection_name,
    default_lite_path,
    index_spec,
    metric_for,
    vectors_name,
)
from rsir_cli.search.milvus.collection import describe_index

if TYPE_CHECKING:
    from rsir_cli.retrieval import Database

log = logging.getLogger(__name__)

DESCRIPTION_TAG = "rsir"
IDENTITY_VERSION = 1
#: the identity's fields as stored (JSON keys), in the order a message lists differences
_CHEAP_KEYS = ("v", "model", "dataset", "split", "vectors", "distance", "rows", "dim", "weights_sha256", "created")


@dataclass(frozen=True)
class CollectionIdentity:
    """What a collection built from a store split must match (stored as its description)."""

    model: str
    dataset: str
    split: str
    vectors: str  # the code table's name, or float-<distance>
    distance: str
    rows: int
    dim: int  # float dimensions, or bits for codes
    weights_sha256: str
    created: str
    fingerprint: str = ""  # digest of the vectors and ids; computed by `rsir index` only
    version: int = IDENTITY_VERSION

    @classmethod
    def of(cls, database: Database, *, with_fingerprint: bool = False) -> CollectionIdentity:
        """The identity of a store split's vectors: cheap fields, and the digest when asked for."""
        attrs = database.attrs
        binary = database.distance == "hamming"
        return cls(
            model=database.model,
            dataset=database.dataset,
            split=database.split,
            vectors=vectors_name(database.code, database.distance),
            distance=database.distance,
            rows=len(database.ids),
            dim=int(database.vectors.shape[1]) * (8 if binary else 1),
            weights_sha256=str(attrs.get("weights_sha256") or ""),
            created=str(attrs.get("created") or ""),
            fingerprint=fingerprint(database.vectors, database.ids) if with_fingerprint else "",
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form (``v`` is the version; no fingerprint key when there is none)."""
        value = asdict(self)
        value["v"] = value.pop("version")
        if not value["fingerprint"]:
            del value["fingerprint"]
        return value

    def describe(self) -> str:
        """The collection description: ``rsir `` + the identity as compact JSON."""
        return f"{DESCRIPTION_TAG} " + json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def differences(self, stored: Mapping[str, Any], *, with_fingerprint: bool = False) -> list[str]:
        """The stored fields (JSON keys) that differ from this identity, cheap ones in a fixed order."""
        mine = self.to_json()
        keys = (*_CHEAP_KEYS, "fingerprint") if with_fingerprint else _CHEAP_KEYS
        return [key for key in keys if stored.get(key) != mine.get(key)]


def parse_description(text: str) -> dict[str, Any] | None:
    """The identity an rsir collection's description holds, or None for a foreign collection."""
    if not text.startswith(f"{DESCRIPTION_TAG} "):
        return None
    try:
        value = json.loads(text[len(DESCRIPTION_TAG) + 1 :])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def fingerprint(vectors: np.ndarray, ids: Sequence[str]) -> str:
    """A digest of a split's vectors and ids: a collection is current when it was built from these."""
    digest = hashlib.blake2b(digest_size=16)
    data = np.ascontiguousarray(vectors)
    digest.update(f"{data.dtype}{data.shape}".encode())
    step = max(1, (64 << 20) // max(1, data.itemsize * int(np.prod(data.shape[1:]) or 1)))
    for start in range(0, len(data), step):
        digest.update(data[start : start + step].tobytes())
    digest.update("\n".join(ids).encode())
    return digest.hexdigest()


def collection_for(database: Database) -> str:
    """The name of the collection built from ``database``: ``rsir_<model>_<dataset>_<split>_<vectors>``."""
    vectors = vectors_name(database.code, database.distance)
    return collection_name(database.model, database.dataset, database.split, vectors)


def index_command(database: Database, target: MilvusTarget) -> str:
    """The `rsir index` command that builds ``database``'s collection at ``target``, ready to paste.

    Real option names; ``--uri`` and ``--store`` only where they are not the defaults. The token is
    never printed: a server that needs one reads it from ``RSIR_MILVUS_TOKEN`` (or ``--token``).
    (Spelled by :mod:`rsir_cli.suggest`, like every suggested command.)
    """
    from rsir_cli import suggest

    hasher = database.hasher
    codes = database.code is not None and hasher is not None
    root = Path(database.store.root)
    return suggest.command(
        "index",
        model=database.model,
        dataset=database.dataset,
        split=database.split,
        hash=hasher.method if codes else None,  # type: ignore[union-attr]
        bits=hasher.bits if codes else None,  # type: ignore[union-attr]
        seed=hasher.seed if codes else None,  # type: ignore[union-attr]
        float_=not codes,
        distance=None if codes else database.distance,
        uri=target.display if not target.lite or Path(target.uri) != default_lite_path(root) else None,
        store=root,
    )


@dataclass
class IndexResult:
    """What ``rsir index`` did."""

    collection: str
    uri: str
    backend: str
    server_version: str
    vectors: str
    distance: str
    metric: str
    rows: int
    dim: int
    index_type: str
    index_params: dict[str, Any]
    search_params: dict[str, Any]
    state: str  # created | up to date | rebuilt (...) | index rebuilt
    insert_seconds: float = 0.0
    index_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        value["insert_seconds"] = round(self.insert_seconds, 3)
        value["index_seconds"] = round(self.index_seconds, 3)
        return value


def index_database(
    target: MilvusTarget,
    database: Database,
    *,
    index_type: str = "flat",
    nlist: int = DEFAULT_NLIST,
    nprobe: int = DEFAULT_NPROBE,
    drop: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> IndexResult:
    """Load a store split's vectors into its collection and index them; a no-op when it is current.

    The collection is rebuilt when the store's vectors changed (re-embedded, re-hashed) or a
    previous run stopped half-way; only the index is rebuilt when just the index type changed;
    ``drop`` forces a rebuild.

    Raises:
        UsageError: a distance Milvus lacks (l1) or an index type that does not fit the vectors.
        UnsupportedIndexError: this Milvus cannot build the index type (Milvus Lite: BIN_FLAT only for codes).
        BackendError: Milvus unreachable, refusing the token, or failing.
    """
    metric = metric_for(database.distance)
    binary = database.distance == "hamming"
    milvus_index, params, search_params = index_spec(index_type, binary, nlist, nprobe)
    name = collection_for(database)
    with MilvusConnection(target) as connection:
        version = connection.server_version()
        identity = CollectionIdentity.of(database, with_fingerprint=True)
        state = "created"
        index: MilvusIndex | None = None
        if connection.has_collection(name):
            info = connection.call("describe_collection", connection.client.describe_collection, name)
            stored = parse_description(info.get("description", ""))
            if stored is None and not drop:
                raise BackendError(
                    f"the collection {name} at {target.display} was not made by rsir; pass --drop to replace it"
                )
            current = stored is not None and not identity.differences(stored, with_fingerprint=True)
            existing = MilvusIndex(connection, name, distance=database.distance, dim=identity.dim)
            if drop:
                state = "rebuilt (--drop)"
            elif not current:
                state = "rebuilt (the store changed)"
            elif len(existing) != identity.rows:
                state = "rebuilt (an earlier run stopped early)"
            else:
                index = existing
                state = "up to date" if _same_index(connection, name, milvus_index, metric, params) else "index rebuilt"
            if index is None:
                log.info("%s: %s", name, state)
                connection.drop_collection(name)
        insert_seconds = index_seconds = 0.0
        if index is None:
            began = time.perf_counter()
            index = MilvusIndex.create(
                connection, name, distance=database.distance, dim=identity.dim, description=identity.describe()
            )
            index.add(database.vectors, database.ids, progress=progress)
            insert_seconds = time.perf_counter() - began
        if state != "up to date":
            began = time.perf_counter()
            index.build_index(milvus_index, params, search_params)
            index_seconds = time.perf_counter() - began
        else:
            index.load()
        return IndexResult(
            collection=name,
            uri=target.display,
            backend=target.kind,
            server_version=version,
            vectors=identity.vectors,
            distance=database.distance,
            metric=metric,
            rows=len(index),
            dim=identity.dim,
            index_type=milvus_index,
            index_params=params,
            search_params=search_params,
            state=state,
            insert_seconds=insert_seconds,
            index_seconds=index_seconds,
        )


def _same_index(connection: MilvusConnection, name: str, index_type: str, metric: str, params: dict[str, Any]) -> bool:
    described = describe_index(connection, name)
    return (
        described is not None
        and str(described.get("index_type")) == index_type
        and str(described.get("metric_type")) == metric
        and all(str(described.get(key)) == str(value) for key, value in params.items())
    )


def open_database_collection(target: MilvusTarget, database: Database) -> MilvusIndex:
    """The collection `rsir index` built from ``database``, checked to be current, ready to search.

    Cheap enough to call before anything slow (embedding a tile): it connects, asks Milvus about
    the collection and compares the stored identity's cheap fields (not the vectors' digest) with
    the store's. The returned index owns its connection: close it (``with``) when done.

    Raises:
        BackendError: missing, stale (the store changed since `rsir index`), built for another
            distance, or Milvus unreachable; the message gives the `rsir index` command to run.
    """
    identity = CollectionIdentity.of(database)
    name = collection_for(database)
    rerun = index_command(database, target)
    connection = MilvusConnection(target)
    try:
        index = MilvusIndex.open(
            connection, name, distance=database.distance, hint=f"run `{rerun}` first", owns_connection=True
        )
        changed = identity.differences(parse_description(index.description) or {})
        if changed or len(index) != identity.rows:
            what = ", ".join(changed) or "rows"
            raise BackendError(
                f"the collection {name} at {target.display} is out of date with the store ({what} differ); "
                f"run `{rerun}` again"
            )
        return index
    except BaseException:
        connection.close()
        raise
