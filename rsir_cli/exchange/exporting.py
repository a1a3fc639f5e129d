"""`rsir export`: one split of the store as a GeoParquet file, memory bounded by a row group."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli import suggest
from rsir_cli.errors import StoreError, UsageError
from rsir_cli.exchange.common import HASHERS_KEY, encode_array
from rsir_cli.geoparquet import EmbeddingTable, jsonable, write_geoparquet
from rsir_cli.hashing import CodeSpec, make_hasher
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.store import EmbeddingStore
from rsir_cli.stored_codes import fit_split, is_current

if TYPE_CHECKING:
    from rsir_cli.store import Codes, SplitData


@dataclass
class ExportResult:
    """What :func:`export_split` wrote."""

    path: Path
    model: str
    dataset: str
    split: str
    rows: int
    dim: int
    row_groups: int
    bytes: int
    codes: list[str]
    skipped_codes: dict[str, str] = field(default_factory=dict)  # name -> why it was left out
    stac: Path | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.rows,
            "dim": self.dim,
            "row_groups": self.row_groups,
            "bytes": self.bytes,
            "codes": self.codes,
            "skipped_codes": self.skipped_codes,
            "stac": str(self.stac) if self.stac else None,
            "seconds": round(self.seconds, 3),
        }


def resolve_split(
    store: EmbeddingStore, model: str | None, dataset: str | None, split: str | None
) -> tuple[str, str, str]:
    """(model, dataset, split): the ones asked for, or the store's only ones.

    Raises:
        StoreError: the store lacks them (the message lists what it has and what to run).
        UsageError: the store holds several and the caller did not pick one.
    """
    entries = store.entries()
    info = suggest.quoted("info", store=store.root)
    chosen: list[str] = []
    for kind, wanted in (("model", model), ("dataset", dataset), ("split", split)):
        options = sorted({e[len(chosen)] for e in entries if list(e[: len(chosen)]) == chosen})
        where = f" for {'/'.join(chosen)}" if chosen else ""
        if not options:
            raise StoreError(
                f"the store {store.root} holds no embeddings; embed some first, e.g. "
                + suggest.embed("prithvi", "bigearthnet", store=store.root)
            )
        if wanted is None:
            if len(options) > 1:
                raise UsageError(
                    f"the store {store.root} holds several {kind}s{where} ({', '.join(options)}); pick one with --{kind}"
                )
            wanted = options[0]
        elif wanted not in options:
            raise StoreError(
                f"the store {store.root} has no {kind} {wanted!r}{where} (it has: {', '.join(options)}); see {info}"
            )
        chosen.append(wanted)
    return chosen[0], chosen[1], chosen[2]


def current_code_tables(store: EmbeddingStore, model: str, dataset: str, split: str) -> dict[str, str]:
    """Every stored code table of a split -> "" when current (:func:`rsir_cli.stored_codes.is_current`), else why not."""
    names = store.code_names(model, dataset, split)
    if not names:
        return {}
    digest = store.content_digest(model, dataset, split)
    complete = [s.split for s in store.summaries() if s.model == model and s.dataset == dataset and s.complete]
    fit_on = fit_split(complete)
    dim = int(store.attrs(model, dataset, split).get("embedding_dim") or 0)
    states = {}
    for name in names:
        spec = CodeSpec.parse(name)
        if spec is None:
            states[name] = "not an rsir code table name"
            continue
        codes = store.read_codes(model, dataset, split, name)
        hasher = make_hasher(spec.method, spec.bits, spec.seed, dim)
        if hasher.learned:
            hasher.fitted_on = fit_on
            hasher.fit_source = store.content_digest(model, dataset, fit_on) if fit_on else ""
        if not is_current(codes, hasher, digest):
            states[name] = (
                "stale (made from other embeddings, or by another hasher version); refresh it with "
                + _hash_hint(store, model, dataset, name)
            )
        else:
            states[name] = ""
    return states


def _hash_hint(store: EmbeddingStore, model: str, dataset: str, name: str) -> str:
    spec = CodeSpec.parse(name)
    if spec is None:
        return suggest.quoted("hash", method="itq", bits=64, model=model, dataset=dataset, store=store.root)
    return suggest.quoted(
        "hash",
        method=spec.method,
        bits=None if spec.method == "binary" else spec.bits,
        seed=spec.seed,
        model=model,
        dataset=dataset,
        store=store.root,
    )


def _pick_codes(
    store: EmbeddingStore, model: str, dataset: str, split: str, wanted: Sequence[str] | None
) -> tuple[list[str], dict[str, str]]:
    """(tables to export, tables left out -> why); ``wanted`` None: every current one."""
    states = current_code_tables(store, model, dataset, split)
    if wanted is None:
        return [n for n, why in states.items() if not why], {n: why for n, why in states.items() if why}
    chosen = list(dict.fromkeys(wanted))
    for name in chosen:
        if name not in states:
            raise StoreError(
                f"{model}/{dataset}/{split} has no code table {name!r} (it has: {', '.join(states) or 'none'}); "
                f"make it with {_hash_hint(store, model, dataset, name)}, or leave it out of --codes"
            )
        if states[name]:
            raise StoreError(
                f"code table {name!r} of {model}/{dataset}/{split} is {states[name]}, or leave it out of --codes"
            )
    return chosen, {n: "not asked for" for n in states if n not in chosen}


def _hasher_record(codes: Codes) -> dict[str, Any]:
    """A code table's attributes, its hasher's attributes and parameters, for the file's provenance."""
    return {
        "table": jsonable(codes.attrs),
        "hasher_attrs": jsonable(codes.hasher_attrs),
        "hasher": {key: encode_array(value) for key, value in codes.hasher.items()},
    }


