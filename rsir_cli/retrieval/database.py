"""The searched split: which one (resolved from the store), its vectors, and the backend holding them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli import suggest
from rsir_cli.errors import StoreError, UsageError
from rsir_cli.provenance import Provenance
from rsir_cli.search.base import DISTANCES, SearchBackend, SearchResult
from rsir_cli.store import EmbeddingStore, SplitData

if TYPE_CHECKING:
    from rsir_cli.geo import Footprints
    from rsir_cli.hashing import Hasher

#: where the database is looked for, in order: the paper's test split, a user archive's only split
DATABASE_SPLITS = ("test", "all")


@dataclass
class Database:
    """The searched split as the store holds it, and the vectors a backend indexes."""

    store: EmbeddingStore
    data: SplitData
    vectors: np.ndarray
    distance: str
    code: str | None = None
    hasher: Hasher | None = None

    def __len__(self) -> int:
        return len(self.data)

    @property
    def model(self) -> str:
        return self.data.model

    @property
    def dataset(self) -> str:
        return self.data.dataset

    @property
    def split(self) -> str:
        return self.data.split

    @property
    def attrs(self) -> dict[str, Any]:
        return self.data.attrs

    @property
    def ids(self) -> list[str]:
        return self.data.ids

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels

    @property
    def footprints(self) -> Footprints:
        assert self.data.footprints is not None  # always read with footprints
        return self.data.footprints

    @property
    def embeddings(self) -> np.ndarray | None:
        return self.data.embeddings

    @property
    def provenance(self) -> Provenance:
        return Provenance.from_attrs(self.data.attrs)

    @property
    def label_names(self) -> list[str]:
        return self.data.label_names

    @property
    def random_weights(self) -> bool:
        return self.provenance.random_weights

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "rows": len(self),
            "distance": self.distance,
            "code": self.code,
            "random_weights": self.random_weights,
        }

    def title(self) -> str:
        """``prithvi / bigearthnet / test (hamming, trivial-32)``."""
        code = f", {self.code}" if self.code else ""
        return f"{self.model} / {self.dataset} / {self.split} ({self.distance}{code})"


def _pick(kind: str, wanted: str | None, available: Sequence[str], store: EmbeddingStore, hint: str) -> str:
    options = sorted(set(available))
    if wanted is not None:
        if wanted not in options:
            raise StoreError(
                f"the store {store.root} has no embeddings of {kind} {wanted!r}"
                + (f" (it has: {', '.join(options)})" if options else "")
                + f"; {hint}"
            )
        return wanted
    if not options:
        raise StoreError(f"the store {store.root} is empty; {hint}")
    if len(options) > 1:
        raise UsageError(f"the store {store.root} holds several {kind}s ({', '.join(options)}); pick one with --{kind}")
    return options[0]


def resolve_entry(
    store: EmbeddingStore, model: str | None, dataset: str | None, split: str | None = None
) -> tuple[str, str, str]:
    """(model, dataset, database split): the ones asked for, or the store's only ones.

    Raises:
        StoreError: the store is missing or lacks them (the message lists what it has and what to run).
        UsageError: the choice is ambiguous.
    """
    if not store.root.is_dir():
        raise StoreError(f"the store {store.root} does not exist; embed a dataset first, or pass the right --store")
    entries = store.entries()
    example = suggest.embed(model or "prithvi", dataset or "bigearthnet", store=store.root)
    model = _pick("model", model, [m for m, _, _ in entries], store, f"embed a dataset first, e.g. {example}")
    dataset = _pick(
        "dataset",
        dataset,
        [d for m, d, _ in entries if m == model],
        store,
        f"embed it first, e.g. {suggest.embed(model, dataset or 'bigearthnet', store=store.root)}",
    )
    splits = [s for m, d, s in entries if m == model and d == dataset]
    if split is not None:
        if split not in splits:
            raise StoreError(
                f"the store has no {split!r} split for {model}/{dataset} (it has: {', '.join(splits)}); run "
                + store.embed_hint(model, dataset, split)
            )
        return model, dataset, split
    for candidate in DATABASE_SPLITS:
        if candidate in splits:
            return model, dataset, candidate
    raise StoreError(
        f"the store has no database split (test, or all for your own imagery) for {model}/{dataset}; it has "
        f"{', '.join(splits)}: pass --split, or run {store.embed_hint(model, dataset, 'test')}"
    )


def open_database(
    store: EmbeddingStore,
    *,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    hash_method: str | None = None,
    bits: int | None = None,
    seed: int | None = None,
    distance: str | None = None,
) -> Database:
    """Read the database split (float embeddings, or one code table with its hasher).

    Default distances are the paper's: L1 for float embeddings, Hamming for codes.

    Raises:
        StoreError: missing model, dataset, split or codes (the message says what to run).
        UsageError: an ambiguous choice, or a distance that does not fit the vectors.
    """
    from rsir_cli.hashing import hasher_from_codes
    from rsir_cli.stored_codes import find_code

    model, dataset, split = resolve_entry(store, model, dataset, split)
    use_codes = hash_method is not None and hash_method.strip().lower() not in ("", "none")
    if not use_codes and bits is not None:
        raise UsageError("--bits needs --hash (binary, trivial, lsh, pca or itq)")
    if distance is not None and distance not in DISTANCES:
        raise UsageError(f"--distance must be one of {', '.join(DISTANCES)}, not {distance!r}")
    if use_codes:
        if distance not in (None, "hamming"):
            raise UsageError(f"binary codes are compared by Hamming distance, not {distance}")
        data = store.read(model, dataset, split, embeddings=True, footprints=True)
        dim = int(data.attrs.get("embedding_dim") or 0)
        code = find_code(store, model, dataset, split, str(hash_method), bits, seed, dim)
        codes = store.read_codes(model, dataset, split, code)
        return Database(store, data, codes.bits, "hamming", code, hasher_from_codes(codes))
    if distance == "hamming":
        raise UsageError("Hamming distance needs binary codes: pass --hash METHOD --bits B")
    data = store.read(model, dataset, split, embeddings=True, footprints=True)
    assert data.embeddings is not None
    return Database(store, data, data.embeddings, distance or "l1")


class SubsetBackend(SearchBackend):
    """A backend over some rows of the database (``--aoi``); results name the database's own rows."""

    def __init__(self, inner: SearchBackend, rows: np.ndarray) -> None:
        self.inner = inner
        self.rows = np.asarray(rows, dtype=np.int64)
        self.distance = inner.distance

    def add(self, vectors: np.ndarray) -> None:  # pragma: no cover - built whole
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        found = self.inner.search(queries, k)
        indices = np.where(found.indices >= 0, self.rows[np.maximum(found.indices, 0)], -1)
        return SearchResult(indices, found.distances)

    def __len__(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        self.inner.close()


def make_backend(
    database: Database,
    backend: str = "exact",
    device: str = "cpu",
    *,
    uri: str | None = None,
    token: str | None = None,
    rows: np.ndarray | None = None,
) -> SearchBackend:
    """The search backend holding the database's vectors (or the ``rows`` of them).

    ``exact``: the ground-truth engine, in process. ``milvus``: the collection `rsir index` built
    from the same store split, at ``uri`` (a Milvus Lite .db file, default ``<store>/milvus.db``,
    or ``http(s)://host:port`` with ``token``); it is checked to be current with the store.

    Raises:
        UsageError: an unknown backend, or a row subset asked of Milvus.
        BackendError: Milvus is unreachable or has no current collection.
    """
    if backend == "milvus":
        if rows is not None:
            raise UsageError("--aoi and several examples are searched by the exact engine; drop --backend milvus")
        from rsir_cli.indexing import open_database_collection
        from rsir_cli.search.milvus import resolve_target

        return open_database_collection(resolve_target(uri, token, database.store.root), database)
    if backend != "exact":
        raise UsageError(f"unknown search backend {backend!r}; choose exact or milvus")
    from rsir_cli.search.exact import ExactIndex

    index = ExactIndex(database.distance, device=device)
    if rows is None:
        index.add(database.vectors)
        return index
    index.add(database.vectors[rows])
    return SubsetBackend(index, rows)
