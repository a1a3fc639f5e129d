"""`rsir hash`: turn stored embeddings into packed binary codes, stored beside them with the hasher."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.cli.options import (
    STORE_DEFAULT,
    BitsOption,
    DatasetOption,
    JsonOption,
    ModelOption,
    SeedsOption,
    StoreOption,
)
from rsir_cli.cli.registry import command


@command("hash", "Hash stored embeddings into binary codes (binary, trivial, lsh, pca, itq).")
def hash_embeddings(
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="binary (sign of each dim), trivial (the paper's group mean), lsh (random hyperplanes, seeded), "
            "pca (PCA-sign) or itq (iterative quantization, seeded). pca and itq are fitted on the test split.",
        ),
    ],
    bits: BitsOption = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of lsh / itq (default 42).")] = None,
    seeds: SeedsOption = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    store: StoreOption = STORE_DEFAULT,
    force: Annotated[bool, typer.Option("--force", help="Recompute codes that are already stored.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Hash the stored embeddings of every (model, dataset) in the store, or the one given.

    Codes are stored packed (8 bits per byte) in each split's file, with the hasher's parameters,
    so that queries and new tiles are hashed exactly like the database. Learned hashers (pca,
    itq) are fitted on the database split (test) and applied unchanged to every split. Running
    the same command again does nothing (pass --force to recompute). --bits must be a multiple
    of 8; for trivial it must also divide the embedding dimension.

    Examples:

        rsir hash --method trivial --bits 32

        rsir hash --method lsh --bits 32 --seeds 5 --model prithvi --dataset bigearthnet

        rsir hash --method itq --bits 64

        rsir hash --method binary
    """
    from rsir_cli.hashing import seeds_for
    from rsir_cli.store import EmbeddingStore
    from rsir_cli.stored_codes import hash_store

    method = method.strip().lower()
    seed_list = seeds_for(method, seed, seeds)
    with output.progress_bars() as progress:
        results = hash_store(
            EmbeddingStore(store), method, bits, seed_list, model=model, dataset=dataset, force=force, progress=progress
        )
    if json_output:
        output.print_json({"store": str(store), "results": [r.to_dict() for r in results]})
        return
    styles = {"written": "green", "exists": "dim"}
    rows = [
        [r.model, r.dataset, r.split, r.code, f"{r.rows:,}", Text(r.state, style=styles.get(r.state, "yellow"))]
        for r in results
    ]
    output.print_table(
        output.make_table(
            f"Codes in {store}",
            ["model", "dataset", "split", "code", "rows", "state"],
            rows,
            numeric=("rows",),
            kinds={"model": "name", "dataset": "name", "split": "name", "code": "name"},
        )
    )
    if results and all(r.state == "exists" for r in results):
        output.note("Nothing to do: these codes are already stored and current (pass --force to recompute).")
