"""TensorRT export: an engine built with the TensorRT Python API from the exported (and checked) ONNX.

Precision on TensorRT 10 and 11 (11 removed the weak-typing builder flags and the implicit INT8 calibrators):

==========  ====================================================  ==============================================
precision   TensorRT 10 (JetPack 6)                                TensorRT 11
==========  ====================================================  ==============================================
fp32        FP32 ONNX, TF32 off (``--noTF32``)                     same
fp16        FP32 ONNX + ``BuilderFlag.FP16`` (``--fp16``)          FP16 ONNX (FP32 I/O), strongly typed network
int8        Q/DQ ONNX from ``edgevid quantize``, strongly typed network (``--stronglyTyped``), on both
==========  ====================================================  ==============================================

The optimisation profile covers batch 1..``batch_max`` (opt 1: latency) and, where the ONNX time axis is
dynamic, T from the model's minimum to 2T (opt T). Where ``tensorrt`` cannot be imported the ONNX is still
written and the equivalent ``trtexec`` command (with benchmarking flags) is part of the result / error.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from edgevid.export.onnx import OnnxExporter, finalize_onnx, to_fp16
from edgevid.meta import ArtifactMeta, sidecar_path
from edgevid.runtime.tensorrt_backend import tensorrt_major, tensorrt_module
from edgevid.utils.atomic import atomic_path

BENCHMARK_FLAGS = ("--useCudaGraph", "--avgRuns=100", "--percentile=50,95,99", "--warmUp=500", "--duration=10",
                   "--noDataTransfers")
DEFAULT_TRT_MAJOR = 10  # JetPack 6 ships TensorRT 10

Shape = tuple[int, ...]


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


def shape_profiles(onnx_path: Path, meta: ArtifactMeta, batch_max: int) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shapes of every ONNX input: batch axis 1/1/batch_max, a dynamic clip time axis
    from the model's minimum T to 2T (opt T); any other dynamic axis is an error."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    min_frames = int(meta.extra.get("min_frames", meta.frames))
    multiple = int(meta.extra.get("frame_multiple", 1))
    time_range = (max(multiple, math.ceil(min_frames / multiple) * multiple), meta.frames, 2 * meta.frames)
    profiles = {}
    for tensor in graph.input:
        if tensor.name in initializers:
            continue
        low, opt, high = [], [], []
        for axis, dim in enumerate(tensor.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                span = (dim.dim_value,) * 3
            elif axis == 0:
                span = (1, 1, batch_max)
            elif axis == 2 and tensor.name == meta.extra.get("input", "clip"):
                span = time_range
            else:
                raise EdgevidError(f"{onnx_path}: input {tensor.name} axis {axis} ({dim.dim_param!r}) is dynamic; "
                                   f"only batch (and the clip's time axis) may be")
            for values, value in zip((low, opt, high), span, strict=True):
                values.append(value)
        profiles[tensor.name] = (tuple(low), tuple(opt), tuple(high))
    return profiles


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(onnx_path: Path, engine_path: Path, plan: BuildPlan,
                    profiles: dict[str, tuple[Shape, Shape, Shape]], workspace_mb: int, timing_cache: Path) -> str:
    """The trtexec command line that builds (and benchmarks) the same engine on the target device."""
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    parts += ["--fp16"] if plan.fp16_flag else []
    parts += ["--stronglyTyped"] if plan.strongly_typed else []
    parts += ["--noTF32"] if plan.no_tf32 else []
    for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        parts.append(f"{flag}=" + ",".join(f"{name}:{_dims(p[index])}" for name, p in profiles.items()))
    parts += [f"--memPoolSize=workspace:{workspace_mb}M", f"--timingCacheFile={timing_cache}", *BENCHMARK_FLAGS]
    return " ".join(shlex.quote(p) for p in parts)


def build_engine(trt: Any, onnx_path: Path, plan: BuildPlan, profiles: dict[str, tuple[Shape, Shape, Shape]],
                 workspace_mb: int, timing_cache: Path) -> bytes:
    """Parse the ONNX, configure the builder (flags, profile, workspace, timing cache) and build the engine."""
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
    suffix = ".engine"
    description = "TensorRT engine for NVIDIA GPUs and Jetson"

    def export(self, source: Source, out: Path) -> ExportResult:
        trt, reason = tensorrt_module()
        opts = self.options
        plan = build_plan(opts.precision, tensorrt_major(trt) if trt else opts.trt_version or DEFAULT_TRT_MAJOR)
        onnx_path, onnx_meta, parity = self._onnx(source, out.with_suffix(".trt.onnx"), plan)
        meta = onnx_meta.replace(precision=opts.precision)
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
                f"the trtexec command above, or rerun there without --onnx-only", onnx_result)
        engine = build_engine(trt, onnx_path, plan, profiles, opts.workspace_mb, timing_cache)
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
        import onnx

        meta = source.meta.replace(precision="fp16")
        with atomic_path(path, suffix=".onnx") as tmp:
            finalize_onnx(to_fp16(onnx.load(str(source.path))), meta, tmp)
        return path, meta, None

    def _write(self, engine: bytes, meta: ArtifactMeta, source: Source, out: Path):
        from edgevid.runtime.tensorrt_backend import TensorRTPredictor

        with atomic_files(out, sidecar_path(out)) as (engine_tmp, sidecar_tmp):
            engine_tmp.write_bytes(engine)
            sidecar_tmp.write_text(meta.to_json(), encoding="utf-8")
            candidate = TensorRTPredictor.open(engine_tmp, device="cuda")
            return check_parity(source, candidate, self.options, f"{out} (TensorRT)")
