"""Code tables in the store: the one rule for "current", finding a table, and `rsir hash`.

A stored code table is **current** for a hasher when (:func:`is_current`)

1. it was computed from the split's embeddings as they are now (its ``content_digest`` equals the
   split's, :meth:`rsir_cli.store.EmbeddingStore.content_digest`), and
2. its hasher has the same method, bits, seed, dimension and version -- and, for a learned
   hasher (pca, itq), was fitted on the same split with the same content (``fitted_on`` and
   ``fit_source``, the fit split's digest).

`rsir hash` rewrites tables that are not current, `rsir evaluate` uses current tables and hashes
in memory otherwise (with the same code, so the numbers are equal either way), and `rsir search`
hashes a query with the stored hasher of the table it searches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli import suggest
from rsir_cli.errors import StoreError, UsageError
from rsir_cli.hashing import (
    DEFAULT_SEED,
    METHODS,
    SEEDED_METHODS,
    CodeSpec,
    Hasher,
    make_hasher,
)
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.store import DATABASE_SPLIT, Codes, EmbeddingStore

if TYPE_CHECKING:
    from rsir_cli.store import SplitSummary

log = logging.getLogger(__name__)

#: hasher attributes that must agree for a stored table to be current
_HASHER_KEYS = ("method", "bits", "seed", "dim", "hasher_version", "iterations", "fitted_on", "fit_source")


def is_current(codes: Codes, hasher: Hasher, content_digest: str) -> bool:
    """The one rule: ``codes`` were made by ``hasher`` (fitted as it is) from embeddings with this digest.

    Args:
        codes: a stored table.
        hasher: the hasher the caller would use (fitted already, for learned methods).
        content_digest: the digest of the split the table belongs to, as it is now.
    """
    if not codes.content_digest or codes.content_digest != content_digest:
        return False
    expected = hasher.attrs()
    stored = codes.hasher_attrs

    def norm(value: Any) -> str:
        return "" if value is None else str(value)

    return all(norm(stored.get(key)) == norm(expected.get(key)) for key in _HASHER_KEYS)


def fit_split(split_names: Sequence[str]) -> str | None:
    """The split a learned hasher is fitted on: the database split, or the only split of an archive."""
    names = list(split_names)
    if DATABASE_SPLIT in names:
        return DATABASE_SPLIT
    return names[0] if len(names) == 1 else None


def prepared_hasher(
    store: EmbeddingStore, model: str, dataset: str, spec: CodeSpec, dim: int, fit_on: str | None
) -> tuple[Hasher, np.ndarray | None]:
    """A hasher for ``spec`` with ``fitted_on``/``fit_source`` set as it would be fitted (not fitted yet).

    Returns:
        The hasher, and the fit split's embeddings when the method is learned (None otherwise).
    """
    hasher = make_hasher(spec.method, spec.bits, spec.seed, dim)
    if not hasher.learned:
        return hasher, None
    if fit_on is None:
        raise StoreError(
            f"{model}/{dataset} has no {DATABASE_SPLIT!r} split to fit {spec.method} on; embed it with "
            + store.embed_hint(model, dataset, DATABASE_SPLIT)
        )
    hasher.fitted_on = fit_on
    hasher.fit_source = store.content_digest(model, dataset, fit_on)
    return hasher, store.read(model, dataset, fit_on).embeddings


def stored_if_current(store: EmbeddingStore, model: str, dataset: str, split: str, hasher: Hasher) -> np.ndarray | None:
    """The stored codes of a split for ``hasher`` when they are current, else None."""
    if hasher.name not in store.code_names(model, dataset, split):
        return None
    try:
        codes = store.read_codes(model, dataset, split, hasher.name)
        digest = store.content_digest(model, dataset, split)
    except StoreError as error:
        log.info("stored codes %s of %s/%s/%s unusable (%s)", hasher.name, model, dataset, split, error)
        return None
    if not is_current(codes, hasher, digest):
        log.info("stored codes %s of %s/%s/%s are stale", hasher.name, model, dataset, split)
        return None
    return codes.bits


def find_code(
    store: EmbeddingStore,
    model: str,
    dataset: str,
    split: str,
    method: str,
    bits: int | None,
    seed: int | None,
    dim: int,
) -> str:
    """The name of the one stored table that matches ``--hash``, ``--bits`` and ``--seed``.

    Raises:
        UsageError: an unknown method, or several tables match (pick with --bits / --seed).
        StoreError: no table matches (the message says which `rsir hash` makes it).
    """
    method = method.strip().lower()
    if method not in METHODS:
        raise UsageError(f"unknown hash method {method!r}; choose one of none, {', '.join(METHODS)}")
    available = store.code_names(model, dataset, split)
    if method == "binary" and bits is None:
        bits = dim
    if bits is not None:
        wanted = CodeSpec(
            method, bits, seed if seed is not None else DEFAULT_SEED if method in SEEDED_METHODS else None
        )
        if wanted.name in available:
            return wanted.name
    specs = {name: CodeSpec.parse(name) for name in available}
    candidates = [
        name
        for name, spec in specs.items()
        if spec is not None
        and spec.method == method
        and (bits is None or spec.bits == bits)
        and (seed is None or spec.seed == seed)
    ]
    if len(candidates) == 1:
        return candidates[0]
    what = f"{method}" + (f" {bits}-bit" if bits else "") + (f" seed {seed}" if seed is not None else "")
    if not candidates:
        make = suggest.quoted(
            "hash",
            method=method,
            bits=bits if bits is not None and method != "binary" else (32 if method != "binary" else None),
            seed=seed,
            model=model,
            dataset=dataset,
            store=store.root,
        )
        raise StoreError(
            f"the store has no {what} codes for {model}/{dataset}/{split} (it has: {', '.join(available) or 'none'}); "
            f"run {make} first"
        )
    raise UsageError(f"several {what} code tables match ({', '.join(candidates)}); pick one with --bits / --seed")


def codes_for_search(
    store: EmbeddingStore,
    model: str,
    dataset: str,
    splits: tuple[str, str],
    spec: CodeSpec,
    embeddings: tuple[np.ndarray, np.ndarray],
    fit_cache: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, str]:
    """Codes of the queries' and the database's split: the stored ones when current, else hashed in memory.

    Args:
        splits: (query split, database split).
        embeddings: their embeddings.
        fit_cache: shared between calls of one evaluation (the database digest, read once).

    Returns:
        (query codes, database codes, "store" or "memory").
    """
    query_split, database_split = splits
    q_embeddings, db_embeddings = embeddings
    hasher = make_hasher(spec.method, spec.bits, spec.seed, db_embeddings.shape[1])
    if hasher.learned:
        if "digest" not in fit_cache:
            fit_cache["digest"] = store.content_digest(model, dataset, database_split)
        hasher.fitted_on, hasher.fit_source = database_split, fit_cache["digest"]
    q_codes = stored_if_current(store, model, dataset, query_split, hasher)
    db_codes = stored_if_current(store, model, dataset, database_split, hasher) if q_codes is not None else None
    if q_codes is not None and db_codes is not None:
        return q_codes, db_codes, "store"
    if hasher.learned:
        hasher.fit(db_embeddings, fitted_on=database_split, fit_source=fit_cache["digest"])
    return hasher.transform(q_embeddings), hasher.transform(db_embeddings), "memory"


# ----------------------------------------------------------------------------------- rsir hash
@dataclass
class HashResult:
    """What ``rsir hash`` did to one split's code table."""

    model: str
    dataset: str
    split: str
    code: str
    rows: int
    state: str  # written | exists | skipped (...)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "code": self.code,
            "rows": self.rows,
            "state": self.state,
            "seconds": round(self.seconds, 3),
        }


