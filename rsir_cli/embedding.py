"""Dataset x encoder -> batches -> store, resumable: the library behind `rsir embed`.

Workers read raw bands (only those the model needs); the main process moves each batch to the
device, resizes and standardises it there (so a GPU does the resizing), runs the encoder under
autocast when asked, and appends the batch to the store, which commits it (see
:mod:`rsir_cli.store.runs`). :func:`embed_dataset` is the one entry point of the command.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir_cli import suggest
from rsir_cli.datasets.base import SplitReader
from rsir_cli.devices import resolve_device
from rsir_cli.errors import RsirError, StoreError, UsageError
from rsir_cli.geo import make_footprints
from rsir_cli.progress import NULL_PROGRESS, Progress
from rsir_cli.store import EmbeddingStore, Shard

if TYPE_CHECKING:
    from rsir_cli.models import Encoder, ModelConfig
    from rsir_cli.store import SplitWriter

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
# Settings that must match for a run to continue an unfinished file, or for a complete file to
# count as this run's (model, dataset, split and shard are the file's path already).
RESUME_KEYS = (
    "weights_sha256", "random_weights", "bands", "fill_bands", "mean", "std", "input_size", "pooling",
    "precision", "first_index", "limit", "wavelengths", "inputs", "sensor",
)  # fmt: skip
#: datasets of the user's own imagery: they take ArchiveOptions
USER_ARCHIVES = ("folder", "scene")


@dataclass
class EmbedOptions:
    """How to run an embedding job."""

    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 32
    workers: int | None = None
    limit: int | None = None
    shard: Shard | None = None
    overwrite: bool = False
    compile: bool = False


@dataclass
class ArchiveOptions:
    """How to read a user's own imagery (datasets ``folder`` and ``scene``)."""

    name: str | None = None
    labels: Path | None = None
    bands: Sequence[int] | None = None  # 1-based band numbers of the files, one per model band
    units: str = "auto"
    date: str | None = None  # the acquisition date of every chip (ISO 8601), else the files' own

    @property
    def given(self) -> bool:
        return bool(self.name or self.labels or self.bands or self.units != "auto" or self.date)


@dataclass
class EmbedRequest:
    """One `rsir embed` invocation."""

    model: str
    dataset: str
    store: Path
    splits: Sequence[str] | None = None
    data_dir: Path | None = None
    archive: ArchiveOptions = field(default_factory=ArchiveOptions)
    # for models that take any bands (DOFA): "SENSOR:BAND,BAND,..." and optional wavelengths (µm)
    model_bands: str | None = None
    wavelengths: Sequence[float] | None = None
    weights: Path | None = None
    random_weights: bool = False
    options: EmbedOptions = field(default_factory=EmbedOptions)


@dataclass
class EmbedResult:
    """What one split's embedding run did."""

    model: str
    dataset: str
    split: str
    path: Path
    rows: int
    rows_new: int
    resumed_from: int
    seconds: float
    device: str
    precision: str
    random_weights: bool
    state: str = "embedded"  # embedded | resumed | up to date

    @property
    def images_per_second(self) -> float:
        return self.rows_new / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "path": str(self.path),
            "state": self.state,
            "rows": self.rows,
            "rows_new": self.rows_new,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "device": self.device,
            "precision": self.precision,
            "random_weights": self.random_weights,
        }


@dataclass
class EmbedOutcome:
    """Every split an `rsir embed` invocation handled."""

    results: list[EmbedResult]
    store: Path

    @property
    def random_weights(self) -> bool:
        return any(r.random_weights for r in self.results)


def default_workers() -> int:
    return max(0, min((os.cpu_count() or 1) - 1, 16))


