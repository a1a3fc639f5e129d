"""The Milvus backend: store vectors in a Milvus collection and search them like the exact engine.

One URI picks where the vectors live:

- a local path ending in ``.db`` (default ``<store>/milvus.db``): **Milvus Lite**, embedded, nothing
  to start. Pinned to ``milvus-lite==2.5.1`` with ``pymilvus>=2.5.10,<2.6``: Lite 3.x refuses
  ``BINARY_VECTOR`` fields outright, Lite 2.5.1 accepts them but builds only ``BIN_FLAT`` for them
  (``BIN_IVF_FLAT`` is refused) and only ``FLAT``, ``IVF_FLAT`` and ``AUTOINDEX`` for floats
  (``HNSW``, ``IVF_SQ8`` are refused). Lite 2.5.1 imports ``pkg_resources``, which setuptools 81+
  no longer ships; a two-name stand-in (from :mod:`importlib.metadata`) is installed when it is missing.
- ``http(s)://host:port``: a Milvus standalone server or a distributed cluster, with a token
  (``user:password`` or an API key) for authenticated servers. The token is never logged and is
  scrubbed from every error message.

A collection holds one split's vectors: the primary key ``row`` is the row index in the store
(so results map back to the store's ids, labels and footprints), ``sample_id`` the store's own
sample name, and ``vector`` the float embedding (``FLOAT_VECTOR``) or the packed binary code
(``BINARY_VECTOR``, dim = bits, one ``bytes`` object of ``bits / 8`` bytes per row).

Distances follow :mod:`rsir_cli.search.base`: Milvus ``L2`` answers squared distances, returned
here as their square root; ``COSINE`` similarity ``s`` becomes ``1 - s``; ``IP`` becomes ``-ip``;
``HAMMING`` is a bit count. Milvus has no L1 metric. **Ties:** Milvus does not order equal
distances; results are re-sorted by (distance, row), so ties are in row order *within* the
returned k, but which of several rows tied at the k-th distance make the cut is Milvus's choice
(the exact engine takes the lowest rows).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir_cli.errors import BackendError, MissingDependencyError, UsageError
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.search.base import SearchBackend, SearchResult

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "pymilvus>=2.5.10,<2.6" milvus-lite==2.5.1'
DEFAULT_LITE_FILE = "milvus.db"
#: seconds to wait for a server to answer before calling it unreachable (env RSIR_MILVUS_TIMEOUT)
DEFAULT_TIMEOUT_S = 10.0
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
DESCRIPTION_TAG = "rsir"
IDENTITY_VERSION = 1

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


# --------------------------------------------------------------------------------- imports
def _install_pkg_resources_stand_in() -> None:
    """milvus-lite 2.5.1 imports two names from ``pkg_resources`` (gone from setuptools 81+)."""
    import importlib.metadata as metadata

    module = types.ModuleType("pkg_resources")
    module.DistributionNotFound = metadata.PackageNotFoundError  # type: ignore[attr-defined]
    module.get_distribution = lambda name: types.SimpleNamespace(version=metadata.version(name))  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = module


def _quiet_pymilvus() -> None:
    # pymilvus logs every failed RPC on its own handlers (connection aliases included); rsir
    # reports errors once, scrubbed, through its error boundary instead.
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.decorators", "pymilvus.orm"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def import_pymilvus(lite: bool = False) -> Any:
    """Import pymilvus (and Milvus Lite when ``lite``), or say how to install them."""
    try:
        pymilvus = importlib.import_module("pymilvus")
    except ImportError:
        raise MissingDependencyError(f"the Milvus backend needs pymilvus: {INSTALL_HINT}") from None
    _quiet_pymilvus()
    if lite:
        try:
            importlib.import_module("milvus_lite")
        except ModuleNotFoundError as error:
            if error.name != "pkg_resources":
                raise MissingDependencyError(
                    f"Milvus Lite (a local .db file) needs milvus-lite: {INSTALL_HINT}; "
                    "or use a Milvus server with --uri http://HOST:19530"
                ) from None
            _install_pkg_resources_stand_in()
            sys.modules.pop("milvus_lite", None)
            importlib.import_module("milvus_lite")
    return pymilvus


# ---------------------------------------------------------------------------------- target
@dataclass(frozen=True)
class MilvusTarget:
    """Where a collection lives: a Milvus Lite file or a server URI, and the token (never shown)."""

    uri: str
    token: str | None = field(default=None, repr=False)

    @property
    def lite(self) -> bool:
        return "://" not in self.uri

    @property
    def display(self) -> str:
        """The URI as it may be printed: credentials inside it are removed."""
        return re.sub(r"://[^/@]*@", "://", self.uri)

    @property
    def kind(self) -> str:
        return "Milvus Lite" if self.lite else "Milvus server"

    def secrets(self) -> list[str]:
        """Strings that must never appear in output: the token, its password part, its md5 (pymilvus' alias)."""
        found = []
        credentials = [self.token] if self.token else []
        match = re.search(r"://([^/@]*)@", self.uri)
        if match:
            credentials.append(match.group(1))
        for credential in credentials:
            found += [credential, hashlib.md5(credential.encode(), usedforsecurity=False).hexdigest()]
            password = credential.split(":", 1)[1] if ":" in credential else ""
            # A password alone only when it cannot be an ordinary word of a message (the default
            # root password is "Milvus").
            if len(password) >= 8:
                found.append(password)
        return [s for s in found if len(s) >= 3]


def resolve_target(uri: str | None, token: str | None, store_root: str | Path) -> MilvusTarget:
    """The Milvus to talk to: ``uri`` (a ``.db`` path or ``http(s)://host:port``) or ``<store>/milvus.db``.

    Raises:
        UsageError: an unknown scheme, a server URI without host, or a Lite path not ending in ``.db``.
    """
    if not uri:
        return MilvusTarget(str(Path(store_root).absolute() / DEFAULT_LITE_FILE), None)
    uri = uri.strip()
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme.lower() not in ("http", "https"):
            raise UsageError(
                f"--uri {MilvusTarget(uri).display}: use http(s)://HOST:PORT for a Milvus server or cluster, "
                "or a local file path ending in .db for Milvus Lite"
            )
        if not rest.split("@")[-1].split("/")[0]:
            raise UsageError(f"--uri {MilvusTarget(uri).display} names no host; for example http://localhost:19530")
        return MilvusTarget(uri, token or None)
    path = Path(uri).expanduser()
    if path.suffix != ".db":
        raise UsageError(
            f"--uri {uri}: a Milvus Lite file must end in .db (for example {path.with_suffix('.db')}); "
            "a server is http(s)://HOST:PORT"
        )
    if path.is_dir():
        raise UsageError(f"--uri {uri} is a folder; give a file path ending in .db")
    return MilvusTarget(str(path.absolute()), None)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _reason(error: BaseException) -> str:
    """The useful part of a pymilvus or gRPC error."""
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message
    details = getattr(error, "details", None)
    if callable(details):
        try:
            text = details()
        except Exception:  # a gRPC error without details
            text = None
        if text:
            return str(text)
    return str(error).strip() or type(error).__name__


def _status(error: BaseException) -> str:
    code = getattr(error, "code", None)
    if callable(code):
        try:
            return str(code())
        except Exception:
            return ""
    return str(code or "")


#: open connections per Milvus Lite file in this process
_LITE_USERS: dict[str, int] = {}


class UnsupportedIndexError(BackendError):
    """This Milvus (Milvus Lite, typically) cannot build the index type asked for."""


# ------------------------------------------------------------------------------ connection
class MilvusConnection:
    """One client of one Milvus; every call's error becomes a one-line, token-free BackendError.

    Constructing it connects (Milvus Lite: starts the embedded server for the file).
    """

    def __init__(self, target: MilvusTarget, timeout: float | None = None) -> None:
        self.target = target
        self.timeout = float(timeout or os.environ.get("RSIR_MILVUS_TIMEOUT") or DEFAULT_TIMEOUT_S)
        self._closed = False
        pymilvus = import_pymilvus(lite=target.lite)
        self.data_type = pymilvus.DataType
        self._client_class = pymilvus.MilvusClient
        began = time.perf_counter()
        try:
            if target.lite:
                Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
                self.client = pymilvus.MilvusClient(uri=target.uri)
                _LITE_USERS[target.uri] = _LITE_USERS.get(target.uri, 0) + 1
            else:
                self.client = pymilvus.MilvusClient(uri=target.uri, token=target.token or "", timeout=self.timeout)
        except Exception as error:  # pymilvus and gRPC raise many types
            raise self._connect_error(error, time.perf_counter() - began) from None
        log.debug("connected to %s %s", target.kind, target.display)

    def _connect_error(self, error: BaseException, seconds: float) -> BackendError:
        reason = scrub(_reason(error), self.target.secrets())
        where = self.target.display
        status = _status(error)
        if self.target.lite:
            return BackendError(
                f"cannot open the Milvus Lite file {where} ({reason}): another process (a running `rsir index` "
                "or `rsir bench-milvus`?) may hold it, or it is damaged; wait for it, or pass another --uri"
            )
        lowered = reason.lower()
        if "UNAUTHENTICATED" in status or "auth" in lowered or "credential" in lowered:
            if self.target.token:
                return BackendError(
                    f"Milvus at {where} refused the token ({reason}); pass the right one with --token or "
                    "RSIR_MILVUS_TOKEN (user:password, or an API key)"
                )
            return BackendError(
                f"Milvus at {where} needs a token ({reason}); pass --token or set RSIR_MILVUS_TOKEN "
                "(user:password, or an API key)"
            )
        return BackendError(
            f"cannot reach Milvus at {where} (no answer within {max(seconds, 0.1):.0f} s: {reason}); "
            "is the server running and the address right? For Milvus Lite give a .db file path instead"
        )

    def call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call; any failure becomes a BackendError that names ``what`` and hides the token."""
        try:
            return function(*args, **kwargs)
        except (BackendError, UsageError):
            raise
        except Exception as error:  # pymilvus and gRPC raise many types
            reason = scrub(_reason(error), self.target.secrets())
            status = _status(error)
            log.debug("milvus %s failed: %s %s", what, type(error).__name__, reason)
            if "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status:
                raise BackendError(
                    f"lost the connection to Milvus at {self.target.display} during {what} ({reason}); "
                    "is the server still running?"
                ) from None
            lowered = reason.lower()
            if "invalid index type" in lowered or "only support" in lowered or "not supported" in lowered:
                raise UnsupportedIndexError(
                    f"{self.target.kind} at {self.target.display} cannot build this index ({reason}); "
                    "use --index-type flat, or a Milvus server (--uri http://HOST:19530)"
                ) from None
            raise BackendError(f"Milvus {what} failed at {self.target.display}: {reason}") from None

    def server_version(self) -> str:
        """The server's version; for Milvus Lite (which does not answer it) the milvus-lite package's."""
        if self.target.lite:
            import importlib.metadata as metadata

            try:
                return metadata.version("milvus-lite")
            except metadata.PackageNotFoundError:
                return "unknown"
        try:
            return str(self.call("get_server_version", self.client.get_server_version))
        except BackendError:
            return "unknown"

    def has_collection(self, name: str) -> bool:
        return bool(self.call("has_collection", self.client.has_collection, name))

    def drop_collection(self, name: str) -> None:
        if self.has_collection(name):
            self.call("drop_collection", self.client.drop_collection, name)

    def close(self) -> None:
        """Close the client; for Milvus Lite, the last connection to a file also stops its embedded server."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close()
        except Exception:  # a dead server
            pass
        if self.target.lite:
            # One embedded server per file serves every connection of this process to it.
            _LITE_USERS[self.target.uri] = _LITE_USERS.get(self.target.uri, 1) - 1
            if _LITE_USERS[self.target.uri] > 0:
                return
            del _LITE_USERS[self.target.uri]
            try:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.target.uri)
            except Exception:
                pass

    def __enter__(self) -> MilvusConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------ collections
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


