"""Compression: calibration sets, INT8 post-training quantization per target, structured pruning, reports.

- :mod:`~edgevid.compress.calibration`: ``edgevid calib build`` manifests and their loaders.
- :mod:`~edgevid.compress.quantize`: ``edgevid quantize`` (one interface) over :mod:`.quant_openvino` (NNCF) and
  :mod:`.quant_onnx` (ONNX Runtime QDQ, and TensorRT's symmetric Q/DQ scheme).
- :mod:`~edgevid.compress.accuracy`: the accuracy guard (validation set in memory, ONNX layer sensitivity).
- :mod:`~edgevid.compress.pruning`: ``edgevid prune`` (Torch-Pruning DepGraph to a MAC budget, fine-tuning).
- :mod:`~edgevid.compress.report`: size / top-1 / latency / speed-up tables and JSON.

Heavy packages (onnxruntime, openvino, nncf, torch_pruning) are imported only when used.
"""

from edgevid.compress.calibration import (
    CalibrationManifest,
    Preprocessing,
    build_manifest,
    load_calibration,
    load_manifest,
)
from edgevid.compress.pruning import PruneResult, apply_pruned_shapes, prune, prune_to_macs
from edgevid.compress.quantize import TARGETS, QuantizeResult, quantize

__all__ = [
    "TARGETS",
    "CalibrationManifest",
    "Preprocessing",
    "PruneResult",
    "QuantizeResult",
    "apply_pruned_shapes",
    "build_manifest",
    "load_calibration",
    "load_manifest",
    "prune",
    "prune_to_macs",
    "quantize",
]
