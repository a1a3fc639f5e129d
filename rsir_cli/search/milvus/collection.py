"""Milvus collections behind :class:`rsir_cli.search.base.SearchBackend`: names, metrics, indexes, search.

A collection holds one split's vectors: the primary key ``row`` is the row index in the store
(so results map back to the store's ids, labels and footprints), ``sample_id`` the store's own
sample name, and ``vector`` the float embedding (``FLOAT_VECTOR``) or the packed binary code
(``BINARY_VECTOR``, dim = bits, one ``bytes`` object of ``bits / 8`` bytes per row). Its
description is free text (:mod:`rsir_cli.indexing` keeps there what the collection was built from).

Distances follow :mod:`rsir_cli.search.base`: Milvus ``L2`` answers squared distances, returned
here as their square root; ``COSINE`` similarity ``s`` becomes ``1 - s``; ``IP`` becomes ``-ip``;
``HAMMING`` is a bit count. Milvus has no L1 metric. **Ties:** Milvus does not order equal
distances; results are re-sorted by (distance, row), so ties are in row order *within* the
returned k, but which of several rows tied at the k-th distance make the cut is Milvus's choice
(the exact engine takes the lowest rows).

Index types: Milvus Lite 2.5.1 (pinned with ``pymilvus>=2.5.10,<2.6``; Lite 3.x refuses
``BINARY_VECTOR`` fields outright) builds only ``BIN_FLAT`` for binary vectors (``BIN_IVF_FLAT``
is refused) and ``FLAT``, ``IVF_FLAT`` and ``AUTOINDEX`` for floats (``HNSW``, ``IVF_SQ8`` are
refused); a server builds them all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rsir_cli.errors import BackendError, UsageError
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.search.base import SearchBackend, SearchResult
from rsir_cli.search.milvus.connection import MilvusConnection

#: Milvus refuses a top-k above this
MAX_TOP_K = 16384
#: the paper's IVF setting (nlist 128); nprobe is not stated there, rsir searches 16 of the 128 lists
DEFAULT_NLIST = 128
DEFAULT_NPROBE = 16
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
HNSW_MIN_EF = 64

ROW_FIELD = "row"
ID_FIELD = "sample_id"
VECTOR_FIELD = "vector"
ID_MAX_LENGTH = 2048

#: rsir distance -> Milvus metric (no L1 in Milvus)
METRICS = {"hamming": "HAMMING", "l2": "L2", "cosine": "COSINE", "dot": "IP"}
FLOAT_INDEXES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW")
BINARY_INDEXES = ("BIN_FLAT", "BIN_IVF_FLAT")
_IVF = ("IVF_FLAT", "IVF_SQ8", "BIN_IVF_FLAT")
# Rows per insert call: about a million vector components. Milvus Lite 2.5.1 turns pathologically
# slow on larger calls (measured here: 2,000 x 768-d float rows in ~1.2 s, 3,000 in ~80 s).
_INSERT_COMPONENTS = 1_000_000
_INSERT_MIN_ROWS, _INSERT_MAX_ROWS = 256, 8192
# Queries per search call: keeps a request and its answer well under gRPC's message limits.
_SEARCH_RESULTS_PER_CALL = 200_000
_SEARCH_MAX_QUERIES = 1024
_NAME_RE = re.compile(r"[^A-Za-z0-9_]+")


def collection_name(model: str, dataset: str, split: str, vectors: str) -> str:
    """``rsir_<model>_<dataset>_<split>_<vectors>`` with only letters, digits and ``_`` (Milvus' rule).

    ``vectors`` is a code name (``trivial-32``, ``lsh-32-s42``) or ``float-l2`` / ``float-cosine``.
    """
    raw = "_".join(("rsir", model, dataset, split, vectors))
    name = _NAME_RE.sub("_", raw).strip("_")
    if len(name) > 200:  # Milvus allows 255; keep it readable and unique
        digest = hashlib.blake2b(raw.encode(), digest_size=6).hexdigest()
        name = f"{name[:186]}_{digest}"
    return name


def vectors_name(code: str | None, distance: str) -> str:
    """What a collection holds: the code table's name, or ``float-<distance>`` for embeddings."""
    return code if code else f"float-{distance}"


def metric_for(distance: str) -> str:
    """The Milvus metric of an rsir distance.

    Raises:
        UsageError: ``l1`` (Milvus has none) or an unknown distance.
    """
    distance = distance.strip().lower()
    if distance == "l1":
        raise UsageError(
            "Milvus has no L1 metric; use --distance l2 (or cosine, dot) with Milvus, "
            "or the exact engine (the default backend) for the paper's L1"
        )
    if distance not in METRICS:
        raise UsageError(f"unknown distance {distance!r} for Milvus; choose one of {', '.join(METRICS)}")
    return METRICS[distance]


def index_spec(
    index_type: str, binary: bool, nlist: int = DEFAULT_NLIST, nprobe: int = DEFAULT_NPROBE
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(Milvus index type, build params, search params) for ``flat``, ``ivf_flat``, ``hnsw``, ``ivf_sq8``.

    ``flat`` and ``ivf_flat`` mean ``BIN_FLAT`` / ``BIN_IVF_FLAT`` for binary codes.

    Raises:
        UsageError: an index type that does not fit the vectors.
    """
    key = index_type.strip().upper().replace("-", "_")
    if binary and key in ("FLAT", "IVF_FLAT"):
        key = "BIN_" + key
    if not binary and key.startswith("BIN_"):
        raise UsageError(f"--index-type {index_type} is for binary codes; float embeddings take {_choices(False)}")
    allowed = BINARY_INDEXES if binary else FLOAT_INDEXES
    if key not in allowed:
        kind = "binary codes" if binary else "float embeddings"
        raise UsageError(f"--index-type {index_type}: {kind} take {_choices(binary)}")
    if nlist < 1 or nprobe < 1:
        raise UsageError("nlist and nprobe must be at least 1")
    if key in _IVF:
        return key, {"nlist": nlist}, {"nprobe": min(nprobe, nlist)}
    if key == "HNSW":
        return key, dict(HNSW_PARAMS), {"ef": HNSW_MIN_EF}
    return key, {}, {}


def _choices(binary: bool) -> str:
    names = ("flat", "ivf_flat") if binary else ("flat", "ivf_flat", "ivf_sq8", "hnsw")
    return ", ".join(names)


def _insert_batch_rows(dim: int) -> int:
    return max(_INSERT_MIN_ROWS, min(_INSERT_MAX_ROWS, _INSERT_COMPONENTS // max(1, dim)))


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(total, start + size)


class MilvusIndex(SearchBackend):
    """A Milvus collection behind :class:`rsir_cli.search.base.SearchBackend`.

    Use :meth:`create` for a new collection or :meth:`open` for an existing one.

    Args:
        connection: the Milvus client.
        name: collection name.
        distance: ``hamming``, ``l2``, ``cosine`` or ``dot``.
        dim: float dimensions, or bits for ``hamming``.
        search_params: index search parameters (``nprobe``, ``ef``); ``ef`` is raised to ``k``.
        rows: the row count when known (else asked of Milvus when first needed).
        description: the collection's description.
        owns_connection: :meth:`close` closes the connection (else it belongs to the caller).
    """

    def __init__(
        self,
        connection: MilvusConnection,
        name: str,
        *,
        distance: str,
        dim: int,
        search_params: dict[str, Any] | None = None,
        rows: int | None = None,
        description: str = "",
        owns_connection: bool = False,
    ) -> None:
        self.connection = connection
        self.name = name
        self.distance = distance
        self.metric = metric_for(distance)
        self.dim = int(dim)
        self.search_params = dict(search_params or {})
        self._rows = rows
        self.description = description
        self.owns_connection = owns_connection

    @property
    def binary(self) -> bool:
        return self.distance == "hamming"

    # ---------------------------------------------------------------------- construction
    @classmethod
    def create(
        cls, connection: MilvusConnection, name: str, *, distance: str, dim: int, description: str = ""
    ) -> MilvusIndex:
        """Create an empty collection (row INT64 primary key, sample_id VARCHAR, vector).

        Raises:
            BackendError: the collection exists, or Milvus refuses.
        """
        metric_for(distance)
        binary = distance == "hamming"
        if binary and dim % 8:
            raise UsageError(f"binary codes need a multiple of 8 bits, got {dim}")
        if connection.has_collection(name):
            raise BackendError(f"the collection {name} already exists at {connection.target.display}")
        data_type = connection.data_type
        schema = connection.call(
            "create_schema",
            connection._client_class.create_schema,
            auto_id=False,
            enable_dynamic_field=False,
            description=description,
        )
        schema.add_field(ROW_FIELD, data_type.INT64, is_primary=True)
        schema.add_field(ID_FIELD, data_type.VARCHAR, max_length=ID_MAX_LENGTH)
        schema.add_field(VECTOR_FIELD, data_type.BINARY_VECTOR if binary else data_type.FLOAT_VECTOR, dim=int(dim))
        connection.call("create_collection", connection.client.create_collection, name, schema=schema)
        return cls(connection, name, distance=distance, dim=dim, rows=0, description=description)

    @classmethod
    def open(
        cls,
        connection: MilvusConnection,
        name: str,
        *,
        distance: str | None = None,
        hint: str = "",
        owns_connection: bool = False,
    ) -> MilvusIndex:
        """Open an existing, indexed collection for search (its metric and search params come from it).

        Args:
            connection: the Milvus client.
            name: collection name.
            distance: the distance the caller searches by (checked against the index's metric).
            hint: what to do when the collection is missing or has no index (the end of the message).
            owns_connection: the index closes the connection when it is closed.

        Raises:
            BackendError: no such collection, no index, or an index for another distance.
        """
        where = connection.target.display
        tail = f"; {hint}" if hint else ""
        if not connection.has_collection(name):
            raise BackendError(f"{connection.target.kind} at {where} has no collection {name}{tail}")
        info = connection.call("describe_collection", connection.client.describe_collection, name)
        vector = next((f for f in info.get("fields", []) if f.get("name") == VECTOR_FIELD), None)
        if vector is None:
            raise BackendError(f"the collection {name} at {where} was not made by rsir (no {VECTOR_FIELD!r} field)")
        dim = int(vector.get("params", {}).get("dim") or 0)
        binary = vector.get("type") == connection.data_type.BINARY_VECTOR
        described = describe_index(connection, name)
        if described is None:
            raise BackendError(f"the collection {name} at {where} has no index{tail}")
        stored_distance = {v: k for k, v in METRICS.items()}.get(str(described.get("metric_type", "")).upper())
        if stored_distance is None:
            raise BackendError(f"the collection {name} uses metric {described.get('metric_type')}, unknown to rsir")
        if distance is not None and distance != stored_distance:
            metric_for(distance)
            raise BackendError(
                f"the collection {name} at {where} is indexed for {stored_distance}, not {distance}; "
                f"search it by {stored_distance}, or rebuild it for {distance}"
            )
        if binary != (stored_distance == "hamming"):
            raise BackendError(f"the collection {name} mixes binary and float settings; rebuild it with --drop")
        index = cls(
            connection, name, distance=stored_distance, dim=dim, search_params=_search_params(described),
            description=str(info.get("description", "")), owns_connection=owns_connection,
        )  # fmt: skip
        index.load()
        return index

    # --------------------------------------------------------------------------- writing
    def add(self, vectors: np.ndarray, ids: Sequence[str] | None = None, progress: Progress = NULL_PROGRESS) -> None:
        """Append rows (primary keys continue from the current row count), in moderate batches."""
        vectors = self._check(vectors, "database")
        if ids is not None and len(ids) != len(vectors):
            raise UsageError(f"{len(ids)} ids for {len(vectors)} vectors")
        if ids is not None:
            long = next((i for i in ids if len(str(i).encode()) > ID_MAX_LENGTH), None)
            if long is not None:
                raise BackendError(f"sample id {str(long)[:60]}... is longer than {ID_MAX_LENGTH} bytes")
        start_row = len(self)
        step = _insert_batch_rows(self.dim)
        task = progress.task(f"insert into {self.name}", total=len(vectors), unit="rows")
        try:
            for start, stop in _batches(len(vectors), step):
                rows = [
                    {
                        ROW_FIELD: start_row + i,
                        ID_FIELD: str(ids[i]) if ids is not None else str(start_row + i),
                        VECTOR_FIELD: self._vector(vectors[i]),
                    }
                    for i in range(start, stop)
                ]
                self.connection.call("insert", self.connection.client.insert, self.name, rows)
                self._rows = start_row + stop
                task.advance(stop - start)
        finally:
            task.close()
        # Seal the inserted data, so the row count is exact and the index covers every row.
        self.connection.call("flush", self.connection.client.flush, self.name)

    def build_index(self, index_type: str, params: dict[str, Any], search_params: dict[str, Any]) -> None:
        """Build the vector index (replacing any other) and load the collection for search.

        Raises:
            UnsupportedIndexError: this Milvus cannot build ``index_type``.
        """
        client = self.connection.client
        if describe_index(self.connection, self.name) is not None:
            self.connection.call("release_collection", client.release_collection, self.name)
            self.connection.call("drop_index", client.drop_index, self.name, VECTOR_FIELD)
        index_params = self.connection.call("prepare_index_params", client.prepare_index_params)
        index_params.add_index(
            field_name=VECTOR_FIELD, index_name=VECTOR_FIELD, index_type=index_type, metric_type=self.metric,
            params=params,
        )  # fmt: skip
        self.connection.call("create_index", client.create_index, self.name, index_params)
        self.search_params = dict(search_params)
        self.load()

    def load(self) -> None:
        self.connection.call("load_collection", self.connection.client.load_collection, self.name)

    def drop(self) -> None:
        self.connection.drop_collection(self.name)

    def close(self) -> None:
        """Close the connection when the index owns it (Milvus Lite: stop the embedded server, freeing
        the file); a borrowed connection stays open for its owner."""
        if self.owns_connection:
            self.connection.close()

    # --------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        if self._rows is None:
            stats = self.connection.call("get_collection_stats", self.connection.client.get_collection_stats, self.name)
            self._rows = int(stats.get("row_count", 0))
        return self._rows

    def sample_ids(self, rows: Sequence[int]) -> dict[int, str]:
        """The stored sample ids of some rows (row -> id)."""
        if not len(rows):
            return {}
        found = self.connection.call(
            "query", self.connection.client.query, self.name, ids=[int(r) for r in rows], output_fields=[ID_FIELD]
        )
        return {int(item[ROW_FIELD]): str(item[ID_FIELD]) for item in found}

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` nearest rows of each query, sorted by (distance, row); -1 / inf past the end.

        Raises:
            BackendError: k above Milvus' limit, or Milvus refuses the search.
            UsageError: queries of the wrong dimension or type.
        """
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        if k > MAX_TOP_K:
            raise BackendError(f"Milvus returns at most {MAX_TOP_K} matches per query, not {k}")
        queries = self._check(queries, "queries")
        n = len(queries)
        indices = np.full((n, k), -1, dtype=np.int64)
        distances = np.full((n, k), np.inf)
        params = dict(self.search_params)
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k)
        search_params = {"metric_type": self.metric, "params": params}
        step = max(1, min(_SEARCH_MAX_QUERIES, _SEARCH_RESULTS_PER_CALL // k))
        for start, stop in _batches(n, step):
            data = [self._vector(q) for q in queries[start:stop]]
            hits = self.connection.call(
                "search",
                self.connection.client.search,
                self.name,
                data=data,
                limit=k,
                anns_field=VECTOR_FIELD,
                search_params=search_params,
            )
            for offset, found in enumerate(hits):
                if not len(found):
                    continue
                rows = np.fromiter((hit["id"] for hit in found), dtype=np.int64, count=len(found))
                raw = np.fromiter((hit["distance"] for hit in found), dtype=np.float64, count=len(found))
                converted = self._to_distance(raw)
                order = np.lexsort((rows, converted))
                indices[start + offset, : len(found)] = rows[order]
                distances[start + offset, : len(found)] = converted[order]
        return SearchResult(indices, distances)

    # --------------------------------------------------------------------------- helpers
    def _to_distance(self, raw: np.ndarray) -> np.ndarray:
        if self.metric == "L2":
            return np.sqrt(np.maximum(raw, 0.0))  # Milvus answers squared L2
        if self.metric == "COSINE":
            return 1.0 - raw
        if self.metric == "IP":
            return -raw
        return raw

    def _vector(self, row: np.ndarray) -> Any:
        return row.tobytes() if self.binary else row

    def _check(self, vectors: np.ndarray, what: str) -> np.ndarray:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise UsageError(f"{what} must be a 2-D array (rows x dims), got shape {vectors.shape}")
        if self.binary:
            if vectors.dtype != np.uint8:
                raise UsageError(f"hamming search takes packed uint8 codes; the {what} are {vectors.dtype}")
            width = vectors.shape[1] * 8
            unit = "bits"
        else:
            if not np.issubdtype(vectors.dtype, np.number):
                raise UsageError(f"{self.distance} search takes numeric vectors; the {what} are {vectors.dtype}")
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            width = vectors.shape[1]
            unit = "dimensions"
        if width != self.dim:
            raise BackendError(
                f"the {what} have {width} {unit} but the collection {self.name} holds {self.dim}; "
                "search it with vectors like those it was built from (the same model and code)"
            )
        return vectors


def _search_params(described: dict[str, Any], nprobe: int = DEFAULT_NPROBE) -> dict[str, Any]:
    """Search parameters for an index as Milvus describes it (IVF: nprobe; HNSW: ef)."""
    index_type = str(described.get("index_type", "")).upper()
    if index_type in _IVF:
        nlist = int(described.get("nlist") or (described.get("params") or {}).get("nlist") or DEFAULT_NLIST)
        return {"nprobe": min(nprobe, nlist)}
    if index_type == "HNSW":
        return {"ef": HNSW_MIN_EF}
    return {}


def describe_index(connection: MilvusConnection, name: str) -> dict[str, Any] | None:
    """How Milvus describes the vector index of a collection (type, metric, params), or None."""
    names = connection.call("list_indexes", connection.client.list_indexes, name, field_name=VECTOR_FIELD)
    if not names:
        return None
    return dict(connection.call("describe_index", connection.client.describe_index, name, names[0]))
