"""2D MobileNetV2 with torchvision's module structure and state_dict key names, used as TSM's backbone.

Keys follow torchvision's ``mobilenet_v2`` (``features.0.0`` stem conv, ``features.N.conv.*`` inverted residual
blocks, ``features.18`` the 1x1 conv to 1280 channels, ``classifier.1`` the linear layer). Inverted residual
blocks with a skip connection have a hook point, ``temporal``, at the start of their residual branch (before the
expanding 1x1 conv), where mit-han-lab's TSM puts the temporal shift. Frames of a clip are folded into the batch
([N*T, C, H, W]) and ``frames`` (T) is passed along to the hooks.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevid.models.init import init_weights
from edgevid.models.layers import DropPath, linear_drop_path_rates

# expansion t, output channels c, repeats n, first stride s (Sandler et al. 2018, table 2)
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without going more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU6(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with ReLU6 (keys ``0`` conv, ``1`` BN)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear); a skip connection when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.stride = stride
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        expand = [ConvBNReLU6(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
        self.conv = nn.Sequential(
            *expand,
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        )
        self.out_channels = oup
        self.drop_path = DropPath(drop_path if self.use_res_connect else 0.0)
        self.temporal: nn.Module | None = None

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        if not self.use_res_connect:
            return self.conv(x)
        out = x if self.temporal is None else self.temporal(x, frames)
        return x + self.drop_path(self.conv(out), frames)


class MobileNetV2(nn.Module):
    """torchvision-compatible MobileNetV2. ``num_classes=0`` drops the classifier (a backbone)."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, last_channel: int = 1280,
                 dropout: float = 0.2, drop_path: float = 0.0) -> None:
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(last_channel * max(1.0, width_mult))
        rates = iter(linear_drop_path_rates(drop_path, sum(n for _, _, n, _ in INVERTED_RESIDUAL_SETTING)))
        layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, next(rates)))
                cin = cout
        layers.append(ConvBNReLU6(cin, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.num_features = self.last_channel
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes)) \
            if num_classes else None
        init_weights(self)

    def residual_blocks(self) -> list[InvertedResidual]:
        """The inverted residual blocks with a skip connection: those whose ``temporal`` hook TSM fills."""
        return [m for m in self.features if isinstance(m, InvertedResidual) and m.use_res_connect]

    def forward_features(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        """[N*T, 3, H, W] -> [N*T, last_channel, H/32, W/32]."""
        for layer in self.features:
            x = layer(x, frames) if isinstance(layer, InvertedResidual) else layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.forward_features(x).mean(dim=(2, 3))
        return feats if self.classifier is None else self.classifier(feats)
