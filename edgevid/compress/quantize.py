"""``edgevid quantize``: INT8 post-training quantization of a trained model for one deployment target.

=========  ==========================================================  ================================
target     how                                                         output
=========  ==========================================================  ================================
openvino   NNCF ``nncf.quantize`` on the OpenVINO model (converted     IR ``.xml`` + ``.bin``
           from the checkpoint's ONNX export, or an FP32 IR)
onnx       ``onnxruntime.quantization.quantize_static``, QDQ format,   QDQ ``.onnx`` for ONNX Runtime
           per-channel weights, MinMax / Entropy / Percentile
trt        the same, in TensorRT's explicit-quantization scheme:       Q/DQ ``.onnx``; ``edgevid export
           symmetric int8, zero point 0, per-channel weights (axis     X.onnx --target trt --precision
           0), per-tensor activations, float biases                    int8`` builds the engine
=========  ==========================================================  ================================

Every output carries the metadata of its source with ``precision = int8`` and ``quantization``
(target, method, scheme, calibration set, layers left in float, top-1 before/after when measured).

Accuracy guard (``data`` given): FP32 and INT8 top-1 on the validation split; when INT8 loses more than
``max_drop`` points, the most sensitive layers stay in float until it fits: ``nncf.quantize_with_accuracy_control``
for OpenVINO, a per-layer sensitivity pass for ONNX (:func:`~edgevid.compress.accuracy.onnx_accuracy_guard`).
A report (precision x backend: size, top-1, latency, speed-up) is printed and saved beside the output as
``<output>.report.json``. Nothing is written under the output name unless everything succeeds.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.checkpoint import load_model
from edgevid.compress import quant_openvino as qov
from edgevid.compress.accuracy import AccuracyGuardError, ValidationSet, onnx_accuracy_guard, ort_predict
from edgevid.compress.calibration import check_method, load_calibration
from edgevid.compress.quant_onnx import OnnxQuantizer, OnnxQuantScheme, qdq_summary
from edgevid.compress.report import add_speedups, benchmark_artifacts, print_report, write_report
from edgevid.errors import EdgevidError
from edgevid.export.base import ExportOptions, Parity, atomic_files
from edgevid.export.onnx import finalize_onnx, model_to_onnx
from edgevid.formats import CHECKPOINT_SUFFIXES, FORMATS
from edgevid.meta import ArtifactMeta, QuantizationInfo, read_meta, write_openvino_meta
from edgevid.models import int8_graph
from edgevid.utils.atomic import remove_stale_temporaries, temp_dir
from edgevid.utils.machine import cpu_features

TARGETS = ("openvino", "onnx", "trt")
TARGET_PACKAGES = {"openvino": ("openvino", "nncf"), "onnx": ("onnx", "onnxruntime"), "trt": ("onnx", "onnxruntime")}
# trt INT8 is a Q/DQ ONNX (the engine is built from it by `edgevid export --target trt`)
TARGET_SUFFIX = {target: FORMATS["onnx" if target == "trt" else target].suffix for target in TARGETS}
TARGET_TAG = {"openvino": ".int8", "onnx": ".int8", "trt": ".int8.trt"}
BACKEND_LABEL = {"openvino": "openvino", "onnx": "onnxruntime", "trt": "onnxruntime (TensorRT Q/DQ)"}
PARITY_CLIPS = 8


@dataclass
class QuantizeResult:
    """What ``quantize`` produced and measured."""

    path: Path
    target: str
    meta: ArtifactMeta
    float_layers: list[str]
    weighted_layers: int
    calib_clips: int
    parity: Parity
    fp32_top1: float | None = None
    int8_top1: float | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    report_path: Path | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "target": self.target, "float_layers": self.float_layers,
                "weighted_layers": self.weighted_layers, "calib_clips": self.calib_clips,
                "parity": dataclasses.asdict(self.parity),
                "fp32_top1": self.fp32_top1, "int8_top1": self.int8_top1,
                "report": str(self.report_path) if self.report_path else None, "seconds": round(self.seconds, 1)}


def check_target(target: str) -> None:
    """A known target whose Python packages import here; otherwise a one-line error saying what to install."""
    if target not in TARGETS:
        raise EdgevidError(f"--target {target!r} is not one of {', '.join(TARGETS)}")
    missing = []
    for package in TARGET_PACKAGES[target]:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise EdgevidError(f"--target {target} needs the Python package(s) {', '.join(missing)}, which cannot be "
                           f"imported here: pip install {' '.join(missing)}")


def _has_qdq_nodes(path: Path) -> bool:
    import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


def check_source(source: Path, meta: ArtifactMeta, target: str) -> None:
    """The artifact must be an FP32 checkpoint / run directory, FP32 ONNX, or (for openvino) FP32 IR."""
    if meta.precision == "int8":
        raise EdgevidError(f"{source}: already INT8 (metadata precision int8); quantize the FP32 model it was "
                           "made from instead")
    if meta.precision != "fp32":
        raise EdgevidError(f"{source}: is {meta.precision}; quantize the FP32 checkpoint or ONNX instead")
    suffix = "" if source.is_dir() else source.suffix.lower()
    allowed = ("", *CHECKPOINT_SUFFIXES, *FORMATS["onnx"].suffixes) + \
        (FORMATS["openvino"].suffixes if target == "openvino" else ())
    if suffix not in allowed:
        kinds = "a checkpoint, run directory or FP32 ONNX" + (" or OpenVINO IR" if target == "openvino" else "")
        raise EdgevidError(f"{source}: cannot quantize a {suffix} artifact for --target {target}; give {kinds}")
    if suffix == ".onnx" and _has_qdq_nodes(source):
        raise EdgevidError(f"{source}: already holds QuantizeLinear/DequantizeLinear nodes (an INT8 model); "
                           "quantize the FP32 model instead")


def default_output(source: Path, meta: ArtifactMeta, target: str) -> Path:
    """``<source stem>.int8.xml`` / ``.int8.onnx`` / ``.int8.trt.onnx`` beside the source (inside a run directory)."""
    base = source / meta.model if source.is_dir() else source.with_suffix("")
    return base.with_name(base.name + TARGET_TAG[target] + TARGET_SUFFIX[target])


def _output_path(source: Path, meta: ArtifactMeta, target: str, out: str | Path | None) -> Path:
    path = Path(out) if out is not None else default_output(source, meta, target)
    if path.suffix.lower() != TARGET_SUFFIX[target]:
        raise EdgevidError(f"--out {path}: a {target} INT8 artifact must end in {TARGET_SUFFIX[target]}")
    if path.resolve() == source.resolve():
        raise EdgevidError(f"--out {path}: would overwrite the source artifact")
    return path


def _fp32_onnx(source: Path, meta: ArtifactMeta, work: Path, threads: int | None) -> tuple[Path, ArtifactMeta]:
    """The FP32 ONNX graph to quantize: the source itself, or the checkpoint exported as ``edgevid export`` does,
    in its INT8 graph form (:func:`edgevid.models.int8_graph`)."""
    if source.suffix.lower() == ".onnx":
        return source, meta

    model, _ = load_model(source)
    path = work / "fp32.onnx"
    with int8_graph(model):
        return path, model_to_onnx(model, meta, path, ExportOptions(threads=threads))


def _parity(fp32: np.ndarray, int8: np.ndarray, execution: str = "") -> Parity:
    """INT8 against FP32 on calibration clips (no logit tolerance: the accuracy guard judges INT8 by top-1)."""
    return Parity(float(np.abs(fp32 - int8).max()), float(np.mean(fp32.argmax(1) == int8.argmax(1))), len(fp32),
                  None, "fp32", "calibration clips", execution)


@dataclass
class _Outcome:
    """What a target's quantizer leaves in the work directory for the common finishing steps."""

    int8_path: Path | None
    fp32_path: Path
    float_layers: list[str]
    weighted_layers: int
    parity: Parity
    scheme: dict[str, Any]
    fp32_top1: float | None = None
    int8_top1: float | None = None
    guard: dict[str, Any] = field(default_factory=dict)
    int8_model: Any = None


