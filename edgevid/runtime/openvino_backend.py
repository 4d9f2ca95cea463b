"""OpenVINO backend: IR artifacts (``.xml`` + ``.bin``) on CPU, GPU, NPU or AUTO, and :func:`compile_model`, the one
place that compiles an OpenVINO model for a precision.

Compiled with the LATENCY performance hint and the precision's ``INFERENCE_PRECISION_HINT``. An IR with a dynamic
batch (or time) axis is reshaped to the static shape of each batch it is given and compiled once per shape (a few
shapes are kept): static shapes are what the CPU plugin runs fastest.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.formats import FORMATS
from edgevid.meta import openvino_meta, read_openvino_model
from edgevid.precision import get_precision, resolve_precision
from edgevid.runtime.base import Predictor, register_backend
from edgevid.utils.openvino import openvino_core

MAX_COMPILED_SHAPES = 4
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
# Runtime-graph layer types whose precision says what the model computes in.
_WEIGHTED_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")


def device_capabilities(device: str) -> list[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of a device (``BF16``, ``FP16``, ``INT8`` ...); [] for AUTO etc."""
    name = device.upper()
    if name.split(":")[0] in _VIRTUAL_DEVICES:
        return []
    return [str(c) for c in openvino_core().get_property(name, "OPTIMIZATION_CAPABILITIES")]


def precision_hint(precision: str, device: str = "CPU") -> str:
    """The ``INFERENCE_PRECISION_HINT`` that runs ``precision`` on ``device``: FP16 arithmetic only where the
    device lists FP16, BF16 only where it lists BF16 (an error elsewhere), FP32 for everything else."""
    hint = get_precision(precision).openvino_hint
    capabilities = device_capabilities(device)
    if hint == "f16" and "FP16" not in capabilities:
        return "f32"
    if hint == "bf16" and capabilities and "BF16" not in capabilities:
        name = device.upper()
        raise EdgevidError(f"bf16 is not available on OpenVINO {name}: OpenVINO {name} lists no BF16 (its "
                           f"OPTIMIZATION_CAPABILITIES: {', '.join(capabilities)}; BF16 needs a CPU with AVX512_BF16 "
                           "or AMX)")
    return hint


