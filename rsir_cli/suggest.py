"""The one place where rsir spells a command it suggests to the user.

Every hint that names an ``rsir`` command is built here, from real option names and the user's own
non-default settings (``--store``, ``--data-dir``), so that it runs when pasted. The test suite
collects every suggestion the tool prints and parses it with the real command-line app.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rsir_cli import config


def _is_default_store(store: str | Path | None) -> bool:
    return store is None or Path(store) == Path(config.DEFAULT_STORE)


def command(subcommand: str, /, *arguments: object, store: str | Path | None = None, **options: object) -> str:
    """``rsir NAME ARGUMENTS --option value ...``, quoted for a POSIX shell.

    Args:
        subcommand: ``embed``, ``hash``, ...
        arguments: positional arguments (a tile, a dataset name).
        store: the user's store; added as ``--store`` unless it is the default.
        options: ``option_name=value``: ``--option-name value``; ``True`` gives a bare flag, ``None``
            and ``False`` leave the option out, sequences are joined by commas.

    Returns:
        The command line, without surrounding backticks.
    """
    words = ["rsir", subcommand, *(str(a) for a in arguments)]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, ",".join(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    if not _is_default_store(store):
        words += ["--store", str(store)]
    return " ".join(shlex.quote(word) if word != "rsir" else word for word in words)


def quoted(subcommand: str, /, *arguments: object, store: str | Path | None = None, **options: object) -> str:
    """:func:`command` in backticks, as messages show commands."""
    return f"`{command(subcommand, *arguments, store=store, **options)}`"


def embed(
    model: str,
    dataset: str,
    splits: Sequence[str] | str | None = None,
    *,
    store: str | Path | None = None,
    **options: object,
) -> str:
    """The backticked `rsir embed` that (re)creates a model's splits of a dataset."""
    split = ",".join(splits) if isinstance(splits, (list, tuple)) else splits
    return quoted("embed", model=model, dataset=dataset, split=split, store=store, **options)


def download(name: str, data_dir: str | Path | None = None) -> str:
    """The backticked `rsir download NAME`, with ``--data-dir`` where the data is not in its default place."""
    default = config.dataset_dir(name)
    where = None if data_dir is None or Path(data_dir).absolute() == default.absolute() else data_dir
    return quoted("download", name, data_dir=where)


def embed_like(
    attrs: Mapping[str, Any], split: Sequence[str] | str | None, *, store: str | Path | None = None, **extra: object
) -> str:
    """The backticked `rsir embed` that makes ``split`` like a split the store already holds.

    The other split's provenance gives the user's own non-default options: the data folder, random
    weights, the checkpoint, the precision, the options of a user archive (name, labels, band
    numbers, units, date), an any-band model's band set.
    """
    from rsir_cli.provenance import Provenance

    p = Provenance.from_attrs(attrs)
    kind = p.dataset_type or p.dataset
    options: dict[str, object] = {}
    if p.dataset_root and Path(p.dataset_root).absolute() != config.dataset_dir(kind).absolute():
        options["data_dir"] = p.dataset_root
    archive = p.dataset_options
    if kind in ("folder", "scene"):
        options["name"] = archive.get("dataset_name") or p.dataset
        options["labels"] = archive.get("labels")
        bands = archive.get("band_indexes")
        if isinstance(bands, dict) and bands:
            read = [b for b in (attrs.get("read_bands") or []) if b in bands] or list(bands)
            options["bands"] = [bands[b] for b in read]
        units = archive.get("units")
        options["units"] = units if units and units != "auto" else None
        options["date"] = archive.get("date")
    if p.random_weights:
        options["random_weights"] = True
    elif p.weights_source and Path(p.weights_source).is_file() and "huggingface" not in p.weights_source:
        options["weights"] = p.weights_source
    if p.precision != "fp32":
        options["precision"] = p.precision
    model_config = p.model_config or {}
    if model_config.get("any_bands") and attrs.get("read_bands") and attrs.get("wavelengths"):
        # Sentinel-2 names (what the store reads) and the wavelengths they were fed at: the same input
        options["model_bands"] = "sentinel2:" + ",".join(attrs["read_bands"])
        options["wavelengths"] = [f"{w:g}" for w in attrs["wavelengths"]]
    split_text = ",".join(split) if isinstance(split, (list, tuple)) else split
    return quoted("embed", model=p.model, dataset=kind, split=split_text, store=store, **options, **extra)
