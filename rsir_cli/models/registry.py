"""The model registry: one YAML file per model in ``rsir_cli/configs/models`` (``configs/`` at the top).

Each config carries what embedding needs and what the store records as provenance: the input
bands in the model's channel order, the per-band mean and std, bands filled with their mean, the
input size and the pooling. ``None`` means "not set", so a default shows through.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rsir_cli.bands import RESOLUTION_M, reflectance_statistics, resolve_band
from rsir_cli.errors import UsageError

_ARCHITECTURES = ["prithvi_vit", "prithvi_eo2", "timm_vit", "dofa"]  # plugins may add their own
_POOLINGS = ("mean_patch", "cls", "mean_patch_fc_norm")
EXTRA_INPUTS = ("time", "location")
_WEIGHT_SOURCES = ("huggingface", "url", "none")


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's published weights live: timm's pretrained config, for rsir.

    ``source`` is ``huggingface`` (``repo_id`` + ``filename``, optionally a pinned ``revision``),
    ``url`` (a plain HTTPS file) or ``none`` (a model without published weights). ``sha256_prefix``
    is checked when the publisher names files by their checksum (torchvision, torchgeo).
    """

    source: str = "none"
    repo_id: str | None = None
    filename: str | None = None
    url: str | None = None
    revision: str | None = None
    sha256_prefix: str | None = None
    license: str | None = None
    size: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "<dict>") -> WeightsSource:
        """Read the ``weights:`` block of a model config.

        Raises:
            UsageError: unknown keys, an unknown source kind, or a kind without its required keys.
        """
        if not data:
            return cls()
        if not isinstance(data, dict):
            raise UsageError(f"{source}: weights must be a mapping (source, repo_id, filename, url, ...)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"{source}: unknown weights key(s) {', '.join(unknown)}")
        weights = cls(**{k: (str(v) if v is not None and k != "size" else v) for k, v in data.items()})
        if weights.source not in _WEIGHT_SOURCES:
            raise UsageError(f"{source}: weights source must be one of {', '.join(_WEIGHT_SOURCES)}")
        if weights.source == "huggingface" and not (weights.repo_id and weights.filename):
            raise UsageError(f"{source}: Hugging Face weights need repo_id and filename")
        if weights.source == "url" and not weights.url:
            raise UsageError(f"{source}: url weights need a url")
        return weights

    def to_dict(self) -> dict[str, Any]:
        """The set fields only (what a YAML file would say)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def downloadable(self) -> bool:
        return self.source in ("huggingface", "url")

    @property
    def location(self) -> str:
        """Where a person finds the file: the Hub page and file name, or the URL."""
        if self.source == "huggingface":
            pinned = f"@{self.revision[:8]}" if self.revision else ""
            return f"https://huggingface.co/{self.repo_id}{pinned} ({self.filename})"
        if self.source == "url":
            return str(self.url)
        return "none published"


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
    weights: WeightsSource = field(default_factory=WeightsSource)
    # Extra inputs the network accepts besides the pixels ("time", "location"); each optional.
    inputs: tuple[str, ...] = ()
    # Models conditioned on the band set (DOFA): any bands, each at its central wavelength (µm).
    any_bands: bool = False
    wavelengths: tuple[float, ...] | None = None
    # The sensor whose band table gave the wavelengths ("custom" when given explicitly).
    sensor: str = "sentinel2"

    @property
    def read_bands(self) -> tuple[str, ...]:
        """The bands read from the data (model bands minus the mean-filled ones), in model order."""
        return tuple(b for b in self.bands if b not in self.fill_bands)

    def provenance(self) -> dict[str, Any]:
        """Attributes the store records for every file this model writes."""
        config = asdict(self)
        config["weights"] = self.weights.to_dict()
        return {
            "bands": list(self.bands),
            "read_bands": list(self.read_bands),
            "fill_bands": list(self.fill_bands),
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "pooling": self.pooling,
            "architecture": self.architecture,
            "inputs": list(self.inputs),
            "wavelengths": list(self.wavelengths) if self.wavelengths else [],
            "sensor": self.sensor,
            "model_config": config,
        }

    def with_bands(
        self,
        bands: list[str] | tuple[str, ...],
        *,
        sensor: str = "sentinel2",
        wavelengths: list[float] | tuple[float, ...] | None = None,
        mean: list[float] | tuple[float, ...] | None = None,
        std: list[float] | tuple[float, ...] | None = None,
    ) -> ModelConfig:
        """This model fed another band set (only for ``any_bands`` models such as DOFA).

        Each band is looked up in the band table of ``sensor`` (``bands.SENSORS``): it is read
        under its Sentinel-2 name of the same role and fed at the sensor's central wavelength.
        ``wavelengths`` (µm, one per band) override the table; ``mean`` / ``std`` default to
        ``bands.reflectance_statistics`` of the wavelengths (data in reflectance x 10000).

        Raises:
            UsageError: a fixed-band model, an unknown band, a band rsir cannot read, duplicates,
                or lists of different lengths.
        """
        if not self.any_bands:
            raise UsageError(
                f"model {self.name} reads a fixed band set ({', '.join(self.read_bands)}); only models that take "
                "any bands (e.g. dofa-base) accept another band set"
            )
        resolved = [resolve_band(name, sensor) for name in bands]
        unreadable = [b for b in resolved if b.sentinel2 is None]
        if unreadable:
            b = unreadable[0]
            raise UsageError(
                f"{sensor} band {b.name} ({b.common_name}, {b.center_um:g} µm) has no Sentinel-2 counterpart that "
                "rsir's readers can read it by; leave it out of the band set"
            )
        read_names = tuple(str(b.sentinel2) for b in resolved)
        if len(set(read_names)) != len(read_names):
            raise UsageError(f"the band set {', '.join(bands)} names the same band twice")
        if wavelengths is not None:
            if len(wavelengths) != len(read_names):
                raise UsageError(f"{len(wavelengths)} wavelengths given for {len(read_names)} bands")
            centers = tuple(float(w) for w in wavelengths)
            sensor = "custom"
        else:
            centers = tuple(b.center_um for b in resolved)
        if (mean is None) != (std is None):
            raise UsageError("give both the per-band mean and std, or neither")
        if mean is None or std is None:
            mean, std = reflectance_statistics(centers)
        config = replace(
            self,
            bands=read_names,
            wavelengths=centers,
            sensor=sensor.strip().lower(),
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            fill_bands=(),
        )
        config.validate(f"model {self.name} with bands {', '.join(bands)}")
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> ModelConfig:
        """Read a model config (a YAML file, or the ``model_config`` a store recorded).

        Raises:
            UsageError: unknown keys, wrong types or values that do not fit together.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"{source}: unknown model config key(s) {', '.join(unknown)}")
        try:
            values = dict(data)
            for key in ("bands", "mean", "std", "fill_bands", "inputs", "wavelengths"):
                if key in values and values[key] is not None:
                    values[key] = tuple(values[key])
            values["weights"] = WeightsSource.from_dict(values.get("weights"), source)
            config = cls(**values)
        except TypeError as error:
            raise UsageError(f"{source}: {error}") from None
        config.validate(source)
        return config

    def validate(self, source: str) -> None:
        """Check that the fields fit together.

        Raises:
            UsageError: naming the first field that does not fit.
        """
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
        if len(set(self.bands)) != len(self.bands):
            raise UsageError(f"{source}: a band is listed twice")
        if any(b not in self.bands for b in self.fill_bands):
            raise UsageError(f"{source}: fill_bands must be a subset of bands")
        if self.input_size % self.patch_size:
            raise UsageError(f"{source}: input_size must be a multiple of patch_size")
        extra = [i for i in self.inputs if i not in EXTRA_INPUTS]
        if extra:
            raise UsageError(f"{source}: inputs must be among {', '.join(EXTRA_INPUTS)}, got {', '.join(extra)}")
        if self.any_bands and (self.wavelengths is None or len(self.wavelengths) != len(self.bands)):
            raise UsageError(f"{source}: a model that takes any bands needs one wavelength (µm) per band")
        if self.wavelengths is not None and any(not w > 0 for w in self.wavelengths):
            raise UsageError(f"{source}: wavelengths must be positive (µm)")


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
        raise UsageError("the store file records no model config; embed the split again with this rsir")
    return ModelConfig.from_dict(data, source="store provenance")
