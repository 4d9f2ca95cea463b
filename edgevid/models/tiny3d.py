"""Tiny3D: the seed notes' toy classifier (a stem and three basic 3D residual blocks)."""

from __future__ import annotations

import torch
from torch import nn

from edgevid.models.base import VideoHead, VideoModel
from edgevid.models.registry import register_model


class Basic3DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != (1, 1, 1) or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Tiny3D(VideoModel):
    min_frames = 2
    frame_multiple = 2

    def __init__(self, num_classes: int = 10, head: str = "clip", width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        self.layer1 = Basic3DBlock(width, 2 * width, stride=(1, 2, 2))
        self.layer2 = Basic3DBlock(2 * width, 4 * width, stride=(2, 2, 2))
        self.layer3 = Basic3DBlock(4 * width, 8 * width, stride=(1, 2, 2))
        self.num_features = 8 * width
        self.head = VideoHead(self.num_features, num_classes, head, dropout=dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.stem(x))))


@register_model("tiny3d", family="tiny3d", frames=8, size=112, sampling_stride=4)
def tiny3d(num_classes: int = 10, head: str = "clip", **overrides) -> Tiny3D:
    """Toy 3D ResNet from the seed notes, for tests and quick experiments."""
    return Tiny3D(num_classes, head, **overrides)
