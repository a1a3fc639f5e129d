"""A deterministic, fast fake encoder for tests, loaded with ``RSIR_PLUGINS=tests.plugins.fake_encoder``.

Model ``fake``: the six Prithvi bands at a 32 x 32 input, embedded as a fixed random projection of
per-band statistics (64 dimensions). It has no weights: run it with ``--random-weights``, whose
fixed seed makes the projection the same in every process. ``RSIR_FAKE_DELAY`` (seconds) sleeps per
batch, so a test can kill a run half-way.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from rsir_cli.models import register_architecture
from rsir_cli.models.registry import ModelConfig, register_model_config

PRITHVI_MEAN = (
    775.2290211032589,
    1080.992780391705,
    1228.5855250417867,
    2497.2022620507532,
    2204.2139147975554,
    1610.8324823273745,
)
PRITHVI_STD = (
    1281.526139861424,
    1270.0297974547493,
    1399.4802505642526,
    1368.3446143747644,
    1291.6764008585435,
    1154.505683480695,
)


class FakeEncoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        n_bands = len(config.bands)
        # 4 statistics per band: mean, std and the means of the left and top halves.
        self.projection = nn.Parameter(torch.randn(4 * n_bands, config.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delay = float(os.environ.get("RSIR_FAKE_DELAY", "0") or 0)
        if delay:
            time.sleep(delay)
        if x.ndim == 5:
            x = x[:, :, 0]
        h, w = x.shape[-2:]
        stats = torch.cat(
            [
                x.mean(dim=(2, 3)),
                x.std(dim=(2, 3)),
                x[..., : w // 2].mean(dim=(2, 3)),
                x[..., : h // 2, :].mean(dim=(2, 3)),
            ],
            dim=1,
        )
        return torch.tanh(stats @ self.projection)


def _load(module: nn.Module, checkpoint: object, source: str) -> None:
    module.load_state_dict(checkpoint)  # type: ignore[arg-type]


register_architecture("fake", FakeEncoder, _load)
FAKE = ModelConfig(
    name="fake",
    description="TEST ONLY: deterministic projection of band statistics",
    architecture="fake",
    bands=("B02", "B03", "B04", "B8A", "B11", "B12"),
    mean=PRITHVI_MEAN,
    std=PRITHVI_STD,
    input_size=32,
    pooling="mean_patch",
    embed_dim=64,
)
register_model_config(FAKE)
