"""Layers shared across families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv3d(nn.Conv3d):
    """A Conv3d whose temporal padding is all on the past side: output frame t sees input frames <= t.

    Streaming (``edgevid.models.streaming``) replaces it by a stateful conv that keeps the last
    ``causal_pad`` input frames, so causal models give identical logits clip-wise and frame by frame.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.causal_pad = (self.kernel_size[0] - 1) * self.dilation[0]
        self.padding = (0, self.padding[1], self.padding[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal_pad:
            x = F.pad(x, (0, 0, 0, 0, self.causal_pad, 0))
        return super().forward(x)


def conv3d(in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
           bias: bool = False, causal: bool = False) -> nn.Conv3d:
    """``nn.Conv3d``, or :class:`CausalConv3d` when ``causal`` and the kernel spans more than one frame."""
    kt = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
    cls = CausalConv3d if causal and kt > 1 else nn.Conv3d
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias)


class DropPath(nn.Module):
    """Stochastic depth: during training, zero a residual branch for whole samples and rescale the rest.

    With ``frames > 1`` the input holds clips folded as [N*T, ...]; all frames of a clip share one draw.
    """

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop_path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty(x.shape[0] // frames).bernoulli_(keep).div_(keep).repeat_interleave(frames)
        return x * mask.view(-1, *(1,) * (x.dim() - 1))

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def linear_drop_path_rates(rate: float, blocks: int) -> list[float]:
    """Stochastic depth rates increasing linearly from 0 (first block) to ``rate`` (last block)."""
    return [rate * i / max(blocks - 1, 1) for i in range(blocks)]
