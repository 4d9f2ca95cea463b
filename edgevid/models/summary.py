"""The zoo table behind ``edgevid models``."""

from __future__ import annotations

from typing import Any

import torch

from edgevid.models.registry import count_macs, count_params, create_model, get_spec, list_models


def model_summary(name: str, num_classes: int = 400) -> dict[str, Any]:
    """Params and MACs of one model at its default input (built on the meta device, no weights allocated)."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes)
    params = count_params(model)
    macs = count_macs(model, spec.frames, spec.size)
    return {
        "name": name,
        "family": spec.family,
        "params": params,
        "params_m": params / 1e6,
        "macs": macs,
        "gmacs": macs / 1e9,
        "frames": spec.frames,
        "size": spec.size,
        "input": f"{spec.frames}x{spec.size}x{spec.size}",
        "sampling_stride": spec.sampling_stride,
        "description": spec.description,
    }


def zoo_summary(pattern: str = "*", num_classes: int = 400) -> list[dict[str, Any]]:
    names = list_models(pattern)
    if not names:
        raise ValueError(f"no model matches {pattern!r}; available: {', '.join(list_models())}")
    return [model_summary(n, num_classes) for n in names]