def hash_store(
    store: EmbeddingStore,
    method: str,
    bits: int | None,
    seeds: Sequence[int | None],
    model: str | None = None,
    dataset: str | None = None,
    force: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> list[HashResult]:
    """Hash every split of every (model, dataset) in the store (or the one asked for) and store the codes.

    Learned hashers are fitted on the database split (``test``), or on the only split of a
    single-split archive, and applied unchanged to every split. A table that is current
    (:func:`is_current`) is left alone unless ``force``.

    Raises:
        UsageError: bad method or bits (checked for every entry before any work).
        StoreError: nothing in the store matches, or no split to fit a learned hasher on.
    """
    method = method.strip().lower()
    summaries = [
        s
        for s in store.summaries()
        if (model is None or s.model == model) and (dataset is None or s.dataset == dataset) and not s.error
    ]
    if not summaries:
        what = "/".join(x for x in (model, dataset) if x) or "any model"
        raise StoreError(
            f"the store {store.root} holds no embeddings for {what}; embed some first, e.g. "
            + suggest.embed(model or "prithvi", dataset or "bigearthnet", store=store.root)
            + (f" (`{suggest.command('info', store=store.root)}` lists what it holds)" if model or dataset else "")
        )
    pairs: dict[tuple[str, str], list[SplitSummary]] = {}
    for s in summaries:
        pairs.setdefault((s.model, s.dataset), []).append(s)
    # Check every entry's options first, so a bad --bits fails before anything is written.
    plans = []
    for (model_name, dataset_name), splits in pairs.items():
        dims = {s.dim for s in splits if s.rows}
        if len(dims) > 1:
            raise StoreError(
                f"{model_name}/{dataset_name}: the splits have different embedding dims ({sorted(dims)}); re-embed "
                "them with the same model"
            )
        dim = dims.pop() if dims else splits[0].dim
        specs = [CodeSpec.of(make_hasher(method, bits, seed, dim)) for seed in seeds]
        fit_on = fit_split([s.split for s in splits if s.complete])
        if make_hasher(method, bits, seeds[0], dim).learned and fit_on is None:
            names = ", ".join(sorted({s.split for s in splits}))
            raise StoreError(
                f"{model_name}/{dataset_name} has splits {names} but no {DATABASE_SPLIT!r} split to fit {method} on; "
                "embed it with " + store.embed_hint(model_name, dataset_name, DATABASE_SPLIT)
            )
        plans.append((model_name, dataset_name, splits, specs, dim, fit_on))

    total = sum(len(splits) * len(specs) for _, _, splits, specs, _, _ in plans)
    task = progress.task(f"hash {method}", total=total, unit="tables")
    results: list[HashResult] = []
    try:
        for model_name, dataset_name, splits, specs, dim, fit_on in plans:
            for spec in specs:
                results += _hash_tables(store, model_name, dataset_name, splits, spec, dim, fit_on, force, task)
    finally:
        task.close()
    return results


def _hash_tables(
    store: EmbeddingStore,
    model: str,
    dataset: str,
    splits: list[SplitSummary],
    spec: CodeSpec,
    dim: int,
    fit_on: str | None,
    force: bool,
    task: Any,
) -> list[HashResult]:
    """One code table (spec) for every split of a (model, dataset)."""
    results = []
    hasher, fit_data = prepared_hasher(store, model, dataset, spec, dim, fit_on)
    todo = []
    for s in splits:
        if not s.complete:
            results.append(HashResult(model, dataset, s.split, spec.name, s.rows, "skipped (incomplete)"))
            task.advance(1)
        elif not force and stored_if_current(store, model, dataset, s.split, hasher) is not None:
            results.append(HashResult(model, dataset, s.split, spec.name, s.rows, "exists"))
            task.advance(1)
        else:
            todo.append(s)
    if not todo:
        return results
    began = time.perf_counter()
    if fit_data is not None:
        hasher.fit(fit_data, fitted_on=hasher.fitted_on, fit_source=hasher.fit_source)
    fit_seconds = time.perf_counter() - began
    for s in todo:
        began = time.perf_counter()
        data = (
            fit_data if s.split == fit_on and fit_data is not None else store.read(model, dataset, s.split).embeddings
        )
        codes = hasher.transform(data)
        store.write_codes(
            model,
            dataset,
            s.split,
            spec.name,
            codes,
            attrs={"n_bits": hasher.bits, "method": hasher.method, "seed": hasher.seed, "rows": len(codes)},
            hasher=hasher.params(),
            hasher_attrs=hasher.attrs(),
        )
        results.append(
            HashResult(
                model, dataset, s.split, spec.name, len(codes), "written", time.perf_counter() - began + fit_seconds
            )
        )
        fit_seconds = 0.0
        task.advance(1)
    return results
