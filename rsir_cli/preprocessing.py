"""Model input preparation, equal to the official pipeline: resize, fill missing bands, standardise.

The order and arithmetic follow torchvision's ``Resize(size, antialias=True)`` (bilinear,
``align_corners=False``) followed by ``Normalize(mean, std)`` in float32, with mean-valued channels
inserted for bands a model does not read (Prithvi-100M-RGB). It runs on whatever device the batch
is on, so the GPU path resizes on the GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rsir_cli.models.registry import ModelConfig


class Preprocessor:
    """Turns a batch of raw images (B, len(read_bands), H, W) into standardised model input."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.size = config.input_size
        self._mean = torch.tensor(config.mean, dtype=torch.float32)
        self._std = torch.tensor(config.std, dtype=torch.float32)
        self._read_positions = [i for i, band in enumerate(config.bands) if band not in config.fill_bands]

    def resize(self, batch: torch.Tensor) -> torch.Tensor:
        if tuple(batch.shape[-2:]) == (self.size, self.size):
            return batch
        return F.interpolate(batch, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = self.resize(batch.float())
        mean = self._mean.to(batch.device)
        std = self._std.to(batch.device)
        n_bands = len(self.config.bands)
        if len(self._read_positions) != n_bands:
            full = mean.view(1, n_bands, 1, 1).expand(batch.shape[0], n_bands, *batch.shape[-2:]).clone()
            full[:, self._read_positions] = batch
            batch = full
        return (batch - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
