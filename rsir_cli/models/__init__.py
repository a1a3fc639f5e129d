"""Encoders: a registry of model configs (YAML) and the builders of their networks."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsir_cli.errors import UsageError
from rsir_cli.models.registry import ModelConfig, config_from_provenance, get_model_config, model_names
from rsir_cli.models.weights import RANDOM_SEED, ResolvedWeights, load_checkpoint, resolve_weights

__all__ = [
    "Encoder",
    "ModelConfig",
    "build_encoder",
    "config_from_provenance",
    "get_model_config",
    "model_names",
    "register_architecture",
    "load_plugins",
]

log = logging.getLogger(__name__)

# architecture -> (build(config) -> nn.Module, load(module, checkpoint, source) -> None)
Builder = Callable[[ModelConfig], Any]
Loader = Callable[[Any, Mapping[str, Any], str], None]
_ARCHITECTURES: dict[str, tuple[Builder, Loader]] = {}


def register_architecture(name: str, build: Builder, load: Loader) -> None:
    """Add an encoder architecture (used by plugins, e.g. the test suite's fake encoder)."""
    from rsir_cli.models import registry

    _ARCHITECTURES[name] = (build, load)
    if name not in registry._ARCHITECTURES:
        registry._ARCHITECTURES.append(name)


def _builtin_architectures() -> None:
    if "prithvi_vit" in _ARCHITECTURES:
        return
    from rsir_cli.models import prithvi, vit

    register_architecture("prithvi_vit", prithvi.PrithviEncoder, prithvi.load_encoder_weights)
    register_architecture("timm_vit", vit.TimmViTEncoder, vit.load_vit_weights)


def load_plugins() -> None:
    """Import the modules named in ``RSIR_PLUGINS`` (comma-separated); they may register models."""
    for name in filter(None, (n.strip() for n in os.environ.get("RSIR_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise UsageError(f"cannot import plugin {name!r} named in RSIR_PLUGINS: {error}") from None


@dataclass
class Encoder:
    """A ready encoder: the network in eval mode, its config and where its weights came from."""

    config: ModelConfig
    module: Any
    weights: ResolvedWeights

    def provenance(self) -> dict[str, Any]:
        return {
            **self.config.provenance(),
            "weights_sha256": self.weights.sha256 or "",
            "weights_source": self.weights.source,
            "random_weights": self.weights.random,
        }


def build_encoder(config: ModelConfig, weights: Path | None = None, random_weights: bool = False) -> Encoder:
    """Build the network of ``config`` and load its weights (on the CPU, in eval mode).

    Raises:
        WeightsError: no weights found (says how to get them), or weights that do not fit.
    """
    import torch

    _builtin_architectures()
    load_plugins()
    if config.architecture not in _ARCHITECTURES:
        raise UsageError(f"model {config.name}: unknown architecture {config.architecture!r}")
    resolved = resolve_weights(config, weights, random_weights)
    build, load = _ARCHITECTURES[config.architecture]
    if resolved.random:
        log.warning("model %s runs with RANDOM WEIGHTS (seed %d): embeddings are meaningless", config.name, RANDOM_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            module = build(config)
    else:
        module = build(config)
        assert resolved.path is not None
        load(module, load_checkpoint(resolved.path), str(resolved.path))
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return Encoder(config, module, resolved)