def _quantize_onnx_target(target: str, fp32_onnx: Path, clips: list[np.ndarray], work: Path, *, method: str,
                          symmetric_activations: bool, valset: ValidationSet | None, max_drop: float,
                          threads: int | None, show_progress: bool) -> _Outcome:
    import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited


    scheme = OnnxQuantScheme.for_target(target, method, symmetric_activations)
    input_name = onnx.load(str(fp32_onnx), load_external_data=False).graph.input[0].name
    quantizer = OnnxQuantizer(fp32_onnx, lambda: ({input_name: clip} for clip in clips), scheme, work)
    int8_path = quantizer.quantize(work / "int8.onnx")
    fp32_run, int8_run = ort_predict(fp32_onnx, threads), ort_predict(int8_path, threads)
    outcome = _Outcome(int8_path, fp32_onnx, [], 0, {}, scheme.to_dict())
    if valset is not None:
        fp32_scores = valset.scores(fp32_run)
        outcome.fp32_top1 = valset.top1(fp32_scores)
        outcome.int8_top1 = valset.top1(valset.scores(int8_run))
        if outcome.fp32_top1 - outcome.int8_top1 > max_drop:
            guard = onnx_accuracy_guard(quantizer, int8_path, valset, fp32_scores, max_drop, threads=threads,
                                        show_progress=show_progress)
            outcome.guard = {"method": "per-layer sensitivity (ONNX Runtime)", "int8_top1_before": outcome.int8_top1,
                             "sensitivity": guard.sensitivity, "evaluations": guard.evaluations}
            outcome.int8_top1 = guard.top1
            int8_run = ort_predict(int8_path, threads)
    summary = qdq_summary(int8_path)
    if target == "trt":
        _check_trt_qdq(summary, int8_path)
    outcome.float_layers = summary["weighted_float"]
    outcome.weighted_layers = len(summary["weighted_float"]) + len(summary["weighted_int8"])
    batch = np.concatenate(clips[:PARITY_CLIPS])
    outcome.parity = _parity(fp32_run(batch), int8_run(batch))
    return outcome


