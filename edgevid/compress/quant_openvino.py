"""OpenVINO INT8: NNCF post-training quantization of an OpenVINO model, with or without accuracy control."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.compress.calibration import check_method
from edgevid.errors import EdgevidError
from edgevid.meta import read_openvino_model
from edgevid.runtime.openvino_backend import compile_model, execution_precision

WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")
LAYOUT_OPS = ("Reshape", "Transpose", "Concat", "StridedSlice", "Slice", "Squeeze", "Unsqueeze", "Split",
              "VariadicSplit", "Gather", "Broadcast")
INT8_TYPES = ("i8", "u8", "i4", "u4")
RANKING_CLIPS = 48
MAX_RESTORE_STEPS = 12


def _advanced_parameters(method: str) -> Any:
    """NNCF's activation range estimator for ``method``: global min/max, a histogram fit, or mean quantiles.

    Global min/max is the default rather than NNCF's own (means of per-sample ranges, which clip the tails): on the
    synth-trained X3D-XS, NNCF's default agreed with FP32 on 79% of val clips, global min/max on 93%.
    """
    # nncf: optional, loaded only for OpenVINO INT8
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    check_method(method)
    estimator = {"minmax": RangeEstimatorParametersSet.MINMAX, "entropy": RangeEstimatorParametersSet.HISTOGRAM,
                 "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE}[method]
    return AdvancedQuantizationParameters(activations_range_estimator_params=estimator)


def openvino_model(source: Path) -> Any:
    """An ``openvino.Model`` from an FP32 OpenVINO IR (.xml) or an ONNX file (converted as the exporter does)."""
    import openvino as ov  # openvino: optional backend, loaded only when an IR is read or compiled


    if source.suffix.lower() == ".xml":
        return read_openvino_model(source)
    try:
        return ov.convert_model(str(source))
    except Exception as exc:  # OpConversionFailure and friends share no public base class
        raise EdgevidError(f"{source}: OpenVINO cannot convert it ({str(exc).splitlines()[0][:160]})") from None


def quantize_openvino(model: Any, calibration: Sequence[np.ndarray], *, method: str = "minmax",
                      ignored_layers: Sequence[str] = ()) -> Any:
    """NNCF post-training quantization (per-channel symmetric int8 weights, int8 activations)."""
    import nncf  # nncf: optional, loaded only for OpenVINO INT8

    quantized = nncf.quantize(
        model, nncf.Dataset(list(calibration)), subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(names=list(ignored_layers)) if ignored_layers else None,
        advanced_parameters=_advanced_parameters(method),
    )
    requantize_after_layout_ops(quantized)
    return quantized


def quantize_openvino_with_accuracy_control(
    model: Any, calibration: Sequence[np.ndarray], validation: Sequence[tuple[np.ndarray, int]],
    *, max_drop: float, method: str = "minmax",
) -> Any:
    """``nncf.quantize_with_accuracy_control``: keeps the layers whose quantization costs most top-1 in float
    until the top-1 drop on ``validation`` (clip, label) pairs is at most ``max_drop`` points. Layers are ranked
    on :data:`RANKING_CLIPS` of the validation clips (each ranking step re-compiles and re-runs the model); at most
    :data:`MAX_RESTORE_STEPS` rounds of reverting layers."""
    import nncf  # nncf: optional, loaded only for OpenVINO INT8
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    def validate(compiled_model: Any, items: Iterable[tuple[np.ndarray, int]]) -> tuple[float, list[float]]:
        output = compiled_model.output(0)
        correct = [float(int(np.argmax(compiled_model(clip)[output])) == label) for clip, label in items]
        return float(np.mean(correct)) if correct else 0.0, correct

    restorer = AdvancedAccuracyRestorerParameters(ranking_subset_size=min(RANKING_CLIPS, len(validation)),
                                                  max_num_iterations=MAX_RESTORE_STEPS)
    quantized = nncf.quantize_with_accuracy_control(
        model,
        calibration_dataset=nncf.Dataset(list(calibration)),
        validation_dataset=nncf.Dataset(list(validation), lambda item: item[0]),
        validation_fn=validate,
        max_drop=max_drop / 100.0,
        subset_size=len(calibration),
        advanced_quantization_parameters=_advanced_parameters(method),
        advanced_accuracy_restorer_parameters=restorer,
    )
    requantize_after_layout_ops(quantized)
    return quantized


def _layer_name(op: Any) -> str:
    return op.get_friendly_name().removesuffix("/WithoutBiases")


def _is_zero_constant(node: Any) -> bool:
    """A constant of zeros, or a Broadcast of one (ONNX ConstantOfShape: TSM's zero padding)."""
    if node.get_type_name() == "Broadcast":
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant" and not np.any(node.get_data())


def _fake_quantize_sources(node: Any, depth: int = 8) -> list[Any] | None:
    """The FakeQuantize nodes whose outputs reach ``node`` through layout-only ops and zero padding; None when some
    data path starts anywhere else."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return [node]
    if _is_zero_constant(node):
        return []
    if depth == 0 or kind not in LAYOUT_OPS:
        return None
    found: list[Any] = []
    for value in node.input_values() if kind == "Concat" else node.input_values()[:1]:
        sources = _fake_quantize_sources(value.get_node(), depth - 1)
        if sources is None:
            return None
        found += sources
    return found


def _grid(fake_quantize: Any) -> tuple[int, tuple[float, ...]] | None:
    """(levels, ranges) of a per-tensor FakeQuantize whose grid holds zero exactly; None otherwise."""
    ranges = []
    for value in fake_quantize.input_values()[1:]:
        node = value.get_node()
        if node.get_type_name() != "Constant" or int(np.prod(node.get_output_shape(0))) != 1:
            return None
        ranges.append(float(np.asarray(node.get_data()).reshape(())))
    levels = int(fake_quantize.get_attributes()["levels"])
    low, high = ranges[0], ranges[1]
    step = (high - low) / (levels - 1)
    if not low <= 0.0 <= high or abs(low + round(-low / step) * step) > 1e-6 * step:
        return None
    return levels, tuple(ranges)


def requantize_after_layout_ops(model: Any) -> int:
    """Repeat at a weighted layer's input the per-tensor FakeQuantize that reached it only through layout ops
    (TSM's temporal shift: slices, zero padding, concat, reshape). The values are already on that grid (zero
    included), so the copy changes no result, but OpenVINO's CPU plugin runs a conv in INT8 only when a
    FakeQuantize feeds it: without it, the first conv of every TSM block ran in FP32. Returns the copies made."""
    import openvino as ov  # openvino: optional backend, loaded only when an IR is read or compiled

    added = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() not in WEIGHTED_OPS or op.input_value(0).get_node().get_type_name() == "FakeQuantize":
            continue
        sources = _fake_quantize_sources(op.input_value(0).get_node())
        grids = {_grid(source) for source in sources or ()}
        if len(grids) != 1 or None in grids:
            continue
        levels, ranges = grids.pop()
        copy = ov.opset13.fake_quantize(op.input_value(0), *(np.float32(v) for v in ranges), levels,
                                        name=f"{op.get_friendly_name()}/fq_in")
        op.input(0).replace_source_output(copy.output(0))
        added += 1
    if added:
        model.validate_nodes_and_infer_types()
    return added


def _int8_weights(op: Any) -> bool:
    """Whether a weighted op's weights are int8: an int8 constant dequantized on the fly (NNCF's compressed
    weights) or a FakeQuantize on them."""
    node = op.input_value(1).get_node()
    while node.get_type_name() in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose"):
        node = node.input_value(0).get_node()
    if node.get_type_name() == "FakeQuantize":
        return True
    return node.get_type_name() == "Constant" and node.get_element_type().get_type_name() in INT8_TYPES


def weighted_layers(model: Any) -> dict[str, bool]:
    """Every weighted layer (conv, matmul) of ``model`` -> whether it runs in INT8: int8 weights and an input
    quantized by a FakeQuantize (possibly before layout-only ops such as TSM's shift: slices, concat, reshape)."""
    return {_layer_name(op): _int8_weights(op) and bool(_fake_quantize_sources(op.input_value(0).get_node()))
            for op in model.get_ordered_ops() if op.get_type_name() in WEIGHTED_OPS}


def float_layers(model: Any) -> list[str]:
    """The weighted layers that were left in floating point."""
    return [name for name, quantized in weighted_layers(model).items() if not quantized]


class CompiledRun:
    """``model`` (in memory) compiled for OpenVINO's CPU plugin in ``precision``; called on a float32 batch."""

    def __init__(self, model: Any, precision: str, threads: int | None = None) -> None:
        self.compiled = compile_model(model, precision, "CPU", threads)
        self.output = self.compiled.output(0)

    @property
    def execution(self) -> str:
        """What it computes in, read back from the runtime graph (e.g. ``i8 (54 layers) + f32 (3)``)."""
        return execution_precision(self.compiled)

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(clips)[self.output])
