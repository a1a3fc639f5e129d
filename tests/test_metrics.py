"""The paper's metrics against torchmetrics, exact fractions and hand-computed values."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from rsir_cli import metrics
from rsir_cli.errors import UsageError
from rsir_cli.search.exact import exact_search


def tie_heavy_retrieval(seed: int, n_queries: int = 300, n_database: int = 2000, k: int = 20):
    """Random multi-label data ranked by Hamming distance on 8-bit codes: ties everywhere."""
    rng = np.random.default_rng(seed)
    n_labels = 12
    q_labels = (rng.random((n_queries, n_labels)) < 0.12).astype(np.uint8)
    db_labels = (rng.random((n_database, n_labels)) < 0.12).astype(np.uint8)
    db_labels[:5] = 0  # a few unlabelled images
    q_labels[:3] = 0  # queries with nothing relevant under `any`
    database = rng.integers(0, 256, (n_database, 1), dtype=np.uint8)
    queries = rng.integers(0, 256, (n_queries, 1), dtype=np.uint8)
    ranking = exact_search(database, queries, k, "hamming")
    return q_labels, db_labels, ranking


def fraction_ap(relevant: list[bool], norm: int | None) -> Fraction:
    """AP@k in exact rational arithmetic: sum of precision@i at relevant ranks / norm."""
    hits, total = 0, Fraction(0)
    for rank, rel in enumerate(relevant, start=1):
        if rel:
            hits += 1
            total += Fraction(hits, rank)
    denominator = hits if norm is None else norm
    return total / denominator if denominator else Fraction(0)


@pytest.mark.parametrize("match", ["any", "exact"])
def test_map_and_precision_equal_torchmetrics_fed_the_same_top_k(match: str) -> None:
    torch = pytest.importorskip("torch")
    torchmetrics = pytest.importorskip("torchmetrics")
    k = 20
    q_labels, db_labels, ranking = tie_heavy_retrieval(1 if match == "any" else 2, k=k)
    assert (np.diff(ranking.distances, axis=1) == 0).mean() > 0.5  # many ties inside the top k
    relevant = metrics.relevance(q_labels, db_labels, ranking.indices, match)
    assert relevant.any() and not relevant.all()

    # The official protocol: feed only the top-k scores and targets, per query. Scores strictly
    # decreasing with the rank make torchmetrics use exactly our (distance, row) order.
    n = relevant.shape[0]
    scores = torch.tensor(np.tile(np.arange(k, 0, -1, dtype=np.float64), (n, 1))).flatten()
    target = torch.tensor(relevant).flatten()
    groups = torch.arange(n).repeat_interleave(k)
    tm_map = torchmetrics.retrieval.RetrievalMAP(top_k=k)(scores, target, indexes=groups).item()
    tm_precision = torchmetrics.retrieval.RetrievalPrecision(top_k=k)(scores, target, indexes=groups).item()

    ours_map = metrics.mean_average_precision(relevant)
    ours_precision = float(metrics.precision_at_k(relevant).mean())
    # torchmetrics 1.9 computes AP in float32 (its arange is float32): agreement to float32 precision.
    assert ours_map == pytest.approx(tm_map, abs=1e-6)
    assert ours_precision == pytest.approx(tm_precision, abs=1e-6)
    # ... and per query, where rounding is smaller than any difference a bug would make.
    from torchmetrics.functional.retrieval import retrieval_average_precision

    for row in range(0, n, 7):
        tm_ap = retrieval_average_precision(
            torch.tensor(np.arange(k, 0, -1, dtype=np.float64)), torch.tensor(relevant[row]), top_k=k
        ).item()
        assert metrics.average_precision_at_k(relevant[row : row + 1])[0] == pytest.approx(tm_ap, abs=1e-7)


@pytest.mark.parametrize("match", ["any", "exact"])
def test_ap_equals_exact_rational_arithmetic_to_1e_12(match: str) -> None:
    q_labels, db_labels, ranking = tie_heavy_retrieval(5, n_queries=120, n_database=800, k=15)
    relevant = metrics.relevance(q_labels, db_labels, ranking.indices, match)
    totals = metrics.total_relevant(q_labels, db_labels, match)
    paper = metrics.average_precision_at_k(relevant)
    textbook = metrics.average_precision_at_k(relevant, totals)
    for row in range(len(relevant)):
        flags = [bool(x) for x in relevant[row]]
        assert abs(paper[row] - float(fraction_ap(flags, None))) < 1e-12
        assert abs(textbook[row] - float(fraction_ap(flags, min(15, int(totals[row]))))) < 1e-12


def test_relevance_and_totals_equal_a_full_brute_force() -> None:
    q_labels, db_labels, ranking = tie_heavy_retrieval(9, n_queries=100, n_database=700)
    shares = (q_labels.astype(int) @ db_labels.T.astype(int)) > 0  # (Q, N) any
    same = (q_labels[:, None, :] == db_labels[None, :, :]).all(axis=2)  # (Q, N) exact
    for match, full in (("any", shares), ("exact", same)):
        np.testing.assert_array_equal(metrics.total_relevant(q_labels, db_labels, match), full.sum(axis=1))
        expected = np.take_along_axis(full, ranking.indices, axis=1)
        np.testing.assert_array_equal(metrics.relevance(q_labels, db_labels, ranking.indices, match), expected)


def test_hand_computed_example() -> None:
    # relevant at ranks 1, 3, 4 of 5: AP = (1/1 + 2/3 + 3/4) / 3; textbook with 6 relevant: / min(5, 6)
    relevant = np.array([[True, False, True, True, False], [False] * 5])
    ap = metrics.average_precision_at_k(relevant)
    assert ap[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3, abs=1e-15)
    assert ap[1] == 0.0
    textbook = metrics.average_precision_at_k(relevant, np.array([6, 0]))
    assert textbook[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 5, abs=1e-15)
    assert textbook[1] == 0.0
    np.testing.assert_allclose(metrics.precision_at_k(relevant), [3 / 5, 0.0])


def test_unretrieved_places_are_never_relevant() -> None:
    q = np.array([[1, 0]], dtype=np.uint8)
    db = np.array([[1, 0], [1, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(metrics.relevance(q, db, np.array([[1, 0, -1]])), [[True, True, False]])
    np.testing.assert_array_equal(metrics.relevance(q, db, np.array([[1, 0, -1]]), "exact"), [[False, True, False]])


def test_mean_ci_is_the_papers_formula() -> None:
    values = [68.0, 70.0, 65.0, 72.0, 66.0]
    mean, ci = metrics.mean_ci(values)
    assert mean == pytest.approx(68.2)
    assert ci == pytest.approx(1.96 * np.std(values, ddof=1) / np.sqrt(5))
    single_mean, single_ci = metrics.mean_ci([3.0])
    assert single_mean == 3.0 and np.isnan(single_ci)


def test_bad_match_and_label_shapes() -> None:
    with pytest.raises(UsageError, match="--match"):
        metrics.relevance(np.zeros((1, 3)), np.zeros((2, 3)), np.zeros((1, 1), dtype=int), "some")
    with pytest.raises(UsageError, match="labels"):
        metrics.relevance(np.zeros((1, 3)), np.zeros((2, 4)), np.zeros((1, 1), dtype=int))
