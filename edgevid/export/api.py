"""``export(artifact, target, precision)``: pick the exporter for a target, open the source once, write the artifact.

INT8 from a float source is a pipeline above export and compress (quantize, then export): see
:func:`edgevid.pipeline.export`, which the CLI's ``edgevid export --calib`` runs; this layer exports sources that
are already what the target needs.
"""

from __future__ import annotations

from pathlib import Path

from edgevid.errors import EdgevidError
from edgevid.export.base import Exporter, ExportOptions, ExportResult, Source, get_exporter, open_source
from edgevid.export.streaming import export_streaming
from edgevid.precision import NO_BF16
from edgevid.utils.atomic import remove_stale_temporaries


def export(artifact: str | Path, target: str = "onnx", precision: str = "fp32", out: str | Path | None = None,
           streaming: bool = False, calib: str | Path | None = None, **options) -> ExportResult:
    """Export a checkpoint / run directory (or, for openvino and trt, an ONNX file) to ``target``.

    ``options`` are the fields of :class:`ExportOptions` (batch_max, data, tolerance, onnx_only, ...).
    INT8 needs an already quantized (Q/DQ) source; a float source with ``calib`` (a calibration manifest) is
    quantized first by :func:`edgevid.pipeline.export`; a float source is never exported as FP32 instead.
    ``streaming`` exports the one-frame-per-step form of a causal model (:mod:`edgevid.export.streaming`).
    """
    if streaming:
        return export_streaming(artifact, target, out, precision, threads=options.get("threads"),
                                onnx_exporter=options.get("onnx_exporter", "dynamo"))
    exporter_cls, opts = export_request(target, precision, options)
    source = open_source(artifact, opts.threads)
    if precision == "int8" and source.meta.precision != "int8":
        if calib is None:
            raise EdgevidError(
                f"{source.path}: INT8 export needs a calibration set: pass --calib MANIFEST (`edgevid calib build`) "
                f"or quantize first with `edgevid quantize {artifact} --calib MANIFEST` and export that (no silent "
                "FP32 fallback)"
            )
        raise EdgevidError(f"{source.path}: INT8 from a float source is quantize then export: call "
                           "edgevid.pipeline.export(..., calib=...) (what `edgevid export --calib` runs)")
    return export_source(source, exporter_cls, opts, out)


def export_request(target: str, precision: str, options: dict) -> tuple[type[Exporter], ExportOptions]:
    """The exporter class of ``target`` and the checked options; an error when it cannot export ``precision``."""
    exporter_cls = get_exporter(target)
    opts = ExportOptions(precision=precision, **options)
    if precision not in exporter_cls.precisions:
        why = f": {NO_BF16[exporter_cls.backend]}" if precision == "bf16" and exporter_cls.backend in NO_BF16 else ""
        raise EdgevidError(f"--precision {precision}: the {target} target exports "
                           f"{', '.join(exporter_cls.precisions)}{why}")
    return exporter_cls, opts


def export_source(source: Source, exporter_cls: type[Exporter], opts: ExportOptions,
                  out: str | Path | None) -> ExportResult:
    """Export an opened source whose precision fits ``opts.precision`` to ``out`` (default: beside the source)."""
    if source.meta.precision == "int8" and opts.precision != "int8":
        raise EdgevidError(f"{source.path}: the source is INT8 (Q/DQ); export it with --precision int8")
    exporter = exporter_cls(opts)
    out_path = Path(out) if out is not None else exporter.default_out(source)
    if out_path.suffix.lower() != exporter.suffix:
        raise EdgevidError(f"--out {out_path}: a {exporter.target} artifact must end in {exporter.suffix}")
    if out_path.resolve() == source.path.resolve():
        raise EdgevidError(f"--out {out_path}: would overwrite the source artifact")
    remove_stale_temporaries(out_path.parent)
    return exporter.export(source, out_path)
