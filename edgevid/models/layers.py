"""Layers shared across families."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevid.models.base import _exporting


class ChannelwiseOp(nn.Module):
    """A parameter-free op that keeps channel c at channel c (a temporal shift): structured pruning (Torch-Pruning's
    dependency graph) passes through it as if it were not there."""


class TemporalLayer:
    """What a layer that mixes frames tells the streaming conversion (:mod:`edgevid.models.streaming`)."""

    def streaming_issue(self) -> str | None:
        """Why this layer cannot run one frame at a time (it looks at future frames), or None."""
        return None

    def input_frames(self, args: tuple) -> int:
        """How many frames the forward call with positional ``args`` gets."""
        return args[0].shape[2]


class CausalConv3d(TemporalLayer, nn.Conv3d):
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


# A depthwise conv over at most this many input positions (T*H*W) trains as one matmul per channel.
_MATMUL_MAX_POSITIONS = 64


def conv3d_forward(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``; a depthwise kernel training on CPU runs on faster CPU kernels with the same result.

    PyTorch's native depthwise Conv3d has no fast CPU backward, and oneDNN's depthwise Conv2d backward is slowest
    on tiny maps (7 ms for [64, 432, 2, 2]). So in training: small inputs and temporal-only kernels (k, 1, 1) run
    as a per-channel matmul with the unrolled kernel; the rest as a sum of depthwise Conv2d over the temporal taps.
    Together about 1.4x faster for an X3D-XS training step at 4x64x64. Evaluation, export and Torch-Pruning's
    tracing (which runs the model in eval mode) see the single Conv3d.
    """
    if not conv.training or x.device.type != "cpu" or not _is_plain_depthwise(conv) or _exporting():
        return conv._conv_forward(x, conv.weight, conv.bias)
    temporal_only = conv.kernel_size[1:] == (1, 1) and conv.stride[1:] == (1, 1) and conv.padding[1:] == (0, 0)
    if temporal_only or x.shape[2:].numel() <= _MATMUL_MAX_POSITIONS:
        out = _depthwise_matmul(conv, x, dims=1 if temporal_only else 3)
    else:
        out = _depthwise_conv2d_taps(conv, x)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1, 1)


@functools.lru_cache(maxsize=64)
def _unrolled_taps(in_size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
                   padding: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """0/1 matrix [taps, O*I]: entry (k, o, i) is 1 where kernel tap k links output o to input i; output size."""
    out_size = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(in_size, kernel, stride, padding, strict=True))
    ndim = len(in_size)
    outputs = np.stack(np.meshgrid(*map(np.arange, out_size), indexing="ij"), -1).reshape(-1, 1, ndim)
    taps = np.stack(np.meshgrid(*map(np.arange, kernel), indexing="ij"), -1).reshape(1, -1, ndim)
    source = outputs * np.array(stride) - np.array(padding) + taps
    out_idx, tap_idx = np.nonzero(np.all((source >= 0) & (source < np.array(in_size)), axis=-1))
    unrolled = np.zeros((taps.shape[1], outputs.shape[0], math.prod(in_size)), dtype=np.float32)
    unrolled[tap_idx, out_idx, np.ravel_multi_index(tuple(source[out_idx, tap_idx].T), in_size)] = 1
    return torch.from_numpy(unrolled.reshape(taps.shape[1], -1)), out_size


def _depthwise_matmul(conv: nn.Conv3d, x: torch.Tensor, dims: int) -> torch.Tensor:
    """Depthwise conv as one [O, I] matrix per channel over the flattened (T, H, W) (``dims=3``) or over T at every
    pixel (``dims=1``)."""
    batch, channels = x.shape[:2]
    in_size = tuple(x.shape[2:2 + dims])
    unrolled, out_size = _unrolled_taps(in_size, conv.kernel_size[:dims], conv.stride[:dims], conv.padding[:dims])
    weight = conv.weight.reshape(channels, -1) @ unrolled.to(conv.weight.dtype)
    weight = weight.view(channels, math.prod(out_size), math.prod(in_size))
    if dims == 3:
        out = torch.bmm(x.reshape(batch, channels, -1).transpose(0, 1), weight.transpose(1, 2))
        return out.transpose(0, 1).reshape(batch, channels, *out_size)
    out = torch.matmul(weight, x.reshape(batch, channels, in_size[0], -1))
    return out.view(batch, channels, *out_size, *x.shape[3:])


def _depthwise_conv2d_taps(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """Depthwise Conv3d as the sum over temporal taps of depthwise Conv2d on frames folded into the batch.

    Each tap convolves only the frames it reaches, so no temporally padded copy of ``x`` is made (1.4x faster on
    [16, 54, 4, 32, 32] than padding first); the centre tap, which reaches every output frame, starts the sum.
    """
    pad_t, kernel_t = conv.padding[0], conv.kernel_size[0]
    batch, channels, frames = x.shape[:3]
    out_frames = frames + 2 * pad_t - kernel_t + 1
    frames_first = x.transpose(1, 2)
    out = None
    for tap in sorted(range(kernel_t), key=lambda k: abs(k - pad_t)):
        first, last = max(0, pad_t - tap), min(out_frames, frames + pad_t - tap)  # output frames the tap reaches
        if first >= last:
            continue
        window = frames_first[:, first + tap - pad_t:last + tap - pad_t].reshape(-1, channels, *x.shape[3:])
        term = F.conv2d(window, conv.weight[:, :, tap], None, conv.stride[1:], conv.padding[1:], groups=channels)
        term = term.view(batch, last - first, *term.shape[1:])
        if out is None:
            out = F.pad(term, (0, 0, 0, 0, 0, 0, first, out_frames - last))
        else:
            out[:, first:last] += term
    return out.transpose(1, 2)


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
