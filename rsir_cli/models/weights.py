"""Finding, verifying and reading model weights. Never falls back to random weights on its own.

Weights come from ``--weights PATH``, or from where `rsir download <model>` put them: the Hugging
Face cache for Hugging Face sources, ``<cache>/weights/`` for plain URLs. `rsir download` records
each file with its sha256 in ``<cache>/weights/manifest.json``; the checksum of every file used is
written into the store's provenance.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsir_cli import config as rsir_config
from rsir_cli.errors import UsageError, WeightsError
from rsir_cli.fileio import read_json, sha256_file, write_json
from rsir_cli.models.registry import ModelConfig

log = logging.getLogger(__name__)

RANDOM_SEED = 0


@dataclass(frozen=True)
class ResolvedWeights:
    """Where an encoder's weights come from."""

    path: Path | None
    sha256: str | None
    source: str
    random: bool = False


def _manifest_path() -> Path:
    return rsir_config.weights_dir() / "manifest.json"


def read_manifest() -> dict[str, Any]:
    """The recorded weights files by :func:`weights_key` (empty when none, or unreadable)."""
    path = _manifest_path()
    manifest = read_json(path)
    if manifest is None and path.exists():
        log.warning("ignoring unreadable weights manifest %s", path)
    return manifest or {}


def record_weights(key: str, path: Path, sha256: str, source: str) -> None:
    """Remember a verified weights file (called by `rsir download`); durable and atomic.

    Args:
        key: the :func:`weights_key` of the model(s) the file serves.
        path: the file.
        sha256: its checksum.
        source: where it came from, as shown to the user (a redacted URL).
    """
    manifest = read_manifest()
    stat = path.stat()
    # absolute, not resolved: the Hugging Face cache links a snapshot name to a suffix-less blob
    manifest[key] = {
        "path": os.path.abspath(path),
        "sha256": sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "source": source,
    }
    target = _manifest_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json(target, manifest)


def weights_key(config: ModelConfig) -> str:
    """Models sharing a checkpoint share a manifest entry (prithvi and prithvi-rgb)."""
    weights = config.weights
    return str(weights.repo_id or weights.url or config.name) + "/" + str(weights.filename or "")


def checksum(path: Path) -> str:
    """sha256 of a weights file, hashed once: the manifest remembers it by path, size and mtime.

    A 350 MB checkpoint takes most of a second to hash; `rsir search` would pay that on every run.
    """
    stat = path.stat()
    for entry in read_manifest().values():
        same_file = entry.get("path") == os.path.abspath(path) and entry.get("size") == stat.st_size
        if same_file and entry.get("sha256") and entry.get("mtime_ns", stat.st_mtime_ns) == stat.st_mtime_ns:
            return str(entry["sha256"])
    digest = sha256_file(path)
    try:
        record_weights(f"file:{os.path.abspath(path)}", path, digest, str(path))
    except OSError:  # a read-only cache: hash again next time
        pass
    return digest


def how_to_get(config: ModelConfig) -> str:
    where = config.weights.location if config.weights.downloadable else "its publisher"
    return (
        f"run `rsir download {config.name}` (needs network access to {where}), or download the file yourself and "
        f"pass --weights PATH; --random-weights runs with random weights, for smoke tests only"
    )


def find_cached(config: ModelConfig) -> Path | None:
    """The file `rsir download` fetched for this model, if it is on disk."""
    entry = read_manifest().get(weights_key(config))
    if entry and Path(entry["path"]).is_file():
        return Path(entry["path"])
    weights = config.weights
    if weights.source == "huggingface":
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(
                repo_id=str(weights.repo_id), filename=str(weights.filename), revision=weights.revision
            )
        except Exception:  # an unreadable cache is the same as no cache here
            found = None
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    elif weights.filename:
        candidate = rsir_config.weights_dir() / weights.filename
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(config: ModelConfig, weights: Path | None = None, random_weights: bool = False) -> ResolvedWeights:
    """Decide which weights an encoder uses.

    Raises:
        UsageError: both --weights and --random-weights given.
        WeightsError: no weights given or cached; the message says how to get them.
    """
    if random_weights:
        if weights is not None:
            raise UsageError("--weights and --random-weights exclude each other")
        return ResolvedWeights(None, None, f"RANDOM WEIGHTS (seed {RANDOM_SEED}; smoke runs only)", random=True)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return ResolvedWeights(path, checksum(path), str(path))
    found = find_cached(config)
    if found is None:
        raise WeightsError(f"no weights for model {config.name!r} on this machine: {how_to_get(config)}")
    sha = checksum(found)
    expected_prefix = config.weights.sha256_prefix
    if expected_prefix and not sha.startswith(str(expected_prefix)):
        raise WeightsError(
            f"{found} has sha256 {sha[:16]}..., expected {expected_prefix}...; delete it and run `rsir download {config.name}`"
        )
    return ResolvedWeights(found, sha, str(found))


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian) and ``{``.

    Needed because the manifest records resolved paths, and the Hugging Face cache resolves
    ``model.safetensors`` to a blob named by its sha256, without the suffix.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 40


def _refusal(error: BaseException) -> str:
    """What torch's safe loader found, without its advice (which is to turn the safety off)."""
    text = str(error)
    if match := re.search(r"GLOBAL ([\w.]+)", text):
        return (
            f"it is a pickle checkpoint that stores Python objects ({match.group(1)}) besides tensors, which rsir "
            "does not unpickle (that could run code)"
        )
    if match := re.search(r"WeightsUnpickler error:\s*([^\n]+)", text):
        return (
            f"it is not a safetensors file, nor a PyTorch checkpoint of tensors ({match.group(1).strip().rstrip('.')})"
        )
    return "it is not a safetensors file, nor a PyTorch checkpoint of tensors"


def load_checkpoint(path: Path) -> Mapping[str, Any]:
    """Read a checkpoint safely: safetensors, or ``torch.load(weights_only=True)``; never a full unpickle.

    Raises:
        WeightsError: missing, or not a checkpoint rsir can read safely (one line that says what the
            file is and what to do; a pickle that needs other classes is never unpickled).
    """
    import pickle

    import torch

    try:
        if path.suffix == ".safetensors" or _is_safetensors(path):
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except pickle.UnpicklingError as error:
        # torch's message runs to six lines and suggests weights_only=False, which would let the
        # file run any code it carries: rsir never does that, nor suggests it.
        raise WeightsError(
            f"cannot read weights {path}: {_refusal(error)}; use the model's official weights (rsir download) "
            "or a .safetensors copy of the state dict"
        ) from None
    except Exception as error:  # zip and safetensors errors all mean "not a usable checkpoint"
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightsError(
            f"cannot read weights {path} ({type(error).__name__}{': ' + first if first else ''}); it is not a "
            "safetensors or PyTorch checkpoint, or it is damaged"
        ) from None
