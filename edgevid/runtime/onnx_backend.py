"""ONNX Runtime backend: ``.onnx`` artifacts on the CPU, CUDA or TensorRT execution providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.formats import FORMATS
from edgevid.meta import read_meta
from edgevid.precision import resolve_precision
from edgevid.runtime.base import Predictor, register_backend
from edgevid.utils.logs import ort_log_severity


def ort_errors() -> tuple[type[Exception], ...]:
    """The exception types ONNX Runtime raises (they do not share a base class besides Exception)."""
    # onnxruntime: optional backend, loaded only when an ONNX model runs
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail")
    return (RuntimeError, ValueError, *(getattr(state, n) for n in names if hasattr(state, n)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def execution_providers(device: str, available: list[str]) -> list:
    """Providers for a device string: ``cpu``, ``cuda[:N]`` or ``tensorrt[:N]`` (each falls back to the CPU)."""
    kind, _, index = device.lower().partition(":")
    device_id = {"device_id": int(index)} if index.isdigit() else {}
    wanted = {"cpu": [], "cuda": ["CUDAExecutionProvider"],
              "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}.get(kind)
    if wanted is None:
        raise EdgevidError(f"onnxruntime device {device!r} is not one of cpu, cuda[:N], tensorrt[:N]")
    missing = [p for p in wanted if p not in available]
    if missing:
        raise EdgevidError(f"onnxruntime device {device!r} needs {', '.join(missing)} (install onnxruntime-gpu); "
                           f"available providers: {', '.join(available)}")
    return [(p, device_id) for p in wanted] + ["CPUExecutionProvider"]


def open_session(source: str | Path | bytes, threads: int | None = None, providers: list | None = None,
                 log_severity: int | None = None):
    """The one place edgevid opens an ONNX Runtime session: a file or serialised model, all graph optimisations,
    ``threads`` intra-op threads (default: ONNX Runtime's), CPU unless ``providers`` say otherwise; logs errors only
    unless ``log_severity`` (or ``--verbose``) says otherwise."""
    import onnxruntime as ort  # onnxruntime: optional backend, loaded only when an ONNX model runs

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = ort_log_severity() if log_severity is None else log_severity
    if threads:
        options.intra_op_num_threads = threads
    source = source if isinstance(source, bytes) else str(source)
    return ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])


@register_backend(*FORMATS["onnx"].suffixes)
class OnnxRuntimePredictor(Predictor):
    """An ONNX Runtime session with all graph optimisations, the clip input first."""

    backend = FORMATS["onnx"].backend

    def __init__(self, session, meta, path: Path, device: str) -> None:
        super().__init__(meta, path, device)
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def open(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision: str | None = None) -> OnnxRuntimePredictor:
        import onnxruntime as ort  # onnxruntime: optional backend, loaded only when an ONNX model runs

        path = Path(path)
        meta = read_meta(path)
        resolve_precision(cls.backend, meta.precision, precision, device, str(path))
        providers = execution_providers(device, ort.get_available_providers())
        try:
            session = open_session(path, threads, providers)
        except ort_errors() as exc:
            raise EdgevidError(f"{path}: ONNX Runtime cannot load this model ({_first_line(exc)})") from None
        return cls(session, meta, path, device)

    def _accepts_frames(self, frames: int) -> bool:
        return self.meta.accepts_frames(frames)

    def run_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named inputs (e.g. a streaming model's frame and states); outputs by name."""
        try:
            outputs = self.session.run(self.output_names, feeds)
        except ort_errors() as exc:
            shapes = {k: list(v.shape) for k, v in feeds.items()}
            raise EdgevidError(f"{self.path}: ONNX Runtime failed on inputs {shapes}: {_first_line(exc)}") from None
        return dict(zip(self.output_names, outputs, strict=True))

    def _run(self, clips: np.ndarray) -> np.ndarray:
        out = self.run_named({self.input_names[0]: clips})[self.output_names[0]]
        return out.astype(np.float32, copy=False)
