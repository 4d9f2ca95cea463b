"""X3D (Feichtenhofer 2020), following pytorchvideo's ``models/x3d.py`` layer for layer.

X3D-XS, -S and -M share one network (width factor 2, depth factor 2.2, bottleneck factor 2.25); they differ in
the input they were trained for (4x160, 13x160, 16x224). ``conv5`` (1x1x1 192->432, BN, ReLU) belongs to the
features; the head pools, applies a bias-free 432->2048 layer with ReLU, dropout and the classifier.

``causal=True`` makes the network causal in time (output frame t depends on input frames <= t only): every
temporal kernel > 1 becomes a :class:`~edgevid.models.layers.CausalConv3d` and squeeze-excitation pools over
space and the frames so far (a cumulative mean, :class:`CumulativeTemporalMean`) instead of the whole clip.
Both are the modules a streaming wrapper swaps for stateful ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edgevid.models.base import VideoHead, VideoModel
from edgevid.models.init import init_weights
from edgevid.models.layers import DropPath, conv3d, linear_drop_path_rates
from edgevid.models.registry import register_model


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """pytorchvideo's channel rounding: nearest multiple of ``divisor``, never more than 10% below."""
    width *= multiplier
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


@dataclass(frozen=True)
class X3DConfig:
    """Widths and depths of an X3D network (the paper's expansion factors applied to its base network)."""

    stem_width: int = 24
    widths: tuple[int, ...] = (24, 48, 96, 192)
    base_depths: tuple[int, ...] = (1, 2, 5, 3)
    depth_factor: float = 2.2
    bottleneck_factor: float = 2.25
    se_ratio: float = 0.0625
    stem_kernel_t: int = 5
    head_hidden: int = 2048

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(math.ceil(self.depth_factor * d) for d in self.base_depths)

    @property
    def conv5_width(self) -> int:
        return int(self.bottleneck_factor * self.widths[-1])


class GlobalMean(nn.Module):
    """Mean over (T, H, W), keeping dims: [B, C, T, H, W] -> [B, C, 1, 1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4), keepdim=True)


class CumulativeTemporalMean(nn.Module):
    """Causal pooling: mean over space and over frames 0..t: [B, C, T, H, W] -> [B, C, T, 1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        running = x.mean(dim=(3, 4), keepdim=True).cumsum(dim=2)
        count = torch.arange(1, x.shape[2] + 1, device=x.device, dtype=x.dtype)
        return running / count.view(1, 1, -1, 1, 1)


class SqueezeExcite(nn.Module):
    """Channel gating from pooled features (pytorchvideo's SqueezeExcitation: 1x1x1 convs with bias)."""

    def __init__(self, channels: int, reduced: int, causal: bool = False) -> None:
        super().__init__()
        self.pool = CumulativeTemporalMean() if causal else GlobalMean()
        self.fc1 = nn.Conv3d(channels, reduced, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x)))))


