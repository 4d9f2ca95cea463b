"""Streaming export: a causal checkpoint's one-frame-per-step form as ONNX or OpenVINO IR.

The graph is ``(frame, *states) -> (logits, *computed new states)`` (:class:`edgevid.models.streaming.StreamingGraph`)
with the state table in the artifact's metadata (``meta.stream``); the runtime side, which feeds the states
back step after step, is :mod:`edgevid.runtime.streaming`. :func:`export_streaming` checks the written artifact
frame by frame, through its own runtime, against the causal model run on the whole clip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevid.errors import EdgevidError
from edgevid.export.base import ONNX_OPSET, ExportResult, Parity, atomic_files, check_onnx_options
from edgevid.export.onnx import export_onnx_module
from edgevid.formats import FORMATS, STREAMING_TARGETS, is_checkpoint
from edgevid.meta import ArtifactMeta, InputSpec, StateSpec, StreamSpec, read_meta, write_openvino_meta
from edgevid.models.streaming import StreamingGraph
from edgevid.precision import get_precision
from edgevid.runtime.onnx_backend import OnnxRuntimePredictor
from edgevid.runtime.openvino_backend import OpenVINOPredictor
from edgevid.runtime.streaming import (
    FRAME_INPUT,
    LOGITS_OUTPUT,
    GraphStreamingPredictor,
    OpenVINOStreamingPredictor,
    StreamingPredictor,
    TorchStreamingPredictor,
    next_name,
)
from edgevid.runtime.torch_backend import TorchPredictor
from edgevid.utils.atomic import atomic_path

STREAMING_PRECISIONS = {target: FORMATS[target].streaming_precisions for target in STREAMING_TARGETS}


def streaming_layout(streaming_model, meta: ArtifactMeta) -> list[dict[str, Any]]:
    """The state table stored in an exported artifact's metadata (shapes for batch 1 at the artifact's size)."""
    shapes = streaming_model.state_shapes(1, meta.size)
    return [{"name": spec.name, "kind": spec.kind, "module": spec.module, "rate": spec.rate, "shape": shape,
             "shifted_from": spec.shifted_from} for spec, shape in zip(streaming_model.specs, shapes, strict=True)]


def streaming_onnx(streaming_model, meta: ArtifactMeta, path: Path, opset: int = ONNX_OPSET,
                   exporter: str = "dynamo") -> ArtifactMeta:
    """Export ``(frame, *states) -> (logits, *computed new states)`` (:class:`StreamingGraph`) to ONNX with a
    dynamic batch (with ``exporter``: dynamo, or torchscript); returns its metadata."""
    layout = streaming_layout(streaming_model, meta)
    names = [s["name"] for s in layout]
    computed = [s.name for s in streaming_model.computed_states]
    out_meta = meta.replace(streaming=True, head="clip", precision="fp32",
                            input=InputSpec(name=FRAME_INPUT, output=LOGITS_OUTPUT, dynamic_batch=True),
                            stream=StreamSpec(FRAME_INPUT, LOGITS_OUTPUT, [StateSpec(**s) for s in layout]),
                            extra=meta.extra)
    dynamic_axes = {FRAME_INPUT: {0: "batch"}, LOGITS_OUTPUT: {0: "batch"}}
    for state in layout:
        if state["kind"] != "step":
            dynamic_axes[state["name"]] = {0: "batch"}
            if state["name"] in computed:
                dynamic_axes[next_name(state["name"])] = {0: "batch"}
    # batch 2: torch.export would fix an axis whose example size is 1
    frame = torch.randn(2, 3, 1, meta.size, meta.size)
    example = (frame, *streaming_model.initial_states(2, meta.size))
    export_onnx_module(StreamingGraph(streaming_model), example, path, input_names=[FRAME_INPUT, *names],
                       output_names=[LOGITS_OUTPUT, *(next_name(n) for n in computed)], dynamic_axes=dynamic_axes,
                       meta=out_meta, opset=opset, exporter=exporter)
    return read_meta(path)


def streaming_parity(reference_model, candidate: StreamingPredictor, meta: ArtifactMeta, tolerance: float,
                     frames: int | None = None, seed: int = 0):
    """Feed a random clip frame by frame through ``candidate`` and compare the logits after every frame with
    the causal model's clip logits on the frames so far. Raises when the max difference exceeds ``tolerance``
    x max(1, max |logit|)."""
    frames = frames or meta.frames
    rng = np.random.default_rng(seed)
    clip = rng.standard_normal((1, 3, frames, meta.size, meta.size)).astype(np.float32)
    candidate.reset()
    diffs, agree, scale = [], [], 1.0
    with torch.no_grad():
        for t in range(frames):
            got = candidate.step(clip[:, :, t:t + 1])
            if t + 1 < reference_model.min_frames or (t + 1) % reference_model.frame_multiple:
                continue
            expected = reference_model(torch.from_numpy(clip[:, :, :t + 1])).float().numpy()
            diffs.append(float(np.abs(got - expected).max()))
            agree.append(bool(got.argmax() == expected.argmax()))
            scale = max(scale, float(np.abs(expected).max()))
    candidate.reset()
    parity = Parity(max(diffs), float(np.mean(agree)), len(diffs), tolerance * scale, "torch causal clip",
                    f"random clip, {frames} frames one by one")
    if not parity.passed or not np.isfinite(parity.max_abs_diff):
        raise EdgevidError(f"{candidate.path}: streaming parity failed: max |logit diff| {parity.max_abs_diff:.3g} "
                           f"against the causal clip model exceeds {parity.limit:.3g}; nothing written")
    return parity


def export_streaming(artifact: str | Path, target: str = "onnx", out: str | Path | None = None,
                     precision: str = "fp32", threads: int | None = None, opset: int = ONNX_OPSET,
                     onnx_exporter: str = "dynamo") -> ExportResult:
    """Export a causal checkpoint's streaming form to ONNX or OpenVINO IR, checked frame by frame against the
    causal model on the whole clip (through the exported file's own runtime), the ONNX graph written by
    ``onnx_exporter`` (dynamo, or torchscript). Returns an ``ExportResult``."""
    check_onnx_options(opset, onnx_exporter)
    if target not in STREAMING_TARGETS:
        raise EdgevidError(f"--streaming exports to {' or '.join(STREAMING_TARGETS)}, not {target!r} (build a "
                           "TensorRT engine from the streaming ONNX)")
    if precision not in STREAMING_PRECISIONS[target]:
        raise EdgevidError(f"--streaming --target {target} supports precision "
                           f"{' or '.join(STREAMING_PRECISIONS[target])}, not {precision}")
    path = Path(artifact)
    if not is_checkpoint(path):
        raise EdgevidError(f"{path}: --streaming exports from a causal checkpoint or run directory")
    clip_predictor = TorchPredictor.open(path, threads=threads)
    torch_stream = TorchStreamingPredictor.from_model(clip_predictor.model, clip_predictor.meta,
                                                      clip_predictor.path)
    meta = clip_predictor.meta
    suffix = FORMATS[target].suffix
    base = clip_predictor.path.parent / meta.model if path.is_dir() else path.with_suffix("")
    out_path = Path(out) if out is not None else base.with_name(f"{base.name}.stream{suffix}")
    if out_path.suffix.lower() != suffix:
        raise EdgevidError(f"--out {out_path}: a streaming {target} artifact must end in {suffix}")
    tolerance = get_precision(precision).tolerance
    reference = clip_predictor.model
    if target == "onnx":
        with atomic_path(out_path, suffix=".onnx") as tmp:
            out_meta = streaming_onnx(torch_stream.model, meta, tmp, opset, onnx_exporter)
            candidate = GraphStreamingPredictor(OnnxRuntimePredictor.open(tmp, threads=threads))
            parity = streaming_parity(reference, candidate, meta, tolerance)
        return ExportResult("onnx", precision, out_path, out_meta, parity, onnx_path=out_path,
                            notes=[candidate.state_note()])
    import openvino as ov  # heavy; only for an OpenVINO streaming export

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_path.name}.onnx-", dir=out_path.parent) as work:
        onnx_path = Path(work) / f"{meta.model}.stream.onnx"
        out_meta = streaming_onnx(torch_stream.model, meta, onnx_path, opset, onnx_exporter)
        out_meta = out_meta.replace(precision=precision)
        model = ov.convert_model(str(onnx_path))
    write_openvino_meta(model, out_meta)
    with atomic_files(*FORMATS["openvino"].files(out_path)) as (xml, _):
        ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
        candidate = OpenVINOStreamingPredictor(OpenVINOPredictor.open(xml, device="CPU", threads=threads))
        parity = streaming_parity(reference, candidate, meta, tolerance)
    return ExportResult("openvino", precision, out_path, out_meta, parity,
                        notes=[candidate.state_note()])
