"""Putting checkpoint tensors into a network built on the ``meta`` device, strictly.

A network built on ``meta`` has shapes but no storage, so building it costs nothing; loading then
*assigns* the checkpoint's tensors (``load_state_dict(assign=True)``) instead of copying them into
freshly initialised ones. Every weight the network has must be in the checkpoint with its shape,
and nothing else may be: a wrong or truncated file fails naming the key, never half-loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rsir_cli.errors import WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

_WRAPPERS = ("model", "state_dict", "module")


def unwrap_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, looking inside the usual ``model`` / ``state_dict`` wrappers.

    Raises:
        WeightsError: the file holds no mapping of names to tensors.
    """
    import torch

    state: object = checkpoint
    for wrapper in _WRAPPERS:
        inner = state.get(wrapper) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    if not isinstance(state, Mapping):
        raise WeightsError("the checkpoint is not a state dict (a mapping of names to tensors)")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def assign_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, model_name: str) -> None:
    """Load ``state`` into ``module`` (built on ``meta`` or on the CPU) strictly, by assignment.

    Floating-point tensors are stored as float32 (a half-precision checkpoint still runs in the
    precision the embed step asks for). Buffers the module computes itself (non-persistent, e.g.
    a fixed sin-cos position embedding) are recomputed on the CPU through the module's
    ``reset_fixed_buffers()``.

    Raises:
        WeightsError: naming the first missing, unexpected or misshapen weight.
    """
    import torch

    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        raise WeightsError(
            f"{source} lacks encoder weight {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; is it a checkpoint of {model_name}?"
        )
    if unexpected:
        raise WeightsError(
            f"{source} has unexpected encoder weight {unexpected[0]!r}"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            + f"; is it a checkpoint of {model_name}?"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"{source}: weight {key!r} has shape {tuple(value.shape)}, the model {model_name} needs "
                f"{tuple(own[key].shape)}"
            )
    tensors = {
        k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in state.items()
    }
    module.load_state_dict(tensors, strict=True, assign=True)
    for submodule in module.modules():
        reset = getattr(submodule, "reset_fixed_buffers", None)
        if callable(reset):
            reset()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_meta:  # a weight neither in the file nor computed: a bug in the architecture
            raise WeightsError(f"model {model_name}: {name} was not set by the checkpoint {source}")
