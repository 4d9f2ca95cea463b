"""One benchmark row, measured in its own process: load, warm up, time, read peak RSS, then (optionally) top-1.

``edgevid bench`` runs ``python -m edgevid.bench.worker SPEC.json RESULT.json`` once per row, so every row's peak
RSS is that of a fresh process that loaded and ran only this format (plus the Python runtime and the libraries
``edgevid.runtime`` imports, the same for every row; ``rss_delta_mb`` is the part added by loading and running the
artifact). Top-1 is evaluated after the memory figures are taken, so data loading never inflates them.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.runtime import load
from edgevid.runtime.metrics import rss_mb
from edgevid.runtime.streaming import load_streaming
from edgevid.train import evaluate
from edgevid.utils.atomic import write_json_atomic
from edgevid.utils.machine import time_callable

MB = 2**20


@dataclass
class WorkerSpec:
    """What one worker process measures."""

    artifact: str
    device: str = "cpu"
    threads: int | None = None
    batch: int = 1
    warmup: int = 5
    iters: int = 100
    max_seconds: float = 10.0
    streaming: bool = False
    precision: str | None = None
    data: str | None = None
    split: str = "val"
    eval_workers: int = 2
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    try:
        import resource  # resource: POSIX only
    except ImportError:
        import psutil  # psutil: only where the standard library has no answer

        return psutil.Process().memory_info().peak_wset / MB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak * 1024 / MB


def _random_clips(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _timed_call(spec: WorkerSpec, model: Any):
    """The call to time and what one call processes (clips or frames), for the loaded model."""
    meta = model.meta
    if model.streaming:
        frame = _random_clips((1, 3, 1, meta.size, meta.size), spec.seed)
        model.reset()
        return (lambda: model.step(frame)), 1
    clips = _random_clips((spec.batch, 3, meta.frames, meta.size, meta.size), spec.seed)
    return (lambda: model.predict(clips)), spec.batch


def measure(spec: WorkerSpec) -> dict[str, Any]:
    """Load the artifact, time it, and report latency, throughput, memory and (with ``data``) top-1."""

    rss_before = rss_mb()
    if spec.streaming:
        model = load_streaming(spec.artifact, device=spec.device, threads=spec.threads, precision=spec.precision)
    else:
        model = load(spec.artifact, device=spec.device, threads=spec.threads, precision=spec.precision)
    call, items = _timed_call(spec, model)
    stats = time_callable(call, warmup=spec.warmup, iters=spec.iters, max_seconds=spec.max_seconds)
    result: dict[str, Any] = {
        "backend": model.backend if hasattr(model, "backend") else type(model).__name__,
        "execution": model.execution,
        "p50_ms": stats["p50"], "p95_ms": stats["p95"], "p99_ms": stats["p99"], "mean_ms": stats["mean"],
        "iters": stats["iters"], "fps": items * 1000.0 / stats["p50"],
        "peak_rss_mb": peak_rss_mb(), "rss_delta_mb": peak_rss_mb() - rss_before,
    }
    if spec.data:
        metrics = evaluate(spec.artifact, spec.data, split=spec.split, device=spec.device, threads=spec.threads,
                           workers=spec.eval_workers, precision=spec.precision)
        result["top1"] = metrics["top1"]
    return result


def main(argv: list[str]) -> int:
    """``python -m edgevid.bench.worker SPEC.json RESULT.json``: the result file always holds ``ok`` and either
    the measurements or the error."""
    spec_path, result_path = Path(argv[0]), Path(argv[1])

    try:
        spec = WorkerSpec(**json.loads(spec_path.read_text()))
        payload = {"ok": True, **measure(spec)}
    except Exception as exc:  # every failure becomes the row's reason
        text = str(exc).strip()
        payload = {"ok": False, "error": text.splitlines()[0][:300] if text else type(exc).__name__,
                   "traceback": traceback.format_exc(limit=6)}
    write_json_atomic(result_path, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
