"""Prithvi encoders: a ViT with a 3-D patch embedding and a fixed 3-D sin-cos position embedding,
run on one frame, pooled as the mean of the patch tokens after the final norm.

Two generations share this code:

- Prithvi-100M (``prithvi_vit``, Prithvi-EO-1.0), as the paper's code runs it;
- Prithvi-EO-2.0 300M / 600M (``prithvi_eo2``), as terratorch's ``PrithviViT`` runs it: float64
  frequencies in the position embedding, LayerNorm eps 1e-5, and for the ``-TL`` variants a
  temporal (year, day of year) and a location (latitude, longitude) encoding, each a sin-cos
  vector times a learned scalar, added to every patch token. Pretraining dropped them at random,
  so either may be absent, for the whole batch (``None``) or per sample (a row of NaN).

Checkpoints come in two key layouts, both loaded here:

- flat: ``patch_embed.proj.weight`` (D, 6, 1, p, p), ``blocks.N.*``, ``norm.*``, ``cls_token``,
  ``pos_embed`` (Prithvi-100M's 2023 ``Prithvi_100M.pt``, plus its MAE decoder ``decoder_*`` and
  ``mask_token``; also an encoder saved on its own);
- MAE: the same names under ``encoder.``, the decoder under ``decoder.`` (Prithvi-EO-1.0-100M's
  December 2024 file and every Prithvi-EO-2.0 file; the TL files add
  ``encoder.temporal_embed_enc.scale`` and ``encoder.location_embed_enc.scale``).

The decoder and ``pos_embed`` (recomputed for the input grid) are dropped; every other encoder
weight must be present with the right shape. A checkpoint of another variant (600M weights for a
300M model, TL weights for a model without time and location) is refused naming both.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from rsir_cli.errors import WeightsError
from rsir_cli.models.layers import Block, sincos_3d, sincos_torch
from rsir_cli.models.loading import assign_weights, unwrap_state_dict
from rsir_cli.models.registry import ModelConfig


class PatchEmbed3D(nn.Module):
    """Frames of images -> tokens: a Conv3d with kernel = stride = (tubelet, patch, patch)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, C, T, H, W -> B, L, D


