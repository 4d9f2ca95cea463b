"""TSM: Temporal Shift Module (Lin et al. 2019) on 2D ResNet and MobileNetV2 backbones.

Frames are folded into the batch and run through a 2D backbone; in the residual branch of each block
("blockres" placement) a :class:`TemporalShift` moves a fraction of the channels along time at zero cost.
The shift stays on the 4D [N*T, C, H, W] tensor: channel slices shifted by one along the folded batch axis (a
constant Pad), with a 0/1 mask per frame zeroing what would cross from one clip into the next. No 5D view: a
reshape to [N, T, C, H, W] makes OpenVINO convert its channels-last activations to a plain layout and back
around every shift (a third of TSM-R18's INT8 time went to those reorders). Built only from slicing, padding,
a product and ``torch.cat`` with ``N`` and ``T`` from the input at run time, so exported graphs accept any
batch and clip length.

For INT8 exports (:func:`edgevid.models.base.int8_graph`) the same shift is a ``Split`` and a ``Gather`` of rows
from the padded tensor: NNCF moves quantizers through both (not through ``Slice`` or the mask's product), so the
whole shift, the max-pool and the stem's output run in INT8. On a 2-core AMX Xeon, TSM-R18 8x224 INT8 took 11.8 ms
this way against 14.9 ms in the float form (BF16: 17.0 ms in the float form, 20.5 ms as a Gather, which OpenVINO
runs in a plain layout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevid.models.base import IMAGENET_MEAN, IMAGENET_STD, VideoHead, VideoModel
from edgevid.models.init import init_linear
from edgevid.models.layers import ChannelwiseOp, TemporalLayer
from edgevid.models.mobilenetv2 import MobileNetV2
from edgevid.models.registry import register_model
from edgevid.models.resnet2d import resnet2d

SHIFT_MODES = ("bidirectional", "online")


class TemporalShift(TemporalLayer, ChannelwiseOp):
    """Shift channels along time on a [N*T, C, H, W] tensor; frames at the clip ends are zero-filled.

    ``bidirectional`` (as mit-han-lab's TSM): channels ``[0, C/fold_div)`` of frame t come from frame t+1,
    channels ``[C/fold_div, 2C/fold_div)`` from frame t-1, the rest stay. ``online`` (past only): channels
    ``[0, C/fold_div)`` come from frame t-1, the rest stay, which is what a frame-by-frame model reproduces
    by caching those channels of the previous frame (the shift buffer).
    """

    def __init__(self, fold_div: int = 8, mode: str = "bidirectional") -> None:
        super().__init__()
        if mode not in SHIFT_MODES:
            raise ValueError(f"shift mode must be one of {', '.join(SHIFT_MODES)}, got {mode!r}")
        if fold_div < 1:
            raise ValueError(f"fold_div must be >= 1, got {fold_div}")
        self.fold_div = fold_div
        self.mode = mode
        self.int8_form = False  # see edgevid.models.base.int8_graph

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        nt, c, _, _ = x.shape
        fold = c // self.fold_div
        clips = nt // frames
        sizes = [fold, c - fold] if self.mode == "online" else [fold, fold, c - 2 * fold]
        if self.int8_form:
            parts = list(x.split(sizes, dim=1))
        else:
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            parts = [x[:, start:start + size] for start, size in zip(starts, sizes, strict=True)]
        if self.mode == "online":
            return torch.cat((self._shifted(parts[0], clips, frames, -1), parts[1]), dim=1)
        return torch.cat((self._shifted(parts[0], clips, frames, 1), self._shifted(parts[1], clips, frames, -1),
                          parts[2]), dim=1)

    def _shifted(self, part: torch.Tensor, clips: int, frames: int, offset: int) -> torch.Tensor:
        """Frame t of ``part`` takes frame t + ``offset`` (-1 or +1) of its clip; zeros where that is outside."""
        edge = (1, 0) if offset < 0 else (0, 1)
        if self.int8_form:
            t = torch.arange(frames, device=part.device)
            source = torch.arange(clips, device=part.device)[:, None] * frames + t + offset
            index = torch.where(t == (0 if offset < 0 else frames - 1), part.shape[0], source).reshape(-1)
            return F.pad(part, (0, 0, 0, 0, 0, 0, 0, 1)).index_select(0, index)  # row N*T: zeros
        inside = F.pad(part.new_ones(clips, frames - 1), edge).reshape(-1, 1, 1, 1)
        moved = part[:-1] if offset < 0 else part[1:]
        return F.pad(moved, (0, 0, 0, 0, 0, 0, *edge)) * inside

    def streaming_issue(self) -> str | None:
        if self.mode == "online":
            return None
        return f"shifts in {self.mode!r} mode (future frames); build TSM with shift_mode='online'"

    def input_frames(self, args: tuple) -> int:
        return args[1]  # forward(x [N*T, C, H, W], frames)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}, mode={self.mode!r}"


class TSM(VideoModel):
    """A 2D backbone with temporal shifts; [B, 3, T, H, W] in, time kept (no temporal downsampling).

    ``backbone`` provides ``forward_features(x, frames)``, ``residual_blocks()`` (blocks with a ``temporal``
    hook) and ``num_features``.
    """

    classifier_std = 0.001  # the TSM authors' init of the new fc

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "clip", shift_mode: str = "bidirectional",
                 fold_div: int = 8, dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        for block in backbone.residual_blocks():
            block.temporal = TemporalShift(fold_div, shift_mode)
        self.num_features = backbone.num_features
        self.head = VideoHead(self.num_features, num_classes, head, dropout=dropout)
        init_linear(self.head.fc, self.classifier_std)

    @property
    def shift_mode(self) -> str:
        return self.backbone.residual_blocks()[0].temporal.mode

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        _, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(-1, c, h, w)
        feats = self.backbone.forward_features(frames, t)
        return feats.reshape(-1, t, *feats.shape[1:]).transpose(1, 2)


_TSM_SPEC = dict(family="tsm", frames=8, size=224, sampling_stride=8, mean=IMAGENET_MEAN, std=IMAGENET_STD)
_SEGMENTS = "8 TSN-style segments: one frame from each eighth of the video (sampling rate 8 for fixed-stride loaders)"


@register_model("tsm_r18", description=f"TSM ResNet-18, {_SEGMENTS}", **_TSM_SPEC)
def tsm_r18(num_classes: int = 400, head: str = "clip", drop_path: float = 0.0, **overrides) -> TSM:
    return TSM(resnet2d("resnet18", num_classes=0, drop_path=drop_path), num_classes, head, **overrides)


@register_model("tsm_r50", description=f"TSM ResNet-50, {_SEGMENTS}", **_TSM_SPEC)
def tsm_r50(num_classes: int = 400, head: str = "clip", drop_path: float = 0.0, **overrides) -> TSM:
    return TSM(resnet2d("resnet50", num_classes=0, drop_path=drop_path), num_classes, head, **overrides)


@register_model("tsm_mobilenetv2", description=f"TSM MobileNetV2 (online-capable), {_SEGMENTS}", **_TSM_SPEC)
def tsm_mobilenetv2(num_classes: int = 400, head: str = "clip", drop_path: float = 0.0, width_mult: float = 1.0,
                    **overrides) -> TSM:
    backbone = MobileNetV2(num_classes=0, width_mult=width_mult, drop_path=drop_path)
    return TSM(backbone, num_classes, head, **overrides)
