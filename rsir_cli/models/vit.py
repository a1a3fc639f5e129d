"""Vision Transformers in timm's layout: ImageNet ViT-B/16 (RGB) and the SSL4EO-S12 ViT-S/16 (13 bands).

``ViTEncoder`` is timm's ``VisionTransformer`` as these models use it (class token, learned
position embedding added after the class token is prepended, pre-norm blocks, LayerNorm eps
1e-6), written with rsir's own blocks so that loading a checkpoint never imports timm. Weights in
timm's layout (``timm/vit_base_patch16_224.*``, torchgeo's SSL4EO-S12 ViT-S/16) load directly;
torchvision's layout (``vit_b_16-c867db91.pth``, the paper's IMAGENET1K_V1 weights) is converted
key by key: the two are the same network (fused q/k/v projection in the same order, exact GELU).

Random weights (``--random-weights``) are timm's seeded initialisation, copied in, so that stores
made with random weights before rsir had its own ViT give the same embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from rsir_cli.errors import WeightsError
from rsir_cli.models.layers import Block
from rsir_cli.models.loading import assign_weights, unwrap_state_dict
from rsir_cli.models.registry import ModelConfig

# timm model name -> (depth, heads): for configs that name the timm model and not its shape.
_TIMM_SHAPES = {
    "vit_small_patch16_224": (12, 6),
    "vit_base_patch16_224": (12, 12),
    "vit_large_patch16_224": (24, 16),
}


class PatchEmbed(nn.Module):
    """Images -> tokens: a Conv2d with kernel = stride = patch."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, C, H, W -> B, L, D


class ViTEncoder(nn.Module):
    """A ViT without its classifier; forward returns the pooled token (CLS or mean of patches)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        depth, heads = vit_shape(config)
        dim = config.embed_dim
        self.config = config
        self.patch_embed = PatchEmbed(len(config.bands), dim, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (config.input_size // config.patch_size) ** 2, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, config.mlp_ratio, eps=config.norm_eps) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            x = x[:, :, 0]
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        tokens = self.norm(self.blocks(tokens))
        if self.config.pooling == "cls":
            return tokens[:, 0]
        return tokens[:, 1:].mean(dim=1)


def vit_shape(config: ModelConfig) -> tuple[int, int]:
    """(depth, heads) from the config, or from the timm model it names."""
    if config.depth is not None and config.num_heads is not None:
        return config.depth, config.num_heads
    shape = _TIMM_SHAPES.get(config.timm_name or "vit_base_patch16_224")
    if shape is None:
        raise WeightsError(f"model {config.name}: set depth and num_heads (timm model {config.timm_name!r} is unknown)")
    return shape


def random_vit(config: ModelConfig) -> ViTEncoder:
    """timm's initialisation of the same network (call under a fixed seed), in a ``ViTEncoder``."""
    import timm

    reference = timm.create_model(
        config.timm_name or "vit_base_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=config.input_size,
        in_chans=len(config.bands),
    )
    with torch.device("meta"):
        encoder = ViTEncoder(config)
    assign_weights(encoder, reference.state_dict(), f"timm's {config.timm_name} initialisation", config.name)
    return encoder


_TV_LAYER = re.compile(r"^encoder\.layers\.encoder_layer_(\d+)\.(.+)$")
_TV_BLOCK_KEYS = {
    "ln_1.weight": "norm1.weight",
    "ln_1.bias": "norm1.bias",
    "self_attention.in_proj_weight": "attn.qkv.weight",
    "self_attention.in_proj_bias": "attn.qkv.bias",
    "self_attention.out_proj.weight": "attn.proj.weight",
    "self_attention.out_proj.bias": "attn.proj.bias",
    "ln_2.weight": "norm2.weight",
    "ln_2.bias": "norm2.bias",
    "mlp.0.weight": "mlp.fc1.weight",
    "mlp.0.bias": "mlp.fc1.bias",
    "mlp.3.weight": "mlp.fc2.weight",
    "mlp.3.bias": "mlp.fc2.bias",
    "mlp.linear_1.weight": "mlp.fc1.weight",  # older torchvision releases
    "mlp.linear_1.bias": "mlp.fc1.bias",
    "mlp.linear_2.weight": "mlp.fc2.weight",
    "mlp.linear_2.bias": "mlp.fc2.bias",
}
_TV_TOP_KEYS = {
    "conv_proj.weight": "patch_embed.proj.weight",
    "conv_proj.bias": "patch_embed.proj.bias",
    "class_token": "cls_token",
    "encoder.pos_embedding": "pos_embed",
    "encoder.ln.weight": "norm.weight",
    "encoder.ln.bias": "norm.bias",
}


def torchvision_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``VisionTransformer`` state dict to timm's names (classifier dropped)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("heads."):
            continue
        if key in _TV_TOP_KEYS:
            out[_TV_TOP_KEYS[key]] = value
            continue
        match = _TV_LAYER.match(key)
        if match and match.group(2) in _TV_BLOCK_KEYS:
            out[f"blocks.{match.group(1)}.{_TV_BLOCK_KEYS[match.group(2)]}"] = value
            continue
        raise WeightsError(f"unexpected key {key!r} in a torchvision ViT checkpoint")
    return out


def load_vit_weights(encoder: ViTEncoder, checkpoint: Mapping[str, object], source: str) -> None:
    """Load timm- or torchvision-layout weights strictly (a classifier head is ignored).

    Raises:
        WeightsError: naming the first missing, unexpected or misshapen weight.
    """
    tensors = unwrap_state_dict(checkpoint)
    if "conv_proj.weight" in tensors:
        tensors = torchvision_to_timm(tensors)
    tensors = {k: v for k, v in tensors.items() if not k.startswith(("head.", "fc_norm."))}
    assign_weights(encoder, tensors, source, encoder.config.name)
