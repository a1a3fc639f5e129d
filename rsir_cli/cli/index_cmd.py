"""`rsir index`: load a store split's vectors into a Milvus collection and index them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rsir_cli.cli import output
from rsir_cli.cli.options import (
    STORE_DEFAULT,
    BitsOption,
    DatasetOption,
    HashOption,
    JsonOption,
    ModelOption,
    StoreOption,
    TokenOption,
    UriOption,
)
from rsir_cli.cli.registry import command


@command("index", "Load store vectors into a Milvus collection and index them.")
def index(
    model: ModelOption = None,
    dataset: DatasetOption = None,
    split: Annotated[str, typer.Option("--split", help="Store split to index (the database).")] = "test",
    hash_method: HashOption = None,
    bits: BitsOption = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Seed of the code table, for seeded hashes (lsh, itq).")
    ] = None,
    float_vectors: Annotated[
        bool, typer.Option("--float", help="Index the float embeddings (the default when --hash is not given).")
    ] = False,
    distance: Annotated[
        Optional[str],
        typer.Option("--distance", help="Float metric: l2 (default), cosine or dot. Codes always use hamming."),
    ] = None,
    uri: UriOption = None,
    token: TokenOption = None,
    index_type: Annotated[
        str,
        typer.Option(
            "--index-type",
            help="flat (exact; BIN_FLAT for codes), ivf_flat (BIN_IVF_FLAT for codes), ivf_sq8 or hnsw. "
            "Milvus Lite builds flat and ivf_flat for floats, flat for codes.",
        ),
    ] = "flat",
    nlist: Annotated[int, typer.Option("--nlist", min=1, help="Clusters of an IVF index.")] = 128,
    drop: Annotated[bool, typer.Option("--drop", help="Drop the collection and build it again.")] = False,
    store: StoreOption = STORE_DEFAULT,
    json_output: JsonOption = False,
) -> None:
    """Load a store split's vectors (float embeddings or binary codes) into a Milvus collection.

    The collection is named after model, dataset, split and vectors (e.g.
    rsir_prithvi_bigearthnet_test_trivial_32); its primary key is the store row
    and it keeps the sample ids. Running the same command again does nothing
    when the store has not changed; --drop rebuilds. --uri picks Milvus: a .db
    file is Milvus Lite (default `<store>/milvus.db`), http(s)://host:port a
    server or cluster (with --token or RSIR_MILVUS_TOKEN; never printed).

    Examples:

        rsir index --model prithvi --dataset bigearthnet --hash trivial --bits 32

        rsir index -m prithvi -d bigearthnet --float --index-type ivf_flat

        rsir index --hash binary --uri http://milvus.example.org:19530 --token user:password
    """
    from rsir_cli import indexing, retrieval
    from rsir_cli.search import milvus
    from rsir_cli.store import EmbeddingStore

    use_codes = hash_method is not None and hash_method.strip().lower() not in ("", "none")
    if use_codes and float_vectors:
        raise typer.BadParameter("give --hash METHOD or --float, not both", param_hint="--hash / --float")
    if use_codes and distance not in (None, "hamming"):
        raise typer.BadParameter(
            f"binary codes are compared by hamming distance, not {distance}", param_hint="--distance"
        )
    if not use_codes:
        distance = (distance or "l2").strip().lower()
        milvus.metric_for(distance)  # refuse l1 before reading the store
    milvus.index_spec(index_type, use_codes, nlist)  # refuse a bad --index-type before reading the store
    target = milvus.resolve_target(uri, token, store)

    database = retrieval.open_database(
        EmbeddingStore(store),
        model=model,
        dataset=dataset,
        split=split,
        hash_method=hash_method if use_codes else None,
        bits=bits,
        seed=seed,
        distance=None if use_codes else distance,
    )
    with output.progress_bars() as progress:
        result = indexing.index_database(
            target, database, index_type=index_type, nlist=nlist, drop=drop, progress=progress
        )
    if json_output:
        output.print_json(result.to_dict())
        return
    params = ", ".join(f"{k} {v}" for k, v in result.index_params.items())
    rows = [
        ["collection", result.collection],
        ["state", result.state],
        ["rows", f"{result.rows:,}"],
        ["vectors", f"{result.vectors} ({result.dim} {'bits' if result.distance == 'hamming' else 'dims'})"],
        ["index", f"{result.index_type} ({result.metric}{', ' + params if params else ''})"],
        ["milvus", f"{result.backend} {result.server_version} at {result.uri}"],
        ["insert / index", f"{result.insert_seconds:.1f} s / {result.index_seconds:.1f} s"],
    ]
    output.print_table(
        output.make_table(
            f"Indexed {database.model} / {database.dataset} / {split}", ["", "value"], rows, kinds={"": "name"}
        )
    )
