"""ONNX export: ``torch.onnx.export`` with the dynamo exporter (TorchScript as fallback), onnxslim, the ONNX
checker, metadata.

The dynamo exporter (``dynamo=True``: ``torch.export`` then onnxscript's torchlib) is the default for every zoo
model; torch has deprecated the TorchScript tracer (``dynamo=False``), which stays only as a fallback: used when the
dynamo exporter raises for a model or writes a graph that does not match PyTorch on the example inputs (one
``warning:`` line says so), or when asked for (``--onnx-exporter torchscript``). The exporter used is recorded in
the metadata (``extra['exporter']``). Dynamic axes are given to ``torch.export`` as ``Dim.AUTO`` (dynamic where the
model allows, static where its shape arithmetic fixes the size, instead of failing the export) and renamed to the
usual names (``batch``, ``time``) in the written graph.

The time axis is dynamic when the model allows it: the graph is exported with a dynamic T and then run at 2T
through ONNX Runtime against PyTorch; a model whose reshape or head fixes T (or that rejects 2T) is re-exported
with a static T. The decision is recorded in the metadata (``meta.input.dynamic_time``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from edgevid.errors import EdgevidError
from edgevid.export.base import (
    ONNX_OPSET,
    Exporter,
    ExportOptions,
    ExportResult,
    Source,
    check_onnx_options,
    check_parity,
    register_exporter,
)
from edgevid.formats import FORMATS
from edgevid.meta import ArtifactMeta, InputSpec, read_meta, write_onnx_meta
from edgevid.precision import PRECISIONS
from edgevid.runtime.onnx_backend import OnnxRuntimePredictor, open_session, ort_errors
from edgevid.utils.atomic import atomic_path
from edgevid.utils.console import err_console

INPUT_NAME = "clip"
EXPORTER_TAGS = {"dynamo": "torch.onnx/dynamo", "torchscript": "torch.onnx/torchscript"}


def export_onnx_module(module: torch.nn.Module, example_inputs: tuple, path: str | Path, *,
                       input_names: Sequence[str], output_names: Sequence[str],
                       dynamic_axes: dict[str, dict[int, str]], meta: ArtifactMeta, opset: int = ONNX_OPSET,
                       simplify: bool = True, exporter: str = "dynamo", may_fix: Sequence[str] = ()) -> Path:
    """Export ``module`` (put in eval mode) to ONNX with ``exporter`` (dynamo, falling back to torchscript with a
    warning when it fails), simplify with onnxslim, store ``meta`` (plus the exporter and opset used) in
    metadata_props, run the ONNX checker, and write ``path`` atomically. Returns ``path``.

    Axes of ``dynamic_axes`` whose example size is 1 cannot stay dynamic through ``torch.export``: give examples of
    size >= 2 there. An axis that the dynamo graph fixes fails the dynamo export (then the fallback runs), unless
    its name is in ``may_fix`` (the caller checks those)."""
    check_onnx_options(opset, exporter)
    path = Path(path)
    module.eval()
    with atomic_path(path, suffix=".onnx") as tmp:
        model, used = trace_onnx(module, example_inputs, input_names=input_names, output_names=output_names,
                                 dynamic_axes=dynamic_axes, opset=opset, exporter=exporter, label=meta.model,
                                 may_fix=may_fix)
        if simplify:
            import onnxslim  # onnxslim: a few hundred ms to import, only when a graph is written

            model = onnxslim.slim(model)
        written_opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        finalize_onnx(model, meta.replace(extra={**meta.extra, "opset": written_opset,
                                                 "exporter": EXPORTER_TAGS[used]}), tmp)
    return path


def trace_onnx(module: torch.nn.Module, example_inputs: tuple, *, input_names: Sequence[str],
               output_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]], opset: int = ONNX_OPSET,
               exporter: str = "dynamo", label: str = "model", may_fix: Sequence[str] = ()):
    """The in-memory ONNX graph of ``module`` (in eval mode) and the exporter that wrote it ("dynamo" or
    "torchscript"). A dynamo export that raises, fixes a dynamic axis not named in ``may_fix``, or whose graph
    differs from PyTorch on ``example_inputs`` is redone with the TorchScript exporter after a one-line warning
    naming ``label`` and the reason."""
    if exporter == "dynamo":
        try:
            model = _dynamo_graph(module, example_inputs, input_names, output_names, dynamic_axes, opset)
            fixed = [f"{name}[{axis}] ({axis_name})" for name, axis, axis_name in _fixed_axes(model, dynamic_axes)
                     if axis_name not in may_fix]
            if fixed:
                raise EdgevidError(f"torch.export fixed the dynamic axis {', '.join(fixed)}")
            _check_graph(module, example_inputs, model, input_names)
            return model, "dynamo"
        except Exception as exc:  # torch.export, onnxscript and onnxruntime raise many unrelated types
            err_console.print(f"[yellow]warning:[/] {label}: the dynamo ONNX exporter failed ({_reason(exc)}); "
                              "exported with the TorchScript exporter instead", highlight=False, soft_wrap=True)
    return _torchscript_graph(module, example_inputs, input_names, output_names, dynamic_axes, opset), "torchscript"


def _reason(exc: BaseException) -> str:
    """The first meaningful line of an exporter error, without terminal colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Failed to export the model with", "- ", "#"))]
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence torch.onnx's log lines (missing torchvision ops, opset notes) and warnings during one export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamo_graph(module, example_inputs, input_names, output_names, dynamic_axes, opset):
    auto = torch.export.Dim.AUTO
    specs = [{axis: auto for axis in dynamic_axes[name]} if dynamic_axes.get(name) else None for name in input_names]
    kinds = [p.kind for p in inspect.signature(module.forward).parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:  # forward(frame, *states): torch.export wants the states nested
        star = kinds.index(inspect.Parameter.VAR_POSITIONAL)
        specs = [*specs[:star], tuple(specs[star:])]
    dynamic_shapes = tuple(specs)
    with _quiet_exporter():
        program = torch.onnx.export(module, example_inputs, None, input_names=list(input_names),
                                    output_names=list(output_names), dynamic_shapes=dynamic_shapes,
                                    opset_version=opset, dynamo=True, external_data=False, optimize=True,
                                    verbose=False)
    model = program.model_proto
    _name_dynamic_axes(model, dynamic_axes)
    return model


def _name_dynamic_axes(model, dynamic_axes: dict[str, dict[int, str]]) -> None:
    """Rename torch.export's symbols (``s0``, ``s1``, ...) to the names of ``dynamic_axes`` everywhere in the graph;
    an output axis named there whose size is a symbol of its own gets its name too."""
    inputs = {v.name: v for v in model.graph.input}
    rename: dict[str, str] = {}
    for name, axes in dynamic_axes.items():
        value = inputs.get(name)
        for axis, axis_name in axes.items() if value is not None else ():
            dim = value.type.tensor_type.shape.dim[axis]
            if dim.HasField("dim_param"):
                rename.setdefault(dim.dim_param, axis_name)
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    if rename:
        pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in rename) + r")\b")
        for value in values:
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_param"):
                    dim.dim_param = pattern.sub(lambda m: rename[m.group(1)], dim.dim_param)
    for value in model.graph.output:
        for axis, axis_name in dynamic_axes.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[axis]
            if dim.HasField("dim_param") and dim.dim_param not in rename.values():
                dim.dim_param = axis_name


