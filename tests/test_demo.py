"""The README's first command, `rsir demo`, end to end (fake encoder: the same steps, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsir_cli.cli.app import app
from rsir_cli.store import EmbeddingStore

runner = CliRunner()


@pytest.mark.slow
@pytest.mark.network
def test_demo_runs_every_step_on_the_real_samples(tmp_path: Path, fake_encoder: str, _sample_cache: None) -> None:
    workdir = tmp_path / "demo"
    result = runner.invoke(
        app, ["demo", "--random-weights", "--model", fake_encoder, "--workdir", str(workdir), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    store = EmbeddingStore(workdir / "store-random")
    assert {(d, s) for _, d, s in store.entries()} == {
        ("bigearthnet", "val"),
        ("bigearthnet", "test"),
        ("s2-scene", "all"),
    }
    assert len(store.read("fake", "s2-scene", "all", embeddings=False)) == 256
    assert "trivial-32" in store.code_names("fake", "s2-scene", "all")
    geojson = json.loads((workdir / "matches.geojson").read_text())
    matches = [f["properties"] for f in geojson["features"] if f["properties"]["role"] == "match"]
    assert geojson["type"] == "FeatureCollection" and len(matches) == 8
    # The query tile is a chip of the scene: the exact engine returns that chip first, at distance 0.
    first = min(matches, key=lambda m: m["rank"])
    # (0 up to float rounding: the database was embedded 32 chips per batch, the query alone)
    assert first["rank"] == 1 and first["distance"] < 1e-4 and first["id"] == "s2-scene_r8_c9"
    assert (workdir / "matches.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (workdir / "store-random" / "milvus.db").exists()

    # The demo runs again in the same folder: every step says it is done, nothing is embedded twice.
    embedded = (workdir / "store-random" / "fake" / "bigearthnet" / "test.h5").stat().st_mtime_ns
    again = runner.invoke(app, ["demo", "--random-weights", "--model", fake_encoder, "--workdir", str(workdir),
                                "--device", "cpu"])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert (workdir / "store-random" / "fake" / "bigearthnet" / "test.h5").stat().st_mtime_ns == embedded
    fresh = runner.invoke(app, ["demo", "--random-weights", "--model", fake_encoder, "--workdir", str(workdir),
                                "--device", "cpu", "--fresh"])  # fmt: skip
    assert fresh.exit_code == 0 and "removed" in fresh.output
    assert (workdir / "store-random" / "fake" / "bigearthnet" / "test.h5").stat().st_mtime_ns != embedded
