"""A STAC Item beside an exported GeoParquet file (``<name>.json``), for catalogues and search tools.

It follows the emerging conventions for embedding products:

- the STAC Embeddings extension (``emb:``, v0.0.1, from the 2026 Geo-Embeddings sprint): an
  ``embeddings`` asset that is the GeoParquet file, ``emb:runtime_parameters`` with what the model
  was fed (bands, input size, normalisation, pooling), ``processing:datetime`` when the embeddings
  were made, and an ``emb:model`` link to the weights where they have an address. The extension's
  collection-level fields (``emb:type`` = ``chip``, ``emb:dimensions``, ``data_type``) belong to a
  STAC Collection, which rsir does not write; the item repeats them as ``rsir:`` fields and on the
  asset (``data_type``) so that nothing is lost.
- the Table extension (``table:columns``, ``table:primary_geometry``, ``table:row_count``) for the
  Parquet columns, as stac-geoparquet and the Earth Index and Clay releases describe them.
- the model itself is not described with the MLM (Machine Learning Model) extension here: an MLM
  item describes a model's own assets (its weights file), which rsir does not publish; the
  ``emb:model`` link is where such an item would be referenced.

``datetime`` is null with ``start_datetime``/``end_datetime`` spanning the chips' acquisition dates
when any are known, else the time of the export. rsir's own provenance is in ``rsir:provenance``
(its large parts, such as a hasher's rotation matrix, only in the Parquet file's ``rsir`` metadata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsir_cli import __version__
from rsir_cli.fileio import write_json
from rsir_cli.geoparquet import WriteResult

EMBEDDINGS_EXTENSION = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
TABLE_EXTENSION = "https://stac-extensions.github.io/table/v1.2.0/schema.json"
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
# Provenance values bigger than this (a hasher's rotation matrix) stay in the Parquet file only.
_LARGE_JSON = 4096
_RUNTIME_KEYS = (
    "bands",
    "read_bands",
    "fill_bands",
    "mean",
    "std",
    "input_size",
    "pooling",
    "precision",
    "architecture",
)


def _column_descriptions(result: WriteResult) -> list[dict[str, str]]:
    dim = result.rsir["embedding"]["dim"]
    columns = [
        {"name": "id", "type": "string", "description": "the dataset's own sample name"},
        {"name": "row", "type": "int64", "description": "position of the row in the rsir store"},
        {"name": "labels", "type": "list<string>", "description": "the sample's labels"},
        {"name": "date", "type": "string", "description": "acquisition date, ISO 8601 (YYYY-MM-DD or YYYY)"},
        {"name": "geometry", "type": "binary (WKB Polygon, OGC:CRS84)", "description": "the chip's footprint"},
        {"name": "bbox", "type": "struct<xmin,ymin,xmax,ymax: double>", "description": "GeoParquet bbox covering"},
    ]
    if "native_crs" in result.rsir["columns"]:
        columns += [
            {"name": "native_crs", "type": "string", "description": "the chip's own CRS"},
            {"name": "native_bounds", "type": "struct<left,bottom,right,top: double>", "description": "its box there"},
        ]
    columns.append(
        {"name": "embedding", "type": f"fixed_size_list<float32>[{dim}]", "description": "the float embedding"}
    )
    for name, code in result.rsir["codes"].items():
        columns.append(
            {
                "name": code["column"],
                "type": f"fixed_size_binary[{code['bytes']}]",
                "description": f"{code['bits']}-bit binary codes {name} ({code['packing']})",
            }
        )
    return columns


def stac_item(
    result: WriteResult,
    dates: list[str],
    *,
    model_url: str | None = None,
    source_url: str | None = None,
) -> dict[str, Any]:
    """The STAC Item (a dict) describing the GeoParquet file ``result`` wrote.

    Args:
        result: what :func:`rsir_cli.geoparquet.write_geoparquet` returned.
        dates: the rows' acquisition dates (ISO 8601, "" unknown), for the item's time range.
        model_url: where the model's weights live (an ``emb:model`` link), if known.
        source_url: where the source imagery lives (an ``emb:source-data`` link), if known.
    """
    provenance = result.rsir.get("provenance", {})
    box = result.geo["columns"]["geometry"].get("bbox")
    geometry = None
    if box:
        x0, y0, x1, y1 = box
        geometry = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    known = sorted(d for d in dates if d)
    properties: dict[str, Any] = {}
    if known:
        first, last = known[0], known[-1]
        properties.update(
            datetime=None,
            start_datetime=_start_of(first),
            end_datetime=_end_of(last),
        )
    else:
        properties["datetime"] = result.rsir["created"]
    runtime = {key: provenance[key] for key in _RUNTIME_KEYS if key in provenance}
    properties.update(
        {
            "emb:runtime_parameters": runtime,
            "processing:datetime": result.rsir["created"],
            "processing:software": {"rsir": __version__},
            "table:primary_geometry": "geometry",
            "table:row_count": result.rows,
            "table:columns": _column_descriptions(result),
            "rsir:type": "chip",
            "rsir:dimensions": result.rsir["embedding"]["dim"],
            "rsir:label_names": result.rsir["label_names"],
            "rsir:provenance": _small(provenance),
        }
    )
    for key in ("model", "dataset", "split", "weights_sha256", "random_weights"):
        if key in provenance:
            properties[f"rsir:{key}"] = provenance[key]
    links = []
    if model_url:
        links.append({"rel": "emb:model", "href": model_url, "title": str(provenance.get("model", "model"))})
    if source_url:
        links.append({"rel": "emb:source-data", "href": source_url})
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [EMBEDDINGS_EXTENSION, TABLE_EXTENSION, PROCESSING_EXTENSION, FILE_EXTENSION],
        "id": result.path.stem,
        "bbox": box,
        "geometry": geometry,
        "properties": properties,
        "links": links,
        "assets": {
            "embeddings": {
                "href": f"./{result.path.name}",
                "type": "application/vnd.apache.parquet",
                "title": "GeoParquet 1.1: one row per chip, footprint, embedding and binary codes",
                "roles": ["data"],
                "data_type": "float32",
                "file:size": result.bytes,
            }
        },
    }


def _small(value: Any) -> Any:
    """``value`` with every part whose JSON is over 4 kB replaced by a pointer to the Parquet metadata."""
    if len(json.dumps(value)) <= _LARGE_JSON:
        return value
    if isinstance(value, dict):
        return {key: _small(item) for key, item in value.items()}
    return "(large: see the 'rsir' metadata of the Parquet file)"


def _start_of(date: str) -> str:
    return f"{date}-01-01T00:00:00Z" if len(date) == 4 else f"{date[:10]}T00:00:00Z"


def _end_of(date: str) -> str:
    return f"{date}-12-31T23:59:59Z" if len(date) == 4 else f"{date[:10]}T23:59:59Z"


def write_stac_item(result: WriteResult, dates: list[str], **links: str | None) -> Path:
    """Write :func:`stac_item` beside the GeoParquet file as ``<name>.json``; returns its path."""
    path = result.path.with_suffix(".json")
    write_json(path, stac_item(result, dates, **links))
    return path