class MilvusIndex:
    """A Milvus collection behind :class:`rsir_cli.search.base.SearchBackend`.

    Use :meth:`create` for a new collection or :meth:`open` for an existing one.

    Args:
        connection: the Milvus client.
        name: collection name.
        distance: ``hamming``, ``l2``, ``cosine`` or ``dot``.
        dim: float dimensions, or bits for ``hamming``.
        search_params: index search parameters (``nprobe``, ``ef``); ``ef`` is raised to ``k``.
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
    ) -> None:
        self.connection = connection
        self.name = name
        self.distance = distance
        self.metric = metric_for(distance)
        self.dim = int(dim)
        self.search_params = dict(search_params or {})
        self._rows = rows

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
        return cls(connection, name, distance=distance, dim=dim, rows=0)

    @classmethod
    def open(
        cls, connection: MilvusConnection, name: str, *, distance: str | None = None, hint: str = ""
    ) -> MilvusIndex:
        """Open an existing, indexed collection for search (its metric and search params come from it).

        Raises:
            BackendError: no such collection, no index, or an index for another distance.
        """
        where = connection.target.display
        if not connection.has_collection(name):
            raise BackendError(
                f"{connection.target.kind} at {where} has no collection {name}"
                + (f"; {hint}" if hint else "; create it with `rsir index`")
            )
        info = connection.call("describe_collection", connection.client.describe_collection, name)
        vector = next((f for f in info.get("fields", []) if f.get("name") == VECTOR_FIELD), None)
        if vector is None:
            raise BackendError(f"the collection {name} at {where} was not made by rsir (no {VECTOR_FIELD!r} field)")
        dim = int(vector.get("params", {}).get("dim") or 0)
        binary = vector.get("type") == connection.data_type.BINARY_VECTOR
        described = _index_of(connection, name)
        if described is None:
            raise BackendError(f"the collection {name} at {where} has no index; run `rsir index` again")
        stored_distance = {v: k for k, v in METRICS.items()}.get(str(described.get("metric_type", "")).upper())
        if stored_distance is None:
            raise BackendError(f"the collection {name} uses metric {described.get('metric_type')}, unknown to rsir")
        if distance is not None and distance != stored_distance:
            metric_for(distance)
            raise BackendError(
                f"the collection {name} at {where} is indexed for {stored_distance}, not {distance}; "
                f"search with --distance {stored_distance}, or rebuild with `rsir index --distance {distance} --drop`"
            )
        if binary != (stored_distance == "hamming"):
            raise BackendError(f"the collection {name} mixes binary and float settings; rebuild it with --drop")
        index = cls(connection, name, distance=stored_distance, dim=dim, search_params=_search_params(described))
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
        if _index_of(self.connection, self.name) is not None:
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
        """Close the connection (Milvus Lite: stop the embedded server, freeing the file)."""
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
                "search with the vectors it was built from (same model, --hash and --bits), or rebuild it "
                "with `rsir index ... --drop`"
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


def _index_of(connection: MilvusConnection, name: str) -> dict[str, Any] | None:
    names = connection.call("list_indexes", connection.client.list_indexes, name, field_name=VECTOR_FIELD)
    if not names:
        return None
    return dict(connection.call("describe_index", connection.client.describe_index, name, names[0]))


# -------------------------------------------------------------------------- store <-> Milvus
def describe(identity: dict[str, Any]) -> str:
    """The collection description: ``rsir `` + the identity as compact JSON."""
    return f"{DESCRIPTION_TAG} " + json.dumps(identity, sort_keys=True, separators=(",", ":"))


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


def store_identity(database: Any) -> dict[str, Any]:
    """What a collection built from a store split must match (cheap fields; no fingerprint).

    ``database`` is a :class:`rsir_cli.retrieval.Database` (model, dataset, split, attrs, ids,
    vectors, distance, code).
    """
    attrs = database.attrs
    binary = database.distance == "hamming"
    return {
        "v": IDENTITY_VERSION,
        "model": database.model,
        "dataset": database.dataset,
        "split": database.split,
        "vectors": vectors_name(database.code, database.distance),
        "distance": database.distance,
        "rows": len(database.ids),
        "dim": int(database.vectors.shape[1]) * (8 if binary else 1),
        "weights_sha256": str(attrs.get("weights_sha256") or ""),
        "created": str(attrs.get("created") or ""),
    }


_CHEAP_KEYS = ("v", "model", "dataset", "split", "vectors", "distance", "rows", "dim", "weights_sha256", "created")


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
        return {
            "collection": self.collection,
            "uri": self.uri,
            "backend": self.backend,
            "server_version": self.server_version,
            "vectors": self.vectors,
            "distance": self.distance,
            "metric": self.metric,
            "rows": self.rows,
            "dim": self.dim,
            "index_type": self.index_type,
            "index_params": self.index_params,
            "search_params": self.search_params,
            "state": self.state,
            "insert_seconds": round(self.insert_seconds, 3),
            "index_seconds": round(self.index_seconds, 3),
        }


def index_database(
    target: MilvusTarget,
    database: Any,
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
    identity = store_identity(database)
    name = collection_name(database.model, database.dataset, database.split, identity["vectors"])
    with MilvusConnection(target) as connection:
        version = connection.server_version()
        identity["fingerprint"] = fingerprint(database.vectors, database.ids)
        state = "created"
        index: MilvusIndex | None = None
        if connection.has_collection(name):
            info = connection.call("describe_collection", connection.client.describe_collection, name)
            stored = parse_description(info.get("description", ""))
            if stored is None and not drop:
                raise BackendError(
                    f"the collection {name} at {target.display} was not made by rsir; pass --drop to replace it"
                )
            current = stored is not None and all(
                stored.get(k) == identity.get(k) for k in (*_CHEAP_KEYS, "fingerprint")
            )
            existing = MilvusIndex(connection, name, distance=database.distance, dim=identity["dim"])
            if drop:
                state = "rebuilt (--drop)"
            elif not current:
                state = "rebuilt (the store changed)"
            elif len(existing) != identity["rows"]:
                state = "rebuilt (an earlier run stopped early)"
            else:
                index = existing
                described = _index_of(connection, name)
                same_index = (
                    described is not None
                    and str(described.get("index_type")) == milvus_index
                    and str(described.get("metric_type")) == metric
                    and all(str(described.get(key)) == str(value) for key, value in params.items())
                )
                state = "up to date" if same_index else "index rebuilt"
            if index is None:
                log.info("%s: %s", name, state)
                connection.drop_collection(name)
        insert_seconds = index_seconds = 0.0
        if index is None:
            began = time.perf_counter()
            index = MilvusIndex.create(
                connection, name, distance=database.distance, dim=identity["dim"], description=describe(identity)
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
            vectors=identity["vectors"],
            distance=database.distance,
            metric=metric,
            rows=len(index),
            dim=identity["dim"],
            index_type=milvus_index,
            index_params=params,
            search_params=search_params,
            state=state,
            insert_seconds=insert_seconds,
            index_seconds=index_seconds,
        )


def open_database_collection(target: MilvusTarget, database: Any) -> MilvusIndex:
    """The collection `rsir index` built from ``database``, checked to be current, ready to search.

    Raises:
        BackendError: missing, stale (the store changed since `rsir index`), or built for another distance.
    """
    identity = store_identity(database)
    name = collection_name(database.model, database.dataset, database.split, identity["vectors"])
    rerun = _index_command(database, target)
    connection = MilvusConnection(target)
    try:
        index = MilvusIndex.open(connection, name, distance=database.distance, hint=f"run `{rerun}` first")
        info = connection.call("describe_collection", connection.client.describe_collection, name)
        stored = parse_description(info.get("description", "")) or {}
        changed = [k for k in _CHEAP_KEYS if stored.get(k) != identity[k]]
        if changed or len(index) != identity["rows"]:
            what = ", ".join(changed) or "rows"
            raise BackendError(
                f"the collection {name} at {target.display} is out of date with the store ({what} differ); "
                f"run `{rerun}` again"
            )
        return index
    except BaseException:
        connection.close()
        raise


def _index_command(database: Any, target: MilvusTarget) -> str:
    parts = ["rsir index", f"--model {database.model}", f"--dataset {database.dataset}", f"--split {database.split}"]
    if database.code:
        method, bits = database.code.split("-")[:2]
        parts.append(f"--hash {method} --bits {bits}")
        if database.code.count("-") >= 2:
            parts.append(f"--seed {database.code.rsplit('-s', 1)[-1]}")
    else:
        parts.append(f"--float --distance {database.distance}")
    if not target.lite or Path(target.uri).name != DEFAULT_LITE_FILE:
        parts.append(f"--uri {target.display}")
    return " ".join(parts)


def open_backend(
    kind: str,
    *,
    distance: str,
    uri: str | None = None,
    token: str | None = None,
    collection: str | None = None,
    dim: int | None = None,
    store_root: str | Path = ".",
) -> SearchBackend:
    """A search backend by name: ``exact`` (empty; add vectors) or ``milvus`` (an existing collection).

    Raises:
        UsageError: an unknown kind, or milvus without a collection name.
        BackendError: the collection is missing, of another dimension or another distance.
    """
    kind = kind.strip().lower()
    if kind == "exact":
        from rsir_cli.search.exact import ExactIndex

        return ExactIndex(distance)
    if kind != "milvus":
        raise UsageError(f"unknown search backend {kind!r}; choose exact or milvus")
    if not collection:
        raise UsageError("the milvus backend needs a collection name")
    target = resolve_target(uri, token, store_root)
    connection = MilvusConnection(target)
    try:
        index = MilvusIndex.open(connection, collection, distance=distance)
        if dim is not None and dim != index.dim:
            raise BackendError(
                f"the collection {collection} holds {index.dim}-dimensional vectors, not {dim}; "
                "rebuild it with `rsir index ... --drop`"
            )
        return index
    except BaseException:
        connection.close()
        raise
