"""ImageNet ViT-B/16 (timm) as an RGB encoder: the CLS token after the final norm.

Weights in timm's layout (``timm/vit_base_patch16_224.*`` on Hugging Face) load directly;
torchvision's layout (``vit_b_16-c867db91.pth``, the paper's IMAGENET1K_V1 weights) is converted
key by key: the two are the same network (pre-norm blocks, LayerNorm eps 1e-6, exact GELU, fused
q/k/v projection in the same order).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from rsir_cli.errors import WeightsError
from rsir_cli.models.registry import ModelConfig


class TimmViTEncoder(nn.Module):
    """A timm ViT without its classifier; forward returns the pooled token (CLS or mean)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        import timm

        self.config = config
        self.model = timm.create_model(
            config.timm_name or "vit_base_patch16_224",
            pretrained=False,
            num_classes=0,
            img_size=config.input_size,
            in_chans=len(config.bands),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            x = x[:, :, 0]
        tokens = self.model.forward_features(x)
        if self.config.pooling == "cls":
            return tokens[:, 0]
        return tokens[:, self.model.num_prefix_tokens :].mean(dim=1)


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


def load_vit_weights(encoder: TimmViTEncoder, checkpoint: Mapping[str, object], source: str) -> None:
    """Load timm- or torchvision-layout weights strictly (the classifier head is ignored)."""
    state: Mapping[str, object] = checkpoint
    for wrapper in ("model", "state_dict"):
        inner = state.get(wrapper)
        if isinstance(inner, Mapping):
            state = inner
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if "conv_proj.weight" in tensors:
        tensors = torchvision_to_timm(tensors)
    tensors = {
        k: v for k, v in tensors.items() if not k.startswith(("head.", "fc_norm.")) or k in encoder.model.state_dict()
    }
    own = encoder.model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        key = (missing or unexpected)[0]
        kind = "lacks" if missing else "has unexpected"
        raise WeightsError(f"{source} {kind} weight {key!r}; is it a ViT-B/16 checkpoint of {encoder.config.name}?")
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"{source}: weight {key!r} has shape {tuple(value.shape)}, the model needs {tuple(own[key].shape)}"
            )
    encoder.model.load_state_dict(tensors, strict=True)
