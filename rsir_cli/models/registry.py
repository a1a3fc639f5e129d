"""The model registry: one YAML file per model in ``rsir_cli/configs/models`` (``configs/`` at the top).

Each config carries what embedding needs and what the store records as provenance: the input
bands in the model's channel order, the per-band mean and std, bands filled with their mean, the
input size and the pooling. ``None`` means "not set", so a default shows through.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rsir_cli.bands import RESOLUTION_M
from rsir_cli.errors import UsageError

_ARCHITECTURES = ["prithvi_vit", "timm_vit"]  # plugins may add their own
_POOLINGS = ("mean_patch", "cls")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build an encoder and to preprocess its input."""

    name: str
    description: str
    architecture: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    pooling: str
    embed_dim: int
    fill_bands: tuple[str, ...] = ()
    patch_size: int = 16
    depth: int | None = None
    num_heads: int | None = None
    num_frames: int = 1
    tubelet_size: int = 1
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    timm_name: str | None = None
    weights: dict[str, Any] = field(default_factory=dict)

    @property
    def read_bands(self) -> tuple[str, ...]:
        """The bands read from the data (model bands minus the mean-filled ones), in model order."""
        return tuple(b for b in self.bands if b not in self.fill_bands)

    def provenance(self) -> dict[str, Any]:
        """Attributes the store records for every file this model writes."""
        return {
            "bands": list(self.bands),
            "read_bands": list(self.read_bands),
            "fill_bands": list(self.fill_bands),
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "pooling": self.pooling,
            "architecture": self.architecture,
            "model_config": asdict(self),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"{source}: unknown model config key(s) {', '.join(unknown)}")
        try:
            values = dict(data)
            for key in ("bands", "mean", "std", "fill_bands"):
                if key in values and values[key] is not None:
                    values[key] = tuple(values[key])
            config = cls(**values)
        except TypeError as error:
            raise UsageError(f"{source}: {error}") from None
        config.validate(source)
        return config

    def validate(self, source: str) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise UsageError(f"{source}: architecture must be one of {', '.join(_ARCHITECTURES)}")
        if self.pooling not in _POOLINGS:
            raise UsageError(f"{source}: pooling must be one of {', '.join(_POOLINGS)}")
        if not (len(self.bands) == len(self.mean) == len(self.std)):
            raise UsageError(f"{source}: bands, mean and std must have the same length")
        if any(s <= 0 for s in self.std):
            raise UsageError(f"{source}: every std must be positive")
        unknown = [b for b in self.bands if b not in RESOLUTION_M]
        if unknown:
            raise UsageError(f"{source}: unknown band(s) {', '.join(unknown)} (use Sentinel-2 names such as B02, B8A)")
        if any(b not in self.bands for b in self.fill_bands):
            raise UsageError(f"{source}: fill_bands must be a subset of bands")
        if self.input_size % self.patch_size:
            raise UsageError(f"{source}: input_size must be a multiple of patch_size")


def _config_files() -> dict[str, Any]:
    folder = resources.files("rsir_cli") / "configs" / "models"
    return {entry.name[: -len(".yaml")]: entry for entry in folder.iterdir() if entry.name.endswith(".yaml")}


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, ModelConfig]:
    configs = {}
    for stem, entry in sorted(_config_files().items()):
        data = yaml.safe_load(entry.read_text(encoding="utf-8"))
        config = ModelConfig.from_dict(data, source=f"configs/models/{entry.name}")
        if config.name != stem:
            raise UsageError(f"configs/models/{entry.name}: name {config.name!r} differs from the file name")
        configs[config.name] = config
    return configs


_PLUGIN_CONFIGS: dict[str, ModelConfig] = {}


def register_model_config(config: ModelConfig) -> None:
    """Add a model config at run time (plugins named in ``RSIR_PLUGINS``)."""
    _PLUGIN_CONFIGS[config.name] = config


def _all_configs() -> dict[str, ModelConfig]:
    return {**_builtin(), **_PLUGIN_CONFIGS}


def model_names() -> list[str]:
    return list(_all_configs())


def get_model_config(name: str) -> ModelConfig:
    """The built-in model ``name``, or the config in a YAML file when ``name`` is a path to one."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"model config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise UsageError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path} does not hold a model config mapping")
        return ModelConfig.from_dict(data, source=str(path))
    from rsir_cli.models import load_plugins

    load_plugins()
    configs = _all_configs()
    key = name.strip().lower()
    if key not in configs:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(configs)} (or a path to a model .yaml)")
    return configs[key]


def config_from_provenance(attrs: dict[str, Any]) -> ModelConfig:
    """Rebuild the exact model config a store file was written with."""
    data = attrs.get("model_config")
    if not isinstance(data, dict):
        raise UsageError("the store file records no model config; re-create it with `rsir embed`")
    return ModelConfig.from_dict(data, source="store provenance")