def embed_dataset(request: EmbedRequest, progress: Progress = NULL_PROGRESS) -> EmbedOutcome:
    """Embed the asked splits of a dataset with a model into the store.

    Everything that can be checked cheaply (options, data, bands) is checked before the model is
    loaded, and every split is checked before the first one is embedded.

    Raises:
        UsageError: bad options (unknown model or dataset, splits, options for another dataset).
        DataNotFoundError / CorruptDataError: the data cannot be read.
        WeightsError: no weights (the message says how to get them).
        StoreError: the store holds the split from other settings (the message names --overwrite).
    """
    from rsir_cli.datasets import get_dataset, open_split
    from rsir_cli.models import build_encoder, get_model_config

    config = get_model_config(request.model)
    if request.model_bands or request.wavelengths:
        config = _band_set(config, request.model_bands, request.wavelengths)
    definition = get_dataset(request.dataset)
    splits = list(request.splits) if request.splits is not None else list(definition.default_splits)
    if not splits:
        raise UsageError("--split: give at least one split")
    archive = request.archive
    dataset_options: dict[str, object] = {}
    if definition.name in USER_ARCHIVES:
        from rsir_cli.raster import band_map

        band_indexes = band_map(archive.bands, config.read_bands, config.name) if archive.bands else None
        dataset_options = {
            "dataset_name": archive.name,
            "labels": archive.labels,
            "band_indexes": band_indexes,
            "units": archive.units,
            "date": archive.date,
        }
    elif archive.given:
        raise UsageError(
            f"--name, --labels, --bands, --units and --date apply to your own imagery ({', '.join(USER_ARCHIVES)}), "
            f"not to {definition.name}"
        )
    readers = [open_split(request.dataset, name, request.data_dir, **dataset_options) for name in splits]
    for reader in readers:
        reader.check(config.read_bands)
        _check_time_input(config, reader, definition.name in USER_ARCHIVES)
    encoder = build_encoder(config, request.weights, request.random_weights)
    store = EmbeddingStore(request.store)
    results = [embed_split(store, encoder, reader, request.options, progress) for reader in readers]
    return EmbedOutcome(results, store.root)


def _band_set(config: ModelConfig, model_bands: str | None, wavelengths: Sequence[float] | None) -> ModelConfig:
    """The model fed another band set (``--model-bands SENSOR:B,B,...``, ``--wavelengths``)."""
    from rsir_cli.bands import parse_band_list

    if model_bands:
        sensor, names = parse_band_list(model_bands)
    else:
        sensor, names = "sentinel2", list(config.read_bands)
    if wavelengths is not None and len(wavelengths) != len(names):
        raise UsageError(f"--wavelengths gives {len(wavelengths)} values for {len(names)} bands ({', '.join(names)})")
    return config.with_bands(names, sensor=sensor, wavelengths=list(wavelengths) if wavelengths else None)


def _check_time_input(config: ModelConfig, reader: SplitReader, user_archive: bool) -> None:
    """A model that takes the acquisition date, on data whose first sample has none: say how to give it."""
    if "time" not in config.inputs or not len(reader):
        return
    if reader.load(0, config.read_bands).date:
        return
    how = (
        "pass --date YYYY-MM-DD (the acquisition date of the imagery)"
        if user_archive
        else f"the dataset {reader.dataset} records no acquisition dates"
    )
    raise UsageError(
        f"model {config.name} takes each image's acquisition date, but {reader.ids[0]!r} of {reader.dataset} has "
        f"none: {how}, or use the model without time input ({config.name.removesuffix('-tl')})"
    )


def embed_split(
    store: EmbeddingStore,
    encoder: Encoder,
    reader: SplitReader,
    options: EmbedOptions,
    progress: Progress = NULL_PROGRESS,
) -> EmbedResult:
    """Embed one split (or one shard of it) into the store, continuing an unfinished run.

    A split that the store already holds complete, from the same settings and the same samples,
    is left as it is (state "up to date").

    Raises:
        UsageError: bad options (precision, device, batch size).
        StoreError: the store holds the split from other settings or other samples.
        DataNotFoundError / CorruptDataError: a sample cannot be read (rows before it are kept).
    """
    if options.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if options.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    config = encoder.config
    reader.check(config.read_bands)
    device = resolve_device(options.device)

    total = len(reader) if options.limit is None else min(len(reader), options.limit)
    start, stop = options.shard.bounds(total) if options.shard else (0, total)
    attrs = {
        **encoder.provenance(),
        **reader.describe(),
        "band_sources": reader.band_sources(config.read_bands),
        "inputs_given": _inputs_rule(config),
        "label_names": list(reader.label_names),
        "precision": options.precision,
        "device": device,
        "first_index": start,
        "limit": options.limit if options.limit is not None else -1,
    }
    writer = store.writer(
        config.name,
        reader.dataset,
        reader.split,
        attrs=attrs,
        dim=config.embed_dim,
        n_labels=len(reader.label_names),
        rows_expected=stop - start,
        shard=options.shard,
        overwrite=options.overwrite,
        resume_keys=RESUME_KEYS,
    )
    with writer:
        resumed_from = writer.rows_done
        if resumed_from and writer.ids_done != reader.ids[start : start + resumed_from]:
            redo = suggest.embed(
                config.name, reader.dataset, reader.split, store=store.root, overwrite=True
            )  # the dataset changed under the store
            raise StoreError(
                f"{writer.path} holds samples that are not the first {resumed_from} of this split in order (did the "
                f"split file or the dataset change?); embed it again with {redo}"
            )
        result = EmbedResult(
            model=config.name,
            dataset=reader.dataset,
            split=reader.split,
            path=writer.path,
            rows=stop - start,
            rows_new=0,
            resumed_from=resumed_from,
            seconds=0.0,
            device=device,
            precision=options.precision,
            random_weights=encoder.weights.random,
            state="up to date" if writer.up_to_date else "resumed" if resumed_from else "embedded",
        )
        if writer.up_to_date:
            log.debug("%s is complete and current: nothing to do", writer.path)
            return result
        indices = range(start + resumed_from, stop)
        bar = progress.task(
            f"{config.name} / {reader.dataset} / {reader.split}", total=stop - start, unit="img", completed=resumed_from
        )
        began = time.perf_counter()
        try:
            if len(indices):
                _run(writer, encoder, reader, indices, device, options, bar)
            writer.commit()
        finally:
            bar.close()
        result.seconds = time.perf_counter() - began
        result.rows_new = writer.rows_done - resumed_from
        writer.finish()
    return result