class X3DBlock(nn.Module):
    """1x1x1 conv, BN, ReLU -> 3x3x3 depthwise conv, BN, [SE], Swish -> 1x1x1 conv, BN -> + shortcut -> ReLU."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int, se_width: int, causal: bool,
                 drop_path: float, shortcut_bn: bool = True) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(inner)
        self.conv_b = conv3d(inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, causal=causal)
        self.bn_b = nn.BatchNorm3d(inner)
        self.se = SqueezeExcite(inner, se_width, causal) if se_width else nn.Identity()
        self.swish = nn.SiLU(inplace=True)
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            conv = nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False)
            self.shortcut = nn.Sequential(conv, nn.BatchNorm3d(cout)) if shortcut_bn else nn.Sequential(conv)
        self.drop_path = DropPath(drop_path)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn_a(self.conv_a(x)))
        out = self.swish(self.se(self.bn_b(self.conv_b(out))))
        out = self.bn_c(self.conv_c(out))
        return self.relu(self.drop_path(out) + identity)


def make_stage(cin: int, cout: int, depth: int, cfg: X3DConfig, causal: bool, drop_paths: list[float],
               same_width_shortcut_bn: bool = True) -> nn.Sequential:
    """``depth`` blocks; the first has spatial stride 2; SE on the 1st, 3rd, 5th... block."""
    inner = int(cfg.bottleneck_factor * cout)
    se_width = round_width(inner, cfg.se_ratio) if cfg.se_ratio else 0
    return nn.Sequential(*(
        X3DBlock(cin if i == 0 else cout, inner, cout, 2 if i == 0 else 1, se_width if i % 2 == 0 else 0, causal,
                 drop_paths[i], shortcut_bn=same_width_shortcut_bn or cin != cout)
        for i in range(depth)
    ))


class X3DStem(nn.Module):
    """Conv 1x3x3 stride (1,2,2), then depthwise temporal conv (k,1,1), then BN + ReLU."""

    def __init__(self, width: int, kernel_t: int, causal: bool) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(3, width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_t = conv3d(width, width, (kernel_t, 1, 1), padding=(kernel_t // 2, 0, 0), groups=width,
                             causal=causal)
        self.bn = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv_t(self.conv_xy(x))))


class X3D(VideoModel):
    """X3D network; time is kept at every layer (temporal stride 1), space is reduced 32x.

    ``same_width_shortcut_bn=False`` leaves out the BN on the shortcut conv of a block that keeps its width (only
    stage 1's first block, 24->24 with stride 2): pytorchvideo's X3D has none there, PySlowFast and MMAction2 do.
    """

    classifier_std = 0.01  # what init_weights gives every linear layer

    def __init__(self, cfg: X3DConfig, num_classes: int = 400, head: str = "clip", causal: bool = False,
                 drop_path: float = 0.0, dropout: float = 0.5, same_width_shortcut_bn: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.stem = X3DStem(cfg.stem_width, cfg.stem_kernel_t, causal)
        rates = linear_drop_path_rates(drop_path, sum(cfg.depths))
        stages, cin, first = [], cfg.stem_width, 0
        for cout, depth in zip(cfg.widths, cfg.depths, strict=True):
            stages.append(make_stage(cin, cout, depth, cfg, causal, rates[first:first + depth], same_width_shortcut_bn))
            cin, first = cout, first + depth
        self.stages = nn.Sequential(*stages)
        self.conv5 = nn.Sequential(nn.Conv3d(cin, cfg.conv5_width, 1, bias=False), nn.BatchNorm3d(cfg.conv5_width),
                                   nn.ReLU(inplace=True))
        self.num_features = cfg.conv5_width
        self.head = VideoHead(self.num_features, num_classes, head, hidden=cfg.head_hidden, dropout=dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        """pytorchvideo's "resnet" init: MSRA fan-out convs, unit BN except a zero last BN in each block."""
        init_weights(self)
        for m in self.modules():
            if isinstance(m, X3DBlock):
                nn.init.zeros_(m.bn_c.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.stages(self.stem(x)))


def _x3d(num_classes: int, head: str, **overrides) -> X3D:
    return X3D(X3DConfig(), num_classes, head, **overrides)


@register_model("x3d_xs", family="x3d", frames=4, size=160, sampling_stride=12)
def x3d_xs(num_classes: int = 400, head: str = "clip", **overrides) -> X3D:
    """X3D-XS: 4 frames x 160, sampling rate 12."""
    return _x3d(num_classes, head, **overrides)


@register_model("x3d_s", family="x3d", frames=13, size=160, sampling_stride=6)
def x3d_s(num_classes: int = 400, head: str = "clip", **overrides) -> X3D:
    """X3D-S: 13 frames x 160, sampling rate 6."""
    return _x3d(num_classes, head, **overrides)


@register_model("x3d_m", family="x3d", frames=16, size=224, sampling_stride=5)
def x3d_m(num_classes: int = 400, head: str = "clip", **overrides) -> X3D:
    """X3D-M: 16 frames x 224, sampling rate 5."""
    return _x3d(num_classes, head, **overrides)
