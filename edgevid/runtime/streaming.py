"""Streaming inference per backend: ``step(frame) -> logits`` with the states kept between calls, ``reset()``.

- :class:`TorchStreamingPredictor`: a causal checkpoint turned into its streaming form
  (:func:`edgevid.models.streaming.to_streaming`);
- :class:`GraphStreamingPredictor`: a streaming export (``edgevid export ... --streaming``) run through the
  ONNX Runtime or TensorRT backend, states fed as named inputs and read back from named outputs;
- :class:`OpenVINOStreamingPredictor`: a streaming OpenVINO IR whose states go from one infer request's outputs
  to the next one's inputs without copies.

The exports leave out the older frame buffers of causal convs (the layout's ``shifted_from``): each is the next
newer buffer one step later, so the predictors pass that buffer along instead of having the graph copy it.

``horizon`` (in model steps) turns the cumulative means into exponential moving averages by scaling every
``sum``/``count`` state by ``1 - 1/horizon`` before each step, so a never-ending camera stream keeps following
what happens now; ``None`` keeps the exact cumulative average (the clip logits of all frames so far).

:func:`edgevid.export.streaming.export_streaming` writes the streaming ONNX / OpenVINO artifacts (states as explicit
inputs/outputs) and checks them frame by frame against the causal model run on the whole clip.
"""

from __future__ import annotations

import dataclasses
import time
from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch

from edgevid.errors import EdgevidError
from edgevid.formats import FORMATS, is_checkpoint
from edgevid.meta import ArtifactMeta
from edgevid.models.streaming import to_streaming
from edgevid.runtime.base import Predictor, load, register_streaming
from edgevid.runtime.openvino_backend import compile_model, execution_precision
from edgevid.runtime.torch_backend import TorchPredictor, torch_execution, torch_inference

FRAME_INPUT = "frame"
LOGITS_OUTPUT = "logits"
DECAYED_KINDS = ("sum", "count")


def next_name(state: str) -> str:
    """Output name of the new value of a state input."""
    return f"next.{state}"


