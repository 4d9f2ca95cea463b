"""Pipelines that span layers: INT8 from a float source is ``quantize`` then ``export``.

:func:`export` is :func:`edgevid.export.export` plus that one case: with ``precision="int8"``, a float source and a
calibration manifest, it quantizes for the target (:func:`edgevid.compress.quantize.quantize`) and, for ``trt``,
builds the engine from the Q/DQ ONNX like any INT8 source. It sits above both :mod:`edgevid.export` and
:mod:`edgevid.compress` so that neither imports the other's upper half.
"""

from __future__ import annotations

from pathlib import Path

from edgevid.compress.quantize import quantize
from edgevid.export.api import export as export_artifact
from edgevid.export.api import export_request, export_source
from edgevid.export.base import ExportOptions, ExportResult, open_source


def export(artifact: str | Path, target: str = "onnx", precision: str = "fp32", out: str | Path | None = None,
           streaming: bool = False, calib: str | Path | None = None, **options) -> ExportResult:
    """Export a checkpoint / run directory (or, for openvino and trt, an ONNX file) to ``target``.

    ``options`` are the fields of :class:`~edgevid.export.base.ExportOptions` (batch_max, data, tolerance, ...).
    INT8 needs an already quantized (Q/DQ) source, or ``calib`` (a calibration manifest) to quantize a float
    source first; a float source is never exported as FP32 instead. ``streaming`` exports the one-frame-per-step
    form of a causal model (:mod:`edgevid.export.streaming`).
    """
    if streaming or precision != "int8" or calib is None:
        return export_artifact(artifact, target, precision, out, streaming=streaming, **options)
    exporter_cls, opts = export_request(target, precision, options)
    source = open_source(artifact, opts.threads)
    if source.meta.precision == "int8":
        return export_source(source, exporter_cls, opts, out)
    out = Path(out) if out is not None else exporter_cls(opts).default_out(source)
    return quantized_export(artifact, target, out, calib, opts, options)


def quantized_export(artifact: str | Path, target: str, out: Path, calib: str | Path,
                     opts: ExportOptions, options: dict) -> ExportResult:
    """INT8 from a float source: ``edgevid quantize`` for the target; for trt the Q/DQ ONNX then becomes an
    engine like any INT8 source."""
    if target == "trt":
        qdq = quantize(artifact, "trt", calib, bench_iters=0, threads=opts.threads)
        return export_artifact(qdq.path, "trt", "int8", out, **options)
    result = quantize(artifact, target, calib, out=out, bench_iters=0, threads=opts.threads)
    notes = [f"quantized with calibration set {calib} ({result.calib_clips} clips); float layers: "
             f"{', '.join(result.float_layers) or 'none'}"]
    return ExportResult(target, "int8", result.path, result.meta, None,
                        onnx_path=result.path if target == "onnx" else None, notes=notes)


__all__ = ["export", "quantized_export"]
