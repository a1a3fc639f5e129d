"""Retrieval metrics exactly as the paper computes them, plus the textbook AP.

A ranking is a (Q, k) array of database rows per query, best first, ordered by (distance, row):
ties are broken by the lower database row, as the exact engine returns them (the official code
leaves the order of ties to ``torch.topk``). Rows of -1 (a database smaller than k) are never
relevant.

- Relevance (``match``): ``any`` -- the database image shares at least one label with the query
  (the paper); ``exact`` -- identical label sets.
- AP@k (the paper, torchmetrics ``RetrievalMAP(top_k=k)`` fed only the top k): the mean of
  precision@i over the ranks i <= k that hold a relevant image, i.e. normalised by the number of
  relevant images *within the top k*; 0 for a query with none. mAP@k is the mean over queries.
- P@k: relevant images in the top k, divided by k (torchmetrics ``RetrievalPrecision(top_k=k)``).
- Textbook AP@k: the same sum of precisions, normalised by ``min(k, total relevant in the
  database)`` instead (0 for a query with no relevant image at all).
- Seeded methods: mean and the 95% confidence half-width ``1.96 * sd(ddof=1) / sqrt(n)``.

The paper reports these x100 with two decimals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rsir_cli.errors import UsageError

MATCHES = ("any", "exact")
# Queries per block when building (Q, k, label bytes) arrays: bounds memory at a few tens of MB.
_BLOCK = 8192


def _check_match(match: str) -> str:
    match = match.strip().lower()
    if match not in MATCHES:
        raise UsageError(f"--match must be 'any' or 'exact', not {match!r}")
    return match


def _packed(labels: np.ndarray) -> np.ndarray:
    """Multi-hot (N, C) -> (N, ceil(C/8)) uint8 bit masks (so that a label set is a few bytes)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise UsageError(f"labels must be a 2-D multi-hot array, got shape {labels.shape}")
    return np.packbits(labels != 0, axis=1)


def relevance(
    query_labels: np.ndarray, database_labels: np.ndarray, retrieved: np.ndarray, match: str = "any"
) -> np.ndarray:
    """Which retrieved images are relevant to their query: (Q, k) bool.

    Args:
        query_labels: (Q, C) multi-hot labels of the queries.
        database_labels: (N, C) multi-hot labels of the database.
        retrieved: (Q, k) database rows per query (-1 = nothing retrieved there).
        match: ``any`` (share a label) or ``exact`` (identical label sets).
    """
    match = _check_match(match)
    query_bits, database_bits = _packed(query_labels), _packed(database_labels)
    if query_bits.shape[1] != database_bits.shape[1] or np.shape(query_labels)[1] != np.shape(database_labels)[1]:
        raise UsageError(
            f"queries have {np.shape(query_labels)[1]} labels, the database {np.shape(database_labels)[1]}"
        )
    retrieved = np.asarray(retrieved, dtype=np.int64)
    if retrieved.shape[0] != query_bits.shape[0]:
        raise UsageError(f"{retrieved.shape[0]} rankings for {query_bits.shape[0]} queries")
    out = np.zeros(retrieved.shape, dtype=bool)
    for start in range(0, retrieved.shape[0], _BLOCK):
        rows = retrieved[start : start + _BLOCK]
        valid = rows >= 0
        found = database_bits[np.where(valid, rows, 0)]  # (B, k, bytes)
        query = query_bits[start : start + _BLOCK, None, :]
        if match == "any":
            hit = (found & query).any(axis=2)
        else:
            hit = (found == query).all(axis=2)
        out[start : start + _BLOCK] = hit & valid
    return out


