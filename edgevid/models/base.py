"""The base every zoo model shares: input checks, ``forward_features`` / ``forward_head`` and the head kinds.

Head kinds (see the seed notes):
    clip     -> [B, classes]               pool over (T, H, W)
    frame    -> [B, classes, T']           pool over (H, W) only
    dense    -> [B, classes, T', H', W']   classifier applied at every voxel
    features -> [B, C, T', H', W']         backbone output, no head
One set of head weights serves every kind, so a model trained for clips can be read per frame or per voxel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from edgevid.meta import HEAD_KINDS
from edgevid.models.init import init_linear

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_head_kind(kind: str) -> str:
    if kind not in HEAD_KINDS:
        raise ValueError(f"head must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
    return kind


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


@contextmanager
def int8_graph(model: nn.Module) -> Iterator[nn.Module]:
    """While exporting for quantization, layers with an ``int8_form`` flag build the graph form that INT8 tools
    quantize through (TSM's shift as Split and Gather); the numbers are the same in both forms."""
    layers = [module for module in model.modules() if hasattr(module, "int8_form")]
    for layer in layers:
        layer.int8_form = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.int8_form = False


class VideoHead(nn.Module):
    """Pool according to the head kind, then an optional pointwise hidden layer, dropout and a linear classifier.

    Layers act on the channel dimension at each remaining position, so pooling first (clip) or not at all
    (dense) gives the same per-position function.
    """

    def __init__(self, in_channels: int, num_classes: int, kind: str = "clip", hidden: int = 0,
                 dropout: float = 0.0, hidden_bias: bool = False) -> None:
        super().__init__()
        self.kind = check_head_kind(kind)
        self.hidden = nn.Sequential(nn.Linear(in_channels, hidden, bias=hidden_bias), nn.ReLU(inplace=True)) \
            if hidden else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden or in_channels, num_classes)

    def forward(self, feats: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        kind = kind or self.kind
        if kind == "features":
            return feats
        if kind == "clip":
            return self.fc(self.dropout(self.hidden(feats.mean(dim=(2, 3, 4)))))
        if kind == "frame":
            x = self.fc(self.dropout(self.hidden(feats.mean(dim=(3, 4)).permute(0, 2, 1))))
            return x.permute(0, 2, 1)
        x = self.fc(self.dropout(self.hidden(feats.permute(0, 2, 3, 4, 1))))
        return x.permute(0, 4, 1, 2, 3)


class VideoModel(nn.Module):
    """A video model: [B, 3, T, H, W] in, the head kind's output out.

    Subclasses build ``self.head`` (a :class:`VideoHead`) and implement ``forward_features``. They declare the
    time lengths they accept through ``min_frames`` and ``frame_multiple``.
    """

    min_frames: int = 1
    frame_multiple: int = 1
    num_features: int
    classifier_std: float | None = None  # a fresh classifier's N(0, std) init; None: PyTorch's default

    @property
    def head_kind(self) -> str:
        return self.head.kind

    def get_classifier(self) -> nn.Linear:
        """The layer that turns features into class scores (the one fine-tuning replaces)."""
        return self.head.fc

    def classifier_name(self) -> str:
        """The classifier's module path (its state_dict keys start with it and a dot)."""
        classifier = self.get_classifier()
        return next(name for name, module in self.named_modules() if module is classifier)

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised classifier for ``num_classes`` classes, on the old one's device and dtype; the
        head kind, hidden layer and dropout stay."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.get_classifier()
        fc = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device,
                       dtype=old.weight.dtype)
        init_linear(fc, self.classifier_std)
        self.head.fc = fc

    def set_head_kind(self, kind: str) -> None:
        self.head.kind = check_head_kind(kind)

    def check_input(self, x: torch.Tensor) -> None:
        if _exporting():
            return
        if x.dim() != 5:
            raise ValueError(f"{type(self).__name__} expects input [B, 3, T, H, W], got a {x.dim()}-D tensor "
                             f"of shape {list(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects 3 input channels (RGB) in dim 1, got {x.shape[1]} "
                             f"(input shape {list(x.shape)})")
        t = x.shape[2]
        if t < self.min_frames or t % self.frame_multiple:
            rule = f"at least {self.min_frames}"
            if self.frame_multiple > 1:
                rule += f" and a multiple of {self.frame_multiple}"
            raise ValueError(f"{type(self).__name__} expects T (dim 2) {rule}, got T={t}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        return self.head(feats, kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))
