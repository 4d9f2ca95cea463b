"""Streaming forms of causal video models: one new frame costs one frame of compute (MoViNet stream buffers).

``to_streaming(model)`` turns a causal model into a :class:`StreamingModel` whose forward is
``(frame [B, 3, 1, H, W], *states) -> (logits, *new_states)``. After frames 0..t its logits equal the causal
model's clip logits on frames 0..t. The states, all explicit tensors so that exported graphs carry them as
inputs and outputs, are (in this order):

- ``buffer``: per :class:`~edgevid.models.layers.CausalConv3d`, the last ``causal_pad`` frames of its input,
  one channels-last tensor [B, 1, H, W, C] per frame, oldest first (the conv runs on them + the new frame with no
  temporal padding); per online ``TemporalShift`` (TSM), the first ``C / fold_div`` channels of the previous
  frame, channels-last [B, H, W, C / fold_div];
- ``sum`` / ``count``: per cumulative mean (causal squeeze-excitation, and the global pool before the head), the
  running sum of spatial means and the number of frames summed;
- ``step``: the number of frames seen, shape [1].

Temporal strides (causal R(2+1)D keeps the reference's strides 2 in time) are handled with ``step``: a layer whose
input runs at ``rate`` (the product of the temporal strides before it) only advances its state on steps where
``step % rate == 0``, which are exactly the frames the strided causal convs keep (output j ends at input frame
``stride * j``). Initial states are zeros (:meth:`StreamingModel.initial_states`).

Of a conv's frame buffers only the newest is computed; the older ones move up by one frame (next ``buffer.X.i`` is
``buffer.X.{i+1}`` on the layer's active steps). Those moves are copies, so exported graphs leave them out
(:class:`StreamingGraph`) and the runtimes make them by passing buffers along: ``StateSpec.shifted_from``.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgevid.models.base import VideoModel, _exporting
from edgevid.models.layers import CausalConv3d, TemporalLayer
from edgevid.models.tsm import TemporalShift
from edgevid.models.x3d import CumulativeTemporalMean, GlobalMean

PROBE_FRAMES = 16
PROBE_SIZE = 224


@dataclass(frozen=True)
class StateSpec:
    """One state tensor: its name, kind (buffer/sum/count/step), the module it belongs to, and its rate.

    ``shifted_from`` names the state whose current value becomes this one's next value on active steps (an older
    frame buffer of a causal conv); such states are not outputs of :class:`StreamingGraph`.
    """

    name: str
    kind: str
    module: str
    rate: int
    shifted_from: str | None = None


class _StreamContext:
    """Passes one step's input states to the stream modules and collects their new states."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.inputs: tuple[torch.Tensor, ...] | None = None
        self.outputs: list[torch.Tensor | None] = [None] * count
        self.step: torch.Tensor | None = None

    def state(self, slot: int, shape: list[int], like: torch.Tensor) -> torch.Tensor:
        """The input state of ``slot``; zeros of ``shape`` when probing shapes (no inputs given)."""
        if self.inputs is None:
            return like.new_zeros(shape)
        return self.inputs[slot]

    def update(self, slot: int, rate: int, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """Record and return the new state; at a ``rate`` > 1 it only advances on steps where
        ``step % rate == 0`` (else it stays ``old``)."""
        if rate > 1:
            active = (torch.remainder(self.step, rate) == 0).reshape([1] * new.dim())
            new = torch.where(active, new, old)
        self.outputs[slot] = new
        return new


class StreamConv3d(nn.Module):
    """A causal conv on one frame, with the last ``causal_pad`` input frames as its state.

    The state is one channels-last [B, 1, H, W, C] tensor per past frame (oldest first), and the conv is the sum
    over its temporal taps of one-frame convs. No frame stack is concatenated or sliced, and channels-last
    states match the blocked layouts of graph runtimes (OpenVINO fuses the permutes away instead of converting
    layouts at every step).
    """

    def __init__(self, conv: CausalConv3d, ctx: _StreamContext, slot: int, rate: int) -> None:
        super().__init__()
        self.conv = conv
        self.ctx = ctx
        self.slot = slot
        self.rate = rate
        self.pad = conv.causal_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, h, w = x.shape
        history = [self.ctx.state(self.slot + i, [b, 1, h, w, c], x) for i in range(self.pad)]
        window = [*(frame.permute(0, 4, 1, 2, 3) for frame in history), x]
        conv = self.conv
        stride, padding, dilation = (1, *conv.stride[1:]), (0, *conv.padding[1:]), (1, *conv.dilation[1:])
        out = None
        for tap in range(conv.kernel_size[0]):
            term = F.conv3d(window[tap * conv.dilation[0]], conv.weight[:, :, tap:tap + 1], None, stride, padding,
                            dilation, conv.groups)
            out = term if out is None else out + term
        kept = [*history[1:], x.permute(0, 2, 3, 4, 1)]
        for i, old in enumerate(history):
            self.ctx.update(self.slot + i, self.rate, kept[i], old)
        return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1, 1)


