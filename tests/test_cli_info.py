"""`rsir info --models`: every model with its bands, dimension, input, pooling, extra inputs and weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rsir_cli.models import get_model_config, model_names
from tests.cli import run


def test_info_models_lists_every_model_with_its_inputs_and_weights() -> None:
    result = run("info", "--models", env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in model_names():
        config = get_model_config(name)
        row = next(line for line in lines if line.startswith(f"│ {name} "))
        assert f" {config.embed_dim} " in row and f" {config.input_size} " in row and config.pooling in row
        if config.weights.source == "huggingface":
            assert config.weights.repo_id in row and config.weights.filename in row
        elif config.weights.source == "url":
            assert str(config.weights.url) in row
        else:  # a plugin's model without published weights (the test suite's fake encoder)
            assert row.rstrip("│ ").endswith("-")
        if config.any_bands:
            assert "any (wavelengths)" in row
        else:
            assert " ".join(config.read_bands) in row
        assert ("time, location" in row) == bool(config.inputs)
    assert "(B10 filled)" in next(line for line in lines if "ssl4eo-vit-s16-moco" in line)


def test_info_models_json_carries_the_typed_weights_source() -> None:
    result = run("info", "--models", "--json")
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(result.output)}
    assert set(models) == set(model_names())
    tl = models["prithvi-eo2-600m-tl"]
    assert tl["inputs"] == ["time", "location"] and tl["model_config"]["patch_size"] == 14
    assert tl["weights"] == {
        "source": "huggingface",
        "repo_id": "ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL",
        "filename": "Prithvi_EO_V2_600M_TL.pt",
        "license": "Apache-2.0",
    }
    assert models["dofa-base"]["wavelengths"][0] == 0.49 and models["dofa-base"]["model_config"]["any_bands"] is True


def test_info_lists_ids_and_refuses_a_missing_store(tmp_path: Path) -> None:
    from rsir_cli.store import EmbeddingStore

    store = tmp_path / "store"
    writer = EmbeddingStore(store).writer(
        "m", "d", "val", attrs={"label_names": []}, dim=4, n_labels=0, rows_expected=3
    )
    writer.append(np.zeros((3, 4), np.float32), ["a", "b_1", "c"], np.zeros((3, 0), np.uint8))
    writer.finish()
    listed = run("info", "--ids", "--store", store, "--split", "val")
    assert listed.exit_code == 0 and listed.stdout.split() == ["a", "b_1", "c"]
    missing = run("info", "--store", tmp_path / "nope")
    assert missing.exit_code == 1 and "nope does not exist" in missing.output
