"""ONNX exporters compared: torch.onnx's dynamo exporter (edgevid's default) against the TorchScript tracer (the
fallback), on X3D-XS and TSM-R18 at small inputs, random weights.

For each model and exporter: export time, graph nodes, initializers, file size, opset, whether the time axis stayed
dynamic, the max |logit diff| against PyTorch, and ONNX Runtime CPU latency (batch 1, alternating blocks so load on
the shared machine hits both exporters alike).

Results go to ``benchmarks/results/<machine>/onnx_exporters.{json,md}``. Usage::

    .venv/bin/python -m benchmarks.bench_onnx_exporters [--frames 4] [--size 64] [--threads 2] [--iters 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from benchmarks.common import machine_info, write_results
from edgevid.export.base import ONNX_EXPORTERS, ExportOptions
from edgevid.export.onnx import model_to_onnx
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model, get_spec
from edgevid.runtime.onnx_backend import OnnxRuntimePredictor
from edgevid.utils.console import console, make_table
from edgevid.utils.machine import time_callable

MODELS = ("x3d_xs", "tsm_r18")
COLUMNS = ["model", "exporter", "written_by", "export_s", "nodes", "initializers", "size_mb", "opset", "dynamic_time",
           "max_abs_diff", "ort_p50_ms", "ort_p95_ms"]


def export_row(name: str, exporter: str, frames: int, size: int, threads: int, directory: Path) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    spec = get_spec(name)
    meta = ArtifactMeta(model=name, classes=[str(i) for i in range(10)], frames=frames, size=size,
                        sampling_stride=1, mean=spec.mean, std=spec.std)
    path = directory / f"{name}.{exporter}.onnx"
    start = time.perf_counter()
    out_meta = model_to_onnx(model, meta, path, ExportOptions(onnx_exporter=exporter))
    export_s = time.perf_counter() - start
    graph = onnx.load(str(path)).graph
    predictor = OnnxRuntimePredictor.open(path, threads=threads)
    clip = np.random.default_rng(0).standard_normal((1, 3, frames, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(clip)).numpy()
    return {"model": name, "exporter": exporter, "written_by": out_meta.extra["exporter"],
            "export_s": round(export_s, 2), "nodes": len(graph.node), "initializers": len(graph.initializer),
            "size_mb": round(path.stat().st_size / 2**20, 2), "opset": out_meta.extra["opset"],
            "dynamic_time": out_meta.input.dynamic_time,
            "max_abs_diff": float(np.abs(predictor.predict(clip) - expected).max()), "_predictor": predictor,
            "_clip": clip}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in MODELS:
            pair = [export_row(name, exporter, args.frames, args.size, args.threads, Path(work))
                    for exporter in ONNX_EXPORTERS]
            samples: dict[str, list[float]] = {row["exporter"]: [] for row in pair}
            for _ in range(args.rounds):  # alternating blocks
                for row in pair:
                    predictor, clip = row["_predictor"], row["_clip"]
                    stats = time_callable(lambda p=predictor, c=clip: p.predict(c), warmup=3, iters=args.iters)
                    samples[row["exporter"]].append(stats["p50"])
                    row.setdefault("_p95", []).append(stats["p95"])
            for row in pair:
                row["ort_p50_ms"] = round(float(np.median(samples[row["exporter"]])), 2)
                row["ort_p95_ms"] = round(float(np.median(row.pop("_p95"))), 2)
                del row["_predictor"], row["_clip"]
            rows.extend(pair)
    notes = (f"Random weights, input 1x3x{args.frames}x{args.size}x{args.size}, ONNX Runtime CPU with {args.threads} "
             f"threads, p50 = median of {args.rounds} alternating blocks of {args.iters} runs. Graphs after onnxslim "
             "(what edgevid writes). max_abs_diff: against PyTorch on one random clip.")
    write_results("onnx_exporters", rows, machine_info(), notes=notes, columns=COLUMNS)
    console.print(make_table(rows, COLUMNS, title="ONNX exporters: dynamo vs TorchScript"))


if __name__ == "__main__":
    main()
