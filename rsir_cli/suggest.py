"""The one place where rsir spells a command it suggests to the user.

Every hint that names an ``rsir`` command is built here, from real option names and the user's own
non-default settings (``--store``, ``--data-dir``), so that it runs when pasted. The test suite
collects every suggestion the tool prints and parses it with the real command-line app.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from rsir_cli import config


def _is_default_store(store: str | Path | None) -> bool:
    return store is None or Path(store) == Path(config.DEFAULT_STORE)


def command(name: str, *arguments: object, store: str | Path | None = None, **options: object) -> str:
    """``rsir NAME ARGUMENTS --option value ...``, quoted for a POSIX shell.

    Args:
        name: the subcommand (``embed``, ``hash``, ...).
        arguments: positional arguments (a tile, a dataset name).
        store: the user's store; added as ``--store`` unless it is the default.
        options: ``option_name=value``: ``--option-name value``; ``True`` gives a bare flag, ``None``
            and ``False`` leave the option out, sequences are joined by commas.

    Returns:
        The command line, without surrounding backticks.
    """
    words = ["rsir", name, *(str(a) for a in arguments)]
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


def quoted(name: str, *arguments: object, store: str | Path | None = None, **options: object) -> str:
    """:func:`command` in backticks, as messages show commands."""
    return f"`{command(name, *arguments, store=store, **options)}`"


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