def _check_trt_qdq(summary: dict, path: Path) -> None:
    """TensorRT's explicit quantization: zero points 0 and per-channel scales only along a weight's output
    channels."""
    if summary["nonzero_zero_points"]:
        raise EdgevidError(f"{path}: Q/DQ nodes with non-zero zero points for TensorRT: "
                           f"{', '.join(summary['nonzero_zero_points'][:3])}")
    expected = summary["output_channel_axes"]
    bad_axes = {name: axis for name, axis in summary["per_channel_axes"].items() if axis != expected.get(name, 0)}
    if bad_axes:
        raise EdgevidError(f"{path}: per-channel Q/DQ off the output-channel axis for TensorRT: {bad_axes}")


def _quantize_openvino_target(source: Path, fp32_onnx: Path | None, meta: ArtifactMeta, clips: list[np.ndarray],
                              work: Path, *, method: str, valset: ValidationSet | None, max_drop: float,
                              threads: int | None) -> _Outcome:
    import openvino as ov  # openvino: optional backend, loaded only when an IR is read or compiled


    fp32_source = fp32_onnx if fp32_onnx is not None else source
    model = qov.openvino_model(fp32_source)
    fp32_path = source
    if source.suffix.lower() != ".xml":
        fp32_path = work / "fp32.xml"
        write_openvino_meta(model, meta)
        ov.save_model(model, str(fp32_path), compress_to_fp16=False)
    quantized = qov.quantize_openvino(model, clips, method=method)
    fp32_run, int8_run = qov.CompiledRun(model, "fp32", threads), qov.CompiledRun(quantized, "int8", threads)
    scheme = {"format": "FakeQuantize (NNCF)", "method": method, "preset": "performance",
              "weights": "int8 symmetric per-channel", "activations": "int8 per-tensor"}
    outcome = _Outcome(None, fp32_path, [], 0, {}, scheme)
    if valset is not None:
        outcome.fp32_top1 = valset.top1(valset.scores(fp32_run))
        outcome.int8_top1 = valset.top1(valset.scores(int8_run))
        if outcome.fp32_top1 - outcome.int8_top1 > max_drop:
            before = outcome.int8_top1
            quantized = qov.quantize_openvino_with_accuracy_control(
                qov.openvino_model(fp32_source), clips, valset.items(), max_drop=max_drop, method=method)
            int8_run = qov.CompiledRun(quantized, "int8", threads)
            outcome.int8_top1 = valset.top1(valset.scores(int8_run))
            outcome.guard = {"method": "nncf.quantize_with_accuracy_control", "int8_top1_before": before}
            if outcome.fp32_top1 - outcome.int8_top1 > max_drop:
                raise AccuracyGuardError(outcome.fp32_top1, outcome.int8_top1, max_drop,
                                         "the most sensitive layers")
    layers = qov.weighted_layers(quantized)
    outcome.float_layers = [name for name, quantized_input in layers.items() if not quantized_input]
    outcome.weighted_layers = len(layers)
    batch = np.concatenate(clips[:PARITY_CLIPS])
    outcome.parity = _parity(fp32_run(batch), int8_run(batch), int8_run.execution)
    outcome.int8_model = quantized
    outcome.scheme["execution"] = int8_run.execution
    return outcome


