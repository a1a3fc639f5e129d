"""Transformer building blocks shared by the encoders, without importing timm.

``Block`` equals timm's ``vision_transformer.Block`` as the encoders use it (pre-norm, fused q/k/v,
exact GELU, no layer scale, no drop path): the same parameter names and shapes, the same forward
(``scaled_dot_product_attention``, timm's fused path) and the same construction order, so a seeded
random build draws the same numbers (tests compare it with timm). Importing timm costs about two
seconds (it pulls torchvision and ``torch._dynamo``); a search needs none of that.

The sin-cos position embeddings follow the reference code of each model: numpy with float32 or
float64 frequencies (Prithvi-100M's and Prithvi-EO-2.0's code differ there), or torch in float32
for the Prithvi-EO-2.0 time and location encodings.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection (timm's ``Attention``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, channels))


class Mlp(nn.Module):
    """Two linear layers with an exact GELU between them."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6) -> None:
        super().__init__()
        # Construction order = timm's (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2): seeded
        # random weights come out the same as with timm's Block.
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_1d(embed_dim: int, positions: np.ndarray, float64_frequencies: bool = False) -> np.ndarray:
    """1-D sin-cos embedding, (M,) positions -> (M, embed_dim), computed in numpy.

    Args:
        embed_dim: even output width; the first half holds the sines, the second the cosines.
        positions: the positions to encode.
        float64_frequencies: Prithvi-EO-2.0's code (terratorch) computes the frequencies in
            float64, Prithvi-100M's original code in float32.

    Returns:
        The embedding, float64.
    """
    if embed_dim % 2:
        raise ValueError("embed_dim must be even")
    omega = np.arange(embed_dim // 2, dtype=np.float64 if float64_frequencies else np.float32)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", positions.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(
    embed_dim: int, grid: tuple[int, int, int], cls_token: bool = True, float64_frequencies: bool = False
) -> np.ndarray:
    """3-D sin-cos position embedding for a (frames, rows, columns) token grid (Prithvi).

    The width and height parts take 6/16 of the dimensions each, time 4/16; a leading zero row is
    the CLS token's.

    Returns:
        (1 + frames * rows * columns, embed_dim) with ``cls_token``, else without the first row.
    """
    if embed_dim % 16:
        raise ValueError("embed_dim must be a multiple of 16")
    t_size, h_size, w_size = grid
    w_dim = h_dim = embed_dim // 16 * 6
    t_dim = embed_dim // 16 * 4
    f64 = float64_frequencies
    w_embed = np.tile(sincos_1d(w_dim, np.arange(w_size), f64), (t_size * h_size, 1))
    h_embed = np.tile(np.repeat(sincos_1d(h_dim, np.arange(h_size), f64), w_size, axis=0), (t_size, 1))
    t_embed = np.repeat(sincos_1d(t_dim, np.arange(t_size), f64), h_size * w_size, axis=0)
    embed = np.concatenate((w_embed, h_embed, t_embed), axis=1)
    if cls_token:
        embed = np.concatenate([np.zeros([1, embed_dim]), embed], axis=0)
    return embed


def sincos_2d(embed_dim: int, grid_size: int, cls_token: bool = True) -> np.ndarray:
    """The MAE 2-D sin-cos position embedding of a square grid (half for rows, half for columns).

    Used only to give random-weight DOFA builds a sensible position embedding; published DOFA
    weights carry their own.
    """
    rows, cols = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))
    embed = np.concatenate(
        [sincos_1d(embed_dim // 2, cols.reshape(-1)), sincos_1d(embed_dim // 2, rows.reshape(-1))], axis=1
    )
    if cls_token:
        embed = np.concatenate([np.zeros([1, embed_dim]), embed], axis=0)
    return embed


def sincos_torch(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """1-D sin-cos embedding in float32 torch, for values known only at run time (dates, places).

    Args:
        embed_dim: even output width.
        positions: (M,) float32 values (a year, a day of year, a latitude ...).

    Returns:
        (M, embed_dim) float32: sines, then cosines.
    """
    omega = torch.arange(embed_dim // 2, dtype=torch.float32, device=positions.device)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    # An outer product by broadcasting: elementwise, so autocast never lowers it to bf16 (an
    # einsum would go through bmm, and years times frequencies need float32).
    out = positions.float().reshape(-1, 1) * omega
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)
