"""2D ResNet (BasicBlock / Bottleneck) with torchvision's state_dict key names, used as TSM's backbone.

The keys (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer1.0.downsample.0``, ``fc``) are those of
torchvision's ``resnet18`` / ``resnet50``, so ImageNet weights load as they are and 2D->3D inflation can map
keys one to one. Each block has a hook point, ``temporal``, at the start of its residual branch (before
``conv1``; the identity path does not see it): TSM's "blockres" temporal shift goes there.

Frames of a clip are folded into the batch ([N*T, C, H, W]); ``frames`` (T) travels with the tensor through
``forward_features`` so that a temporal hook can unfold it without baking T into the graph.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from edgevid.models.init import init_weights
from edgevid.models.layers import DropPath, linear_drop_path_rates


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class ResidualBlock2d(nn.Module):
    """Shared skeleton: ``relu(branch(temporal(x)) + shortcut(x))`` with optional stochastic depth."""

    expansion: int

    def _finish(self, downsample: nn.Module | None, drop_path: float) -> None:
        """Set the modules after the convolutions, so the state_dict keys come in torchvision's order."""
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path)
        self.temporal: nn.Module | None = None

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x if self.temporal is None else self.temporal(x, frames)
        return self.relu(self.drop_path(self.branch(out), frames) + identity)


class BasicBlock(ResidualBlock2d):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._finish(downsample, drop_path)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(ResidualBlock2d):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self._finish(downsample, drop_path)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


RESNET_CONFIGS: dict[str, tuple[type[ResidualBlock2d], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet2d(nn.Module):
    """torchvision-compatible 2D ResNet. ``num_classes=0`` drops ``fc`` (a backbone for a video head)."""

    def __init__(self, block: type[ResidualBlock2d], layers: tuple[int, ...], num_classes: int = 1000,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        rates = iter(linear_drop_path_rates(drop_path, sum(layers)))
        inplanes = 64
        for index, (planes, depth) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage, inplanes = self._make_layer(block, inplanes, planes, depth, 1 if index == 0 else 2, rates)
            self.add_module(f"layer{index + 1}", stage)
        self.num_features = inplanes
        self.fc = nn.Linear(inplanes, num_classes) if num_classes else None
        init_weights(self, linear_std=None)  # torchvision's ResNet leaves fc at PyTorch's default

    @staticmethod
    def _make_layer(block: type[ResidualBlock2d], inplanes: int, planes: int, depth: int, stride: int,
                    rates: Iterator[float]) -> tuple[nn.Sequential, int]:
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != outplanes:
            downsample = nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))
        blocks = [block(inplanes, planes, stride, downsample, next(rates))]
        blocks += [block(outplanes, planes, drop_path=next(rates)) for _ in range(1, depth)]
        return nn.Sequential(*blocks), outplanes

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def residual_blocks(self) -> list[ResidualBlock2d]:
        """The blocks whose ``temporal`` hook TSM fills (every block of every stage)."""
        return [block for stage in self.stages for block in stage]

    def forward_features(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        """[N*T, 3, H, W] -> [N*T, C, H/32, W/32]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for block in self.residual_blocks():
            x = block(x, frames)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.forward_features(x).mean(dim=(2, 3))
        return feats if self.fc is None else self.fc(feats)


def resnet2d(name: str, num_classes: int = 1000, drop_path: float = 0.0) -> ResNet2d:
    """Build ``resnet18`` / ``resnet34`` / ``resnet50`` / ``resnet101`` by torchvision's name."""
    try:
        block, layers = RESNET_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown 2D ResNet {name!r}; available: {', '.join(RESNET_CONFIGS)}") from None
    return ResNet2d(block, layers, num_classes, drop_path)
