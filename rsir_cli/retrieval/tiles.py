"""The tile step of `rsir search`: a GeoTIFF tile -> checked, cut into chips, embedded like the database.

The store's provenance says which model (config, bands, normalisation, input size, weights
checksum) made the database; the tile is read in those bands and units, cut into chips that cover
the ground of one database patch (120 px at 10 m for BigEarthNet), and embedded by the same model
with the same weights. Everything cheap (bands, region, chip size) is checked before the model is
loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli.dates import iso_date
from rsir_cli.errors import DataNotFoundError, UsageError, WeightsError
from rsir_cli.pixels import Chip, PixelWindow, chip_grid
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.provenance import Provenance
from rsir_cli.raster import MAX_NODATA_FRACTION, Raster
from rsir_cli.retrieval.queries import Query

if TYPE_CHECKING:
    from rsir_cli.models import Encoder, ModelConfig

log = logging.getLogger(__name__)

#: the true-colour bands of thumbnails, in display order (red, green, blue)
RGB_BANDS = ("B04", "B03", "B02")


@dataclass
class TilePlan:
    """A query tile opened and checked: its bands, the region searched and its chips."""

    path: Path
    raster: Raster
    needed: tuple[str, ...]
    region: PixelWindow
    chips: list[Chip]
    chip_size: int
    units: str
    date: str = ""  # the acquisition date fed to models that take it ("" unknown)


@dataclass
class TileQueries:
    """The chips of a tile that are searched, and what was left out."""

    queries: list[Query]
    region: PixelWindow
    chip_size: int
    chips_total: int
    skipped: list[tuple[str, float]]
    bands_mapped_by: str

    def describe(self, path: Path) -> dict[str, Any]:
        return {
            "tile": str(path),
            "region": self.region.as_list(),
            "chip_size": self.chip_size,
            "chips": self.chips_total,
            "chips_skipped": [{"query": name, "nodata_fraction": round(f, 4)} for name, f in self.skipped],
            "bands_from": self.bands_mapped_by,
        }


def query_chip_size(provenance: Provenance, pixel_size_m: float | None) -> int:
    """Chip size in tile pixels that covers the ground of one database patch."""
    if provenance.pixel_size_m and pixel_size_m:
        return max(1, round(provenance.patch_size * provenance.pixel_size_m / pixel_size_m))
    return provenance.patch_size


def query_region(
    raster: Raster, chip: int, window: PixelWindow | None = None, bbox: Sequence[float] | None = None
) -> tuple[PixelWindow, list[Chip]]:
    """The chips a query tile is cut into: the whole tile, or the ``window`` / ``bbox`` region.

    Raises:
        UsageError: the region lies outside the tile, or is smaller than half a chip.
        DataNotFoundError: the whole tile is smaller than half a chip.
    """
    if window is not None and bbox is not None:
        raise UsageError("give --window or --bbox, not both")
    region = raster.region
    if window is not None:
        region = raster.check_window(window)
    elif bbox is not None:
        region = raster.window_from_bbox(bbox)
    smallest = max(1, chip // 2)
    if region.width < smallest or region.height < smallest:
        what = "the tile" if window is None and bbox is None else "the selected region"
        error = DataNotFoundError if window is None and bbox is None else UsageError
        raise error(
            f"{what} is {region.width} x {region.height} px, smaller than half a patch ({smallest} x {smallest} px "
            f"at this resolution): a query needs at least that much"
        )
    return region, chip_grid(region, chip)[2]


def search_config(attrs: dict[str, Any]) -> ModelConfig:
    """The model config that made a store split, for embedding a tile like it.

    Raises:
        UsageError: the embeddings were imported from another tool (rsir cannot embed like it).
    """
    from rsir_cli.models import config_from_provenance, load_plugins

    provenance = Provenance.from_attrs(attrs)
    if provenance.imported or provenance.model_config is None:
        raise UsageError(
            f"the embeddings of {provenance.model or 'this split'} were imported (made by another tool), so rsir "
            "cannot embed a tile like them; search with --id, --point or --aoi instead"
        )
    load_plugins()
    return config_from_provenance(attrs)


def plan_tile(
    path: Path,
    attrs: dict[str, Any],
    *,
    bands: Sequence[int] | None = None,
    units: str = "auto",
    window: PixelWindow | None = None,
    bbox: Sequence[float] | None = None,
    chip_size: int | None = None,
    date: str | None = None,
) -> TilePlan:
    """Open a query tile and check it against the store's model (cheap; before any model is loaded).

    Args:
        path: the tile (a GeoTIFF, or a folder of single-band files).
        attrs: the database split's attributes (its provenance).
        bands: ``--bands``, 1-based band numbers for the model's read bands (default: descriptions).
        units: ``--units``.
        window: ``--window``, a pixel region of the tile.
        bbox: ``--bbox``, a region in the tile's CRS.
        chip_size: chip size in tile pixels (default: the ground size of one database patch).
        date: ``--date``, the tile's acquisition date (default: from its metadata or file name).

    Raises:
        UsageError: bands that do not fit, a region outside the tile or smaller than half a chip,
            or no date for a model that takes one.
        CorruptDataError / DataNotFoundError: not a raster, or nothing there.
    """
    from rsir_cli.raster import band_map, open_raster

    config = search_config(attrs)
    needed = tuple(config.read_bands)
    band_indexes = band_map(bands, needed, f"model {config.name}") if bands else None
    raster = open_raster(path, band_indexes, units)
    raster.require(needed, f"model {config.name}")
    size = chip_size or query_chip_size(Provenance.from_attrs(attrs), raster.pixel_size_m())
    region, chips = query_region(raster, size, window, bbox)
    when = iso_date(date) if date else raster.date
    if "time" in config.inputs and not when:
        raise UsageError(
            f"model {config.name} takes the acquisition date, and {Path(path).name} does not say it (no date tag or "
            "date in the file name): pass --date YYYY-MM-DD"
        )
    return TilePlan(Path(path), raster, needed, region, chips, size, units, when)


def _recorded_weights(provenance: Provenance) -> Path | None:
    """A file with the store's weights checksum: the one it was embedded with, or any recorded one."""
    from rsir_cli.models.weights import read_manifest

    wanted = provenance.weights_sha256
    if not wanted:
        return None
    candidates = [Path(provenance.weights_source)] if provenance.weights_source else []
    candidates += [Path(str(e.get("path"))) for e in read_manifest().values() if e.get("sha256") == wanted]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def load_encoder(attrs: dict[str, Any], weights: Path | None = None) -> tuple[Encoder, str]:
    """The encoder that made the store, rebuilt from its provenance, and a note on its weights.

    Random-weight stores get the same seeded random weights. Otherwise the weights are ``--weights``,
    the checkpoint the store was embedded with (``weights_source``), any file `rsir download`
    recorded with the same sha256, or the model's downloaded checkpoint, in that order; the file
    used must have the store's sha256.

    Raises:
        WeightsError: missing weights, or weights other than the store's.
        UsageError: ``--weights`` given for a random-weight store.
    """
    from rsir_cli.models import build_encoder
    from rsir_cli.models.weights import checksum, resolve_weights

    config = search_config(attrs)
    provenance = Provenance.from_attrs(attrs)
    if provenance.random_weights:
        if weights is not None:
            raise UsageError("the store was embedded with random weights; drop --weights to query it")
        return build_encoder(config, None, True), "random weights, as the store"
    expected = provenance.weights_sha256
    if weights is None:
        recorded = _recorded_weights(provenance)
        if recorded is not None and checksum(recorded) == expected:
            return build_encoder(config, recorded, False), f"weights {recorded} (the store's, sha256 checked)"
    resolved = resolve_weights(config, weights, False)
    if expected and resolved.sha256 != expected:  # checked before the checkpoint is even loaded
        raise WeightsError(
            f"{resolved.source} has sha256 {str(resolved.sha256)[:16]}..., but the store was embedded with weights "
            f"{expected[:16]}... ({provenance.weights_source or 'unknown source'}); pass --weights with that checkpoint"
        )
    return build_encoder(config, resolved.path, False), f"weights {resolved.source}"


