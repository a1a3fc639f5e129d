"""`rsir evaluate`: the paper's retrieval evaluation over the store (queries = val, database = test).

For every (model, dataset) with both splits, every hash method (``none`` = the float embeddings),
code length and seed: hash (with the stored codes when they are current, else in memory with the
same hasher code, so the numbers are equal either way), run the exact top-k search once, and score
the ranking for every label set of the dataset (BigEarthNet 43 and 19, ForestNet 12 and 4; label
sets are derived here from the stored full-set labels). Ties in the ranking go to the lower
database row (see :mod:`rsir_cli.search.exact`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rsir_cli import metrics, suggest
from rsir_cli.errors import StoreError, UsageError
from rsir_cli.hashing import METHODS, SEEDED_METHODS, CodeSpec, make_hasher, paper_seeds
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.search.base import DISTANCES
from rsir_cli.store import DATABASE_SPLIT, QUERY_SPLIT, EmbeddingStore
from rsir_cli.stored_codes import codes_for_search

log = logging.getLogger(__name__)

FLOAT_METHOD = "none"
DEFAULT_METHODS = ("none", "binary", "trivial", "lsh")
METHOD_TITLES = {
    "none": "Embedding",
    "binary": "Binary emb.",
    "trivial": "Trivial hash",
    "lsh": "LSH",
    "pca": "PCA hash",
    "itq": "ITQ",
}
DATASET_TITLES = {"bigearthnet": "BigEarthNet", "reben": "reBEN", "forestnet": "ForestNet"}
TIE_RULE = "ties in distance are broken by the lower database row index"


@dataclass(frozen=True)
class MethodSpec:
    """One row of the paper's table: a method at one code length, over its seeds."""

    method: str
    bits: int | None  # None: float embeddings; binary: resolved per model to the embedding dim
    seeds: tuple[int | None, ...]
    distance: str

    def title(self, bits: int | None) -> str:
        base = METHOD_TITLES.get(self.method, self.method)
        if self.method == FLOAT_METHOD:
            return f"{base} ({self.distance.upper() if self.distance in ('l1', 'l2') else self.distance})"
        return f"{base} ({bits})"


@dataclass
class CellResult:
    """One (model, method, code length) x (dataset, label set) cell, with its per-seed scores."""

    model: str
    dataset: str
    label_set: str
    column: str
    method: str
    title: str
    bits: int | None
    distance: str
    k: int
    match: str
    seeds: list[int | None]
    per_seed: list[dict[str, float]]
    n_queries: int
    n_database: int
    random_weights: bool
    codes: str  # "store", "memory" or "" (float embeddings)

    def summary(self, metric: str) -> tuple[float, float]:
        """Mean and 95% CI half-width of ``metric`` (map, precision, map_textbook) over the seeds."""
        return metrics.mean_ci([s[metric] for s in self.per_seed])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "random_weights": self.random_weights,
            "dataset": self.dataset,
            "label_set": self.label_set,
            "column": self.column,
            "method": self.method,
            "title": self.title,
            "bits": self.bits,
            "distance": self.distance,
            "k": self.k,
            "match": self.match,
            "n_queries": self.n_queries,
            "n_database": self.n_database,
            "codes": self.codes,
            "seeds": self.seeds,
            "per_seed": [{key: 100 * value for key, value in s.items()} for s in self.per_seed],
        }
        for metric in ("map", "precision", "map_textbook"):
            mean, ci = self.summary(metric)
            out[metric] = 100 * mean
            out[f"{metric}_ci95"] = 100 * ci
        return out


@dataclass
class Evaluation:
    """Everything ``rsir evaluate`` computed."""

    k: int
    match: str
    cells: list[CellResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "match": self.match,
            "queries_split": QUERY_SPLIT,
            "database_split": DATABASE_SPLIT,
            "scale": "x100",
            "tie_rule": TIE_RULE,
            "results": [cell.to_dict() for cell in self.cells],
        }


