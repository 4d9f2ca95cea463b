"""Layers shared across families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevid.models.base import _exporting


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
        return conv3d_forward(self, x)


class DepthwiseConv3d(nn.Conv3d):
    """A depthwise Conv3d that trains faster on CPU (see :func:`conv3d_forward`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3d_forward(self, x)


def _is_plain_depthwise(conv: nn.Conv3d) -> bool:
    return (conv.groups == conv.in_channels == conv.out_channels and conv.stride[0] == 1
            and conv.dilation == (1, 1, 1) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


def conv3d_forward(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``; a depthwise kernel training on CPU runs as a sum of depthwise Conv2d over its temporal taps.

    PyTorch's native depthwise Conv3d has no fast CPU backward (about 3.5x slower than this on X3D's shapes); the
    result is the same. Only in training mode: evaluation, export and Torch-Pruning's tracing (which runs the
    model in eval mode) see the single Conv3d.
    """
    if not conv.training or x.device.type != "cpu" or not _is_plain_depthwise(conv) or _exporting():
        return conv._conv_forward(x, conv.weight, conv.bias)
    pad_t, pad_h, pad_w = conv.padding
    if pad_t:
        x = F.pad(x, (0, 0, 0, 0, pad_t, pad_t))
    batch, channels, frames = x.shape[:3]
    kt = conv.kernel_size[0]
    out_frames = frames - kt + 1
    frames_first = x.transpose(1, 2)
    out = None
    for tap in range(kt):
        window = frames_first[:, tap:tap + out_frames].reshape(batch * out_frames, channels, *x.shape[3:])
        term = F.conv2d(window, conv.weight[:, :, tap], None, conv.stride[1:], (pad_h, pad_w), groups=channels)
        out = term if out is None else out + term
    if conv.bias is not None:
        out = out + conv.bias.view(1, -1, 1, 1)
    return out.reshape(batch, out_frames, channels, *out.shape[2:]).transpose(1, 2)


def conv3d(in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
           bias: bool = False, causal: bool = False) -> nn.Conv3d:
    """``nn.Conv3d``; :class:`CausalConv3d` when ``causal`` and the kernel spans frames; else
    :class:`DepthwiseConv3d` for depthwise kernels."""
    kt = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
    if causal and kt > 1:
        cls = CausalConv3d
    elif groups > 1 and groups == in_channels == out_channels:
        cls = DepthwiseConv3d
    else:
        cls = nn.Conv3d
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
