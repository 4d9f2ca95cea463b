"""TensorRT export: an engine built with the TensorRT Python API from the exported (and checked) ONNX.

Precision on TensorRT 10 and 11 (11 removed the weak-typing builder flags and the implicit INT8 calibrators):

==========  ====================================================  ==============================================
precision   TensorRT 10 (JetPack 6)                                TensorRT 11
==========  ====================================================  ==============================================
fp32        FP32 ONNX, TF32 off (``--noTF32``)                     same
fp16        FP32 ONNX + ``BuilderFlag.FP16`` (``--fp16``)          FP16 ONNX (FP32 I/O), strongly typed network
int8        Q/DQ ONNX from ``edgevid quantize``, strongly typed network (``--stronglyTyped``), on both
==========  ====================================================  ==============================================

The optimisation profile covers every input with a dynamic axis: batch 1..``batch_max`` (opt 1: latency) and,
where the ONNX time axis is dynamic, T from the model's minimum to 2T (opt T). A streaming ONNX (``edgevid export
CHECKPOINT --streaming``) has one frame input and one input per state: the states take their batch from the same
range, their other axes are static. The shapes come from :func:`profile_shapes`, applied to the ONNX inputs for
the ``trtexec`` line and to the parsed network's inputs for the engine. Where ``tensorrt`` cannot be imported the
ONNX is still written and the equivalent ``trtexec`` command (with benchmarking flags) is part of the result /
error.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.export.base import (
    Exporter,
    ExportOptions,
    ExportResult,
    Parity,
    Source,
    atomic_files,
    check_parity,
    parity_clips,
    register_exporter,
    with_precision,
)
from edgevid.export.onnx import OnnxExporter, finalize_onnx, to_fp16
from edgevid.formats import FORMATS
from edgevid.meta import ArtifactMeta, sidecar_path
from edgevid.runtime.base import Predictor
from edgevid.runtime.streaming import GraphStreamingPredictor
from edgevid.runtime.tensorrt_backend import TensorRTPredictor, tensorrt_major, tensorrt_module
from edgevid.utils.atomic import atomic_path

BENCHMARK_FLAGS = ("--useCudaGraph", "--avgRuns=100", "--percentile=50,95,99", "--warmUp=500", "--duration=10",
                   "--noDataTransfers")
DEFAULT_TRT_MAJOR = 10  # JetPack 6 ships TensorRT 10

Shape = tuple[int, ...]
Range = tuple[int, int, int]
Profile = tuple[Shape, Shape, Shape]


class TensorRTUnavailableError(EdgevidError):
    """TensorRT cannot be imported here; ``result`` holds the ONNX that was written and the trtexec command."""

    def __init__(self, message: str, result: ExportResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class BuildPlan:
    """How a precision is obtained on a TensorRT major version."""

    onnx_precision: str
    strongly_typed: bool
    fp16_flag: bool
    no_tf32: bool


def build_plan(precision: str, trt_major: int) -> BuildPlan:
    if precision == "int8":
        return BuildPlan("int8", strongly_typed=True, fp16_flag=False, no_tf32=False)
    if precision == "fp16":
        if trt_major >= 11:
            return BuildPlan("fp16", strongly_typed=True, fp16_flag=False, no_tf32=False)
        return BuildPlan("fp32", strongly_typed=False, fp16_flag=True, no_tf32=False)
    return BuildPlan("fp32", strongly_typed=False, fp16_flag=False, no_tf32=True)


@dataclass(frozen=True)
class ShapeRanges:
    """(min, opt, max) of the batch axis of every input, and of the time axis (2) of ``time_input``."""

    batch: Range
    time: Range | None = None
    time_input: str | None = None


def profile_shapes(inputs: Mapping[str, Sequence[int]], ranges: ShapeRanges) -> dict[str, Profile]:
    """(min, opt, max) shapes of every input with a dynamic axis (-1): axis 0 takes the batch range, axis 2 of
    ``ranges.time_input`` the time range, static axes stay as they are; inputs without a dynamic axis are left
    out (their shape is fixed). Raises ``ValueError`` for any other dynamic axis."""
    profiles = {}
    for name, shape in inputs.items():
        if all(dim >= 0 for dim in shape):
            continue
        spans = []
        for axis, dim in enumerate(shape):
            if dim >= 0:
                spans.append((dim,) * 3)
            elif axis == 0:
                spans.append(ranges.batch)
            elif axis == 2 and name == ranges.time_input and ranges.time is not None:
                spans.append(ranges.time)
            else:
                raise ValueError(f"input {name} axis {axis} is dynamic; only the batch axis (and the clip's time "
                                 f"axis) may be")
        low, opt, high = zip(*spans, strict=True)
        profiles[name] = (low, opt, high)
    return profiles


def shape_ranges(meta: ArtifactMeta, batch_max: int) -> ShapeRanges:
    """Batch 1/1/``batch_max``; T from the model's minimum (a multiple of its frame multiple) to 2T, opt T."""
    min_frames, multiple = meta.input.min_frames, meta.input.frame_multiple
    time = (max(multiple, math.ceil(min_frames / multiple) * multiple), meta.frames, 2 * meta.frames)
    return ShapeRanges((1, 1, batch_max), time, meta.input.name)


