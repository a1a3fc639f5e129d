"""DOFA (Dynamic One-For-All, arXiv 2403.15356): one ViT for any band set, conditioned on wavelengths.

The patch embedding is generated per band from its central wavelength: a sin-cos embedding of the
wavelength in nm goes through a residual MLP and a one-layer transformer, which output one
16 x 16 x D convolution kernel per band and a bias; the kernels are applied with stride 16 and
padding 1 (as the reference does, 224 px give a 14 x 14 grid). The rest is a ViT: learned
position embedding, pre-norm blocks, and the embedding is the mean of the patch tokens followed by
``fc_norm`` (torchgeo's ``DOFA.forward_features`` with ``global_pool=True``).

The published weights (torchgeo's ``DOFABase16_Weights.DOFA_MAE`` and ``DOFALarge16_Weights``)
carry no ``fc_norm``: torchgeo leaves it at LayerNorm's initial ones and zeros, and so does rsir.
The original DOFA release (``DOFA_ViT_base_e100.pth``) adds the MAE's ``mask_token``, ``norm``
and ``projector``, which the retrieval encoder does not use and which are dropped.

The band set and its wavelengths are part of the model config (``ModelConfig.with_bands``), so a
store records them and `rsir search` rebuilds the same encoder. DOFA is invariant to the order of
the bands (the generator is a transformer without positions over the band tokens).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rsir_cli.errors import WeightsError
from rsir_cli.models.layers import Block, sincos_2d, sincos_torch
from rsir_cli.models.loading import assign_weights, unwrap_state_dict
from rsir_cli.models.registry import ModelConfig

_WAVE_DIM = 128  # the width of the wavelength embedding in every published DOFA
_WEIGHT_TOKENS = 128
_KERNEL_SCALE = 0.01  # generated kernels and bias are scaled by this (the reference's ``scaler``)


class _ResidualMLP(nn.Module):
    """``x + relu(w2(relu(w1(x))))`` (the reference's ``FCResLayer``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class _WeightGenerator(nn.Module):
    """Band tokens -> one kernel per band and a bias (the reference's ``TransformerWeightGenerator``)."""

    def __init__(self, embed_dim: int, kernel_values: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=_WAVE_DIM, nhead=4, activation="gelu", norm_first=False, batch_first=False, dropout=0.0
        )
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(_WAVE_DIM, kernel_values)
        self.fc_bias = nn.Linear(_WAVE_DIM, embed_dim)
        self.weight_tokens = nn.Parameter(torch.randn(_WEIGHT_TOKENS, _WAVE_DIM) * 0.02)
        self.bias_token = nn.Parameter(torch.randn(1, _WAVE_DIM) * 0.02)

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.cat([self.weight_tokens, waves, self.bias_token], dim=0)
        out = self.transformer_encoder(tokens)
        weights = self.fc_weight(out[_WEIGHT_TOKENS:-1] + waves)
        return weights, self.fc_bias(out[-1])


class DynamicPatchEmbed(nn.Module):
    """Pixels of any bands -> patch tokens, with kernels generated from the bands' wavelengths."""

    def __init__(self, embed_dim: int, patch_size: int, wavelengths: tuple[float, ...]) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.wavelengths = wavelengths
        self.weight_generator = _WeightGenerator(embed_dim, patch_size * patch_size * embed_dim)
        self.fclayer = _ResidualMLP(_WAVE_DIM)

    def kernels(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(D, C, p, p) kernels and (D,) bias for this model's bands, always computed in float32."""
        waves_um = torch.tensor(self.wavelengths, dtype=torch.float32, device=device)
        with torch.autocast(device.type, enabled=False):
            waves = self.fclayer(sincos_torch(_WAVE_DIM, waves_um * 1000))  # the reference embeds nm
            weight, bias = self.weight_generator(waves)
        p, bands = self.patch_size, len(self.wavelengths)
        kernel = weight.view(bands, p, p, self.embed_dim).permute(3, 0, 1, 2) * _KERNEL_SCALE
        return kernel, bias.view(self.embed_dim) * _KERNEL_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, bias = self.kernels(x.device)
        tokens = F.conv2d(x, kernel.to(x.dtype), bias.to(x.dtype), stride=self.patch_size, padding=1)
        return tokens.flatten(2).transpose(1, 2)


class DOFAEncoder(nn.Module):
    """DOFA ViT returning one embedding per image: ``fc_norm(mean of the patch tokens)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.depth is None or config.num_heads is None or config.wavelengths is None:
            raise WeightsError(f"model {config.name}: a DOFA config needs depth, num_heads and wavelengths")
        self.config = config
        dim = config.embed_dim
        grid = _grid_size(config)
        self.patch_embed = DynamicPatchEmbed(dim, config.patch_size, config.wavelengths)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        # Random builds start from the MAE's sin-cos table; published weights bring their own.
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(dim, grid)).float().unsqueeze(0))
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, eps=config.norm_eps) for _ in range(config.depth)
        )
        self.fc_norm = nn.LayerNorm(dim, eps=config.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            x = x[:, :, 0]
        if x.shape[1] != len(self.config.wavelengths or ()):
            raise ValueError(f"model {self.config.name} takes {len(self.config.bands)} bands, got {x.shape[1]}")
        tokens = self.patch_embed(x)
        pos = self.pos_embed.to(tokens.dtype)
        tokens = tokens + pos[:, 1:, :]
        cls = (self.cls_token + pos[:, :1, :]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.fc_norm(tokens[:, 1:].mean(dim=1))


def _grid_size(config: ModelConfig) -> int:
    # Stride p with padding 1 on each side: floor((size + 2 - p) / p) + 1 tokens a side.
    return (config.input_size + 2 - config.patch_size) // config.patch_size + 1


_UNUSED = ("mask_token", "norm.", "projector.", "head.", "decoder")


def load_dofa_weights(model: DOFAEncoder, checkpoint: Mapping[str, object], source: str) -> None:
    """Load torchgeo's or the original release's DOFA weights strictly.

    Raises:
        WeightsError: naming the first missing, unexpected or misshapen weight.
    """
    state = {k: v for k, v in unwrap_state_dict(checkpoint).items() if not k.startswith(_UNUSED)}
    dim = model.config.embed_dim
    # Published DOFA weights have no fc_norm: torchgeo runs it at its initial values.
    state.setdefault("fc_norm.weight", torch.ones(dim))
    state.setdefault("fc_norm.bias", torch.zeros(dim))
    assign_weights(model, state, source, model.config.name)