def _inputs_rule(config: ModelConfig) -> dict[str, str]:
    """How the extra inputs a model takes are fed, per row (recorded, so a store says what it used)."""
    rule = {}
    if "time" in config.inputs:
        rule["time"] = "the row's acquisition date (dates; year-only dates as 1 July); absent where dates is empty"
    if "location" in config.inputs:
        rule["location"] = "the centre of the row's footprint (lat, lon); absent where the footprint is unknown"
    return rule


def extra_inputs(encoder: Encoder, dates: Sequence[str], lonlat: np.ndarray, device: str) -> dict[str, Any]:
    """The time/location tensors a model takes, from stored-style dates and (N, 4, 2) lon/lat corners."""
    if not encoder.config.inputs:
        return {}
    from rsir_cli.dates import model_date

    centres = np.asarray(lonlat, dtype=np.float64).reshape(-1, 4, 2).mean(axis=1)
    latlon = [(float(lat), float(lon)) if np.isfinite([lat, lon]).all() else None for lon, lat in centres]
    return encoder.extra_inputs(dates=[model_date(d) for d in dates], latlon=latlon, device=device)


class _TorchDataset:
    """Adapter for torch's DataLoader; errors travel back as values so their message stays one line."""

    def __init__(self, reader: SplitReader, indices: Sequence[int], bands: Sequence[str]) -> None:
        self.reader = reader
        self.indices = list(indices)
        self.bands = tuple(bands)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        index = self.indices[position]
        try:
            sample = self.reader.load(index, self.bands)
        except RsirError as error:
            return {"error": error}
        image = sample.image
        # Integer imagery (BigEarthNet DN) travels as uint16, a quarter of float32's bytes between
        # processes and to the GPU; it becomes float32 on the device, exactly.
        image = np.ascontiguousarray(image, dtype=np.uint16 if image.dtype == np.uint16 else np.float32)
        return {
            "index": index,
            "image": image,
            "labels": sample.labels,
            "crs": sample.crs,
            "bounds": np.asarray(sample.bounds, dtype=np.float64),
            "date": sample.date,
        }


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    for item in items:
        if "error" in item:
            return {"error": item["error"]}
    shapes = {item["image"].shape for item in items}
    if len(shapes) > 1:
        raise StoreError(f"samples of one batch differ in shape: {sorted(shapes)}")
    dtypes = {item["image"].dtype for item in items}
    images = np.stack([item["image"] for item in items])
    if dtypes != {np.dtype(np.uint16)}:
        images = images.astype(np.float32, copy=False)
    return {
        "index": [item["index"] for item in items],
        # torch's uint16 support is partial: ship the bits as int16, undo it on the device.
        "image": torch.from_numpy(images.view(np.int16)) if images.dtype == np.uint16 else torch.from_numpy(images),
        "uint16": images.dtype == np.uint16,
        "labels": np.stack([item["labels"] for item in items]),
        "dates": [item["date"] for item in items],
        # Footprints to longitude/latitude here, in the loader process, off the main process's path.
        "footprints": make_footprints([item["crs"] for item in items], np.stack([item["bounds"] for item in items])),
    }


