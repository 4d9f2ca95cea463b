"""TensorRT backend: serialized engines (``.engine`` / ``.plan``) on a CUDA GPU.

Uses the TensorRT 10/11 named-tensor API (``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) with PyTorch CUDA tensors as device buffers. Engines have no metadata slot: it is read from
the sidecar ``<engine>.edgevid.json`` written beside it by ``edgevid export --target trt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.formats import FORMATS
from edgevid.meta import read_meta
from edgevid.precision import resolve_precision
from edgevid.runtime.base import Predictor, register_backend


def tensorrt_module() -> tuple[Any | None, str]:
    """``(tensorrt, "")`` when the real TensorRT Python package can be used, else ``(None, why not)``."""
    try:
        import tensorrt as trt  # tensorrt: optional, needs a CUDA GPU
    except (ImportError, OSError) as exc:
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no module'}"
    if not hasattr(trt, "Builder"):
        return None, "the installed tensorrt package is the PyPI stub without the TensorRT libraries"
    return trt, ""


def require_tensorrt(purpose: str) -> Any:
    trt, reason = tensorrt_module()
    if trt is None:
        raise EdgevidError(f"{purpose} needs TensorRT ({reason}); on Jetson it comes with JetPack, on x86 with "
                           f"NVIDIA's tensorrt wheels and a CUDA GPU")
    return trt


def tensorrt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def _torch_dtypes(trt: Any) -> dict:
    import torch  # torch: heavy, loaded only where a model or CUDA is asked about

    pairs = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
             "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}
    return {getattr(trt.DataType, name): dtype for name, dtype in pairs.items() if hasattr(trt.DataType, name)}


@register_backend(*FORMATS["trt"].suffixes)
class TensorRTPredictor(Predictor):
    backend = FORMATS["trt"].backend

    def __init__(self, trt: Any, engine: Any, meta, path: Path, device: str) -> None:
        super().__init__(meta, path, device)
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.dtypes = {n: _torch_dtypes(trt)[engine.get_tensor_dtype(n)] for n in names}
        self.profile = tuple(tuple(s) for s in engine.get_tensor_profile_shape(self.input_names[0], 0))

    @classmethod
    def open(cls, path: Path, device: str = "cuda", threads: int | None = None,
             precision: str | None = None) -> TensorRTPredictor:
        import torch  # torch: heavy, loaded only where a model or CUDA is asked about

        path = Path(path)
        meta = read_meta(path)
        resolve_precision(cls.backend, meta.precision, precision, device, str(path))
        trt = require_tensorrt(f"{path}: running a TensorRT engine")
        if not device.startswith("cuda"):
            raise EdgevidError(f"{path}: TensorRT engines run on a CUDA GPU (--device cuda[:N]), not {device!r}")
        if not torch.cuda.is_available():
            raise EdgevidError(f"{path}: TensorRT engines need a CUDA GPU, and PyTorch sees none")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with torch.cuda.device(torch.device(device)):
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EdgevidError(f"{path}: not a TensorRT engine this TensorRT version and GPU can load "
                               f"(engines are specific to both; rebuild it on this device)")
        return cls(trt, engine, meta, path, device)

    def _accepts_frames(self, frames: int) -> bool:
        return self.meta.accepts_frames(frames) and self.profile[0][2] <= frames <= self.profile[2][2]

    def check_batch(self, clips) -> np.ndarray:
        clips = super().check_batch(clips)
        low, high = self.profile[0][0], self.profile[2][0]
        if not low <= clips.shape[0] <= high:
            raise EdgevidError(f"{self.path}: batch {clips.shape[0]} is outside the engine's profile "
                               f"({low}..{high}; input {list(self.profile[0])} to {list(self.profile[2])})")
        return clips

    def run_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the engine on named host arrays, one per engine input (a streaming engine's frame and states):
        every input's shape is set and every tensor bound by name; outputs by name, copied back to the host."""
        import torch  # torch: heavy, loaded only where a model or CUDA is asked about

        if set(feeds) != set(self.input_names):
            raise EdgevidError(f"{self.path}: the engine takes inputs {', '.join(self.input_names)}; got "
                               f"{', '.join(feeds) or 'none'}")
        with torch.cuda.device(torch.device(self.device)):
            stream = torch.cuda.current_stream()
            inputs = {name: torch.from_numpy(np.ascontiguousarray(value)).to(self.device, self.dtypes[name])
                      for name, value in feeds.items()}
            for name, tensor in inputs.items():
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    raise EdgevidError(f"{self.path}: input {name} {list(tensor.shape)} is outside the engine's "
                                       f"optimisation profile")
                self.context.set_tensor_address(name, tensor.data_ptr())
            outputs = {name: torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name],
                                         device=self.device) for name in self.output_names}
            for name, tensor in outputs.items():
                self.context.set_tensor_address(name, tensor.data_ptr())
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise EdgevidError(f"{self.path}: TensorRT execution failed")
            stream.synchronize()
            return {name: (tensor.float() if tensor.is_floating_point() else tensor).cpu().numpy()
                    for name, tensor in outputs.items()}

    def _run(self, clips: np.ndarray) -> np.ndarray:
        return self.run_named({self.input_names[0]: clips})[self.output_names[0]]
