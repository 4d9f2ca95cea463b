"""Pruned shapes: a model rebuilt with the layer widths a structured pruning left behind.

A pruned checkpoint records ``meta.pruned_shapes`` (the shape of every weight that differs from a freshly
built model, :func:`pruned_shapes`); :func:`apply_pruned_shapes` re-slices a new model to those shapes, so it loads,
exports and quantizes without the pruning run (:func:`edgevid.checkpoint.build_model`). Like timm's builder with
pruned configs, this is model knowledge: :mod:`edgevid.compress.pruning` only produces the shapes.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevid.errors import EdgevidError


def pruned_shapes(model: nn.Module, reference: nn.Module) -> dict[str, list[int]]:
    """Shapes of the state_dict entries of ``model`` that differ from ``reference`` (the unpruned model)."""
    ref = reference.state_dict()
    return {key: list(t.shape) for key, t in model.state_dict().items() if key in ref and t.shape != ref[key].shape}


def _resize_tensors(module: nn.Module, prefix: str, shapes: dict[str, list[int]]) -> bool:
    changed = False
    for store in (module._parameters, module._buffers):
        for name, tensor in store.items():
            key = f"{prefix}{name}"
            if tensor is None or key not in shapes or list(tensor.shape) == shapes[key]:
                continue
            empty = torch.empty(shapes[key], dtype=tensor.dtype, device=tensor.device)
            store[name] = nn.Parameter(empty, requires_grad=tensor.requires_grad) \
                if isinstance(tensor, nn.Parameter) else empty
            changed = True
    return changed


def _sync_attributes(module: nn.Module, name: str) -> None:
    """Make a resized layer's attributes (channels, features, groups) agree with its new weight shapes."""
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        module.out_channels = module.weight.shape[0]
        module.groups = module.out_channels if depthwise else module.groups
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = (module.weight if module.weight is not None else module.running_mean).shape[0]
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    else:
        raise EdgevidError(f"pruned shapes: cannot resize layer {name!r} ({type(module).__name__})")


def apply_pruned_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Re-slice a freshly built model to the recorded ``shapes`` (in place; weights are left uninitialised,
    to be loaded from the checkpoint)."""
    for name, module in model.named_modules():
        if _resize_tensors(module, f"{name}." if name else "", shapes):
            _sync_attributes(module, name)
    state = model.state_dict()
    unknown = sorted(set(shapes) - set(state))
    if unknown:
        raise EdgevidError(f"pruned shapes name weights the model does not have: {', '.join(unknown[:3])}")
    return model
