"""Video ResNets of Tran et al. 2018 (R3D, MC3, R(2+1)D): one generic network with interchangeable conv makers.

A *conv maker* builds the "3x3x3-like" conv of a residual block: full 3D (``conv3d_simple``), spatial only
(``conv3d_no_temporal``) or factorised (2+1)D (``conv2plus1d``). Choosing one per stage plus a stem gives
``r3d_18``, ``mc3_18`` and ``r2plus1d_18``. Module names follow torchvision's ``models/video/resnet.py``
(``stem``, ``layer1.0.conv1.0``, ``downsample``), except that the classifier lives in ``head.fc``.

Causal models (``causal=True``) build every conv whose temporal kernel spans more than one frame as a
:class:`~edgevid.models.layers.CausalConv3d`, so output frame t only sees input frames <= t. The temporal
strides are kept (a strided causal conv's output j ends at input frame ``stride * j``): parameters, MACs and
receptive field stay those of the reference network, but a stream yields one new output per 8 input frames
and the streaming state must honour the strides. ``temporal_strides=(1, 1, 1, 1)`` gives one output per frame
at about 1.9x the MACs (r2plus1d_18 at 16x112: 40.5 -> 78.2 GMACs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from edgevid.models.base import VideoHead, VideoModel
from edgevid.models.init import init_weights
from edgevid.models.layers import DropPath, conv3d, linear_drop_path_rates
from edgevid.models.registry import register_model

Stride3d = tuple[int, int, int]
ConvMaker = Callable[[int, int, int, Stride3d, bool], nn.Module]

TORCHVISION_VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
TORCHVISION_VIDEO_STD = (0.22803, 0.22145, 0.216989)


def conv2plus1d_mid(cin: int, cout: int) -> int:
    """Mid channels of a (2+1)D conv that match the parameter count of a 3x3x3 conv from ``cin`` to ``cout``."""
    return (cin * cout * 27) // (cin * 9 + 3 * cout)


def conv3d_simple(cin: int, cout: int, mid: int, stride: Stride3d, causal: bool) -> nn.Module:
    """Full 3x3x3 conv (R3D)."""
    return conv3d(cin, cout, 3, stride=stride, padding=1, causal=causal)


def conv3d_no_temporal(cin: int, cout: int, mid: int, stride: Stride3d, causal: bool) -> nn.Module:
    """Spatial-only 1x3x3 conv (the 2D stages of MC3)."""
    return nn.Conv3d(cin, cout, (1, 3, 3), stride=stride, padding=(0, 1, 1), bias=False)


def conv2plus1d(cin: int, cout: int, mid: int, stride: Stride3d, causal: bool) -> nn.Module:
    """(2+1)D conv: 1x3x3 spatial conv to ``mid`` channels, BN, ReLU, then a 3x1x1 temporal conv."""
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride[1], stride[2]), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        conv3d(mid, cout, (3, 1, 1), stride=(stride[0], 1, 1), padding=(1, 0, 0), causal=causal),
    )


def _downsample(cin: int, cout: int, stride: Stride3d) -> nn.Module | None:
    if stride == (1, 1, 1) and cin == cout:
        return None
    return nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout))


class BasicBlock(nn.Module):
    """Two conv-maker convs with BN; the (2+1)D mid width is computed once from (cin, planes) for both."""

    expansion = 1

    def __init__(self, cin: int, planes: int, conv_maker: ConvMaker, stride: Stride3d = (1, 1, 1),
                 causal: bool = False, drop_path: float = 0.0) -> None:
        super().__init__()
        mid = conv2plus1d_mid(cin, planes)
        self.conv1 = nn.Sequential(conv_maker(cin, planes, mid, stride, causal), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_maker(planes, planes, mid, (1, 1, 1), causal), nn.BatchNorm3d(planes))
        self.downsample = _downsample(cin, planes, stride)
        self.drop_path = DropPath(drop_path)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(self.conv2(self.conv1(x))) + identity)


class Bottleneck(nn.Module):
    """1x1x1 reduce, conv-maker conv, 1x1x1 expand (x4), with BN."""

    expansion = 4

    def __init__(self, cin: int, planes: int, conv_maker: ConvMaker, stride: Stride3d = (1, 1, 1),
                 causal: bool = False, drop_path: float = 0.0) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Sequential(nn.Conv3d(cin, planes, 1, bias=False), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_maker(planes, planes, conv2plus1d_mid(planes, planes), stride, causal),
                                   nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(nn.Conv3d(planes, cout, 1, bias=False), nn.BatchNorm3d(cout))
        self.downsample = _downsample(cin, cout, stride)
        self.drop_path = DropPath(drop_path)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(self.conv3(self.conv2(self.conv1(x)))) + identity)


def basic_stem(causal: bool = False) -> nn.Sequential:
    """3 -> 64, 3x7x7 conv, spatial stride 2 (R3D, MC3)."""
    return nn.Sequential(conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), causal=causal),
                         nn.BatchNorm3d(64), nn.ReLU(inplace=True))


def r2plus1d_stem(causal: bool = False) -> nn.Sequential:
    """Factorised stem: 3 -> 45, 1x7x7 (stride 2 in space), BN, ReLU, then 45 -> 64, 3x1x1, BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(45),
        nn.ReLU(inplace=True),
        conv3d(45, 64, (3, 1, 1), padding=(1, 0, 0), causal=causal),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