class StreamShift(nn.Module):
    """Online temporal shift on one frame [B, C, H, W]: the first ``C / fold_div`` channels come from the
    previous frame (the shift buffer, kept channels-last [B, H, W, C / fold_div]), the rest stay."""

    def __init__(self, shift: TemporalShift, ctx: _StreamContext, slot: int, rate: int) -> None:
        super().__init__()
        self.fold_div = shift.fold_div
        self.ctx = ctx
        self.slot = slot
        self.rate = rate

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        b, c, h, w = x.shape
        fold = c // self.fold_div
        state = self.ctx.state(self.slot, [b, h, w, fold], x)
        self.ctx.update(self.slot, self.rate, x[:, :fold].permute(0, 2, 3, 1), state)
        return torch.cat((state.permute(0, 3, 1, 2), x[:, fold:]), dim=1)


class StreamCumulativeMean(nn.Module):
    """Cumulative mean over space and the frames so far: state = running sum of spatial means and a count."""

    def __init__(self, ctx: _StreamContext, slot: int, rate: int) -> None:
        super().__init__()
        self.ctx = ctx
        self.slot = slot
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, 1, H, W] -> [B, C, 1, 1, 1], as :class:`CumulativeTemporalMean` for the newest frame."""
        pooled = x.mean(dim=(2, 3, 4), keepdim=True)
        total_in = self.ctx.state(self.slot, list(pooled.shape), pooled)
        count_in = self.ctx.state(self.slot + 1, [pooled.shape[0], 1, 1, 1, 1], pooled)
        total = self.ctx.update(self.slot, self.rate, total_in + pooled, total_in)
        count = self.ctx.update(self.slot + 1, self.rate, count_in + 1, count_in)
        return total / count


class StreamingModel(nn.Module):
    """``(frame [B, 3, 1, H, W], *states) -> (logits, *new_states)``; see the module docstring.

    For convenience it also keeps states itself: :meth:`step` feeds one frame and :meth:`reset` starts over.
    """

    def __init__(self, model: VideoModel, specs: list[StateSpec], pool: StreamCumulativeMean,
                 ctx: _StreamContext) -> None:
        super().__init__()
        self.model = model
        self.pool = pool
        self.specs = specs
        self.ctx = ctx
        self._shapes: dict[tuple[int, int], list[list[int]]] = {}
        self._states: list[torch.Tensor] | None = None

    @property
    def state_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def forward(self, frame: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not _exporting():
            if frame.dim() != 5 or frame.shape[1] != 3 or frame.shape[2] != 1:
                raise ValueError(f"streaming model expects one frame [B, 3, 1, H, W], got {list(frame.shape)}")
            if states and len(states) != len(self.specs):
                raise ValueError(f"streaming model expects {len(self.specs)} states, got {len(states)}")
        ctx = self.ctx
        ctx.inputs = states or None
        ctx.outputs = [None] * ctx.count
        ctx.step = states[-1] if states else frame.new_zeros(1)
        try:
            pooled = self.pool(self.model.forward_features(frame))
            logits = self.model.forward_head(pooled, "clip")
            ctx.outputs[-1] = ctx.step + 1
            return (logits, *ctx.outputs)
        finally:
            ctx.inputs = ctx.step = None

    @property
    def computed_states(self) -> list[StateSpec]:
        """The states whose next values the model computes (all but the shifted frame buffers)."""
        return [spec for spec in self.specs if spec.shifted_from is None]

    def state_shapes(self, batch: int, size: int | tuple[int, int]) -> list[list[int]]:
        """Shapes of the states for ``batch`` frames of ``size`` (found by one probe step, then cached)."""
        h, w = (size, size) if isinstance(size, int) else size
        key = (batch, h, w)
        if key not in self._shapes:
            param = next(self.parameters())
            with torch.no_grad():
                outputs = self.forward(torch.zeros(batch, 3, 1, h, w, dtype=param.dtype, device=param.device))
            self._shapes[key] = [list(t.shape) for t in outputs[1:]]
        return self._shapes[key]

    def initial_states(self, batch: int, size: int | tuple[int, int]) -> list[torch.Tensor]:
        """Zero states for a new stream of ``batch`` clips of frames ``size`` x ``size``."""
        param = next(self.parameters())
        return [torch.zeros(shape, dtype=param.dtype, device=param.device)
                for shape in self.state_shapes(batch, size)]

    def reset(self) -> None:
        """Forget the stream :meth:`step` keeps; the next frame starts from zero states."""
        self._states = None

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """Feed one frame [B, 3, 1, H, W] through the internally kept states; returns the clip logits so far."""
        if self._states is None:
            self._states = self.initial_states(frame.shape[0], (frame.shape[3], frame.shape[4]))
        logits, *self._states = self.forward(frame, *self._states)
        return logits


class StreamingGraph(nn.Module):
    """What streaming exports contain: ``(frame, *states) -> (logits, *computed new states)``, without the
    shifted frame buffers (``StateSpec.shifted_from``), whose next values are inputs already."""

    def __init__(self, streaming: StreamingModel) -> None:
        super().__init__()
        self.streaming = streaming
        self.computed = [spec.shifted_from is None for spec in streaming.specs]

    def forward(self, frame: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, *new_states = self.streaming(frame, *states)
        return (logits, *(state for state, keep in zip(new_states, self.computed, strict=True) if keep))


# ----------------------------------------------------------------------------------------------- conversion
_NOT_CAUSAL = ("{name}: streaming needs a causal model (build it with `causal: true` in the recipe's "
               "model.overrides; TSM with `shift_mode: online`); {detail}")


def check_streamable(model: nn.Module) -> None:
    """Raise ``ValueError`` naming the first module that looks at future frames or breaks one-frame steps."""
    name = type(model).__name__
    for path, module in model.named_modules():
        detail = None
        if isinstance(module, nn.Conv3d) and not isinstance(module, CausalConv3d) and module.kernel_size[0] > 1:
            detail = f"{path} is a non-causal temporal conv (kernel {tuple(module.kernel_size)})"
        elif isinstance(module, TemporalLayer) and module.streaming_issue():
            detail = f"{path} {module.streaming_issue()}"
        elif isinstance(module, GlobalMean):
            detail = f"{path} pools over the whole clip (squeeze-excitation of a non-causal X3D)"
        elif isinstance(module, (nn.MaxPool3d, nn.AvgPool3d)) and _as_tuple(module.kernel_size)[0] > 1:
            detail = f"{path} pools over time (kernel {module.kernel_size})"
        elif isinstance(module, (nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)):
            detail = f"{path} pools adaptively over time"
        if detail:
            raise ValueError(_NOT_CAUSAL.format(name=name, detail=detail))


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,) * 3


def _stream_targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(p, m) for p, m in model.named_modules()
            if isinstance(m, (CausalConv3d, TemporalShift, CumulativeTemporalMean))]


def input_rates(model: VideoModel) -> tuple[dict[str, int], int]:
    """The temporal rate (product of the temporal strides before it) of each stateful module's input, and of
    the features, from a probe clip of ``PROBE_FRAMES`` frames run on the meta device (no compute)."""
    seen: dict[str, int] = {}
    hooks = []
    for path, module in [*_stream_targets(model), ("", model.head)]:
        def record(mod, args, path=path):
            seen[path] = mod.input_frames(args) if isinstance(mod, TemporalLayer) else args[0].shape[2]
        hooks.append(module.register_forward_pre_hook(record))
    tensors = {name: torch.empty_like(t, device="meta")
               for name, t in [*model.named_parameters(), *model.named_buffers()]}
    probe = torch.empty(1, 3, PROBE_FRAMES, PROBE_SIZE, PROBE_SIZE, device="meta")
    try:
        with torch.no_grad():
            torch.func.functional_call(model, tensors, (probe,))
    finally:
        for hook in hooks:
            hook.remove()
    rates = {}
    for path, length in seen.items():
        if PROBE_FRAMES % length:
            raise ValueError(f"{type(model).__name__}: {path or 'features'} gets {length} of {PROBE_FRAMES} probe "
                             "frames; only power-of-two temporal strides can stream")
        rates[path] = PROBE_FRAMES // length
    return rates, rates.pop("")


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, attr, new)


def to_streaming(model: VideoModel) -> StreamingModel:
    """The streaming form of a causal model (copied; ``model`` is left as it is), in eval mode.

    Raises ``ValueError`` for models that look at future frames (see :func:`check_streamable`).
    """
    if not isinstance(model, VideoModel):
        raise ValueError(f"to_streaming needs an edgevid VideoModel, got {type(model).__name__}")
    check_streamable(model)
    rates, feature_rate = input_rates(model.eval())
    stream = copy.deepcopy(model).eval()
    targets = _stream_targets(stream)
    specs: list[StateSpec] = []
    ctx = _StreamContext(0)
    for path, module in targets:
        rate = rates[path]
        if isinstance(module, CausalConv3d):
            if module.causal_pad:
                _replace(stream, path, StreamConv3d(module, ctx, len(specs), rate))
                names = [f"buffer.{path}.{i}" for i in range(module.causal_pad)]
                specs += [StateSpec(name, "buffer", path, rate, newer) for name, newer in itertools.pairwise(names)]
                specs.append(StateSpec(names[-1], "buffer", path, rate))
        elif isinstance(module, TemporalShift):
            _replace(stream, path, StreamShift(module, ctx, len(specs), rate))
            specs.append(StateSpec(f"buffer.{path}", "buffer", path, rate))
        else:
            _replace(stream, path, StreamCumulativeMean(ctx, len(specs), rate))
            specs += [StateSpec(f"sum.{path}", "sum", path, rate), StateSpec(f"count.{path}", "count", path, rate)]
    pool = StreamCumulativeMean(ctx, len(specs), feature_rate)
    specs += [StateSpec("sum.pool", "sum", "pool", feature_rate), StateSpec("count.pool", "count", "pool",
                                                                             feature_rate),
              StateSpec("step", "step", "", 1)]
    ctx.count = len(specs)
    return StreamingModel(stream, specs, pool, ctx).eval()
