"""Independent reference implementations for the encoder tests, loaded one file at a time.

- terratorch 1.2.13's ``terratorch/models/backbones/prithvi_mae.py`` (Prithvi-EO-2.0's model code):
  terratorch cannot be installed with its dependencies here, but that file needs only torch,
  numpy, einops and timm. The wheel is fetched with ``pip download --no-deps`` into the test cache
  (as the sample data is) and the file is imported by path.
- torchgeo 0.8.1's ``torchgeo/models/dofa.py``, imported by path from the installed package:
  ``import torchgeo.models`` pulls every dataset module (and ``requests``), which this file does
  not need.

Each getter skips the calling test when its package is unavailable.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from rsir_cli import samples
from rsir_cli.errors import DownloadError
from tests.conftest import test_cache

TERRATORCH = "terratorch==1.2.13"
_PRITHVI_MAE = "terratorch/models/backbones/prithvi_mae.py"


def _import_file(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def terratorch_prithvi_mae() -> ModuleType:
    """terratorch's ``prithvi_mae`` module (``PrithviViT``, ``PrithviMAE``, ``get_3d_sincos_pos_embed``)."""
    pytest.importorskip("einops", reason="the terratorch reference needs einops (pip install einops)")
    pytest.importorskip("timm")
    folder = test_cache() / "reference"
    target = folder / "terratorch-1.2.13" / _PRITHVI_MAE
    if not target.is_file():
        try:
            wheel = samples.pip_download(TERRATORCH, folder)
        except DownloadError as error:
            pytest.skip(f"package registry unreachable: {error}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as handle:
            target.write_bytes(handle.read(_PRITHVI_MAE))
    return _import_file("reference_terratorch_prithvi_mae", target)


def torchgeo_source(name: str) -> Path:
    """The path of ``torchgeo/models/<name>.py`` in the installed torchgeo (skips without torchgeo)."""
    spec = importlib.util.find_spec("torchgeo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchgeo is not installed (pip install torchgeo==0.8.1)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"this torchgeo has no models/{name}.py")
    return path


def torchgeo_dofa() -> ModuleType:
    """torchgeo's ``dofa`` module (``DOFA``, ``dofa_base_patch16_224``, ``DOFABase16_Weights``)."""
    pytest.importorskip("torchvision")
    return _import_file("reference_torchgeo_dofa", torchgeo_source("dofa"))