def _write_output(target: str, outcome: _Outcome, meta: ArtifactMeta, path: Path) -> None:
    """Write the INT8 model with its metadata to ``path`` (a temporary name of :func:`quantize`'s atomic move)."""
    if target == "openvino":
        import openvino as ov  # openvino: optional backend, loaded only when an IR is read or compiled


        write_openvino_meta(outcome.int8_model, meta)
        ov.save_model(outcome.int8_model, str(path), compress_to_fp16=False)
        return
    import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited


    finalize_onnx(onnx.load(str(outcome.int8_path)), meta, path)


def quantize(artifact: str | Path, target: str, calib: str | Path, *, out: str | Path | None = None,
             data: str | Path | None = None, max_drop: float = 1.0, method: str = "minmax",
             symmetric_activations: bool = False, val_clips: int | None = None, bench_iters: int = 20,
             threads: int | None = None, show_progress: bool = True) -> QuantizeResult:
    """Quantize ``artifact`` to INT8 for ``target`` with the calibration manifest ``calib`` (see module doc).

    ``method``: activation range estimation on every target: minmax (global min/max), entropy (histogram fit) or
    percentile. ``data``: dataset for the accuracy guard and the report's top-1
    (``val_clips`` caps the clips used). ``bench_iters``: latency iterations per artifact in the report (0: none).
    """

    start = time.perf_counter()
    check_target(target)
    check_method(method)
    if max_drop < 0:
        raise EdgevidError(f"--max-drop must be >= 0 points, got {max_drop}")
    source = Path(artifact)
    meta = read_meta(source)
    check_source(source, meta, target)
    out = _output_path(source, meta, target, out)
    manifest, clips = load_calibration(calib, meta, source, show_progress)
    valset = ValidationSet.load(data, meta, max_clips=val_clips, show_progress=show_progress) if data else None
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)
    with temp_dir(out.parent, out.name) as work:
        fp32_onnx, fp32_meta = (None, meta) if source.suffix.lower() == ".xml" else \
            _fp32_onnx(source, meta, work, threads)
        if target == "openvino":
            outcome = _quantize_openvino_target(source, fp32_onnx, fp32_meta, clips, work, method=method,
                                                valset=valset, max_drop=max_drop, threads=threads)
        else:
            outcome = _quantize_onnx_target(target, fp32_onnx, clips, work, method=method,
                                            symmetric_activations=symmetric_activations, valset=valset,
                                            max_drop=max_drop, threads=threads, show_progress=show_progress)
        info = {"target": target, "scheme": outcome.scheme, "calibration": str(manifest.source),
                "calib_clips": len(clips), "float_layers": outcome.float_layers,
                "weighted_layers": outcome.weighted_layers, "fp32_top1": outcome.fp32_top1,
                "int8_top1": outcome.int8_top1, "max_drop": max_drop if valset is not None else None,
                "accuracy_guard": outcome.guard.get("method"), "source": str(source),
                "cpu_features": [name for name, on in cpu_features().items() if on]}
        int8_meta = fp32_meta.replace(precision="int8", quantization=QuantizationInfo(**info))
        result = QuantizeResult(out, target, int8_meta, outcome.float_layers, outcome.weighted_layers, len(clips),
                                outcome.parity, outcome.fp32_top1, outcome.int8_top1)
        report = out.with_name(out.name + ".report.json") if valset is not None or bench_iters > 0 else None
        # the artifact and its report are written under temporary names and moved in together, the report first
        # and the artifact's entry file last: an interruption leaves nothing, or a report without its artifact
        # (rewritten by the next run), never an artifact without its report
        finals = [*FORMATS["openvino" if target == "openvino" else "onnx"].files(out), *([report] if report else [])]
        with atomic_files(*finals) as temps:
            _write_output(target, outcome, int8_meta, temps[0])
            if report is not None:
                label = BACKEND_LABEL[target]
                rows = benchmark_artifacts([({"backend": label, "top1": outcome.fp32_top1}, outcome.fp32_path),
                                            ({"backend": label, "top1": outcome.int8_top1}, temps[0])],
                                           valset=valset, iters=bench_iters, threads=threads)
                result.rows = add_speedups(rows, {"precision": "fp32"})
                result.rows[0]["artifact"], result.rows[1]["artifact"] = str(source), str(out)
                print_report(result.rows, f"INT8 for {target}: {meta.model}")
                write_report(temps[-1], result.rows, quantization=info, guard=outcome.guard)
                result.report_path = report
    result.seconds = time.perf_counter() - start
    return result
