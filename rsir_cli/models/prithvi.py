"""The Prithvi-100M encoder: a ViT-B with a 3-D patch embedding and a fixed 3-D sin-cos position
embedding, as the paper's code runs it (one frame, mean of the patch tokens after the final norm).

Checkpoints come in two key layouts, both loaded here:

- 2023 ``Prithvi_100M.pt``: ``patch_embed.proj.weight`` (768, 6, 1, 16, 16), ``blocks.N.*``,
  ``norm.*``, ``cls_token``, ``pos_embed``, plus the MAE decoder (``decoder_*``, ``mask_token``);
- December 2024 ``Prithvi_EO_V1_100M.pt``: the same names under ``encoder.``, the decoder under
  ``decoder.``.

The decoder and ``pos_embed`` (recomputed for the input grid) are dropped; every other encoder
weight must be present with the right shape, or loading fails naming the key.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import torch
from timm.models.vision_transformer import Block
from torch import nn

from rsir_cli.errors import WeightsError
from rsir_cli.models.registry import ModelConfig


def sincos_1d(embed_dim: int, positions: np.ndarray) -> np.ndarray:
    """1-D sin-cos embedding with the dtypes of the reference code (float32 frequencies, float64 angles)."""
    omega = np.arange(embed_dim // 2, dtype=np.float32)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", positions.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(embed_dim: int, grid: tuple[int, int, int], cls_token: bool = True) -> np.ndarray:
    """3-D sin-cos position embedding for a (frames, rows, columns) token grid.

    The width and height parts take 6/16 of the dimensions each, time 4/16; a leading zero row is
    the CLS token's.
    """
    if embed_dim % 16:
        raise ValueError("embed_dim must be a multiple of 16")
    t_size, h_size, w_size = grid
    w_dim = h_dim = embed_dim // 16 * 6
    t_dim = embed_dim // 16 * 4
    w_embed = np.tile(sincos_1d(w_dim, np.arange(w_size)), (t_size * h_size, 1))
    h_embed = np.tile(np.repeat(sincos_1d(h_dim, np.arange(h_size)), w_size, axis=0), (t_size, 1))
    t_embed = np.repeat(sincos_1d(t_dim, np.arange(t_size)), h_size * w_size, axis=0)
    embed = np.concatenate((w_embed, h_embed, t_embed), axis=1)
    if cls_token:
        embed = np.concatenate([np.zeros([1, embed_dim]), embed], axis=0)
    return embed


class PatchEmbed3D(nn.Module):
    """Frames of images -> tokens: a Conv3d with kernel = stride = (tubelet, patch, patch)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, C, T, H, W -> B, L, D


class PrithviEncoder(nn.Module):
    """Prithvi ViT encoder returning one embedding per image.

    Input: (B, C, H, W) or (B, C, T, H, W), already standardised. Output: (B, D).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.depth is None or config.num_heads is None:
            raise WeightsError(f"model {config.name}: depth and num_heads must be set for a Prithvi encoder")
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed3D(len(config.bands), dim, config.patch_size, config.tubelet_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        grid = (
            config.num_frames // config.tubelet_size,
            config.input_size // config.patch_size,
            config.input_size // config.patch_size,
        )
        pos = torch.from_numpy(sincos_3d(dim, grid, cls_token=True)).float().unsqueeze(0)
        self.register_buffer("pos_embed", pos, persistent=False)
        norm = functools.partial(nn.LayerNorm, eps=config.norm_eps)
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(config.depth)
        )
        self.norm = norm(dim)
        self.pooling = config.pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)  # one frame
        tokens = self.patch_embed(x)
        pos = self.pos_embed.to(tokens.dtype)
        tokens = tokens + pos[:, 1:, :]
        cls = (self.cls_token + pos[:, :1, :]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        if self.pooling == "cls":
            return tokens[:, 0]
        return tokens[:, 1:].mean(dim=1)


_DROP_PREFIXES = ("decoder", "mask_token")


def encoder_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Reduce a checkpoint in either key layout to the encoder's own keys (without ``pos_embed``)."""
    state = checkpoint
    for wrapper in ("model", "state_dict", "module"):
        inner = state.get(wrapper) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    if not isinstance(state, Mapping):
        raise WeightsError("the checkpoint is not a state dict (a mapping of names to tensors)")
    prefixed = any(k.startswith("encoder.") for k in state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if prefixed:
            if not key.startswith("encoder."):
                continue  # decoder.* and anything else outside the encoder
            key = key[len("encoder.") :]
        elif key.startswith(_DROP_PREFIXES):
            continue
        if key == "pos_embed":
            continue  # fixed sin-cos, recomputed for the input grid
        out[key] = value
    return out


def load_encoder_weights(model: PrithviEncoder, checkpoint: Mapping[str, object], source: str) -> None:
    """Load a checkpoint, insisting that every encoder weight is present and fits.

    Raises:
        WeightsError: naming the first missing, unexpected or misshapen key.
    """
    state = encoder_state_dict(checkpoint)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        raise WeightsError(
            f"{source} lacks encoder weight {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; is it a checkpoint of {model.config.name}?"
        )
    if unexpected:
        raise WeightsError(
            f"{source} has unexpected encoder weight {unexpected[0]!r}"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            + f"; is it a checkpoint of {model.config.name}?"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"{source}: weight {key!r} has shape {tuple(value.shape)}, the model {model.config.name} needs "
                f"{tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)