def _fixed_axes(model, dynamic_axes: dict[str, dict[int, str]]) -> list[tuple[str, int, str]]:
    """The (input, axis, name) of each axis of ``dynamic_axes`` that has a fixed size in ``model``'s inputs."""
    return [(value.name, axis, axis_name) for value in model.graph.input
            for axis, axis_name in dynamic_axes.get(value.name, {}).items()
            if value.type.tensor_type.shape.dim[axis].HasField("dim_value")]


def _check_graph(module, example_inputs, model, input_names) -> None:
    """Raise when ONNX Runtime's outputs of ``model`` on ``example_inputs`` differ from PyTorch's."""
    session = open_session(model.SerializeToString(), torch.get_num_threads(), log_severity=3)
    got = session.run(None, {name: x.numpy() for name, x in zip(input_names, example_inputs, strict=True)})
    with torch.no_grad():
        expected = module(*example_inputs)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    for g, e in zip(got, expected, strict=True):
        e = e.float().numpy()
        limit = PRECISIONS["fp32"].tolerance * max(1.0, float(np.abs(e).max(initial=0.0)))
        if g.shape != e.shape or not float(np.abs(g - e).max(initial=0.0)) <= limit:
            raise EdgevidError(f"the graph differs from PyTorch on the example inputs (shape {list(g.shape)} vs "
                               f"{list(e.shape)}, limit {limit:.3g})")