class StreamingPredictor(Predictor):
    """One stream of frames through a streaming model: a :class:`Predictor` whose :meth:`step` takes normalised
    frames [B, 3, 1, S, S] (or [3, 1, S, S]) and keeps the states between calls; :meth:`predict` streams whole clips
    (a new stream per call, the logits after their last frame). :meth:`preprocess` is the one of every Predictor."""

    streaming = True

    def __init__(self, meta: ArtifactMeta, path: Path, device: str, kinds: list[str],
                 horizon: int | None = None, precision: str | None = None) -> None:
        super().__init__(meta, path, device, precision)
        self.kinds = kinds
        self.horizon = horizon
        self._states: list | None = None
        self._batch = 0

    @property
    def horizon(self) -> int | None:
        return self._horizon

    @horizon.setter
    def horizon(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise EdgevidError(f"streaming horizon must be >= 1 step (or None for the cumulative mean), got {value}")
        self._horizon = value

    def _accepts_frames(self, frames: int) -> bool:
        return frames >= 1

    def _run(self, clips: np.ndarray) -> np.ndarray:
        """A new stream per batch of clips, fed frame by frame; the logits after the last frame."""
        self.reset()
        for t in range(clips.shape[2]):
            logits = self.step(clips[:, :, t:t + 1])
        self.reset()
        return logits

    def check_frame(self, frame) -> np.ndarray:
        frame = np.asarray(frame.numpy() if hasattr(frame, "numpy") else frame, dtype=np.float32)
        if frame.ndim == 4:
            frame = frame[None]
        size = self.meta.size
        if frame.ndim != 5 or frame.shape[1:] != (3, 1, size, size):
            raise EdgevidError(f"{self.path}: a streaming step takes one frame [B, 3, 1, {size}, {size}], got "
                               f"{list(frame.shape)}")
        return np.ascontiguousarray(frame)

    def reset(self) -> None:
        """Start a new stream: zero states at the next step."""
        self._states = None

    def step(self, frame) -> np.ndarray:
        """Feed one normalised frame; returns the logits [B, classes] of the stream so far."""
        frame = self.check_frame(frame)
        if self._states is None or self._batch != frame.shape[0]:
            self._states = self._zero_states(frame.shape[0])
            self._batch = frame.shape[0]
        elif self.horizon is not None:
            self._decay(1.0 - 1.0 / self.horizon)
        logits, self._states = self._step(frame, self._states)
        return np.asarray(logits, dtype=np.float32)

    def warmup(self, iterations: int = 3, batch: int = 1) -> float:
        """Run a few zero frames, then reset; returns the mean seconds per step."""
        zeros = np.zeros((batch, 3, 1, self.meta.size, self.meta.size), dtype=np.float32)
        start = time.perf_counter()
        for _ in range(iterations):
            self.step(zeros)
        self.reset()
        return (time.perf_counter() - start) / max(iterations, 1)

    def _decay(self, factor: float) -> None:
        """Scale the running sums and counts (the cumulative means become exponential moving averages)."""
        self._states = [state * factor if kind in DECAYED_KINDS else state
                        for state, kind in zip(self._states, self.kinds, strict=True)]

    @abstractmethod
    def _zero_states(self, batch: int) -> list:
        """Initial (zero) states for ``batch`` streams."""

    @abstractmethod
    def _step(self, frame: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        """One step of the backend: logits and new states."""

class TorchStreamingPredictor(StreamingPredictor):
    """The streaming form of a causal PyTorch model; states stay torch tensors on the model's device."""

    backend = "torch"

    def __init__(self, streaming_model, meta: ArtifactMeta, path: Path, device: str,
                 horizon: int | None = None, precision: str | None = None) -> None:
        super().__init__(meta, path, device, [spec.kind for spec in streaming_model.specs], horizon, precision)
        self.model = streaming_model

    @property
    def execution(self) -> str:
        return torch_execution(self.precision)

    @classmethod
    def from_model(cls, model, meta: ArtifactMeta, path: Path, device: str = "cpu",
                   horizon: int | None = None, precision: str | None = None) -> TorchStreamingPredictor:
        try:
            streaming = to_streaming(model)
        except ValueError as exc:
            raise EdgevidError(f"{path}: {exc}") from None
        return cls(streaming.to(device), meta.replace(streaming=True, head="clip"), path, device, horizon, precision)

    @classmethod
    def open(cls, path: Path, device: str = "cpu", threads: int | None = None,
             horizon: int | None = None, precision: str | None = None) -> TorchStreamingPredictor:
        clip_predictor = TorchPredictor.open(path, device=device, threads=threads, precision=precision)
        return cls.from_model(clip_predictor.model, clip_predictor.meta, clip_predictor.path, device, horizon,
                              clip_predictor.precision)

    def _zero_states(self, batch: int) -> list:
        return self.model.initial_states(batch, self.meta.size)

    def _step(self, frame: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        with torch_inference(self.device, self.precision):
            logits, *new_states = self.model(torch.from_numpy(frame).to(self.device), *states)
        return logits.float().cpu().numpy(), new_states


class GraphStreamingPredictor(StreamingPredictor):
    """A streaming export run by a graph backend through its ``run_named`` (ONNX Runtime, TensorRT); the states
    are numpy arrays fed as named inputs and read back from the named outputs."""

    def __init__(self, predictor: Predictor, horizon: int | None = None) -> None:
        if isinstance(predictor, GraphStreamingPredictor):  # load() already wrapped it: use its graph predictor
            predictor = predictor.predictor
        stream = predictor.meta.stream
        if not predictor.meta.streaming or stream is None:
            raise EdgevidError(f"{predictor.path}: not a streaming export (export it with "
                               "`edgevid export CHECKPOINT --streaming`)")
        self.states = [dataclasses.asdict(state) for state in stream.states]  # the state table as plain dicts
        super().__init__(predictor.meta, predictor.path, predictor.device, [s["kind"] for s in self.states], horizon,
                         predictor.precision)
        self.predictor = predictor
        self.backend = predictor.backend
        slots = {s["name"]: slot for slot, s in enumerate(self.states)}
        self._step_slot = slots["step"]
        self._shifts = [(slot, slots[s["shifted_from"]], s["rate"]) for slot, s in enumerate(self.states)
                        if s.get("shifted_from")]

    @property
    def execution(self) -> str:
        return self.predictor.execution

    def state_note(self) -> str:
        shifted = len(self._shifts)
        return (f"streaming: {len(self.states)} state tensors ({len(self.states) - shifted} computed by the graph, "
                f"{shifted} frame buffers shifted by the runtime)")

    def _zero_states(self, batch: int) -> list:
        return [np.zeros([batch, *s["shape"][1:]] if s["kind"] != "step" else s["shape"], dtype=np.float32)
                for s in self.states]

    def _step(self, frame: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        feeds = {FRAME_INPUT: frame, **{s["name"]: value for s, value in zip(self.states, states, strict=True)}}
        outputs = self.predictor.run_named(feeds)
        new_states = [outputs.get(next_name(s["name"])) for s in self.states]
        step = int(states[self._step_slot][0])
        for slot, source, rate in self._shifts:
            new_states[slot] = states[source] if step % rate == 0 else states[slot]
        return outputs[LOGITS_OUTPUT], new_states


class _StateRing:
    """The buffers of one state (or of a causal conv's chain of ``p`` frame buffers, oldest first) as a ring of
    ``size`` slots shared by the infer requests: a step reads the ``p`` slots before ``head``, the graph writes the
    new value into ``head``, and the ring turns: every step, or for a chain only on its layer's active steps,
    which shifts every frame buffer by one without a copy."""

    def __init__(self, slots: list[int], rate: int, zeros: np.ndarray, size: int, compiled, names: list[str],
                 bf16: bool = False) -> None:
        import openvino as ov

        self.slots = slots
        self.rate = rate
        if bf16:  # BF16 bits in uint16 buffers, shared with BF16 tensors
            self.buffers = [np.zeros(zeros.shape, np.uint16) for _ in range(size)]
            self.tensors = [ov.Tensor(buffer, list(buffer.shape), ov.Type.bf16) for buffer in self.buffers]
        else:
            self.buffers = [zeros.copy() for _ in range(size)]
            self.tensors = [ov.Tensor(buffer, shared_memory=True) for buffer in self.buffers]
        self.inputs = [compiled.input(name) for name in names]
        self.output = compiled.output(next_name(names[-1]))
        self.head = len(slots)
        self._bound: dict[int, int] = {}

    def reset(self) -> None:
        for buffer in self.buffers:
            buffer.fill(0.0)
        self.head = len(self.slots)

    def _read_slots(self) -> list[int]:
        return [(self.head - len(self.slots) + k) % len(self.buffers) for k in range(len(self.slots))]

    def current(self) -> list[np.ndarray]:
        """The buffers the next step reads, oldest first."""
        return [self.buffers[i] for i in self._read_slots()]

    def bind(self, request, index: int) -> None:
        """Point request ``index`` at the current slots (a no-op when they are bound there already)."""
        if self._bound.get(index) == self.head:
            return
        for port, i in zip(self.inputs, self._read_slots(), strict=True):
            request.set_tensor(port, self.tensors[i])
        request.set_tensor(self.output, self.tensors[self.head])
        self._bound[index] = self.head

    def turn(self, step: int) -> None:
        if step % self.rate == 0:
            self.head = (self.head + 1) % len(self.buffers)


class OpenVINOStreamingPredictor(GraphStreamingPredictor):
    """A streaming OpenVINO IR compiled for static shapes. Every state lives in a :class:`_StateRing` of ``N``
    slots and ``N`` infer requests take turns (``N`` = 1 + the longest chain of frame buffers, at least 2): with a
    ring turning every step, request ``j`` always reads and writes the same slots, so its buffers are bound once
    and a step only sets the frame and runs. Rings that turn less often (temporal strides) are rebound on the
    steps they move. In BF16 the frame buffers are BF16 tensors: the graph reads and writes them as they are,
    where FP32 states cost two conversions per state and step (the plugin rounds states to BF16 on the way in
    either way)."""

    def __init__(self, predictor: Predictor, horizon: int | None = None) -> None:
        super().__init__(predictor, horizon)
        self._requests: list = []
        self._rings: list[_StateRing] = []
        self._turn = 0
        self._steps = 0

    @property
    def execution(self) -> str:
        if not self._requests:
            self._compile(1)
            self._batch = 1
        return execution_precision(self._requests[0].get_compiled_model())

    def _ring_slots(self) -> list[list[int]]:
        """State slots of each ring: a chain of shifted frame buffers (oldest first), or one state."""
        older = {source: slot for slot, source, _ in self._shifts}
        chains = []
        for slot, state in enumerate(self.states):
            if state.get("shifted_from"):
                continue
            chain = [slot]
            while chain[0] in older:
                chain.insert(0, older[chain[0]])
            chains.append(chain)
        return chains

    def _bf16_buffers(self) -> set[str]:
        """The frame buffers kept in BF16: all of them when the model runs in BF16."""
        if self.predictor.precision != "bf16":
            return set()
        return {s["name"] for s in self.states if s["kind"] == "buffer"}

    def _compile(self, batch: int) -> None:
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        model = self.predictor.model.clone()
        shapes = {FRAME_INPUT: [batch, 3, 1, self.meta.size, self.meta.size]}
        shapes.update({s["name"]: s["shape"] if s["kind"] == "step" else [batch, *s["shape"][1:]]
                       for s in self.states})
        bf16 = self._bf16_buffers()
        outputs = {name for port in model.outputs for name in port.get_names()}
        try:
            model.reshape(shapes)
            if bf16:
                ppp = PrePostProcessor(model)
                for name in bf16:
                    ppp.input(name).tensor().set_element_type(ov.Type.bf16)
                    if next_name(name) in outputs:
                        ppp.output(next_name(name)).tensor().set_element_type(ov.Type.bf16)
                model = ppp.build()
            compiled = compile_model(model, self.predictor.precision, self.predictor.device, self.predictor.threads)
        except RuntimeError as exc:
            raise EdgevidError(f"{self.path}: OpenVINO cannot compile the streaming model for batch {batch}: "
                               f"{str(exc).strip().splitlines()[0][:160]}") from None
        chains = self._ring_slots()
        size = max(2, *(len(chain) + 1 for chain in chains))
        zeros = GraphStreamingPredictor._zero_states(self, batch)
        self._rings = [_StateRing(chain, self.states[chain[-1]]["rate"] if len(chain) > 1 else 1, zeros[chain[-1]],
                                  size, compiled, [self.states[slot]["name"] for slot in chain],
                                  bf16=self.states[chain[-1]]["name"] in bf16) for chain in chains]
        self._requests = [compiled.create_infer_request() for _ in range(size)]

    def _current_states(self) -> list[np.ndarray]:
        states: list = [None] * len(self.states)
        for ring in self._rings:
            for slot, buffer in zip(ring.slots, ring.current(), strict=True):
                states[slot] = buffer
        return states

    def _zero_states(self, batch: int) -> list:
        if not self._requests or batch != self._batch:
            self._compile(batch)
        self._turn = 0
        self._steps = 0
        for ring in self._rings:
            ring.reset()
        return self._current_states()

    def _decay(self, factor: float) -> None:
        for state, kind in zip(self._current_states(), self.kinds, strict=True):
            if kind in DECAYED_KINDS:
                state *= factor

    def _step(self, frame: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        import openvino as ov

        request = self._requests[self._turn]
        for ring in self._rings:
            ring.bind(request, self._turn)
        request.set_tensor(FRAME_INPUT, ov.Tensor(frame, shared_memory=True))
        request.infer()
        for ring in self._rings:
            ring.turn(self._steps)  # the graph's step counter, kept here too
        self._steps += 1
        self._turn = (self._turn + 1) % len(self._requests)
        return request.get_tensor(LOGITS_OUTPUT).data.copy(), states  # the rings hold the states


def load_streaming(artifact: str | Path, device: str = "cpu", threads: int | None = None,
                   horizon: int | None = None, precision: str | None = None) -> StreamingPredictor:
    """A streaming predictor for a causal checkpoint (converted on load) or a streaming export, in ``precision``
    (default: the artifact's own; see :func:`edgevid.runtime.load`, which loads streaming exports the same way)."""
    path = Path(artifact)
    if not path.exists():
        raise EdgevidError(f"{path}: no such artifact")
    if is_checkpoint(path):
        return TorchStreamingPredictor.open(path, device=device, threads=threads, horizon=horizon,
                                            precision=precision)
    predictor = load(path, device=device, threads=threads, precision=precision)
    if not predictor.streaming:
        raise EdgevidError(f"{path}: not a streaming export (export it with `edgevid export CHECKPOINT --streaming`)")
    predictor.horizon = horizon
    return predictor


for _fmt in FORMATS.values():
    if _fmt.target != "torch":
        register_streaming(_fmt.backend, OpenVINOStreamingPredictor if _fmt.target == "openvino"
                           else GraphStreamingPredictor)
