"""I3D-ResNet (Carreira & Zisserman 2017; the PySlowFast "I3D-R50 8x8" recipe) and 2D -> 3D weight inflation.

The network is a ResNet-50 whose first conv of some bottlenecks spans time: stem 5x7x7, then temporal kernels
3 (res2), 3/1 alternating (res3, res4), 1/3 alternating (res5) on the 1x1 "reduce" conv; the 3x3 conv is
1x3x3 and carries the spatial stride (torchvision's ResNet v1.5). A 2x1x1 max pool after res2 halves time.
Module names mirror torchvision's 2D ``resnet50`` (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``downsample.0``),
with the classifier in ``head.fc``, so :func:`inflate_resnet2d` maps a 2D state_dict key for key.

At 400 classes: 28.04M parameters (pytorchvideo's zoo: 28.04M); 28.4 GMACs at 8x224 and 37.1 at 8x256. The
37.53 "GFLOPs" of that zoo are per 256x256 test view and counted by fvcore, which also counts BN and pooling.

The blocks here (:class:`Bottleneck3d`, :class:`BasicBlock3d`, :func:`make_stage`) are shared with SlowFast.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import cycle

import torch
import torch.nn.functional as F
from torch import nn

from edgevid.models.base import VideoHead, VideoModel
from edgevid.models.init import init_weights
from edgevid.models.layers import DropPath, linear_drop_path_rates
from edgevid.models.registry import register_model
from edgevid.models.video_resnet import check_stage_values

TIME_PADDINGS = ("zeros", "replicate")
INFLATE_MODES = ("repeat", "center")
I3D_TEMPORAL_KERNELS = ((3,), (3, 1), (3, 1), (1, 3))
_HEAD_KEYS = {"fc.weight": "head.fc.weight", "fc.bias": "head.fc.bias"}


class TimeReplicateConv3d(nn.Conv3d):
    """A Conv3d that pads time by repeating the first and last frames instead of zeros (space stays zero-padded).

    A clip of identical frames then looks the same to every temporal tap, at the clip ends too.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.time_pad = self.padding[0]
        self.padding = (0, self.padding[1], self.padding[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return super().forward(x)


def time_conv(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
              time_padding: str = "zeros") -> nn.Conv3d:
    """Bias-free Conv3d with "same" padding; ``time_padding="replicate"`` pads time with edge frames."""
    if time_padding not in TIME_PADDINGS:
        raise ValueError(f"time_padding must be one of {', '.join(TIME_PADDINGS)}, got {time_padding!r}")
    cls = TimeReplicateConv3d if time_padding == "replicate" and kernel[0] > 1 else nn.Conv3d
    return cls(cin, cout, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), bias=False)


def _downsample(cin: int, cout: int, spatial_stride: int) -> nn.Module | None:
    if spatial_stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv3d(cin, cout, 1, stride=(1, spatial_stride, spatial_stride), bias=False),
                         nn.BatchNorm3d(cout))


class Bottleneck3d(nn.Module):
    """kt x1x1 reduce, 1x3x3 (spatial stride), 1x1x1 expand x4; names as torchvision's Bottleneck."""

    expansion = 4

    def __init__(self, cin: int, planes: int, temporal_kernel: int = 1, spatial_stride: int = 1,
                 drop_path: float = 0.0, time_padding: str = "zeros") -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = time_conv(cin, planes, (temporal_kernel, 1, 1), time_padding=time_padding)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = time_conv(planes, planes, (1, 3, 3), (1, spatial_stride, spatial_stride))
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, spatial_stride)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.drop_path(self.bn3(self.conv3(out))) + identity)


class BasicBlock3d(nn.Module):
    """kt x3x3 conv (spatial stride), 1x3x3 conv; names as torchvision's BasicBlock."""

    expansion = 1

    def __init__(self, cin: int, planes: int, temporal_kernel: int = 1, spatial_stride: int = 1,
                 drop_path: float = 0.0, time_padding: str = "zeros") -> None:
        super().__init__()
        self.conv1 = time_conv(cin, planes, (temporal_kernel, 3, 3), (1, spatial_stride, spatial_stride),
                               time_padding)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = time_conv(planes, planes, (1, 3, 3))
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, spatial_stride)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.drop_path(self.bn2(self.conv2(out))) + identity)


ResBlock3d = type[Bottleneck3d | BasicBlock3d]


