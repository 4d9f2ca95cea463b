"""OpenVINO IR export: ``ov.convert_model`` from the ONNX graph, ``ov.save_model``, metadata in rt_info.

Converted from the ONNX file rather than from the torch module: the IR then has exactly the graph, dynamic
axes and time-axis decision of the checked ONNX export (one tracing path for every target), converting ONNX is
fast and needs no TorchScript/FX frontend, and an ONNX source (e.g. a Q/DQ INT8 model from
``edgevid quantize``) goes through the same path. FP16 compresses the weights (``compress_to_fp16``) and computes in
FP16 where the device has FP16 arithmetic; BF16 keeps FP32 weights and computes in BF16 (CPUs with AVX512_BF16 or
AMX); the metadata's precision tells the runtime which (:mod:`edgevid.precision`).
"""

from __future__ import annotations

from pathlib import Path

from edgevid.errors import EdgevidError
from edgevid.export.base import (
    Exporter,
    ExportResult,
    Source,
    atomic_files,
    check_parity,
    register_exporter,
    with_precision,
)
from edgevid.export.onnx import model_to_onnx
from edgevid.formats import FORMATS
from edgevid.meta import ArtifactMeta, write_openvino_meta
from edgevid.runtime.openvino_backend import OpenVINOPredictor
from edgevid.utils.atomic import temp_dir


def _conversion_error(exc: BaseException) -> str:
    """The most specific line of an OpenVINO conversion error (the failing op and its reason)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith(("Check ", "While validating", "FrontEnd API", "--", "Summary",
                                                        "Model wasn't"))]
    ops = [ln.lstrip("- ") for ln in lines if ln.startswith("--") and "Conversion is failed" not in ln]
    return "; ".join(ops[:1] + reasons[:1]) or type(exc).__name__


@register_exporter
class OpenVINOExporter(Exporter):
    """Checkpoint or ONNX -> OpenVINO IR (.xml + .bin), checked through the OpenVINO CPU runtime."""

    target = "openvino"
    suffix = FORMATS[target].suffix
    precisions = FORMATS[target].precisions
    backend = FORMATS[target].backend
    description = "OpenVINO IR for Intel CPUs, GPUs and NPUs"

    def export(self, source: Source, out: Path) -> ExportResult:
        import openvino as ov  # openvino: optional backend, loaded only when an IR is read or compiled


        precision = self.options.precision
        out.parent.mkdir(parents=True, exist_ok=True)
        with temp_dir(out.parent, out.name) as work:
            onnx_path, meta = self._onnx(source, work)
            try:
                model = ov.convert_model(str(onnx_path))
            except Exception as exc:  # OpConversionFailure and friends share no public base class
                raise EdgevidError(f"{out}: OpenVINO cannot convert {source.meta.model}: "
                                   f"{_conversion_error(exc)}") from None
        meta = meta.replace(precision=precision if precision in ("fp16", "bf16") else meta.precision)
        write_openvino_meta(model, meta)
        with atomic_files(*FORMATS["openvino"].files(out)) as (xml, _):
            ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
            candidate = OpenVINOPredictor.open(xml, device="CPU", threads=self.options.threads)
            parity = check_parity(source, candidate, self.options, f"{out} (OpenVINO CPU)")
        return ExportResult(self.target, precision, out, meta, parity,
                            onnx_path=source.path if source.is_onnx else None)

    def _onnx(self, source: Source, work: Path) -> tuple[Path, ArtifactMeta]:
        """The FP32 (or already quantized) ONNX graph to convert, and its metadata."""
        if source.is_onnx:
            return source.path, source.meta
        path = work / f"{source.meta.model}.onnx"
        precision = "fp32" if self.options.precision in ("fp16", "bf16") else self.options.precision
        return path, model_to_onnx(source.torch_model(self.target), source.meta, path,
                                   with_precision(self.options, precision))
