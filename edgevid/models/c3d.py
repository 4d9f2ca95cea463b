"""C3D (Tran et al. 2015): eight 3x3x3 convs, max pooling, and two 4096-wide fully connected layers.

The original fc6 flattens the pooled 512 x 1 x 4 x 4 map of a 16x112x112 clip (8192 inputs), which ties the
network to that input size. Here fc6 is the same layer written as a convolution with a (1, 4, 4) kernel
(``fc6_grid``) and fc7 as a 1x1x1 convolution: at the default input they compute exactly the classic C3D
(same parameters; a Caffe fc6 weight [4096, 8192] reshapes to [4096, 512, 1, 4, 4]); on longer or larger
clips they slide over the pooled map, so ``forward_features`` returns a [B, 4096, T', H', W'] map that serves
the clip, frame, dense and features heads alike, and fc8 is the shared :class:`VideoHead`.
Pooling uses ceil mode as Caffe did (7 -> 4 at pool5), so any clip length works.

At 400 classes and 16x112: 79.63M parameters, 38.55 GMACs. (The 64.9M sometimes quoted corresponds to an fc6
over a 3x3 pooled map, 4608 inputs, i.e. pool5 without Caffe's ceil rounding.)
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from edgevid.models.base import VideoHead, VideoModel, _exporting
from edgevid.models.registry import register_model

_CONV_PLAN = (  # (name, out channels, pool after it: None or the pooling kernel/stride)
    ("conv1a", 64, (1, 2, 2)),
    ("conv2a", 128, (2, 2, 2)),
    ("conv3a", 256, None),
    ("conv3b", 256, (2, 2, 2)),
    ("conv4a", 512, None),
    ("conv4b", 512, (2, 2, 2)),
    ("conv5a", 512, None),
    ("conv5b", 512, (2, 2, 2)),
)
_SPATIAL_REDUCTION = 32


class C3D(VideoModel):
    """C3D with a convolutional fc6/fc7 (see the module docstring).

    Args:
        fc_dim: width of fc6 and fc7.
        fc6_grid: spatial extent of fc6's kernel; the pooled map must be at least this large
            (input H, W >= 32 * (fc6_grid - 1) + 1).
        dropout: after fc6 and fc7 (0.5 in the paper).
    """

    def __init__(self, num_classes: int = 400, head: str = "clip", fc_dim: int = 4096, fc6_grid: int = 4,
                 dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        cin = 3
        for name, cout, pool in _CONV_PLAN:
            layers += [(name, nn.Conv3d(cin, cout, 3, padding=1)), (f"relu{name[4:]}", nn.ReLU(inplace=True))]
            if pool is not None:
                layers.append((f"pool{name[4]}", nn.MaxPool3d(pool, stride=pool, ceil_mode=True)))
            cin = cout
        self.features = nn.Sequential(OrderedDict(layers))
        self.fc6_grid = fc6_grid
        self.fc6 = nn.Sequential(nn.Conv3d(cin, fc_dim, (1, fc6_grid, fc6_grid)), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Conv3d(fc_dim, fc_dim, 1), nn.ReLU(inplace=True))
        self.num_features = fc_dim
        self.head = VideoHead(fc_dim, num_classes, head, dropout=dropout)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        smallest = _SPATIAL_REDUCTION * (self.fc6_grid - 1) + 1
        if not _exporting() and min(x.shape[3:]) < smallest:
            raise ValueError(f"C3D with fc6_grid={self.fc6_grid} expects H and W >= {smallest}, "
                             f"got {list(x.shape[3:])}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc7(self.fc6(self.features(x)))


@register_model("c3d", family="c3d", frames=16, size=112, sampling_stride=1)
def c3d(num_classes: int = 400, head: str = "clip", **overrides) -> C3D:
    """C3D (Tran 2015): 8 plain 3x3x3 convs + fc6/fc7 4096; 16 consecutive frames x 112 (Sports-1M recipe)."""
    return C3D(num_classes, head, **overrides)
