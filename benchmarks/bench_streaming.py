"""Streaming benchmark: cost of one streaming step (one new frame) against one full-clip inference, T=8.

For TSM-R18 (online shift, 8x224) and causal X3D-XS (8x160), random weights: the clip model is exported with
``edgevid export`` and its streaming form with ``edgevid export --streaming``, both to ONNX Runtime (FP32) and
OpenVINO (FP32, and BF16 where the CPU has it), CPU. In the same run, on the same backend and precision, clip and step
latencies are measured in alternating blocks (so load changes on the shared machine hit both alike); the target is
step p50 <= 0.3 x clip p50 in each precision.
The streaming exports are checked frame by frame against the causal clip model on export.

Results go to ``benchmarks/results/<machine>/streaming.{json,md}``. Usage::

    .venv/bin/python -m benchmarks.bench_streaming [--rounds 5] [--iters 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, write_results
from edgevid.checkpoint import save_checkpoint
from edgevid.export import export
from edgevid.export.streaming import export_streaming
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model, get_spec
from edgevid.precision import describe_cpu
from edgevid.runtime import load
from edgevid.runtime.openvino_backend import device_capabilities
from edgevid.runtime.streaming import load_streaming
from edgevid.utils.console import console, make_table

FRAMES = 8
TARGET_RATIO = 0.3
MODELS = {"tsm_r18": {"shift_mode": "online"}, "x3d_xs": {"causal": True}}
BACKENDS = {"onnx": ".onnx", "openvino": ".xml"}
PRECISIONS = {"onnx": ("fp32",), "openvino": ("fp32", "bf16")}


def checkpoint(name: str, arch: dict, work: Path) -> Path:
    spec = get_spec(name)
    meta = ArtifactMeta(model=name, classes=[f"c{i}" for i in range(10)], frames=FRAMES, size=spec.size,
                        sampling_stride=spec.sampling_stride, mean=spec.mean, std=spec.std, arch=arch)
    return save_checkpoint(work / f"{name}.pt", create_model(name, num_classes=10, **arch).eval(), meta)


def alternate(clip_fn, step_fn, rounds: int, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Latency samples (ms) of both functions, timed in alternating blocks of ``iters`` calls."""
    import time

    for fn in (clip_fn, step_fn):
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {"clip": [], "step": []}
    for _ in range(rounds):
        for name, fn in (("clip", clip_fn), ("step", step_fn)):
            for _ in range(iters):
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return np.asarray(samples["clip"]), np.asarray(samples["step"])


def measure(name: str, target: str, precision: str, ckpt: Path, work: Path, rounds: int, iters: int,
            threads: int) -> dict:
    suffix = BACKENDS[target]
    clip_artifact = export(ckpt, target, precision, out=work / f"{name}.clip.{precision}{suffix}", threads=threads)
    stream_artifact = export_streaming(ckpt, target, out=work / f"{name}.stream.{precision}{suffix}",
                                       precision=precision, threads=threads)
    clip_predictor = load(clip_artifact.path, threads=threads)
    streamer = load_streaming(stream_artifact.path, threads=threads)
    meta = clip_predictor.meta
    rng = np.random.default_rng(0)
    clip = rng.standard_normal((1, 3, FRAMES, meta.size, meta.size)).astype(np.float32)
    frames = iter(range(10**9))

    def step() -> None:
        t = next(frames) % FRAMES
        streamer.step(clip[:, :, t:t + 1])

    clip_ms, step_ms = alternate(lambda: clip_predictor.predict(clip), step, rounds, iters)
    ratio = float(np.median(step_ms) / np.median(clip_ms))
    return {
        "model": name, "backend": clip_predictor.backend, "precision": precision,
        "execution": f"clip {clip_predictor.execution}, step {streamer.execution}", "frames": FRAMES,
        "size": meta.size,
        "states": len(streamer.states), "clip_p50": float(np.median(clip_ms)),
        "clip_p95": float(np.percentile(clip_ms, 95)), "step_p50": float(np.median(step_ms)),
        "step_p95": float(np.percentile(step_ms, 95)), "step_over_clip": ratio,
        "ideal": 1 / FRAMES, "stream_parity_max_diff": stream_artifact.parity.max_abs_diff,
        "check": "pass" if ratio <= TARGET_RATIO else f"FAIL: > {TARGET_RATIO}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="Alternating clip/step blocks.")
    parser.add_argument("--iters", type=int, default=10, help="Timed calls per block.")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each backend.")
    args = parser.parse_args()
    info = machine_info()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevid-bench-streaming-") as tmp:
        work = Path(tmp)
        for name, arch in MODELS.items():
            ckpt = checkpoint(name, arch, work)
            for target in BACKENDS:
                for precision in PRECISIONS[target]:
                    if precision == "bf16" and "BF16" not in device_capabilities("CPU"):
                        console.print(f"{name}: {target} bf16 skipped: the CPU lists no BF16 ({describe_cpu()})")
                        continue
                    console.print(f"{name}: {target} {precision} clip + streaming exports and timing ...")
                    rows.append(measure(name, target, precision, ckpt, work, args.rounds, args.iters, args.threads))
    load_end = [round(v, 2) for v in os.getloadavg()]
    info["load_avg_end"] = load_end
    columns = ["model", "backend", "precision", "execution", "frames", "size", "states", "clip_p50", "step_p50",
               "step_p95", "step_over_clip", "ideal", "stream_parity_max_diff", "check"]
    notes = (
        f"Shared 2-core machine (load average at start {info.get('load_avg_1_5_15')}, at end {load_end}: "
        "other jobs may have run too). Clip and step latencies (ms, CPU, "
        f"{args.threads} threads, batch 1) were measured in {args.rounds} alternating blocks of {args.iters} calls "
        "each, so both saw the same load; the ratio is the comparison that matters. Streaming step = one new "
        f"frame through the streaming export (states in and out); clip = the whole {FRAMES}-frame clip. "
        "Random weights. stream_parity_max_diff: max |logit diff| of the streaming export fed frame by frame "
        "against the causal clip model on the frames so far (checked at export)."
    )
    json_path, md_path = write_results("streaming", rows, info, notes=notes, columns=columns)
    console.print(make_table(rows, columns, title=f"edgevid streaming vs clip (T={FRAMES})",
                             formats={c: ".3g" for c in ("clip_p50", "step_p50", "step_p95", "step_over_clip",
                                                         "ideal", "stream_parity_max_diff")}))
    console.print(f"wrote {json_path}, {md_path}")


if __name__ == "__main__":
    main()
