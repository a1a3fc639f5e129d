"""``scene``: one large image of your own, cut into a grid of chips.

The scene is one multi-band raster (bands from its descriptions, or ``--bands``) or a folder of
single-band files named by band (``*B02*``, ``*B8A*``, as in a Sentinel-2 product). It is cut into
chips of the native patch size on the grid of its finest band -- 120 x 120 px, which at 10 m is a
BigEarthNet patch -- starting at the upper-left corner of the area every band covers; partial
chips at the right and bottom edges are **dropped** (BigEarthNet has no partial patches either).
Coarser bands are read from the same ground window and resampled bilinearly to the chip size
(:mod:`rsir_cli.raster`), so a chip written out as its own GeoTIFF and used as a query reads to the
same values. Chip ids are ``<name>_r<row>_c<col>`` (0-based grid positions); every chip's footprint
(CRS and bounds) is stored.

Chips whose finest band is mostly nodata (more than half the pixels; only checked when the file
declares nodata or a mask) are **skipped**, so a scene's empty corners do not flood the archive;
the remaining nodata pixels are filled with the band's valid mean in the chip. Labels are optional
(``--labels``, the CSV format of :mod:`rsir_cli.datasets.folder`, by chip id). One split: ``all``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rsir_cli.datasets.base import DatasetDefinition, Sample, SplitReader
from rsir_cli.datasets.folder import SPLIT, archive_arguments, dataset_name, read_labels_csv, recorded_options
from rsir_cli.errors import DataNotFoundError, UsageError
from rsir_cli.pixels import Chip, chip_grid
from rsir_cli.raster import MAX_NODATA_FRACTION, open_raster

PATCH_SIZE = 120


class SceneSplit(SplitReader):
    """The chips of one scene, as one split (``all``)."""

    def __init__(
        self,
        root: Path,
        split: str = SPLIT,
        *,
        name: str | None = None,
        band_indexes: Mapping[str, int] | None = None,
        units: str = "auto",
        labels: Path | None = None,
        date: str = "",
        chip_size: int = PATCH_SIZE,
    ) -> None:
        root = Path(root)
        if not root.exists():
            raise DataNotFoundError(
                f"{root} does not exist; pass --data-dir pointing at a GeoTIFF or a folder of single-band files"
            )
        self.root = root.resolve()
        self.split = split
        self.dataset = dataset_name(root, name)
        self.band_indexes = dict(band_indexes) if band_indexes else None
        self.units = units
        self.patch_size = int(chip_size)
        self.raster = open_raster(self.root, self.band_indexes, units)
        self.grid_rows, self.grid_cols, chips = chip_grid(self.raster.region, self.patch_size)
        region = self.raster.region
        if region.width < self.patch_size or region.height < self.patch_size:
            raise UsageError(
                f"{root} covers {region.width} x {region.height} px, less than one {self.patch_size} px chip"
            )
        self._chips: list[Chip] = []
        self.skipped: list[str] = []
        for chip in chips:
            chip_id = f"{self.dataset}_r{chip.row}_c{chip.col}"
            if self.raster.nodata_fraction(chip.window) > MAX_NODATA_FRACTION:
                self.skipped.append(chip_id)
            else:
                self._chips.append(chip)
        self.raster.close()  # the scan ran in this process; workers open their own handles
        self._ids = [f"{self.dataset}_r{c.row}_c{c.col}" for c in self._chips]
        if not self._ids:
            raise DataNotFoundError(f"every chip of {root} is mostly nodata; nothing to index")
        self.labels_path = Path(labels).resolve() if labels else None
        self.date = date  # --date: the acquisition date of every chip (else the file's own)
        if self.labels_path is not None:
            self.label_names, self._labels = read_labels_csv(self.labels_path, self._ids)
        else:
            self.label_names, self._labels = (), np.zeros((len(self._ids), 0), dtype=np.uint8)

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def available_bands(self) -> tuple[str, ...]:
        return self.raster.available_bands

    @property
    def chips(self) -> list[Chip]:
        return list(self._chips)

    def check(self, bands: Sequence[str]) -> None:
        self.raster.require(bands)

    def load(self, index: int, bands: Sequence[str]) -> Sample:
        window = self._chips[index].window
        image, _ = self.raster.read(window, bands)
        bounds = self.raster.window_bounds(window) if self.raster.crs else (np.nan,) * 4
        date = self.date or self.raster.date
        return Sample(index, image, self._labels[index].copy(), self.raster.crs, tuple(bounds), date)  # type: ignore[arg-type]

    def band_sources(self, bands: Sequence[str]) -> list[dict[str, str]]:
        return self.raster.band_sources(bands)

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "dataset_type": "scene",
            "dataset_options": {**recorded_options(self), "chip_size": self.patch_size},
            "pixel_size_m": self.raster.pixel_size_m() or "",
            "scene_crs": self.raster.crs,
            "chip_grid": [self.grid_rows, self.grid_cols],
            "chips_skipped": len(self.skipped),
        }


class SceneDefinition(DatasetDefinition):
    def open(self, root: Path, split: str, **options: object) -> SplitReader:
        chip_size = int(options.get("chip_size") or PATCH_SIZE)  # type: ignore[call-overload]
        return SceneSplit(root, split, **archive_arguments(options), chip_size=chip_size)


DEFINITION = SceneDefinition(
    name="scene",
    description="one large image of your own (a GeoTIFF or a folder of band files) cut into 120 px chips",
    splits=(SPLIT,),
    default_splits=(SPLIT,),
    download_hint="pass --data-dir pointing at a GeoTIFF or a folder of single-band files",
)