def check_temporal_kernels(kernels: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Validate per-stage temporal kernel bases: four non-empty lists of odd positive sizes."""
    bases = [tuple(k) for k in kernels]
    if len(bases) != 4 or not all(b and all(int(k) == k and k > 0 and k % 2 for k in b) for b in bases):
        raise ValueError(f"temporal_kernels needs 4 non-empty lists of odd positive sizes, got {kernels}")
    return bases


def make_stage(block: ResBlock3d, cin: int, planes: int, blocks: int, temporal_kernels: Sequence[int],
               spatial_stride: int, drop_rates: Iterator[float], time_padding: str = "zeros") -> nn.Sequential:
    """A residual stage; ``temporal_kernels`` is cycled over the blocks (PySlowFast's kernel basis)."""
    kernels = cycle(temporal_kernels)
    stage = []
    for index in range(blocks):
        stage.append(block(cin, planes, next(kernels), spatial_stride if index == 0 else 1, next(drop_rates),
                           time_padding))
        cin = planes * block.expansion
    return nn.Sequential(*stage)


class I3DResNet(VideoModel):
    """Inflated ResNet with torchvision-compatible module names.

    Args:
        block, layers: ``Bottleneck3d`` and (3, 4, 6, 3) for I3D-R50.
        stem_temporal_kernel: time extent of the 7x7 stem conv.
        temporal_kernels: per stage, the kernel basis cycled over its blocks.
        temporal_pool: 2x1x1 max pool after res2 (T must then be even).
        time_padding: "zeros" (the reference) or "replicate" (edge frames; see :func:`inflate_resnet2d`).
        dropout: before the classifier (0.5 in PySlowFast).
        drop_path: stochastic-depth rate reached by the last block.
    """

    classifier_std = 0.01  # what init_weights gives every linear layer

    def __init__(self, block: ResBlock3d = Bottleneck3d, layers: Sequence[int] = (3, 4, 6, 3),
                 num_classes: int = 400, head: str = "clip", stem_temporal_kernel: int = 5,
                 temporal_kernels: Sequence[Sequence[int]] = I3D_TEMPORAL_KERNELS, temporal_pool: bool = True,
                 time_padding: str = "zeros", dropout: float = 0.5, drop_path: float = 0.0) -> None:
        super().__init__()
        layers = check_stage_values("layers", layers)
        temporal_kernels = check_temporal_kernels(temporal_kernels)
        self.frame_multiple = self.min_frames = 2 if temporal_pool else 1
        self.conv1 = time_conv(3, 64, (stem_temporal_kernel, 7, 7), (1, 2, 2), time_padding)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.temporal_pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)) if temporal_pool else nn.Identity()
        rates = iter(linear_drop_path_rates(drop_path, sum(layers)))
        cin = 64
        for index, (planes, blocks, kernels) in enumerate(zip((64, 128, 256, 512), layers, temporal_kernels,
                                                               strict=True)):
            self.add_module(f"layer{index + 1}", make_stage(block, cin, planes, blocks, kernels,
                                                            1 if index == 0 else 2, rates, time_padding))
            cin = planes * block.expansion
        self.num_features = cin
        self.head = VideoHead(cin, num_classes, head, dropout=dropout)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.temporal_pool(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))


def _inflate_tensor(key: str, weight_2d: torch.Tensor, ref: torch.Tensor, mode: str) -> torch.Tensor:
    weight_2d = weight_2d.to(dtype=ref.dtype)
    if weight_2d.shape == ref.shape:
        return weight_2d.clone()
    if weight_2d.dim() == 4 and ref.dim() == 5 and ref.shape[:2] + ref.shape[3:] == weight_2d.shape:
        kt = ref.shape[2]
        if mode == "repeat":
            return weight_2d.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
        inflated = torch.zeros_like(ref)
        inflated[:, :, kt // 2] = weight_2d
        return inflated
    raise ValueError(f"cannot inflate {key!r}: 2D shape {list(weight_2d.shape)} does not match 3D shape "
                     f"{list(ref.shape)}")


def inflate_resnet2d(state_dict_2d: Mapping[str, torch.Tensor], model_3d: nn.Module, mode: str = "repeat",
                     copy_head: bool = True) -> dict[str, torch.Tensor]:
    """Turn a torchvision-style 2D ResNet state_dict into a state_dict for ``model_3d`` (an :class:`I3DResNet`).

    Every 2D conv kernel [O, I, H, W] becomes [O, I, kt, H, W] for the 3D conv of the same name:

    - ``"repeat"``: the 2D kernel copied to every time slice and divided by kt (Carreira & Zisserman). A clip of
      identical frames gives exactly the 2D network's activations at every frame when time is padded with edge
      frames (``time_padding="replicate"``); with zero padding the outer taps of the clip's first and last
      frames see zeros, and that boundary effect spreads inward layer by layer.
    - ``"center"``: the 2D kernel in the centre slice, zeros elsewhere. A static clip reproduces the 2D network
      exactly with either padding; the temporal taps start at zero and are learnt during fine-tuning.

    BatchNorm parameters/statistics and the classifier (``fc`` -> ``head.fc``) are copied. BN step counters
    missing from old checkpoints keep the model's value. Pass ``copy_head=False`` when the class counts differ
    (e.g. ImageNet 1000 -> Kinetics 400): the 3D head then keeps its own initialisation.
    Load the result with ``model_3d.load_state_dict(...)``. Raises ValueError naming the first key that is
    missing, unexpected, or whose shape cannot be inflated.
    """
    if mode not in INFLATE_MODES:
        raise ValueError(f"inflation mode must be one of {', '.join(INFLATE_MODES)}, got {mode!r}")
    target = model_3d.state_dict()
    source = {_HEAD_KEYS.get(k, k): (k, v) for k, v in state_dict_2d.items()
              if copy_head or k not in _HEAD_KEYS}
    for key, (name_2d, _) in source.items():
        if key not in target:
            raise ValueError(f"2D key {name_2d!r} has no counterpart in {type(model_3d).__name__}")
    inflated = {}
    for key, ref in target.items():
        if key in source:
            inflated[key] = _inflate_tensor(source[key][0], source[key][1], ref, mode)
        elif key.endswith("num_batches_tracked") or (not copy_head and key in _HEAD_KEYS.values()):
            inflated[key] = ref.clone()
        else:
            hint = " (pass copy_head=False to keep the 3D head's own weights)" if key in _HEAD_KEYS.values() else ""
            raise ValueError(f"the 2D state_dict has no weights for {key!r}{hint}")
    return inflated


@register_model("i3d_r50", family="i3d", frames=8, size=224, sampling_stride=8)
def i3d_r50(num_classes: int = 400, head: str = "clip", **overrides) -> I3DResNet:
    """I3D-R50 8x8 (PySlowFast recipe): ResNet-50 inflated (stem 5x7x7, 3x1x1 reduce convs); 8 frames, every 8th."""
    overrides.setdefault("layers", (3, 4, 6, 3))
    return I3DResNet(Bottleneck3d, num_classes=num_classes, head=head, **overrides)
