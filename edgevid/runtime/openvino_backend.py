"""OpenVINO backend: IR artifacts (``.xml`` + ``.bin``) on CPU, GPU, NPU or AUTO.

Compiled with the LATENCY performance hint. An IR with a dynamic batch (or time) axis is reshaped to the static
shape of each batch it is given and compiled once per shape (a few shapes are kept): static shapes are what the
CPU plugin runs fastest.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.meta import openvino_meta, read_openvino_model
from edgevid.runtime.base import Predictor, register_backend
from edgevid.utils.openvino import openvino_core

MAX_COMPILED_SHAPES = 4
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


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


@register_backend(".xml")
class OpenVINOPredictor(Predictor):
    backend = "openvino"

    def __init__(self, core, model, meta, path: Path, device: str, config: dict[str, Any]) -> None:
        super().__init__(meta, path, device)
        self.core = core
        self.model = model
        self.config = config
        self.input_names = [port.get_any_name() for port in model.inputs]
        self.output_names = [port.get_any_name() for port in model.outputs]
        self._compiled: OrderedDict[tuple, Any] = OrderedDict()

    @classmethod
    def open(cls, path: Path, device: str = "cpu", threads: int | None = None) -> OpenVINOPredictor:
        path = Path(path)
        if path.suffix.lower() != ".xml":
            raise EdgevidError(f"{path}: an OpenVINO IR is an .xml file (with its .bin beside it)")
        model = read_openvino_model(path)
        meta = openvino_meta(model, str(path))
        core = openvino_core()
        ov_device = openvino_device(device, core.available_devices)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads and ov_device.startswith("CPU"):
            config["INFERENCE_NUM_THREADS"] = int(threads)
        return cls(core, model, meta, path, ov_device, config)

    def _accepts_frames(self, frames: int) -> bool:
        return self.meta.accepts_frames(frames)

    def request_for(self, shapes: dict[str, tuple[int, ...]]):
        """An infer request of the model compiled for these static input shapes (compiled on first use)."""
        import openvino as ov

        key = tuple(sorted(shapes.items()))
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        model = self.model.clone()
        try:
            model.reshape({name: ov.PartialShape(list(shape)) for name, shape in shapes.items()})
            compiled = self.core.compile_model(model, self.device, self.config)
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
