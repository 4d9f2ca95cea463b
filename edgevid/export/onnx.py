"""ONNX export: TorchScript-based ``torch.onnx.export`` (opset >= 17), onnxslim, the ONNX checker, metadata.

Why the TorchScript exporter (``dynamo=False``) and not torch 2.x's default dynamo exporter: it handles every
zoo model with ``dynamic_axes`` (batch, and time where the model allows), keeps shape arithmetic as graph ops
instead of specialising symbolic shapes through guards, and is about 10x faster (well under a second for a tiny
model against ~10 s), which keeps exports and tests quick. Every export is checked against PyTorch anyway.

The time axis is dynamic when the model allows it: the graph is exported with a dynamic T and then run at 2T
through ONNX Runtime against PyTorch; a model whose reshape or head fixes T (or that rejects 2T) is re-exported
with a static T. The decision is recorded in the metadata (``meta.input.dynamic_time``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edgevid.errors import EdgevidError
from edgevid.export.base import (
    Exporter,
    ExportOptions,
    ExportResult,
    Source,
    check_parity,
    register_exporter,
)
from edgevid.formats import FORMATS
from edgevid.meta import ArtifactMeta, InputSpec, write_onnx_meta
from edgevid.precision import PRECISIONS
from edgevid.utils.atomic import atomic_path

INPUT_NAME = "clip"


def export_onnx_module(module: torch.nn.Module, example_inputs: tuple, path: str | Path, *,
                       input_names: Sequence[str], output_names: Sequence[str],
                       dynamic_axes: dict[str, dict[int, str]], meta: ArtifactMeta, opset: int = 17,
                       simplify: bool = True) -> Path:
    """Export ``module`` (put in eval mode) to ONNX: trace, simplify with onnxslim, store ``meta`` in
    metadata_props, run the ONNX checker, and write ``path`` atomically. Returns ``path``."""
    import onnx

    if opset < 17:
        raise EdgevidError(f"ONNX opset must be >= 17, got {opset}")
    path = Path(path)
    module.eval()
    with atomic_path(path, suffix=".onnx") as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example_inputs, str(tmp), input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        model = onnx.load(str(tmp))
        if simplify:
            import onnxslim

            model = onnxslim.slim(model)
        finalize_onnx(model, meta, tmp)
    return path


def finalize_onnx(model, meta: ArtifactMeta, path: Path) -> None:
    """Store ``meta`` in an in-memory ONNX model, check it and save it to ``path``."""
    import onnx

    write_onnx_meta(model, meta)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgevidError(f"{path}: exported ONNX fails the checker: {str(exc).splitlines()[0][:200]}") from None
    onnx.save(model, str(path))


def to_fp16(model):
    """FP16 weights and compute with FP32 inputs/outputs (Cast nodes at the boundary)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per weight clipped to the FP16 range
        return float16.convert_float_to_float16(model, keep_io_types=True)


def output_name(meta: ArtifactMeta) -> str:
    return "features" if meta.head == "features" else "logits"


def _dynamic_axes(meta: ArtifactMeta, dynamic_time: bool) -> dict[str, dict[int, str]]:
    clip_axes = {0: "batch", 2: "time"} if dynamic_time else {0: "batch"}
    out_axes = {0: "batch"}
    if dynamic_time and meta.head != "clip":
        out_axes[2] = "time_out"
    return {INPUT_NAME: clip_axes, output_name(meta): out_axes}


def _time_axis_works(model: torch.nn.Module, path: Path, meta: ArtifactMeta) -> bool:
    """Whether the graph at ``path``, exported with a dynamic T, matches PyTorch at 2T."""
    import onnxruntime as ort

    clip = torch.randn(1, 3, 2 * meta.frames, meta.size, meta.size)
    try:
        with torch.no_grad():
            expected = model(clip).float().numpy()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: clip.numpy()})[0]
    except (ValueError, RuntimeError, ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidArgument, ort.capi.onnxruntime_pybind11_state.RuntimeException):
        return False
    scale = max(1.0, float(np.abs(expected).max()))
    return got.shape == expected.shape and float(np.abs(got - expected).max()) <= PRECISIONS["fp32"].tolerance * scale


def model_to_onnx(model: torch.nn.Module, meta: ArtifactMeta, path: Path, options: ExportOptions) -> ArtifactMeta:
    """Export a zoo model as ``clip [B, 3, T, S, S] -> logits`` with a dynamic batch (and time where the model
    allows), in ``options.precision`` (fp32, or fp16 with fp32 I/O). Returns the metadata written into it."""
    if options.precision == "int8":
        raise EdgevidError("ONNX INT8 comes from `edgevid quantize ... --calib DIR` (Q/DQ ONNX), not from export")
    example = (torch.randn(2, 3, meta.frames, meta.size, meta.size),)
    dynamic_time = True if options.dynamic_time is None else options.dynamic_time
    extra = {**meta.extra, "opset": options.opset, "exporter": "torch.onnx/torchscript"}
    spec = InputSpec(name=INPUT_NAME, output=output_name(meta), dynamic_batch=True, dynamic_time=dynamic_time,
                     min_frames=int(model.min_frames), frame_multiple=int(model.frame_multiple))
    out_meta = meta.replace(precision="fp32", input=spec, extra=extra)

    def write(target_meta: ArtifactMeta) -> None:
        export_onnx_module(model, example, path, input_names=[INPUT_NAME], output_names=[output_name(meta)],
                           dynamic_axes=_dynamic_axes(meta, target_meta.input.dynamic_time), meta=target_meta,
                           opset=options.opset)

    write(out_meta)
    if options.dynamic_time is None and not _time_axis_works(model, path, meta):
        out_meta = out_meta.replace(input=dataclasses.replace(spec, dynamic_time=False))
        write(out_meta)
    if options.precision == "fp16":
        import onnx

        out_meta = out_meta.replace(precision="fp16")
        finalize_onnx(to_fp16(onnx.load(str(path))), out_meta, path)
    return out_meta


@register_exporter
class OnnxExporter(Exporter):
    """Checkpoint -> ONNX (fp32 or fp16), checked through ONNX Runtime against PyTorch."""

    target = "onnx"
    suffix = FORMATS[target].suffix
    precisions = FORMATS[target].precisions
    backend = FORMATS[target].backend
    description = "ONNX (opset >= 17) for ONNX Runtime and TensorRT"

    def export(self, source: Source, out: Path) -> ExportResult:
        from edgevid.runtime.onnx_backend import OnnxRuntimePredictor

        model = source.torch_model(self.target)
        with atomic_path(out, suffix=".onnx") as tmp:
            meta = model_to_onnx(model, source.meta, tmp, self.options)
            candidate = OnnxRuntimePredictor.open(tmp, threads=self.options.threads)
            parity = check_parity(source, candidate, self.options, f"{out} (ONNX Runtime)")
        notes = [f"time axis {'dynamic' if meta.input.dynamic_time else 'static'} (T={meta.frames})"]
        return ExportResult(self.target, self.options.precision, out, meta, parity, onnx_path=out, notes=notes)