def tile_queries(
    plan: TilePlan,
    encoder: Encoder,
    *,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 16,
    keep_rgb: int = 0,
    progress: Progress = NULL_PROGRESS,
) -> TileQueries:
    """Read the planned chips one window at a time and embed them, ``batch_size`` chips at once.

    Memory stays bounded by one batch of chips, whatever the tile's size. Chips that are mostly
    nodata (over :data:`MAX_NODATA_FRACTION`) are skipped and listed.

    Args:
        plan: from :func:`plan_tile`.
        encoder: from :func:`load_encoder`.
        device: where to run the encoder.
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast.
        batch_size: chips per forward pass.
        keep_rgb: keep the true-colour image of the first ``keep_rgb`` chips (for pictures).
        progress: where to report progress.

    Raises:
        DataNotFoundError: every chip is mostly nodata.
    """
    from rsir_cli.embedding import embed_images
    from rsir_cli.geo import lonlat_corners

    raster, needed, chips, path = plan.raster, plan.needed, plan.chips, plan.path
    single = len(chips) == 1
    stem = path.stem if path.is_file() else path.name
    rgb_positions = [needed.index(b) for b in RGB_BANDS] if all(b in needed for b in RGB_BANDS) else None
    queries: list[Query] = []
    skipped: list[tuple[str, float]] = []
    bar = progress.task(f"embed {path.name}", total=len(chips), unit="chip")
    try:
        for start in range(0, len(chips), batch_size):
            batch = chips[start : start + batch_size]
            images, kept = [], []
            for chip in batch:
                chip_id = stem if single else f"{stem}_r{chip.row}_c{chip.col}"
                image, invalid = raster.read(chip.window, needed)
                fraction = float(invalid.mean())
                if fraction > MAX_NODATA_FRACTION:
                    skipped.append((chip_id, fraction))
                    continue
                if not queries and not kept and plan.units == "auto" and 0.0 < float(image.max()) <= 1.5:
                    log.warning(
                        "%s: the values look like reflectance in [0, 1] but carry no scale; if so, pass --units reflectance",
                        path.name,
                    )
                bounds = raster.window_bounds(chip.window) if raster.crs else (np.nan,) * 4
                keep = rgb_positions is not None and len(queries) + len(kept) < keep_rgb
                kept.append(
                    Query(
                        chip_id,
                        np.empty(0, np.float32),
                        crs=raster.crs,
                        bounds=tuple(bounds),  # type: ignore[arg-type]
                        window=chip.window,
                        nodata_fraction=fraction,
                        rgb=image[rgb_positions] if keep else None,
                        tile=str(path),
                    )
                )
                images.append(image)
            if images:
                corners = lonlat_corners([q.crs for q in kept], np.array([q.bounds for q in kept]))
                embeddings = embed_images(
                    encoder,
                    np.stack(images),
                    device=device,
                    precision=precision,
                    dates=[plan.date] * len(images),
                    lonlat=corners,
                )
                for query, embedding, lonlat in zip(kept, embeddings, corners, strict=True):
                    query.embedding = embedding
                    query.lonlat = lonlat
                queries.extend(kept)
            bar.advance(len(batch))
    finally:
        bar.close()
        raster.close()
    if not queries:
        worst = min(fraction for _, fraction in skipped)
        what = "the query" if single else f"all {len(chips)} chips of the query"
        raise DataNotFoundError(
            f"{what} in {path.name} {'is' if single else 'are'} mostly nodata ({worst:.0%} of the pixels or more; "
            f"at most {MAX_NODATA_FRACTION:.0%} is allowed): pick a region with data (--window / --bbox)"
        )
    return TileQueries(queries, plan.region, plan.chip_size, len(chips), skipped, raster.mapped_by)