def _model_url(attrs: Mapping[str, Any]) -> str | None:
    weights = (attrs.get("model_config") or {}).get("weights") or {}
    if weights.get("source") == "huggingface" and weights.get("repo_id"):
        return f"https://huggingface.co/{weights['repo_id']}"
    return weights.get("url") or None


def export_split(
    store: EmbeddingStore,
    model: str | None,
    dataset: str | None,
    split: str | None,
    path: str | Path,
    *,
    codes: Sequence[str] | None = None,
    stac: bool = False,
    row_group_rows: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> ExportResult:
    """Write one split of the store as a GeoParquet file (and optionally a STAC item beside it).

    Args:
        store: the store.
        model, dataset, split: which split; None: the store's only one.
        path: the ``.parquet`` file (replaced atomically if it exists; its folder is created).
        codes: the code tables to add as ``code_<name>`` columns; None: every current one; an empty
            list: none.
        stac: also write ``<name>.json``, a STAC item describing the file.
        row_group_rows: rows per row group (default :data:`rsir_cli.geoparquet.DEFAULT_ROW_GROUP_ROWS`).
        progress: reports rows written.

    Returns:
        What was written.

    Raises:
        StoreError: no such split, it is unfinished, or a code table asked for is missing or stale.
        UsageError: the split is ambiguous, or ``path`` is a folder.
        DiskFullError: the disk filled up (nothing is left at ``path``).
    """
    from rsir_cli.geoparquet import DEFAULT_ROW_GROUP_ROWS
    from rsir_cli.stac import write_stac_item

    began = time.perf_counter()
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give the file to write, e.g. {path / 'split.parquet'}")
    model, dataset, split = resolve_split(store, model, dataset, split)
    data = store.read(model, dataset, split, embeddings=False, footprints=True)
    chosen, skipped = _pick_codes(store, model, dataset, split, codes)
    provenance = dict(data.attrs)
    provenance[HASHERS_KEY] = {name: _hasher_record(store.read_codes(model, dataset, split, name)) for name in chosen}
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.open_rows(model, dataset, split, codes=chosen) as rows:
        table = _table(store, data, rows.embeddings, rows.codes)
        written = write_geoparquet(
            path,
            table,
            metadata=provenance,
            row_group_rows=row_group_rows or DEFAULT_ROW_GROUP_ROWS,
            progress=progress,
        )
    item = write_stac_item(written, table.dates, model_url=_model_url(data.attrs)) if stac else None
    return ExportResult(
        path=path,
        model=model,
        dataset=dataset,
        split=split,
        rows=written.rows,
        dim=table.dim,
        row_groups=written.row_groups,
        bytes=written.bytes,
        codes=chosen,
        skipped_codes=skipped,
        stac=item,
        seconds=time.perf_counter() - began,
    )


def _table(store: EmbeddingStore, data: SplitData, embeddings: Any, codes: dict[str, Any]) -> EmbeddingTable:
    """The split as an :class:`EmbeddingTable` whose big arrays stay on disk."""
    footprints = data.footprints
    assert footprints is not None
    if len(data.label_names) != data.labels.shape[1]:
        raise StoreError(
            f"{data.model}/{data.dataset}/{data.split} has {data.labels.shape[1]} label columns but names "
            f"{len(data.label_names)} labels (its label_names attribute); re-create it with "
            + suggest.embed(data.model, data.dataset, data.split, store=store.root, overwrite=True)
        )
    native = any(footprints.crs) or bool(np.isfinite(footprints.bounds).any())
    return EmbeddingTable(
        ids=list(data.ids),
        embeddings=embeddings,
        labels=np.asarray(data.labels, dtype=np.uint8),
        label_names=data.label_names,
        dates=list(data.dates),
        lonlat=np.asarray(footprints.lonlat, dtype=np.float64),
        crs=list(footprints.crs) if native else None,
        bounds=np.asarray(footprints.bounds, dtype=np.float64) if native else None,
        codes=codes,
    )