def total_relevant(query_labels: np.ndarray, database_labels: np.ndarray, match: str = "any") -> np.ndarray:
    """How many database images are relevant to each query: (Q,) int64, without a Q x N matrix.

    Database rows are grouped by their label set; relevance is decided once per pair of distinct
    query and database label sets.
    """
    match = _check_match(match)
    query_bits, database_bits = _packed(query_labels), _packed(database_labels)
    n_labels = np.shape(database_labels)[1]
    unique_db, counts = np.unique(database_bits, axis=0, return_counts=True)
    unique_q, inverse = np.unique(query_bits, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    if match == "exact":
        lookup = {row.tobytes(): int(c) for row, c in zip(unique_db, counts, strict=True)}
        per_unique = np.array([lookup.get(row.tobytes(), 0) for row in unique_q], dtype=np.int64)
    else:
        db_hot = np.unpackbits(unique_db, axis=1, count=n_labels).astype(np.float32)
        q_hot = np.unpackbits(unique_q, axis=1, count=n_labels).astype(np.float32)
        per_unique = np.empty(len(unique_q), dtype=np.int64)
        step = max(1, (1 << 24) // max(1, len(unique_db)))  # a (step x unique_db) float32 block <= 64 MB
        for start in range(0, len(unique_q), step):
            shares = (q_hot[start : start + step] @ db_hot.T) > 0
            per_unique[start : start + step] = shares.astype(np.int64) @ counts
    return per_unique[inverse] if len(unique_q) else np.zeros(0, dtype=np.int64)


def average_precision_at_k(relevant: np.ndarray, total_relevant: np.ndarray | None = None) -> np.ndarray:
    """AP@k of every query: (Q,) float64 in [0, 1].

    Args:
        relevant: (Q, k) bool, the relevance of each ranked place.
        total_relevant: None for the paper's AP (normalised by the relevant images within the top
            k); else (Q,) counts of relevant images in the database, for the textbook AP
            (normalised by ``min(k, total_relevant)``).
    """
    relevant = np.asarray(relevant, dtype=bool)
    k = relevant.shape[1]
    hits = np.cumsum(relevant, axis=1, dtype=np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    summed = (np.where(relevant, hits / ranks, 0.0)).sum(axis=1)
    if total_relevant is None:
        norm = hits[:, -1] if k else np.zeros(relevant.shape[0])
    else:
        norm = np.minimum(float(k), np.asarray(total_relevant, dtype=np.float64))
    return np.divide(summed, norm, out=np.zeros_like(summed), where=norm > 0)


def precision_at_k(relevant: np.ndarray) -> np.ndarray:
    """P@k of every query: relevant places in the top k divided by k; (Q,) float64."""
    relevant = np.asarray(relevant, dtype=bool)
    return relevant.sum(axis=1) / float(relevant.shape[1])


def mean_average_precision(relevant: np.ndarray, total_relevant: np.ndarray | None = None) -> float:
    """mAP@k: the mean AP@k over queries (see :func:`average_precision_at_k`)."""
    values = average_precision_at_k(relevant, total_relevant)
    return float(values.mean()) if len(values) else float("nan")


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width ``1.96 * sd(ddof=1) / sqrt(n)`` (NaN for one value)."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    mean = float(array.mean())
    if array.size < 2:
        return mean, float("nan")
    return mean, float(1.96 * array.std(ddof=1) / math.sqrt(array.size))


@dataclass
class RetrievalScores:
    """The three scores of one ranking (fractions in [0, 1], not x100)."""

    map: float
    precision: float
    map_textbook: float
    queries: int

    def to_dict(self) -> dict[str, float]:
        return {"map": self.map, "precision": self.precision, "map_textbook": self.map_textbook}


def score_ranking(
    query_labels: np.ndarray,
    database_labels: np.ndarray,
    retrieved: np.ndarray,
    match: str = "any",
    totals: np.ndarray | None = None,
) -> RetrievalScores:
    """mAP@k, P@k and the textbook mAP@k of one ranking (k = ``retrieved.shape[1]``).

    ``totals`` (from :func:`total_relevant`) can be passed to reuse them across rankings.
    """
    relevant = relevance(query_labels, database_labels, retrieved, match)
    if totals is None:
        totals = total_relevant(query_labels, database_labels, match)
    return RetrievalScores(
        map=mean_average_precision(relevant),
        precision=float(precision_at_k(relevant).mean()) if len(relevant) else float("nan"),
        map_textbook=mean_average_precision(relevant, totals),
        queries=int(relevant.shape[0]),
    )