def check_stage_values(name: str, values: Sequence, count: int = 4) -> tuple:
    values = tuple(values)
    if len(values) != count or any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"{name} needs {count} positive integers, got {values}")
    return values


class VideoResNet(VideoModel):
    """Generic video ResNet: stem, four stages (planes 64/128/256/512, spatial strides 1/2/2/2), head.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        conv_makers: one conv maker per stage.
        layers: blocks per stage.
        stem: builds the stem, ``stem(causal) -> nn.Module`` ending in 64 channels.
        temporal_strides: time stride of the first block of each stage.
        causal: temporal convs only look at past frames (see the module docstring).
        dropout: before the classifier.
        drop_path: stochastic-depth rate, growing linearly over the blocks up to this value.
    """

    classifier_std = 0.01  # what init_weights gives every linear layer

    def __init__(self, block: type[BasicBlock | Bottleneck], conv_makers: Sequence[ConvMaker],
                 layers: Sequence[int], stem: Callable[[bool], nn.Module], num_classes: int = 400,
                 head: str = "clip", temporal_strides: Sequence[int] = (1, 2, 2, 2), causal: bool = False,
                 dropout: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        layers = check_stage_values("layers", layers)
        temporal_strides = check_stage_values("temporal_strides", temporal_strides)
        self.causal = causal
        self.stem = stem(causal)
        rates = iter(linear_drop_path_rates(drop_path, sum(layers)))
        cin = 64
        for index, (maker, planes, blocks, t_stride) in enumerate(
                zip(conv_makers, (64, 128, 256, 512), layers, temporal_strides, strict=True)):
            spatial = 1 if index == 0 else 2
            stage = []
            for b in range(blocks):
                stride = (t_stride, spatial, spatial) if b == 0 else (1, 1, 1)
                stage.append(block(cin, planes, maker, stride, causal, next(rates)))
                cin = planes * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.num_features = cin
        self.head = VideoHead(cin, num_classes, head, dropout=dropout)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


_VIDEO_RESNET_SPEC = dict(family="video_resnet", frames=16, size=112, sampling_stride=4,
                          mean=TORCHVISION_VIDEO_MEAN, std=TORCHVISION_VIDEO_STD)


@register_model("r3d_18", **_VIDEO_RESNET_SPEC)
def r3d_18(num_classes: int = 400, head: str = "clip", **overrides) -> VideoResNet:
    """R3D-18 (Tran 2018): 3x3x3 convs in every stage; 16 frames x 112, every 4th frame (edgevid default)."""
    overrides.setdefault("layers", (2, 2, 2, 2))
    return VideoResNet(BasicBlock, [conv3d_simple] * 4, stem=basic_stem, num_classes=num_classes, head=head,
                       **overrides)


@register_model("mc3_18", **_VIDEO_RESNET_SPEC)
def mc3_18(num_classes: int = 400, head: str = "clip", **overrides) -> VideoResNet:
    """MC3-18 (Tran 2018): 3D convs in stage 1, 1x3x3 after (T kept); 16x112, every 4th frame (edgevid default)."""
    overrides.setdefault("temporal_strides", (1, 1, 1, 1))
    overrides.setdefault("layers", (2, 2, 2, 2))
    return VideoResNet(BasicBlock, [conv3d_simple] + [conv3d_no_temporal] * 3, stem=basic_stem,
                       num_classes=num_classes, head=head, **overrides)


@register_model("r2plus1d_18", **_VIDEO_RESNET_SPEC)
def r2plus1d_18(num_classes: int = 400, head: str = "clip", **overrides) -> VideoResNet:
    """R(2+1)D-18 (Tran 2018): factorised 1x3x3 + 3x1x1 convs; 16x112, every 4th frame (edgevid default)."""
    overrides.setdefault("layers", (2, 2, 2, 2))
    return VideoResNet(BasicBlock, [conv2plus1d] * 4, stem=r2plus1d_stem, num_classes=num_classes, head=head,
                       **overrides)