def _autocast(device: str, precision: str) -> Any:
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def _encode(
    module: Any, preprocess: Any, images: Any, device: str, precision: str, extras: dict[str, Any]
) -> np.ndarray:
    """Raw images on ``device`` -> embeddings (float32 numpy): resize, standardise, encode."""
    inputs = preprocess(images)
    with _autocast(device, precision):
        embeddings = module(inputs, **extras)
    return embeddings.float().cpu().numpy()


def embed_images(
    encoder: Encoder,
    images: np.ndarray,
    *,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 32,
    dates: Sequence[str] | None = None,
    lonlat: np.ndarray | None = None,
) -> np.ndarray:
    """Embed raw images exactly as `rsir embed` does (same preprocessing, encoder and extra inputs).

    Args:
        encoder: the model (see :func:`rsir_cli.models.build_encoder`).
        images: (B, len(config.read_bands), H, W) in the data's units (reflectance x 10000),
            bands in the model's read order.
        device: where to run (``auto``: CUDA when available).
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast.
        batch_size: images per forward pass.
        dates: acquisition dates (ISO 8601, "" unknown), for models that take them.
        lonlat: (B, 4, 2) footprint corners, for models that take the location.

    Returns:
        (B, embed_dim) float32.
    """
    import torch

    from rsir_cli.preprocessing import Preprocessor

    if images.ndim != 4 or images.shape[1] != len(encoder.config.read_bands):
        raise UsageError(
            f"model {encoder.config.name} needs images of shape (B, {len(encoder.config.read_bands)}, H, W), got {images.shape}"
        )
    device = resolve_device(device)
    module = encoder.module.to(device)
    preprocess = Preprocessor(encoder.config)
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)).to(
                device
            )
            stop = start + batch_size
            extras = extra_inputs(
                encoder,
                list(dates[start:stop]) if dates is not None else [""] * len(batch),
                lonlat[start:stop] if lonlat is not None else np.full((len(batch), 4, 2), np.nan),
                device,
            )
            parts.append(_encode(module, preprocess, batch, device, precision, extras))
    if not parts:
        return np.zeros((0, encoder.config.embed_dim), dtype=np.float32)
    return np.concatenate(parts)


def _run(
    writer: SplitWriter,
    encoder: Encoder,
    reader: SplitReader,
    indices: range,
    device: str,
    options: EmbedOptions,
    bar: Any,
) -> None:
    import torch
    from torch.utils.data import DataLoader

    from rsir_cli.preprocessing import Preprocessor

    workers = default_workers() if options.workers is None else options.workers
    workers = min(workers, max(0, len(indices) // max(1, options.batch_size)))
    on_cuda = device.startswith("cuda")
    loader = DataLoader(
        _TorchDataset(reader, indices, encoder.config.read_bands),
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=on_cuda,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
    module = encoder.module.to(device)
    if options.compile:
        module = torch.compile(module)
    preprocess = Preprocessor(encoder.config)
    pending: tuple[Any, Any, dict[str, Any]] | None = None

    def commit(result: tuple[Any, Any, dict[str, Any]]) -> None:
        host, done, batch = result
        if done is not None:
            done.synchronize()  # waits for this batch's copy only, not for the batch computing now
        ids = [reader.ids[i] for i in batch["index"]]
        writer.append(host.numpy(), ids, batch["labels"], batch["footprints"], batch["dates"])
        bar.advance(len(ids))

    with torch.inference_mode():
        try:
            for batch in loader:
                if "error" in batch:
                    raise batch["error"]
                images = batch["image"].to(device, non_blocking=on_cuda)
                if batch["uint16"]:
                    images = images.to(torch.int32) & 0xFFFF
                inputs = preprocess(images)
                extras = extra_inputs(encoder, batch["dates"], batch["footprints"].lonlat, device)
                with _autocast(device, options.precision):
                    embeddings = module(inputs, **extras)
                if on_cuda:
                    # Copy out asynchronously; write the previous batch while the GPU computes this one.
                    host = torch.empty(embeddings.shape, dtype=torch.float32, pin_memory=True)
                    host.copy_(embeddings.float(), non_blocking=True)
                    done = torch.cuda.Event()
                    done.record()
                else:
                    host, done = embeddings.float(), None
                if pending is not None:
                    finished, pending = pending, None
                    commit(finished)
                pending = (host, done, batch)
        finally:
            # Whatever stopped the loop (bad sample, Ctrl-C), a batch already computed is kept.
            if pending is not None:
                commit(pending)
