"""Encoders: a registry of model configs (YAML) and the builders of their networks.

A network is built once, directly with its weights: on the ``meta`` device (shapes, no storage),
then the checkpoint's tensors are assigned into it. Random weights (``--random-weights``) are the
seeded initialisation of a normal build, the same values in every process and rsir version.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsir_cli.errors import UsageError
from rsir_cli.models.registry import (
    ModelConfig,
    WeightsSource,
    config_from_provenance,
    get_model_config,
    model_names,
)
from rsir_cli.models.weights import RANDOM_SEED, ResolvedWeights, load_checkpoint, resolve_weights

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "Encoder",
    "ModelConfig",
    "WeightsSource",
    "build_encoder",
    "config_from_provenance",
    "get_model_config",
    "model_names",
    "register_architecture",
    "load_plugins",
    "time_input",
    "location_input",
]

log = logging.getLogger(__name__)

# build(config) -> nn.Module with its (seeded) initialisation; load(module, checkpoint, source).
Builder = Callable[[ModelConfig], Any]
Loader = Callable[[Any, Mapping[str, Any], str], None]


@dataclass(frozen=True)
class Architecture:
    """How to make one kind of network.

    ``skeleton``, when given, builds the same network without initialising it; it is run on the
    ``meta`` device and ``load`` must assign the checkpoint's tensors (``assign_weights``).
    Without it (plugins), a checkpoint is loaded into a normally initialised ``build``.
    """

    build: Builder
    load: Loader
    skeleton: Builder | None = None


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(name: str, build: Builder, load: Loader, skeleton: Builder | None = None) -> None:
    """Add an encoder architecture (used by plugins, e.g. the test suite's fake encoder)."""
    from rsir_cli.models import registry

    _ARCHITECTURES[name] = Architecture(build, load, skeleton)
    if name not in registry._ARCHITECTURES:
        registry._ARCHITECTURES.append(name)


def _builtin_architectures() -> None:
    """Register the built-in architectures; each imports only its own module (no timm)."""
    if "prithvi_vit" in _ARCHITECTURES:
        return

    def prithvi(config: ModelConfig) -> nn.Module:
        from rsir_cli.models.prithvi import PrithviEncoder

        return PrithviEncoder(config)

    def prithvi_eo2(config: ModelConfig) -> nn.Module:
        from rsir_cli.models.prithvi import PrithviEO2Encoder

        return PrithviEO2Encoder(config)

    def load_prithvi(module: Any, checkpoint: Mapping[str, Any], source: str) -> None:
        from rsir_cli.models.prithvi import load_encoder_weights

        load_encoder_weights(module, checkpoint, source)

    def vit_random(config: ModelConfig) -> nn.Module:
        from rsir_cli.models.vit import random_vit

        return random_vit(config)

    def vit(config: ModelConfig) -> nn.Module:
        from rsir_cli.models.vit import ViTEncoder

        return ViTEncoder(config)

    def load_vit(module: Any, checkpoint: Mapping[str, Any], source: str) -> None:
        from rsir_cli.models.vit import load_vit_weights

        load_vit_weights(module, checkpoint, source)

    def dofa(config: ModelConfig) -> nn.Module:
        from rsir_cli.models.dofa import DOFAEncoder

        return DOFAEncoder(config)

    def load_dofa(module: Any, checkpoint: Mapping[str, Any], source: str) -> None:
        from rsir_cli.models.dofa import load_dofa_weights

        load_dofa_weights(module, checkpoint, source)

    register_architecture("prithvi_vit", prithvi, load_prithvi, skeleton=prithvi)
    register_architecture("prithvi_eo2", prithvi_eo2, load_prithvi, skeleton=prithvi_eo2)
    register_architecture("timm_vit", vit_random, load_vit, skeleton=vit)
    register_architecture("dofa", dofa, load_dofa, skeleton=dofa)


def load_plugins() -> None:
    """Import the modules named in ``RSIR_PLUGINS`` (comma-separated); they may register models."""
    for name in filter(None, (n.strip() for n in os.environ.get("RSIR_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise UsageError(f"cannot import plugin {name!r} named in RSIR_PLUGINS: {error}") from None


@dataclass
class Encoder:
    """A ready encoder: the network in eval mode, its config and where its weights came from.

    Call it as ``encoder.module(pixels, **extras)`` where ``extras`` holds only inputs named in
    ``encoder.config.inputs`` (``time=``, ``location=``); ``encoder.extra_inputs(...)`` builds them.
    """

    config: ModelConfig
    module: Any
    weights: ResolvedWeights

    @property
    def accepts(self) -> tuple[str, ...]:
        """The extra inputs the network takes besides pixels ("time", "location"), each optional."""
        return self.config.inputs

    def extra_inputs(
        self,
        dates: Sequence[date | None] | None = None,
        latlon: Sequence[tuple[float, float] | None] | None = None,
        device: str | torch.device = "cpu",
    ) -> dict[str, torch.Tensor]:
        """The keyword arguments of the network's forward for one batch.

        Args:
            dates: acquisition date per sample (None where unknown), or None for none at all.
            latlon: (latitude, longitude) in degrees per sample (None where unknown), or None.
            device: where the tensors go (the batch's device).

        Returns:
            ``time`` and/or ``location`` tensors for the inputs this model accepts and that are
            known for at least one sample; empty for models without extra inputs.
        """
        extras: dict[str, torch.Tensor] = {}
        if "time" in self.accepts and dates is not None and any(d is not None for d in dates):
            extras["time"] = time_input(dates).to(device)
        if "location" in self.accepts and latlon is not None and any(p is not None for p in latlon):
            extras["location"] = location_input(latlon).to(device)
        return extras

    def provenance(self) -> dict[str, Any]:
        return {
            **self.config.provenance(),
            "weights_sha256": self.weights.sha256 or "",
            "weights_source": self.weights.source,
            "random_weights": self.weights.random,
        }


def time_input(dates: Sequence[date | None]) -> torch.Tensor:
    """(B, 2) float32 (year, day of year 1-366) for the Prithvi-EO-2.0 TL models; NaN rows where unknown."""
    import torch

    rows = [
        (float(d.year), float(d.timetuple().tm_yday)) if d is not None else (float("nan"), float("nan")) for d in dates
    ]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 2)


def location_input(latlon: Sequence[tuple[float, float] | None]) -> torch.Tensor:
    """(B, 2) float32 (latitude, longitude in degrees); NaN rows where unknown.

    Raises:
        UsageError: a latitude outside [-90, 90] or a longitude outside [-180, 360].
    """
    import torch

    rows = [(float(p[0]), float(p[1])) if p is not None else (float("nan"), float("nan")) for p in latlon]
    for lat, lon in rows:
        if not (lat != lat or -90 <= lat <= 90) or not (lon != lon or -180 <= lon <= 360):
            raise UsageError(f"location ({lat}, {lon}) is not a (latitude, longitude) in degrees")
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 2)


def build_encoder(config: ModelConfig, weights: Path | None = None, random_weights: bool = False) -> Encoder:
    """Build the network of ``config`` with its weights (on the CPU, in eval mode).

    Raises:
        WeightsError: no weights found (says how to get them), or weights that do not fit.
    """
    import torch

    _builtin_architectures()
    load_plugins()
    if config.architecture not in _ARCHITECTURES:
        raise UsageError(f"model {config.name}: unknown architecture {config.architecture!r}")
    resolved = resolve_weights(config, weights, random_weights)
    architecture = _ARCHITECTURES[config.architecture]
    if resolved.random:
        log.warning("model %s runs with RANDOM WEIGHTS (seed %d): embeddings are meaningless", config.name, RANDOM_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            module = architecture.build(config)
    else:
        assert resolved.path is not None
        checkpoint = load_checkpoint(resolved.path)
        if architecture.skeleton is not None:
            with torch.device("meta"):
                module = architecture.skeleton(config)
        else:
            module = architecture.build(config)
        architecture.load(module, checkpoint, str(resolved.path))
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return Encoder(config, module, resolved)
