"""The CUDA paths end to end (run by ``benchmarks/gpu_check.sh`` on a GPU machine; never in CI).

    python -m benchmarks.gpu_check OUT_DIR

Steps, each PASS / FAIL / SKIP with what it measured or why: AMP training steps (fp16, bf16), the torch CUDA
backend in fp32 and bf16 with parity against the CPU, ONNX Runtime's CUDA provider, a live run with GPU memory
in its report, TensorRT engines in fp32, fp16 and int8. Results go to ``OUT_DIR/gpu_check.json``; the exit code
is the number of failed steps.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.meta import read_meta
from edgevid.pipeline import export
from edgevid.precision import PRECISIONS
from edgevid.runtime import load
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.runtime.tensorrt_backend import tensorrt_module
from edgevid.train import train
from edgevid.utils.machine import machine_info


class Skip(Exception):
    """A step that does not apply on this machine (a missing package), with the reason."""


def _parity(path: Path, reference: np.ndarray, clips: np.ndarray, precision: str, device: str) -> str:
    predictor = load(path, device=device, precision=precision)
    got = predictor.predict(clips)
    diff = float(np.abs(got - reference).max())
    limit = PRECISIONS[precision].tolerance * max(1.0, float(np.abs(reference).max()))
    if not diff <= limit:
        raise AssertionError(f"{path.name} {precision} on {device}: max |logit diff| {diff:.3g} > {limit:.3g}")
    return f"{path.name} {precision} ran {predictor.execution}: max |diff| {diff:.2e}"


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "synth.json").exists():
        generate_synth(data, SynthConfig(classes=3, videos_per_class=6, val_per_class=2, frames=16, size=64),
                       show_progress=False)
    results: list[dict] = []
    state: dict = {}

    def step(name: str, fn: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            status, detail = "PASS", fn()
        except Skip as exc:
            status, detail = "SKIP", str(exc)
        except Exception as exc:  # every failure is this step's result; the next steps still run
            status, detail = "FAIL", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        seconds = time.perf_counter() - start
        results.append({"step": name, "status": status, "seconds": round(seconds, 1), "detail": detail})
        print(f"{status} {name} ({seconds:.1f} s): {detail.splitlines()[0] if detail else ''}", flush=True)

    def amp_training() -> str:
        lines = []
        for dtype in ("fp16", "bf16"):
            run = train("recipes/tiny.yaml", data, out / f"run_{dtype}", device="cuda",
                        overrides=[f"train.amp_dtype={dtype}", "train.amp=true", "train.epochs=1"])
            state["run"] = run
            lines.append(f"AMP {dtype}: {run}")
        return "; ".join(lines)

    def torch_cuda() -> str:
        run = state["run"]
        meta = read_meta(run)
        clips = np.random.default_rng(0).standard_normal((2, 3, meta.frames, meta.size, meta.size), dtype=np.float32)
        state["clips"], state["reference"] = clips, load(run).predict(clips)
        return "; ".join(_parity(run, state["reference"], clips, p, "cuda") for p in ("fp32", "bf16"))

    def onnxruntime_cuda() -> str:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Skip(f"onnxruntime has no CUDA provider here ({', '.join(ort.get_available_providers())}); "
                       "install onnxruntime-gpu")
        onnx_path = export(state["run"], "onnx", out=out / "model.onnx").path
        return _parity(onnx_path, state["reference"], state["clips"], "fp32", "cuda")

    def live_gpu() -> str:
        video = sorted((data / "val").rglob("*.mp4"))[0]
        report = run_live(state["run"], str(video), LiveOptions(device="cuda", report=str(out / "live.json")))
        memory = report.memory_mb
        if "cuda" not in json.dumps(memory) and "nvml" not in json.dumps(memory):
            raise AssertionError(f"the live report has no GPU memory: {memory}")
        return (f"{report.frames_processed} frames, end-to-end p95 {report.latency_ms['end_to_end']['p95']} ms, "
                f"memory {memory}")

    def tensorrt_engines() -> str:
        trt, why = tensorrt_module()
        if trt is None:
            raise Skip(f"tensorrt is not importable ({why})")
        meta = read_meta(state["run"])
        lines = [_parity(export(state["run"], "trt", p, out=out / f"model.{p}.engine").path, state["reference"],
                         state["clips"], p, "cuda") for p in ("fp32", "fp16")]
        manifest, _ = build_manifest(data, 16, Preprocessing.from_meta(meta), show_progress=False)
        calib = manifest.save(out / "calibration.json")
        engine = export(state["run"], "trt", "int8", out=out / "model.int8.engine", calib=calib).path
        lines.append(_parity(engine, state["reference"], state["clips"], "int8", "cuda"))
        return "; ".join(lines)

    for name, fn in (("training with AMP", amp_training), ("torch CUDA backend", torch_cuda),
                     ("ONNX Runtime CUDA provider", onnxruntime_cuda), ("live run on the GPU", live_gpu),
                     ("TensorRT engines", tensorrt_engines)):
        if name != "training with AMP" and "run" not in state:
            results.append({"step": name, "status": "SKIP", "seconds": 0, "detail": "no trained run"})
            continue
        step(name, fn)
    info = machine_info()
    info["torch_cuda"] = torch.version.cuda
    (out / "gpu_check.json").write_text(json.dumps({"machine": info, "steps": results}, indent=2))
    failed = sum(r["status"] == "FAIL" for r in results)
    print(f"{failed} failed, {sum(r['status'] == 'PASS' for r in results)} passed, "
          f"{sum(r['status'] == 'SKIP' for r in results)} skipped; {out / 'gpu_check.json'}")
    return failed


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/gpu_check")))