def _torchscript_graph(module, example_inputs, input_names, output_names, dynamic_axes, opset):
    buffer = io.BytesIO()
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(module, example_inputs, buffer, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def finalize_onnx(model, meta: ArtifactMeta, path: Path) -> None:
    """Store ``meta`` in an in-memory ONNX model, check it and save it to ``path`` (one file: a graph over
    protobuf's 2 GiB limit, which would need external data, is refused by name; the zoo's largest is C3D, 0.3 GiB)."""
    write_onnx_meta(model, meta)
    if model.ByteSize() >= 2**31:
        raise EdgevidError(f"{path}: the ONNX graph of {meta.model} is {model.ByteSize() / 2**30:.1f} GiB, over "
                           "protobuf's 2 GiB limit for one file; edgevid writes single-file ONNX (no external data)")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgevidError(f"{path}: exported ONNX fails the checker: {str(exc).splitlines()[0][:200]}") from None
    onnx.save(model, str(path))


def to_fp16(model):
    """FP16 weights and compute with FP32 inputs/outputs (Cast nodes at the boundary)."""
    from onnxconverter_common import float16  # onnxconverter_common: only for FP16 exports

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
    clip = torch.randn(1, 3, 2 * meta.frames, meta.size, meta.size)
    try:
        with torch.no_grad():
            expected = model(clip).float().numpy()
        session = open_session(path)
        got = session.run(None, {INPUT_NAME: clip.numpy()})[0]
    except ort_errors():
        return False
    scale = max(1.0, float(np.abs(expected).max()))
    return got.shape == expected.shape and float(np.abs(got - expected).max()) <= PRECISIONS["fp32"].tolerance * scale


def _time_axis_fixed(path: Path) -> bool:
    """Whether the time axis of the clip input of the graph at ``path`` has a fixed size."""
    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[2]
    return dim.HasField("dim_value")


def model_to_onnx(model: torch.nn.Module, meta: ArtifactMeta, path: Path, options: ExportOptions) -> ArtifactMeta:
    """Export a zoo model as ``clip [B, 3, T, S, S] -> logits`` with a dynamic batch (and time where the model
    allows), in ``options.precision`` (fp32, or fp16 with fp32 I/O). Returns the metadata written into it."""
    if options.precision == "int8":
        raise EdgevidError("ONNX INT8 comes from `edgevid quantize ... --calib DIR` (Q/DQ ONNX), not from export")
    example = (torch.randn(2, 3, meta.frames, meta.size, meta.size),)
    dynamic_time = True if options.dynamic_time is None else options.dynamic_time
    spec = InputSpec(name=INPUT_NAME, output=output_name(meta), dynamic_batch=True, dynamic_time=dynamic_time,
                     min_frames=int(model.min_frames), frame_multiple=int(model.frame_multiple))
    out_meta = meta.replace(precision="fp32", input=spec)

    def write(target_meta: ArtifactMeta) -> ArtifactMeta:
        export_onnx_module(model, example, path, input_names=[INPUT_NAME], output_names=[output_name(meta)],
                           dynamic_axes=_dynamic_axes(meta, target_meta.input.dynamic_time), meta=target_meta,
                           opset=options.opset, exporter=options.onnx_exporter, may_fix=("time",))
        return read_meta(path)  # with the exporter and opset that wrote it

    out_meta = write(out_meta)
    if options.dynamic_time is None:
        static_meta = out_meta.replace(input=dataclasses.replace(spec, dynamic_time=False))
        if _time_axis_fixed(path):  # torch.export specialised T (Dim.AUTO): the graph is already the static one
            finalize_onnx(onnx.load(str(path)), static_meta, path)
            out_meta = static_meta
        elif not _time_axis_works(model, path, meta):
            out_meta = write(static_meta)
    if options.precision == "fp16":
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
    description = f"ONNX (opset {ONNX_OPSET}) for ONNX Runtime and TensorRT"

    def export(self, source: Source, out: Path) -> ExportResult:
        model = source.torch_model(self.target)
        with atomic_path(out, suffix=".onnx") as tmp:
            meta = model_to_onnx(model, source.meta, tmp, self.options)
            candidate = OnnxRuntimePredictor.open(tmp, threads=self.options.threads)
            parity = check_parity(source, candidate, self.options, f"{out} (ONNX Runtime)")
        notes = [f"time axis {'dynamic' if meta.input.dynamic_time else 'static'} (T={meta.frames}); written by "
                 f"{meta.extra['exporter']}, opset {meta.extra['opset']}"]
        return ExportResult(self.target, self.options.precision, out, meta, parity, onnx_path=out, notes=notes)
