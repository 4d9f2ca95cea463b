"""One way to run any artifact: ``load(path) -> Predictor``. Importing registers the available backends and how each
runs a streaming export."""

from edgevid.runtime import (  # noqa: F401  (register)
    onnx_backend,
    openvino_backend,
    streaming,
    tensorrt_backend,
    torch_backend,
)
from edgevid.runtime.base import Predictor, backend_for, load, register_backend, register_streaming
from edgevid.runtime.streaming import StreamingPredictor, load_streaming

__all__ = ["Predictor", "StreamingPredictor", "backend_for", "load", "load_streaming", "register_backend",
           "register_streaming"]
