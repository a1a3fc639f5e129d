"""Search backends: the exact engine (ground truth) and Milvus, behind one small interface."""

from rsir_cli.search.base import DISTANCES, SearchBackend, SearchResult

__all__ = ["DISTANCES", "SearchBackend", "SearchResult"]
