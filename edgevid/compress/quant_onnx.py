"""Static QDQ INT8 quantization of an FP32 ONNX model with ``onnxruntime.quantization``.

One :class:`OnnxQuantizer` serves two targets that differ only in their quantization scheme:

- ``onnx`` (ONNX Runtime on CPU): uint8 activations (asymmetric unless asked for symmetric), int8 symmetric
  per-channel weights, 7-bit weights (``reduce_range``) on x86 CPUs without VNNI as ONNX Runtime advises.
- ``trt`` (TensorRT explicit quantization): int8 symmetric activations and weights, zero point 0 everywhere,
  per-channel weights on axis 0, per-tensor activations, biases left in float (TensorRT has no INT32
  DequantizeLinear). Q/DQ go on the inputs of weighted ops only (:data:`TRT_QUANTIZED_OPS`), as TensorRT's
  placement recommendations put them; a residual add reads the same Q/DQ as the conv that shares its input.
  ONNX Runtime's default also quantizes the outputs of convs and the inputs of sigmoids, gating multiplies and
  means: on the synth X3D-XS that cost 4.2 points of top-1 (1.7 with every conv in float), inputs only cost 0.

Calibration runs once per quantizer and is cached (ORT's calibration cache), so re-quantizing with some layers
kept in float (the accuracy guard) costs no further calibration passes. :meth:`OnnxQuantizer.with_float_weights`
is the cheap stand-in the guard ranks layers with: the full QDQ graph with some layers' weights back in float,
built in memory in milliseconds instead of a 3-second ``quantize_static``.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgevid.compress.calibration import check_method
from edgevid.errors import EdgevidError
from edgevid.utils.machine import cpu_features

if TYPE_CHECKING:
    import onnx

QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
TRT_QUANTIZED_OPS = QUANTIZABLE_OPS


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@dataclass(frozen=True)
class OnnxQuantScheme:
    """How tensors are quantized; see the module docstring for the two targets."""

    target: str
    method: str
    symmetric_activations: bool
    signed_activations: bool
    reduce_range: bool
    quantize_bias: bool
    op_types: tuple[str, ...] = ()  # ops whose inputs get Q/DQ; () is ONNX Runtime's default (every op it knows)

    @classmethod
    def for_target(cls, target: str, method: str = "minmax", symmetric_activations: bool = False) -> OnnxQuantScheme:
        check_method(method)
        if target == "trt":
            return cls(target, method, True, True, False, False, TRT_QUANTIZED_OPS)
        if target == "onnx":
            return cls(target, method, symmetric_activations, symmetric_activations,
                       _is_x86() and not cpu_features()["vnni"], True)
        raise EdgevidError(f"ONNX quantization scheme for target {target!r} is not defined (onnx or trt)")

    def to_dict(self) -> dict:
        return {"format": "QDQ", "method": self.method, "activations": "int8" if self.signed_activations else "uint8",
                "symmetric_activations": self.symmetric_activations, "weights": "int8 symmetric per-channel",
                "reduce_range": self.reduce_range, "quantized_bias": self.quantize_bias,
                "quantized_ops": list(self.op_types) or "onnxruntime default"}


def _feed_reader(feeds: Callable[[], Iterator[dict[str, np.ndarray]]]):
    """An ORT ``CalibrationDataReader`` over a factory of input feeds."""
    # onnxruntime: optional backend, loaded only when an ONNX model runs
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = feeds()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return FeedReader()


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class OnnxQuantizer:
    """Quantize one FP32 ONNX model (possibly several times, keeping different layers in float)."""

    def __init__(self, fp32_onnx: Path, feeds: Callable[[], Iterator[dict[str, np.ndarray]]],
                 scheme: OnnxQuantScheme, workdir: Path) -> None:
        # onnxruntime: optional backend, loaded only when an ONNX model runs
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.scheme = scheme
        self.feeds = feeds
        self.prepared = workdir / "prepared.onnx"
        self.cache = workdir / "calibration-ranges.json"
        self._prepared_graph: onnx.GraphProto | None = None
        self._full_int8: bytes | None = None  # the last quantize() with nothing excluded
        with _quiet_ort_logging():
            quant_pre_process(str(fp32_onnx), str(self.prepared))

    def quantizable_nodes(self) -> list[str]:
        """Names of the weighted nodes (Conv, Gemm, MatMul ...) in graph order: candidates to keep in float."""
        return [node.name for node in self._fp32_graph().node if node.op_type in QUANTIZABLE_OPS]

    def with_float_weights(self, layers: Sequence[str]) -> bytes:
        """This quantizer's full INT8 model (quantized once if not yet) with the weights and biases of ``layers``
        in float.

        Their activation inputs stay quantized, as ``quantize(exclude=layers)`` leaves them, except a Q/DQ pair on
        a graph input or output that only these layers touch, which is dropped; unlike ``quantize``, an inner
        activation that only these layers read keeps its Q/DQ pair. A serialised model for ONNX Runtime.
        """
        import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited

        if self._full_int8 is None:
            self.quantize(self.prepared.with_name("int8-full.onnx"))
        fp32 = self._fp32_graph()
        fp32_nodes = {node.name: node for node in fp32.node}
        fp32_weights = {init.name: init for init in fp32.initializer}
        model = onnx.load_from_string(self._full_int8)
        graph, chosen = model.graph, set(layers)
        for node in graph.node:
            if node.name not in chosen:
                continue
            for index, name in enumerate(fp32_nodes[node.name].input):
                if name in fp32_weights:
                    weight = onnx.TensorProto()
                    weight.CopyFrom(fp32_weights[name])
                    weight.name = node.input[index] = f"{name}.float"
                    graph.initializer.append(weight)
        _drop_boundary_qdq(graph, chosen)
        return model.SerializeToString()

    def _fp32_graph(self) -> onnx.GraphProto:
        import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited

        if self._prepared_graph is None:
            self._prepared_graph = onnx.load(str(self.prepared)).graph
        return self._prepared_graph

    def quantize(self, out: Path, exclude: Sequence[str] = ()) -> Path:
        """Write the QDQ model to ``out`` with the nodes in ``exclude`` kept in float."""
        # onnxruntime: optional backend, loaded only when an ONNX model runs
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        scheme = self.scheme
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        extra = {
            "ActivationSymmetric": scheme.symmetric_activations,
            "WeightSymmetric": True,
            "QuantizeBias": scheme.quantize_bias,
            "DedicatedQDQPair": bool(scheme.op_types),  # one pair per weighted input (same scale where shared)
            "OpTypesToExcludeOutputQuantization": list(scheme.op_types),  # inputs only, never outputs
        }
        reader = None if self.cache.exists() else _feed_reader(self.feeds)
        try:
            with _quiet_ort_logging():
                quantize_static(
                    str(self.prepared), str(out), reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    reduce_range=scheme.reduce_range,
                    activation_type=QuantType.QInt8 if scheme.signed_activations else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(exclude),
                    op_types_to_quantize=list(scheme.op_types) or None,
                    calibrate_method=methods[scheme.method],
                    extra_options=extra,
                    calibration_cache_path=str(self.cache),
                )
        except (ValueError, RuntimeError) as exc:
            raise EdgevidError(f"ONNX Runtime quantization failed: {str(exc).splitlines()[0][:200]}") from None
        if not exclude:
            self._full_int8 = out.read_bytes()
        return out


def _drop_boundary_qdq(graph: onnx.GraphProto, layers: set[str]) -> None:
    """Remove each Q/DQ pair on a graph input or output whose only producer and readers are in ``layers``."""
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {out.name for out in graph.output}
    for dequant in [node for node in graph.node if node.op_type == "DequantizeLinear"]:
        quant = producers.get(dequant.input[0])
        if quant is None or quant.op_type != "QuantizeLinear":
            continue
        tensor, readers = quant.input[0], consumers.get(dequant.output[0], [])
        source = producers.get(tensor)
        at_boundary = source is None or dequant.output[0] in outputs
        if not at_boundary or (source is not None and source.name not in layers) \
                or any(reader.name not in layers for reader in readers):
            continue
        if source is not None:
            source.output[list(source.output).index(tensor)] = dequant.output[0]
        for reader in readers:
            reader.input[list(reader.input).index(dequant.output[0])] = tensor
        graph.node.remove(quant)
        graph.node.remove(dequant)


def qdq_summary(path: Path) -> dict:
    """Count Q/DQ nodes and check zero points: what TensorRT's explicit quantization needs to see.

    Returns ``{"quantize": n, "dequantize": n, "nonzero_zero_points": [...], "per_channel_axes": {...},
    "output_channel_axes": {...}, "weighted_float": [...], "weighted_int8": [...]}``; the output-channel axis of
    a per-channel weight is 0 for convolutions and the last axis for a MatMul's [K, N] weight.
    """
    import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited
    from onnx import numpy_helper  # onnx: optional, loaded only where an ONNX graph is read or edited

    graph = onnx.load(str(path)).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producers = {out: node for node in graph.node for out in node.output}
    consumers = {name: node.op_type for node in graph.node for name in node.input}
    summary: dict = {"quantize": 0, "dequantize": 0, "nonzero_zero_points": [], "per_channel_axes": {},
                     "output_channel_axes": {}, "weighted_float": [], "weighted_int8": []}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            summary["quantize" if node.op_type == "QuantizeLinear" else "dequantize"] += 1
            zero_point = constants.get(node.input[2]) if len(node.input) > 2 else None
            if zero_point is not None and np.any(zero_point != 0):
                summary["nonzero_zero_points"].append(node.name)
            scale = constants.get(node.input[1])
            if scale is not None and scale.size > 1:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                summary["per_channel_axes"][node.input[0]] = axis
                weight = constants.get(node.input[0])
                matmul = consumers.get(node.output[0]) == "MatMul" and weight is not None
                summary["output_channel_axes"][node.input[0]] = weight.ndim - 1 if matmul else 0
        elif node.op_type in QUANTIZABLE_OPS:
            weight = producers.get(node.input[1])
            quantized = weight is not None and weight.op_type == "DequantizeLinear"
            summary["weighted_int8" if quantized else "weighted_float"].append(node.name)
    return summary