def onnx_input_shapes(onnx_path: Path) -> dict[str, Shape]:
    """Shapes of the ONNX graph inputs (initializers excluded), -1 for dynamic axes."""
    import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return {tensor.name: tuple(dim.dim_value if dim.HasField("dim_value") else -1
                               for dim in tensor.type.tensor_type.shape.dim)
            for tensor in graph.input if tensor.name not in initializers}


def shape_profiles(onnx_path: Path, meta: ArtifactMeta, batch_max: int) -> dict[str, Profile]:
    """:func:`profile_shapes` of the inputs of the ONNX at ``onnx_path``."""
    try:
        return profile_shapes(onnx_input_shapes(onnx_path), shape_ranges(meta, batch_max))
    except ValueError as exc:
        raise EdgevidError(f"{onnx_path}: {exc}") from None


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(onnx_path: Path, engine_path: Path, plan: BuildPlan,
                    profiles: dict[str, Profile], workspace_mb: int, timing_cache: Path) -> str:
    """The trtexec command line that builds (and benchmarks) the same engine on the target device."""
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    parts += ["--fp16"] if plan.fp16_flag else []
    parts += ["--stronglyTyped"] if plan.strongly_typed else []
    parts += ["--noTF32"] if plan.no_tf32 else []
    for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        parts.append(f"{flag}=" + ",".join(f"{name}:{_dims(p[index])}" for name, p in profiles.items()))
    parts += [f"--memPoolSize=workspace:{workspace_mb}M", f"--timingCacheFile={timing_cache}", *BENCHMARK_FLAGS]
    return " ".join(shlex.quote(p) for p in parts)


