"""Shared options, declared once so every command spells and explains them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rsir_cli import config

StoreOption = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="RSIR_STORE",
        help="Embedding store directory (env RSIR_STORE).",
        show_default=True,
        file_okay=False,
    ),
]
STORE_DEFAULT = Path(config.DEFAULT_STORE)

ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Model name (see `rsir info --models`): prithvi, prithvi-rgb, vit, ..."),
]
DatasetOption = Annotated[
    Optional[str],
    typer.Option("--dataset", "-d", help="Dataset name: bigearthnet, forestnet, folder, scene."),
]
DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        envvar="RSIR_DATA_DIR",
        help="Dataset root. Default: `<RSIR_DATA or ./rsir-data>/<dataset>`, where `rsir download` puts it.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (for scripts).")]
CsvOption = Annotated[
    Optional[Path], typer.Option("--csv", help="Also write the result table to this CSV file.", dir_okay=False)
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
]
KOption = Annotated[int, typer.Option("--k", "-k", min=1, help="How many matches to retrieve per query.")]
HashOption = Annotated[
    Optional[str],
    typer.Option("--hash", help="Binary code method: binary, trivial, lsh, pca, itq (or none for float embeddings)."),
]
BitsOption = Annotated[Optional[int], typer.Option("--bits", min=1, help="Code length in bits.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of a seeded hasher (lsh).")]
UriOption = Annotated[
    Optional[str],
    typer.Option(
        "--uri",
        envvar="RSIR_MILVUS_URI",
        help="Milvus URI: a local .db file means Milvus Lite (default `<store>/milvus.db`); "
        "http(s)://host:port a Milvus server or cluster.",
    ),
]
TokenOption = Annotated[
    Optional[str],
    typer.Option(
        "--token",
        envvar="RSIR_MILVUS_TOKEN",
        help="Milvus token (user:password or API key; env RSIR_MILVUS_TOKEN). Never printed.",
        show_default=False,
    ),
]

BandsOption = Annotated[
    Optional[str],
    typer.Option(
        "--bands",
        help="1-based band numbers of the file, one per model band in the model's order (e.g. 2,3,4,9,12,13 "
        "for B02,B03,B04,B8A,B11,B12). Default: the file's band descriptions.",
    ),
]
UnitsOption = Annotated[
    str,
    typer.Option(
        "--units",
        help="auto: raw*scale+offset, times 10000 when the file's scale is not 1 (reflectance); "
        "dn: never times 10000 (values are reflectance x 10000); reflectance: always times 10000.",
    ),
]


SeedsOption = Annotated[
    Optional[int],
    typer.Option("--seeds", min=1, help="Use the paper's first N seeds: 42, 84, 126, ... (42 x N) for seeded methods."),
]


def split_list(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; ``None`` or empty -> ``[]``."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]
