"""SlowFast networks (Feichtenhofer et al. 2019), following PySlowFast's SLOWFAST_4x16_R50 configuration.

The model takes one clip [B, 3, T, H, W] (T a multiple of ``alpha``): the Fast pathway sees all T frames with
1/``beta_inv`` of the channels, the Slow pathway every ``alpha``-th frame (frames 0, alpha, 2 alpha, ...).
Temporal kernels: Slow 1 in the stem, res2 and res3, 3 in res4 and res5; Fast 5 in the stem, 3 in every stage.
Lateral connections after the stem and res2-res4: a (``fusion_kernel``, 1, 1) conv with time stride ``alpha``
from Fast (C channels -> ``fusion_ratio`` * C), BN, ReLU, concatenated onto the Slow pathway's channels. The
strided lateral conv's output j is centred on fast frame ``alpha * j``, the frame the Slow pathway sampled.

``forward_features`` returns ONE map [B, C_slow + C_fast, T / alpha, H', W']: the Fast output average-pooled
over each group of ``alpha`` frames, concatenated with the Slow output. Its global average equals the
concatenation of the two pathways' global averages, so the clip head is PySlowFast's; frame, dense and features
heads read the same map at the Slow pathway's time resolution.

slowfast_r50 at 400 classes: 34.48M parameters (pytorchvideo: 34.48M; 34.57M with fusion kernel 7 as in 8x8),
27.6 GMACs at 32x224 and 36.1 at 32x256 (the paper's 36.1 GFLOPs per 256 view; pytorchvideo's fvcore count
36.69 adds BN and pooling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgevid.models.base import VideoHead, VideoModel
from edgevid.models.i3d import (
    BasicBlock3d,
    Bottleneck3d,
    ResBlock3d,
    check_temporal_kernels,
    make_stage,
    time_conv,
)
from edgevid.models.init import init_weights
from edgevid.models.layers import linear_drop_path_rates
from edgevid.models.registry import register_model
from edgevid.models.video_resnet import check_stage_values

SLOW_TEMPORAL_KERNELS = ((1,), (1,), (3,), (3,))
FAST_TEMPORAL_KERNELS = ((3,), (3,), (3,), (3,))


def _stem(cout: int, temporal_kernel: int) -> nn.Sequential:
    return nn.Sequential(time_conv(3, cout, (temporal_kernel, 7, 7), (1, 2, 2)), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))


class LateralFusion(nn.Module):
    """Fast -> Slow lateral connection: time-strided (k, 1, 1) conv, BN, ReLU."""

    def __init__(self, channels: int, ratio: int, kernel: int, alpha: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels * ratio, (kernel, 1, 1), stride=(alpha, 1, 1),
                              padding=(kernel // 2, 0, 0), bias=False)
        self.bn = nn.BatchNorm3d(channels * ratio)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(fast)))


class SlowFast(VideoModel):
    """Two-pathway ResNet with lateral fusion (see the module docstring).

    Args:
        block, layers: ``Bottleneck3d`` and (3, 4, 6, 3) for R50, ``BasicBlock3d`` and (2, 2, 2, 2) for R18.
        alpha: frame-rate ratio Fast / Slow (the Slow pathway's time stride).
        beta_inv: channel ratio Slow / Fast.
        fusion_ratio: lateral conv output channels per Fast channel.
        fusion_kernel: temporal kernel of the lateral conv (5 in PySlowFast's 4x16 config, 7 in 8x8).
        slow_temporal_kernels, fast_temporal_kernels: per-stage kernel bases (the stems use 1 and 5).
        dropout: before the classifier (0.5 in PySlowFast).
        drop_path: stochastic-depth rate reached by the last block of each pathway.
    """

    classifier_std = 0.01  # what init_weights gives every linear layer

    def __init__(self, block: ResBlock3d = Bottleneck3d, layers: Sequence[int] = (3, 4, 6, 3),
                 num_classes: int = 400, head: str = "clip", alpha: int = 8, beta_inv: int = 8,
                 fusion_ratio: int = 2, fusion_kernel: int = 5,
                 slow_temporal_kernels: Sequence[Sequence[int]] = SLOW_TEMPORAL_KERNELS,
                 fast_temporal_kernels: Sequence[Sequence[int]] = FAST_TEMPORAL_KERNELS,
                 dropout: float = 0.5, drop_path: float = 0.0) -> None:
        super().__init__()
        layers = check_stage_values("layers", layers)
        alpha, beta_inv, fusion_ratio, fusion_kernel = check_stage_values(
            "alpha, beta_inv, fusion_ratio, fusion_kernel", (alpha, beta_inv, fusion_ratio, fusion_kernel))
        if fusion_kernel % 2 == 0:
            raise ValueError(f"fusion_kernel must be odd (centred on the Slow pathway's frames), got {fusion_kernel}")
        slow_kernels = check_temporal_kernels(slow_temporal_kernels)
        fast_kernels = check_temporal_kernels(fast_temporal_kernels)
        self.alpha = alpha
        self.min_frames = self.frame_multiple = alpha
        slow_width, fast_width = 64, 64 // beta_inv
        self.slow_stem = _stem(slow_width, 1)
        self.fast_stem = _stem(fast_width, 5)
        self.fusions = nn.ModuleList()
        self.slow_layers = nn.ModuleList()
        self.fast_layers = nn.ModuleList()
        rates = linear_drop_path_rates(drop_path, sum(layers))
        slow_rates, fast_rates = iter(rates), iter(rates)
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            self.fusions.append(LateralFusion(fast_width, fusion_ratio, fusion_kernel, alpha))
            self.slow_layers.append(make_stage(block, slow_width + fast_width * fusion_ratio, planes, blocks,
                                               slow_kernels[index], stride, slow_rates))
            self.fast_layers.append(make_stage(block, fast_width, planes // beta_inv, blocks,
                                               fast_kernels[index], stride, fast_rates))
            slow_width, fast_width = planes * block.expansion, planes // beta_inv * block.expansion
        self.num_features = slow_width + fast_width
        self.head = VideoHead(self.num_features, num_classes, head, dropout=dropout)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        slow, fast = self.slow_stem(x[:, :, :: self.alpha]), self.fast_stem(x)
        for fuse, slow_layer, fast_layer in zip(self.fusions, self.slow_layers, self.fast_layers, strict=True):
            slow = slow_layer(torch.cat([slow, fuse(fast)], dim=1))
            fast = fast_layer(fast)
        fast = F.avg_pool3d(fast, (self.alpha, 1, 1), stride=(self.alpha, 1, 1))
        return torch.cat([slow, fast], dim=1)


@register_model("slowfast_r50", family="slowfast", frames=32, size=224, sampling_stride=2)
def slowfast_r50(num_classes: int = 400, head: str = "clip", **overrides) -> SlowFast:
    """SlowFast-R50 4x16 (alpha 8, beta 1/8, lateral kernel 5): 32 frames every 2nd; Slow sees 4 of them."""
    overrides.setdefault("layers", (3, 4, 6, 3))
    return SlowFast(Bottleneck3d, num_classes=num_classes, head=head, **overrides)


@register_model("slowfast_r18", family="slowfast", frames=32, size=224, sampling_stride=2)
def slowfast_r18(num_classes: int = 400, head: str = "clip", **overrides) -> SlowFast:
    """Compact SlowFast with ResNet-18 basic blocks (kt x3x3 then 1x3x3), same pathways and fusion as the R50."""
    overrides.setdefault("layers", (2, 2, 2, 2))
    return SlowFast(BasicBlock3d, num_classes=num_classes, head=head, **overrides)