def build_engine(trt: Any, onnx_path: Path, plan: BuildPlan, ranges: ShapeRanges, workspace_mb: int,
                 timing_cache: Path) -> bytes:
    """Parse the ONNX, configure the builder (flags, one profile over every dynamic network input, workspace,
    timing cache) and build the engine."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # always on in TRT 11
    flags = 1 << int(strongly_typed) if plan.strongly_typed and strongly_typed is not None else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgevidError(f"{onnx_path}: TensorRT cannot parse this ONNX: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.no_tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    try:
        profiles = profile_shapes(inputs, ranges)
    except ValueError as exc:
        raise EdgevidError(f"{onnx_path}: {exc}") from None
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profiles.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgevidError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    with atomic_path(timing_cache) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


@register_exporter
class TensorRTExporter(Exporter):
    """Checkpoint or ONNX -> ONNX for TensorRT -> engine + sidecar metadata (or the trtexec command)."""

    target = "trt"
    suffix = FORMATS[target].suffix
    precisions = FORMATS[target].precisions
    backend = FORMATS[target].backend
    description = "TensorRT engine for NVIDIA GPUs and Jetson"

    def export(self, source: Source, out: Path) -> ExportResult:
        trt, reason = tensorrt_module()
        opts = self.options
        plan = build_plan(opts.precision, tensorrt_major(trt) if trt else opts.trt_version or DEFAULT_TRT_MAJOR)
        onnx_path, onnx_meta, parity = self._onnx(source, out.with_suffix(".trt.onnx"), plan)
        meta = onnx_meta.replace(precision=opts.precision)
        ranges = shape_ranges(meta, opts.batch_max)
        profiles = shape_profiles(onnx_path, meta, opts.batch_max)
        timing_cache = opts.timing_cache or out.parent / "timing.cache"
        command = trtexec_command(onnx_path, out, plan, profiles, opts.workspace_mb, timing_cache)
        notes = [] if trt else [f"trtexec line for TensorRT {opts.trt_version or DEFAULT_TRT_MAJOR}.x "
                                f"(--trt-version picks 10 or 11)"]
        onnx_result = ExportResult(self.target, opts.precision, onnx_path, meta, parity, onnx_path, command, notes)
        if opts.onnx_only:
            return onnx_result
        if trt is None:
            raise TensorRTUnavailableError(
                f"tensorrt cannot be imported ({reason}); wrote {onnx_path}: build the engine on the device with "
                f"the trtexec command above, or rerun this command where TensorRT is installed", onnx_result)
        engine = build_engine(trt, onnx_path, plan, ranges, opts.workspace_mb, timing_cache)
        parity = self._write(engine, meta, source, out)
        return ExportResult(self.target, opts.precision, out, meta, parity, onnx_path, command)

    def _onnx(self, source: Source, path: Path, plan: BuildPlan):
        """The ONNX the engine is built from: exported from a checkpoint, or the ONNX source (converted to FP16
        when the plan needs an FP16 graph)."""
        if not source.is_onnx:
            result = OnnxExporter(with_precision(self.options, plan.onnx_precision)).export(source, path)
            return result.path, result.meta, result.parity
        if source.meta.precision != plan.onnx_precision and not (
                plan.onnx_precision == "fp16" and source.meta.precision == "fp32"):
            raise EdgevidError(f"{source.path}: a {source.meta.precision} ONNX cannot become a "
                               f"{self.options.precision} engine here (it needs a {plan.onnx_precision} ONNX)")
        if source.meta.precision == plan.onnx_precision:
            return source.path, source.meta, None
        import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited

        meta = source.meta.replace(precision="fp16")
        with atomic_path(path, suffix=".onnx") as tmp:
            finalize_onnx(to_fp16(onnx.load(str(source.path))), meta, tmp)
        return path, meta, None

    def _write(self, engine: bytes, meta: ArtifactMeta, source: Source, out: Path):
        with atomic_files(out, sidecar_path(out)) as (engine_tmp, sidecar_tmp):
            engine_tmp.write_bytes(engine)
            sidecar_tmp.write_text(meta.to_json(), encoding="utf-8")
            candidate = TensorRTPredictor.open(engine_tmp, device="cuda")
            check = streaming_graph_parity if meta.streaming else check_parity
            return check(source, candidate, self.options, f"{out} (TensorRT)")


def streaming_graph_parity(source: Source, candidate: Predictor, options: ExportOptions, label: str) -> Parity:
    """Parity of two streaming exports: the same random clips fed frame by frame (as one batch of streams, up to
    ``batch_max``, and the first stream alone) through the source's and the candidate's ``run_named``, the logits
    compared after every frame; raises when the max |logit difference| exceeds the tolerance."""

    clips, clip_source = parity_clips(source, min(options.parity_clips, options.batch_max), options.data)
    reference, streamed = GraphStreamingPredictor(source.reference), GraphStreamingPredictor(candidate)
    diff, agreement, scale = 0.0, [], 1.0
    for batch in (clips, clips[:1]):
        reference.reset()
        streamed.reset()
        for t in range(batch.shape[2]):
            frame = np.ascontiguousarray(batch[:, :, t:t + 1])
            expected, got = reference.step(frame), streamed.step(frame)
            if got.shape != expected.shape:
                raise EdgevidError(f"{label}: streaming output shape {list(got.shape)} differs from the source's "
                                   f"{list(expected.shape)}")
            diff = max(diff, float(np.abs(got - expected).max()))
            agreement.append(float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1))))
            scale = max(scale, float(np.abs(expected).max()))
    limit = options.limit_fraction * scale
    parity = Parity(diff, float(np.mean(agreement)), len(clips), limit, source.reference.backend,
                    f"{clip_source}, {clips.shape[2]} frames one by one")
    if not parity.passed or not np.isfinite(diff):
        raise EdgevidError(f"{label}: streaming parity check failed: max |logit diff| {diff:.3g} against "
                           f"{source.reference.backend} exceeds {limit:.3g}; nothing written")
    return parity
