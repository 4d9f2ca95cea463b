"""Export to ONNX, OpenVINO and TensorRT: ``export(artifact, target, precision)``; one module per target.

INT8 from a float source (quantize, then export) is :func:`edgevid.pipeline.export`, a layer above this one.
"""

from edgevid.export import onnx, openvino, tensorrt  # noqa: F401  (register the targets)
from edgevid.export.api import export
from edgevid.export.base import (
    Exporter,
    ExportOptions,
    ExportResult,
    Parity,
    get_exporter,
    list_targets,
    register_exporter,
)
from edgevid.export.onnx import export_onnx_module
from edgevid.export.tensorrt import TensorRTUnavailableError, trtexec_command

__all__ = [
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "Parity",
    "TensorRTUnavailableError",
    "export",
    "export_onnx_module",
    "get_exporter",
    "list_targets",
    "register_exporter",
    "trtexec_command",
]
