"""Model registry in the style of timm: ``register_model``, ``create_model``, ``list_models``."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgevid.models.base import KINETICS_MEAN, KINETICS_STD, VideoModel, check_head_kind


@dataclass(frozen=True)
class ModelSpec:
    """Registry entry: how to build a model and the input it was designed for."""

    name: str
    family: str
    builder: Callable[..., VideoModel]
    frames: int
    size: int
    sampling_stride: int
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, family: str, frames: int, size: int, sampling_stride: int,
                   mean: tuple[float, float, float] = KINETICS_MEAN,
                   std: tuple[float, float, float] = KINETICS_STD,
                   description: str = "") -> Callable[[Callable[..., VideoModel]], Callable[..., VideoModel]]:
    """Decorator registering ``builder(num_classes, head, **overrides) -> VideoModel`` under ``name``."""

    def decorate(builder: Callable[..., VideoModel]) -> Callable[..., VideoModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, family, builder, frames, size, sampling_stride, mean, std,
                                    description or (builder.__doc__ or "").strip().splitlines()[0])
        return builder

    return decorate


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (family is None or s.family == family))


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int = 400, head: str = "clip", **overrides) -> VideoModel:
    """Build a registered model with ``num_classes`` outputs and the given head kind."""
    spec = get_spec(name)
    check_head_kind(head)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    try:
        return spec.builder(num_classes=num_classes, head=head, **overrides)
    except TypeError as exc:
        raise ValueError(f"model {name!r}: bad override ({exc})") from None


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, frames: int, size: int | tuple[int, int], batch: int = 1) -> int:
    """Multiply-adds of one forward pass, from PyTorch's own FlopCounterMode (which reports 2 x MACs).

    Runs a copy of the model on the meta device: no compute, and the caller's weights are untouched.
    """
    h, w = (size, size) if isinstance(size, int) else size
    meta_model = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model(torch.empty(batch, 3, frames, h, w, device="meta"))
    return counter.get_total_flops() // 2
