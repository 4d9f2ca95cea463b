"""Pseudo-3D ResNet (Qiu et al. 2017): bottlenecks whose 3x3x3 conv is split into a spatial 1x3x3 conv S and a
temporal 3x1x1 conv T, wired in one of three ways:

- P3D-A: cascaded, T(S(x)).
- P3D-B: parallel, S(x) + T(x).
- P3D-C: cascaded with a shortcut from S, S(x) + T(S(x)).

``p3d_r50`` follows the P3D ResNet recipe on a ResNet-50 trunk (layers 3/4/6/3, the reference PyTorch port's
"P3D63"): stem 1x7x7 (spatial stride 2), then a 2x3x3 max pool with stride 2 in time and space; res2-res4 are
P3D blocks, each stage followed by a 2x1x1 max pool in time; res5 is 2D (1x3x3), as time is down to T/16
there. The spatial stride sits in the first 1x1x1 conv so S and T see the same grid in P3D-B.
``variant="ABC"`` (the paper's P3D ResNet) cycles A, B, C over consecutive blocks; "A", "B" or "C" uses one
kind throughout. All variants have the same parameters and state_dict keys: 25.75M at 400 classes, and
8.44 GMACs at 16x160 (the paper reports no count for this ResNet-50 version).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import cycle

import torch
from torch import nn

from edgevid.models.base import IMAGENET_MEAN, IMAGENET_STD, VideoHead, VideoModel
from edgevid.models.init import init_weights
from edgevid.models.layers import DropPath, linear_drop_path_rates
from edgevid.models.registry import register_model
from edgevid.models.video_resnet import check_stage_values

P3D_VARIANTS = ("A", "B", "C", "ABC")
_SPATIAL_ONLY = "2D"


class P3DBottleneck(nn.Module):
    """1x1x1 reduce (spatial stride), S and/or T wired as ``kind`` ("A", "B", "C" or "2D": S only), 1x1x1 x4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, kind: str, spatial_stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.kind = kind
        self.conv1 = nn.Conv3d(cin, planes, 1, stride=(1, spatial_stride, spatial_stride), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        if kind != _SPATIAL_ONLY:
            self.conv3 = nn.Conv3d(planes, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)
            self.bn3 = nn.BatchNorm3d(planes)
        self.conv4 = nn.Conv3d(planes, cout, 1, bias=False)
        self.bn4 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if spatial_stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=(1, spatial_stride, spatial_stride), bias=False),
                nn.BatchNorm3d(cout))
        self.drop_path = DropPath(drop_path)

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(x)))

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn3(self.conv3(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.kind == "A":
            out = self.temporal(self.spatial(out))
        elif self.kind == "B":
            out = self.spatial(out) + self.temporal(out)
        elif self.kind == "C":
            out = self.spatial(out)
            out = out + self.temporal(out)
        else:
            out = self.spatial(out)
        return self.relu(self.drop_path(self.bn4(self.conv4(out))) + identity)

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


def _stage(cin: int, planes: int, kinds: Iterator[str], blocks: int, spatial_stride: int,
           drop_rates: Iterator[float]) -> nn.Sequential:
    stage = []
    for index in range(blocks):
        stage.append(P3DBottleneck(cin, planes, next(kinds), spatial_stride if index == 0 else 1, next(drop_rates)))
        cin = planes * P3DBottleneck.expansion
    return nn.Sequential(*stage)


class P3DResNet(VideoModel):
    """P3D ResNet (see the module docstring). T must be a multiple of 16 (four 2x time poolings).

    Args:
        layers: bottlenecks per stage.
        variant: "A", "B", "C" or "ABC" (cycle).
        dropout: before the classifier (0.5 in the reference port).
        drop_path: stochastic-depth rate reached by the last block.
    """

    classifier_std = 0.01  # what init_weights gives every linear layer

    min_frames = 16
    frame_multiple = 16

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_classes: int = 400, head: str = "clip",
                 variant: str = "ABC", dropout: float = 0.5, drop_path: float = 0.0) -> None:
        super().__init__()
        if variant not in P3D_VARIANTS:
            raise ValueError(f"P3D variant must be one of {', '.join(P3D_VARIANTS)}, got {variant!r}")
        layers = check_stage_values("layers", layers)
        self.variant = variant
        self.conv1 = nn.Conv3d(3, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((2, 3, 3), stride=2, padding=(0, 1, 1))
        self.temporal_pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        kinds = cycle(variant)
        rates = iter(linear_drop_path_rates(drop_path, sum(layers)))
        cin = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage_kinds = kinds if index < 3 else cycle([_SPATIAL_ONLY])
            self.add_module(f"layer{index + 1}", _stage(cin, planes, stage_kinds, blocks, 1 if index == 0 else 2,
                                                        rates))
            cin = planes * P3DBottleneck.expansion
        self.num_features = cin
        self.head = VideoHead(cin, num_classes, head, dropout=dropout)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in (self.layer1, self.layer2, self.layer3):
            x = self.temporal_pool(layer(x))
        return self.layer4(x)


@register_model("p3d_r50", family="p3d", frames=16, size=160, sampling_stride=1, mean=IMAGENET_MEAN,
                std=IMAGENET_STD)
def p3d_r50(num_classes: int = 400, head: str = "clip", **overrides) -> P3DResNet:
    """P3D ResNet-50 (Qiu 2017): P3D-A/B/C bottlenecks (``variant``, cycled by default); 16 consecutive frames x 160."""
    overrides.setdefault("layers", (3, 4, 6, 3))
    return P3DResNet(num_classes=num_classes, head=head, **overrides)
