"""What a person looks at: the PNG figure and the self-contained HTML page of a search.

Match thumbnails are read from the dataset on disk (the store records where it lies and how to
reopen it); where the data is gone, a placeholder is drawn and a note says why.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rsir_cli.datasets.base import SplitReader
from rsir_cli.errors import DataNotFoundError, RsirError
from rsir_cli.provenance import Provenance
from rsir_cli.retrieval.database import Database
from rsir_cli.retrieval.results import RANDOM_WEIGHTS_WARNING, QueryResult, format_distance
from rsir_cli.retrieval.tiles import RGB_BANDS

#: the figure and the page show at most this many queries
MAX_QUERIES = 8


def open_reader(provenance: Provenance, split: str) -> SplitReader:
    """Reopen the dataset a store split was embedded from (its recorded root and options).

    Raises:
        RsirError: the data is not on disk any more (or cannot be opened).
    """
    from rsir_cli.datasets import get_dataset

    if not provenance.dataset_root:
        raise DataNotFoundError("the store does not record where its dataset lies")
    options = {k: v for k, v in provenance.dataset_options.items() if v is not None}
    return get_dataset(provenance.dataset_type).open(Path(provenance.dataset_root), split, **options)


def read_rgb(
    provenance: Provenance, items: Sequence[tuple[str, str]]
) -> tuple[dict[tuple[str, str], np.ndarray | None], list[str]]:
    """True-colour images (3, H, W: B04, B03, B02) of stored samples, read from the dataset on disk.

    Args:
        provenance: the database split's provenance.
        items: (split, id) pairs.

    Returns:
        The image per item (None where it cannot be read) and notes on what could not be read.
    """
    images: dict[tuple[str, str], np.ndarray | None] = {}
    notes: list[str] = []
    readers: dict[str, tuple[SplitReader, dict[str, int]] | None] = {}
    for split, sample_id in items:
        if (split, sample_id) in images:
            continue
        if split not in readers:
            try:
                reader = open_reader(provenance, split)
                missing = [b for b in RGB_BANDS if b not in reader.available_bands]
                if missing:
                    raise DataNotFoundError(f"the dataset has no band(s) {', '.join(missing)} for a true-colour image")
                readers[split] = (reader, {name: i for i, name in enumerate(reader.ids)})
            except RsirError as error:
                readers[split] = None
                notes.append(f"thumbnails of the {split!r} split are placeholders: {error}")
        entry = readers[split]
        image = None
        if entry is not None:
            reader, index = entry
            try:
                if sample_id not in index:
                    raise DataNotFoundError(f"{sample_id} is not in the dataset on disk")
                image = reader.load(index[sample_id], RGB_BANDS).image
            except RsirError as error:
                notes.append(f"{sample_id}: {error}")
        images[(split, sample_id)] = image
    return images, notes


def _images(
    database: Database, shown: Sequence[QueryResult]
) -> tuple[list[tuple[np.ndarray | None, list[np.ndarray | None]]], list[str]]:
    items = [(database.split, m.id) for r in shown for m in r.matches]
    items += [(str(r.query.split), r.query.id) for r in shown if r.query.rgb is None and r.query.split]
    images, notes = read_rgb(database.provenance, items) if items else ({}, [])
    rows = []
    for result in shown:
        q = result.query
        query_image = q.rgb if q.rgb is not None else images.get((str(q.split), q.id))
        rows.append((query_image, [images.get((database.split, m.id)) for m in result.matches]))
    return rows, notes


def retrieval_picture(
    database: Database, results: Sequence[QueryResult], max_rows: int = MAX_QUERIES
) -> tuple[bytes, list[str]]:
    """The PNG of queries and matches (see :mod:`rsir_cli.figures`), and notes on what is missing."""
    from rsir_cli import figures

    shown = list(results[:max_rows])
    images, notes = _images(database, shown)
    rows = []
    for result, (query_image, match_images) in zip(shown, images, strict=True):
        q = result.query
        labels = "labels: " + ", ".join(result.labels) if result.labels is not None else "labels unknown"
        query_panel = figures.Panel(query_image, ["query", q.id, labels], "query", placeholder="no true-colour\nimage")
        panels = [
            figures.Panel(
                image,
                [f"#{m.rank}  d = {format_distance(m.distance, database.distance)}", m.id, ", ".join(m.labels or [])],
                figures.label_agreement(result.labels, m.labels),
                placeholder="image not on disk",
            )
            for m, image in zip(result.matches, match_images, strict=True)
        ]
        rows.append((query_panel, panels))
    if len(results) > max_rows:
        notes.append(f"the figure shows the first {max_rows} of {len(results)} queries")
    title = f"rsir search in {database.title()}"
    warning = RANDOM_WEIGHTS_WARNING if database.random_weights else None
    return figures.png_bytes(figures.retrieval_figure(rows, title, warning)), notes


def _thumbnail(image: np.ndarray | None) -> bytes | None:
    if image is None:
        return None
    from PIL import Image

    from rsir_cli import figures

    buffer = io.BytesIO()
    Image.fromarray(figures.true_colour(np.asarray(image))).save(buffer, format="PNG")
    return buffer.getvalue()


def search_page(
    database: Database, results: Sequence[QueryResult], max_rows: int = MAX_QUERIES
) -> tuple[str, list[str]]:
    """The self-contained HTML page of a search (see :mod:`rsir_cli.html_map`), and notes."""
    from rsir_cli import figures, html_map

    shown = list(results[:max_rows])
    images, notes = _images(database, shown)
    queries = []
    for result, (query_image, match_images) in zip(shown, images, strict=True):
        q = result.query
        matches = [
            html_map.MapMatch(
                m.rank,
                m.id,
                float(m.distance),
                m.labels,
                m.lonlat,
                _thumbnail(image),
                figures.label_agreement(result.labels, m.labels),
            )
            for m, image in zip(result.matches, match_images, strict=True)
        ]
        queries.append(html_map.MapQuery(q.id, result.labels, q.lonlat, _thumbnail(query_image), matches))
    if len(results) > max_rows:
        notes.append(f"the page shows the first {max_rows} of {len(results)} queries")
    warning = RANDOM_WEIGHTS_WARNING if database.random_weights else None
    return html_map.render_search_page(f"rsir search in {database.title()}", queries, warning), notes