def method_specs(methods: Sequence[str], bits: Sequence[int], distance: str | None, seeds: int) -> list[MethodSpec]:
    """Expand ``--hash``, ``--bits``, ``--distance`` and ``--seeds`` into table rows (checked)."""
    if not methods:
        raise UsageError("--hash needs at least one method: none, " + ", ".join(METHODS))
    float_distance = (distance or "l1").strip().lower()
    if float_distance not in DISTANCES:
        raise UsageError(f"unknown --distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    if float_distance == "hamming" and FLOAT_METHOD in methods:
        raise UsageError(
            "--distance hamming applies to binary codes only; float embeddings (--hash none) take l1, l2, cosine "
            "or dot (codes are always compared by Hamming distance)"
        )
    seed_list = tuple(paper_seeds(seeds))
    specs: list[MethodSpec] = []
    for method in methods:
        method = method.strip().lower()
        if method == FLOAT_METHOD:
            specs.append(MethodSpec(method, None, (None,), float_distance))
        elif method not in METHODS:
            raise UsageError(f"unknown hash method {method!r}; choose none or one of {', '.join(METHODS)}")
        elif method == "binary":
            specs.append(MethodSpec(method, None, (None,), "hamming"))
        else:
            if not bits:
                raise UsageError(f"--bits is required for {method}")
            for b in bits:
                if b < 8 or b % 8:
                    raise UsageError(f"--bits {b}: codes are whole bytes, so bits must be a positive multiple of 8")
                specs.append(MethodSpec(method, b, seed_list if method in SEEDED_METHODS else (None,), "hamming"))
    return specs


def _pairs(store: EmbeddingStore, model: str | None, dataset: str | None) -> list[tuple[str, str]]:
    splits: dict[tuple[str, str], set[str]] = {}
    for m, d, s in store.entries():
        if (model is None or m == model) and (dataset is None or d == dataset):
            splits.setdefault((m, d), set()).add(s)
    if not splits:
        what = "/".join(x for x in (model, dataset) if x)
        raise StoreError(
            f"the store {store.root} holds no embeddings"
            + (f" for {what}" if what else "")
            + "; embed a dataset first, e.g. "
            + suggest.embed(model or "prithvi", dataset or "bigearthnet", store=store.root)
            + f" ({suggest.quoted('info', store=store.root)} lists what the store holds)"
        )
    pairs = []
    for (m, d), names in sorted(splits.items()):
        missing = [s for s in (QUERY_SPLIT, DATABASE_SPLIT) if s not in names]
        if not missing:
            pairs.append((m, d))
            continue
        message = (
            f"{m}/{d} has no {' or '.join(repr(s) for s in missing)} split (queries = {QUERY_SPLIT!r}, "
            f"database = {DATABASE_SPLIT!r}); run {store.embed_hint(m, d, missing)}"
        )
        if model is not None or dataset is not None:
            raise StoreError(message)
        log.warning("skipping %s", message)
    if not pairs:
        raise StoreError(
            f"no (model, dataset) in the store {store.root} has both a {QUERY_SPLIT!r} and a {DATABASE_SPLIT!r} split; "
            "embed their val and test splits first"
        )
    return pairs


def _label_sets(dataset: str, wanted: Sequence[str] | None) -> dict[str, Any]:
    from rsir_cli.datasets import label_sets_for

    sets = label_sets_for(dataset)
    if not sets:  # a dataset rsir does not know: its stored labels as they are (unless --labels asks for others)
        return {} if wanted else {"": None}
    if wanted:
        sets = {name: sets[name] for name in wanted if name in sets}
    return dict(sets)


def evaluate_store(
    store: EmbeddingStore,
    *,
    model: str | None = None,
    dataset: str | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    bits: Sequence[int] = (32,),
    distance: str | None = None,
    match: str = "any",
    k: int = 20,
    label_sets: Sequence[str] | None = None,
    seeds: int = 5,
    device: str = "cpu",
    progress: Progress = NULL_PROGRESS,
) -> Evaluation:
    """Evaluate retrieval like the paper for every matching (model, dataset) in the store.

    Raises:
        UsageError: bad options (unknown method, bits, distance, label set, match).
        StoreError: a missing split, mismatched dims between the splits, unreadable files.
    """
    from rsir_cli.devices import resolve_device
    from rsir_cli.search.exact import ExactIndex

    if k < 1:
        raise UsageError("--k must be at least 1")
    match = match.strip().lower()
    if match not in metrics.MATCHES:
        raise UsageError(f"--match must be 'any' or 'exact', not {match!r}")
    specs = method_specs(methods, bits, distance, seeds)
    device = resolve_device(device)
    pairs = _pairs(store, model, dataset)
    plan = [(m, d, _label_sets(d, label_sets)) for m, d in pairs]
    plan = [(m, d, sets) for m, d, sets in plan if sets]
    if not plan:
        from rsir_cli.datasets import label_sets_for

        names = dict.fromkeys(d for _, d in pairs)
        known = "; ".join(f"{d}: {', '.join(label_sets_for(d)) or 'its stored labels'}" for d in names)
        raise UsageError(f"--labels {','.join(label_sets or [])}: no evaluated dataset has that label set ({known})")

    result = Evaluation(k=k, match=match)
    # One bar over every query of every search (the searches advance it as they go).
    query_rows = {(s.model, s.dataset): s.rows for s in store.summaries() if s.split == QUERY_SPLIT}
    searches = sum(len(spec.seeds) for spec in specs)
    total = searches * sum(query_rows.get((m, d), 0) for m, d, _ in plan)
    overall = progress.task(f"evaluate ({searches} searches per dataset)", total=total, unit="queries")
    try:
        for model_name, dataset_name, sets in plan:
            _evaluate_pair(
                store, model_name, dataset_name, sets, specs, match, k, device, result, _Forward(overall), ExactIndex
            )
    finally:
        overall.close()
    return result


class _OpenTask:
    """A bar that a search advances but does not close (the evaluation owns it)."""

    def __init__(self, task: Any) -> None:
        self._task = task

    def advance(self, amount: float = 1) -> None:
        self._task.advance(amount)

    def close(self) -> None:
        pass


class _Forward:
    """A Progress whose every new task is the evaluation's one bar."""

    def __init__(self, task: Any) -> None:
        self._task = _OpenTask(task)

    def task(self, description: str, total: float | None, unit: str = "items", completed: float = 0) -> Any:
        return self._task


def _evaluate_pair(
    store: EmbeddingStore,
    model: str,
    dataset: str,
    sets: dict[str, Any],
    specs: list[MethodSpec],
    match: str,
    k: int,
    device: str,
    result: Evaluation,
    progress: Progress,
    index_class: Any,
) -> None:
    queries = store.read(model, dataset, QUERY_SPLIT)
    database = store.read(model, dataset, DATABASE_SPLIT)
    if k > len(database):  # as `rsir search` does: at most every database row is retrieved
        log.warning("--k %d is more than the %d rows of %s/%s/%s; evaluating at k = %d", k, len(database), model,
                    dataset, DATABASE_SPLIT, len(database))  # fmt: skip
        k = len(database)
    if queries.embeddings is None or database.embeddings is None:  # read() was asked for them
        raise StoreError(f"{model}/{dataset}: the store returned no embeddings")
    q_dim, db_dim = queries.embeddings.shape[1], database.embeddings.shape[1]
    if q_dim != db_dim:
        raise StoreError(
            f"{model}/{dataset}: the {QUERY_SPLIT!r} embeddings have {q_dim} dims but the {DATABASE_SPLIT!r} ones "
            f"have {db_dim}; re-embed both splits with the same model: {store.embed_hint(model, dataset, [QUERY_SPLIT, DATABASE_SPLIT], overwrite=True)}"
        )
    if queries.labels.shape[1] != database.labels.shape[1]:
        raise StoreError(
            f"{model}/{dataset}: the splits have {queries.labels.shape[1]} and {database.labels.shape[1]} labels; "
            "re-embed them from the same dataset version"
        )
    random_weights = bool(queries.attrs.get("random_weights")) or bool(database.attrs.get("random_weights"))
    # Labels per label set, and each query's total relevant count (for the textbook AP), once.
    labelled = {}
    for name, label_set in sets.items():
        q_labels = queries.labels if label_set is None else label_set.convert(queries.labels)
        db_labels = database.labels if label_set is None else label_set.convert(database.labels)
        labelled[name] = (q_labels, db_labels, metrics.total_relevant(q_labels, db_labels, match))
    title = DATASET_TITLES.get(dataset, dataset)
    fit_cache: dict[str, Any] = {}  # the database digest, read once if a learned hasher needs it
    for spec in specs:
        per_seed: dict[str, list[dict[str, float]]] = {name: [] for name in labelled}
        bits = spec.bits
        source = ""
        for seed in spec.seeds:
            if spec.method == FLOAT_METHOD:
                q_vectors, db_vectors = queries.embeddings, database.embeddings
            else:
                code = CodeSpec.of(make_hasher(spec.method, spec.bits, seed, db_dim))
                q_vectors, db_vectors, source = codes_for_search(
                    store, model, dataset, (QUERY_SPLIT, DATABASE_SPLIT), code,
                    (queries.embeddings, database.embeddings), fit_cache,
                )  # fmt: skip
                bits = code.bits
            index = index_class(spec.distance, device)
            index.add(db_vectors)
            ranking = index.search(q_vectors, k, progress).indices
            for name, (q_labels, db_labels, totals) in labelled.items():
                scores = metrics.score_ranking(q_labels, db_labels, ranking, match, totals)
                per_seed[name].append(scores.to_dict())
        for name in labelled:
            result.cells.append(
                CellResult(
                    model=model,
                    dataset=dataset,
                    label_set=name,
                    column=f"{title}-{name}" if name else title,
                    method=spec.method,
                    title=spec.title(bits),
                    bits=bits,
                    distance=spec.distance,
                    k=k,
                    match=match,
                    seeds=list(spec.seeds),
                    per_seed=per_seed[name],
                    n_queries=len(queries),
                    n_database=len(database),
                    random_weights=random_weights,
                    codes=source,
                )
            )
