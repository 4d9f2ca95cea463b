"""One way to run any artifact: ``load(path) -> Predictor``. Importing registers the available backends."""

from edgevid.runtime import onnx_backend, openvino_backend, tensorrt_backend, torch_backend  # noqa: F401  (register)
from edgevid.runtime.base import Predictor, backend_for, load, register_backend

__all__ = ["Predictor", "backend_for", "load", "register_backend"]