def compile_config(precision: str, device: str = "CPU", threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """The compile settings of every OpenVINO model edgevid runs: LATENCY hint, the precision's hint, threads."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision_hint(precision,
                                                                                                       device)}
    if threads and device.upper().startswith("CPU"):
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return {**config, **extra}


def compile_model(model: Any, precision: str, device: str = "CPU", threads: int | None = None, **extra: Any) -> Any:
    """Compile an ``ov.Model`` (or IR path) for ``precision`` on ``device``; ``extra`` adds settings (PERF_COUNT)."""
    return openvino_core().compile_model(model, device.upper(), compile_config(precision, device, threads, **extra))


def execution_precision(compiled: Any) -> str:
    """What a compiled model computes in, read back from its runtime graph: ``f32``, ``bf16``, or a mix such as
    ``i8 (54 layers) + f32 (3)`` for an INT8 model with layers left in float."""
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in _WEIGHTED_LAYERS:
            counts[info["runtimePrecision"].astype(str).lower()] += 1
    if not counts:
        return str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    ranked = counts.most_common()
    if len(ranked) == 1:
        return ranked[0][0]
    return f"{ranked[0][0]} ({ranked[0][1]} layers) + " + " + ".join(f"{name} ({n})" for name, n in ranked[1:])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("Check ", "Exception from"))]
    return (lines[0] if lines else text.splitlines()[0] if text else type(exc).__name__)[:200]


def openvino_device(device: str, available: list[str]) -> str:
    """An OpenVINO device string (``cpu`` -> ``CPU``, ``gpu.1`` -> ``GPU.1``, ``AUTO:GPU,CPU``) that exists here."""
    name = device.upper()
    base = name.split(":")[0]
    if base in _VIRTUAL_DEVICES:
        return name
    if name not in available and not any(d.split(".")[0] == name for d in available):
        raise EdgevidError(f"OpenVINO device {device!r} is not available here; available: "
                           f"{', '.join(available) or 'none'} (or AUTO)")
    return name


@register_backend(*FORMATS["openvino"].suffixes)
class OpenVINOPredictor(Predictor):
    backend = FORMATS["openvino"].backend

    def __init__(self, core, model, meta, path: Path, device: str, precision: str, threads: int | None) -> None:
        super().__init__(meta, path, device, precision)
        self.core = core
        self.model = model
        self.threads = threads
        self.input_names = [port.get_any_name() for port in model.inputs]
        self.output_names = [port.get_any_name() for port in model.outputs]
        self._compiled: OrderedDict[tuple, Any] = OrderedDict()

    @classmethod
    def open(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision: str | None = None) -> OpenVINOPredictor:
        path = Path(path)
        if path.suffix.lower() not in FORMATS["openvino"].suffixes:
            raise EdgevidError(f"{path}: an OpenVINO IR is an .xml file (with its .bin beside it)")
        model = read_openvino_model(path)
        meta = openvino_meta(model, str(path))
        core = openvino_core()
        ov_device = openvino_device(device, core.available_devices)
        precision = resolve_precision(cls.backend, meta.precision, precision, ov_device.lower(), str(path))
        try:
            precision_hint(precision, ov_device)
        except EdgevidError as exc:
            raise EdgevidError(f"{path}: {exc}") from None
        return cls(core, model, meta, path, ov_device, precision, threads)

    @property
    def execution(self) -> str:
        """What the model computes in on this device, read back from the compiled model (compiled if needed)."""
        if not self._compiled:
            self.request_for({self.input_names[0]: (1, *self.input_shape)})
        return execution_precision(next(reversed(self._compiled.values())).get_compiled_model())

    def _accepts_frames(self, frames: int) -> bool:
        return self.meta.accepts_frames(frames)

    def request_for(self, shapes: dict[str, tuple[int, ...]]):
        """An infer request of the model compiled for these static input shapes (compiled on first use)."""
        import openvino as ov  # openvino: optional backend, loaded only when an IR is read or compiled

        key = tuple(sorted(shapes.items()))
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        model = self.model.clone()
        try:
            model.reshape({name: ov.PartialShape(list(shape)) for name, shape in shapes.items()})
            compiled = compile_model(model, self.precision, self.device, self.threads)
        except Exception as exc:  # reshape/compile errors are generic RuntimeErrors
            expected = {p.get_any_name(): str(p.get_partial_shape()) for p in self.model.inputs}
            raise EdgevidError(f"{self.path}: cannot run inputs {dict(shapes)} (the IR expects {expected}): "
                               f"{_first_line(exc)}") from None
        self._compiled[key] = compiled.create_infer_request()
        if len(self._compiled) > MAX_COMPILED_SHAPES:
            self._compiled.popitem(last=False)
        return self._compiled[key]

    def run_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the IR on named inputs (e.g. a streaming model's frame and states); outputs by name.

        The inputs are shared with the infer request, not copied (C-contiguous arrays of the input's type; others
        are converted) and must not change during the call. The outputs are copied once out of the request's
        tensors, which the next call on the same shapes overwrites, so the caller may keep them.
        """
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise EdgevidError(f"{self.path}: missing input(s) {', '.join(missing)} (the IR takes "
                               f"{', '.join(self.input_names)})")
        request = self.request_for({name: tuple(value.shape) for name, value in feeds.items()})
        results = request.infer(feeds, share_inputs=True, share_outputs=False)
        return {name: results[name] for name in self.output_names}

    def _run(self, clips: np.ndarray) -> np.ndarray:
        out = self.run_named({self.input_names[0]: clips})[self.output_names[0]]
        return out.astype(np.float32, copy=False)
