"""The Milvus backend: vectors in a Milvus collection, searched like the exact engine.

- :mod:`rsir_cli.search.milvus.connection`: where a Milvus lives (a Milvus Lite ``.db`` file, by
  default ``<store>/milvus.db``, or a server / cluster at ``http(s)://host:port``), its token
  (never shown), and one client whose every failure becomes one clear :class:`BackendError`.
- :mod:`rsir_cli.search.milvus.collection`: collection names, metrics and index types, and
  :class:`MilvusIndex`, a collection behind :class:`rsir_cli.search.base.SearchBackend`.

Which store split a collection was built from, and whether it is still current, is not the
backend's business: :mod:`rsir_cli.indexing` keeps that (``rsir index``, ``search --backend milvus``).
pymilvus is imported only when a connection is made.
"""

from rsir_cli.search.milvus.collection import (
    BINARY_INDEXES,
    DEFAULT_NLIST,
    DEFAULT_NPROBE,
    FLOAT_INDEXES,
    HNSW_PARAMS,
    MAX_TOP_K,
    METRICS,
    MilvusIndex,
    collection_name,
    index_spec,
    metric_for,
    vectors_name,
)
from rsir_cli.search.milvus.connection import (
    DEFAULT_LITE_FILE,
    INSTALL_HINT,
    MilvusConnection,
    MilvusTarget,
    UnsupportedIndexError,
    default_lite_path,
    import_pymilvus,
    resolve_target,
    scrub,
)

__all__ = [
    "BINARY_INDEXES",
    "DEFAULT_LITE_FILE",
    "DEFAULT_NLIST",
    "DEFAULT_NPROBE",
    "FLOAT_INDEXES",
    "HNSW_PARAMS",
    "INSTALL_HINT",
    "MAX_TOP_K",
    "METRICS",
    "MilvusConnection",
    "MilvusIndex",
    "MilvusTarget",
    "UnsupportedIndexError",
    "collection_name",
    "default_lite_path",
    "import_pymilvus",
    "index_spec",
    "metric_for",
    "resolve_target",
    "scrub",
    "vectors_name",
]