class CoordinateEncoding(nn.Module):
    """Two numbers per sample -> a sin-cos vector (half for each number) times a learned scale.

    terratorch's ``TemporalEncoder`` (year, day of year) and ``LocationEncoder`` (latitude,
    longitude) compute exactly this; their checkpoints hold only ``scale``.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.first_dim = embed_dim // 2
        self.second_dim = embed_dim - self.first_dim
        self.scale = nn.Parameter(torch.full((1,), 0.1))  # the reference's initial value

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """(B, 2) float -> (B, 1, D); rows holding a NaN (value unknown) give zeros."""
        known = ~torch.isnan(coords).any(dim=1)
        coords = torch.where(known[:, None], coords.float(), 0.0)
        embedding = torch.cat(
            [sincos_torch(self.first_dim, coords[:, 0]), sincos_torch(self.second_dim, coords[:, 1])], dim=1
        )
        embedding = self.scale.float() * embedding
        return torch.where(known[:, None], embedding, 0.0).unsqueeze(1)


class PrithviEncoder(nn.Module):
    """Prithvi ViT encoder returning one embedding per image.

    Input: (B, C, H, W) or (B, C, T, H, W), already standardised. Output: (B, D).
    """

    float64_frequencies = False  # Prithvi-100M's original code computes them in float32

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.depth is None or config.num_heads is None:
            raise WeightsError(f"model {config.name}: depth and num_heads must be set for a Prithvi encoder")
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed3D(len(config.bands), dim, config.patch_size, config.tubelet_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", self._position_embedding(), persistent=False)
        if "time" in config.inputs:
            self.temporal_embed_enc = CoordinateEncoding(dim)
        if "location" in config.inputs:
            self.location_embed_enc = CoordinateEncoding(dim)
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, eps=config.norm_eps) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.pooling = config.pooling

    def _position_embedding(self) -> torch.Tensor:
        config = self.config
        grid = (
            config.num_frames // config.tubelet_size,
            config.input_size // config.patch_size,
            config.input_size // config.patch_size,
        )
        embed = sincos_3d(config.embed_dim, grid, cls_token=True, float64_frequencies=self.float64_frequencies)
        return torch.from_numpy(embed).float().unsqueeze(0)

    def reset_fixed_buffers(self) -> None:
        """Recompute the position embedding on the CPU (after a build on the ``meta`` device)."""
        self.pos_embed = self._position_embedding()

    def forward(
        self, x: torch.Tensor, time: torch.Tensor | None = None, location: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embed a batch.

        Args:
            x: (B, C, H, W) or (B, C, T, H, W) standardised pixels.
            time: (B, 2) year and day of year (1-366), TL models only; NaN rows are unknown dates.
            location: (B, 2) latitude and longitude in degrees, TL models only; NaN rows unknown.

        Returns:
            (B, D) embeddings.
        """
        if x.ndim == 4:
            x = x.unsqueeze(2)  # one frame
        tokens = self.patch_embed(x)
        pos = self.pos_embed.to(tokens.dtype)
        tokens = tokens + pos[:, 1:, :]
        if time is not None:
            if not hasattr(self, "temporal_embed_enc"):
                raise ValueError(f"model {self.config.name} takes no time input")
            tokens = tokens + self.temporal_embed_enc(time.to(tokens.device)).to(tokens.dtype)
        if location is not None:
            if not hasattr(self, "location_embed_enc"):
                raise ValueError(f"model {self.config.name} takes no location input")
            tokens = tokens + self.location_embed_enc(location.to(tokens.device)).to(tokens.dtype)
        cls = (self.cls_token + pos[:, :1, :]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        if self.pooling == "cls":
            return tokens[:, 0]
        return tokens[:, 1:].mean(dim=1)


class PrithviEO2Encoder(PrithviEncoder):
    """Prithvi-EO-2.0 (terratorch's ``PrithviViT``): float64 position-embedding frequencies."""

    float64_frequencies = True


_DROP_PREFIXES = ("decoder", "mask_token")
_COORDINATE_KEYS = {"temporal_embed_enc.scale": "time", "location_embed_enc.scale": "location"}


def encoder_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Reduce a checkpoint in either key layout to the encoder's own keys (without ``pos_embed``)."""
    state = {k.replace("_timm_module.", ""): v for k, v in unwrap_state_dict(checkpoint).items()}
    prefixed = any(k.startswith("encoder.") for k in state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
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


# (embed dim, blocks, patch, extra inputs) -> the published checkpoint with that shape.
_VARIANTS = {
    (768, 12, 16, ()): "Prithvi-EO-1.0-100M",
    (768, 12, 16, ("location", "time")): "Prithvi-EO-2.0-100M-TL",
    (192, 12, 16, ("location", "time")): "Prithvi-EO-2.0-tiny-TL",
    (1024, 24, 16, ()): "Prithvi-EO-2.0-300M",
    (1024, 24, 16, ("location", "time")): "Prithvi-EO-2.0-300M-TL",
    (1280, 32, 14, ()): "Prithvi-EO-2.0-600M",
    (1280, 32, 14, ("location", "time")): "Prithvi-EO-2.0-600M-TL",
}


def describe_variant(embed_dim: int, depth: int, patch: int, inputs: tuple[str, ...]) -> str:
    """``Prithvi-EO-2.0-300M (1024-d, 24 blocks, patch 16)`` for a shape, named when it is a published one."""
    key = (embed_dim, depth, patch, tuple(sorted(inputs)))
    shape = f"{embed_dim}-d, {depth} blocks, patch {patch}" + (
        f", {' and '.join(sorted(inputs))} encodings" if inputs else ", no time/location encodings"
    )
    return f"{_VARIANTS[key]} ({shape})" if key in _VARIANTS else f"a Prithvi encoder ({shape})"


def checkpoint_variant(state: Mapping[str, torch.Tensor]) -> tuple[int, int, int, tuple[str, ...]] | None:
    """(embed dim, blocks, patch, extra inputs) of an encoder state dict, or None when it has no patch embedding."""
    weight = state.get("patch_embed.proj.weight")
    if weight is None or weight.ndim != 5:
        return None
    # Blocks counted by their attention weights: a stray key of a further block is an "unexpected" one.
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.endswith(".attn.qkv.weight")}
    inputs = tuple(sorted(name for key, name in _COORDINATE_KEYS.items() if key in state))
    return int(weight.shape[0]), (max(blocks) + 1 if blocks else 0), int(weight.shape[-1]), inputs


def load_encoder_weights(model: PrithviEncoder, checkpoint: Mapping[str, object], source: str) -> None:
    """Load a checkpoint, insisting that it is of this model's variant and that every weight fits.

    Raises:
        WeightsError: a checkpoint of another variant (naming the file's and the model's), or the
            first missing, unexpected or misshapen key.
    """
    config = model.config
    state = encoder_state_dict(checkpoint)
    found = checkpoint_variant(state)
    wanted = (config.embed_dim, int(config.depth or 0), config.patch_size, tuple(sorted(config.inputs)))
    if found is not None and found != wanted:
        raise WeightsError(
            f"{source} holds {describe_variant(*found)} weights, but model {config.name} is "
            f"{describe_variant(*wanted)}; {_suggest_model(found, config.name)}"
        )
    assign_weights(model, state, source, config.name)


def _suggest_model(variant: tuple[int, int, int, tuple[str, ...]], asked: str) -> str:
    from rsir_cli.models.registry import get_model_config, model_names

    for name in model_names():
        if name == asked:
            continue
        other = get_model_config(name)
        if other.architecture in ("prithvi_vit", "prithvi_eo2") and not other.fill_bands:
            shape = (other.embed_dim, int(other.depth or 0), other.patch_size, tuple(sorted(other.inputs)))
            if shape == variant:
                return f"use --model {name} with it, or pass the checkpoint of {asked}"
    return f"pass the checkpoint of {asked}"
