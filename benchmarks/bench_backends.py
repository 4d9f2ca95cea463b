"""Batch-1 latency of X3D-XS, TSM-R18 and R(2+1)D-18 on this CPU: PyTorch eager vs ONNX Runtime vs OpenVINO.

Every model is exported through ``edgevid export`` (random weights, 400 classes: latency does not depend on the
weights) and run through ``edgevid.runtime.load``, so the numbers are those of the shipped code paths. The
backends of one model are timed round-robin (one call of each per round) so that load changes on the shared
machine hit them alike; median and p95 come from that one run. The achieved GFLOP/s (2 x MACs / median latency)
is put against a 2048^3 FP32 matmul measured in the same run. For X3D-XS a few OpenVINO / ONNX Runtime settings
are compared as well (threads, performance hint, static vs dynamic shapes).

    python -m benchmarks.bench_backends [--iters 30] [--models x3d_xs,tsm_r18,r2plus1d_18] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    machine_info,
    markdown_table,
    results_dir,
    time_callable,
    time_interleaved,
    write_results,
)
from edgevid.checkpoint import save_checkpoint
from edgevid.export import export
from edgevid.meta import ArtifactMeta
from edgevid.models import count_macs, create_model, get_spec
from edgevid.runtime import load
from edgevid.utils.console import console, make_table, progress
from edgevid.utils.openvino import openvino_core
from edgevid.utils.plotting import pyplot, save_figure

MODELS = ("x3d_xs", "tsm_r18", "r2plus1d_18")
BACKENDS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "fp16"))
GEMM_N = 2048


def gemm_gflops(threads: int, repeats: int = 7) -> float:
    """FP32 GFLOP/s of a 2048^3 matmul in PyTorch (median of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    stats = time_callable(lambda: torch.mm(a, b), warmup=2, iters=repeats)
    return 2 * GEMM_N**3 / (stats["p50"] / 1e3) / 1e9


def make_artifacts(name: str, workdir: Path) -> tuple[dict[tuple[str, str], Path], int, ArtifactMeta]:
    """Checkpoint + ONNX + OpenVINO FP32/FP16 of a randomly initialised model; its MACs."""
    spec = get_spec(name)
    model = create_model(name, num_classes=400).eval()
    meta = ArtifactMeta(model=name, classes=[f"c{i}" for i in range(400)], frames=spec.frames, size=spec.size,
                        sampling_stride=spec.sampling_rate, mean=spec.mean, std=spec.std)
    ckpt = save_checkpoint(workdir / f"{name}.pt", model, meta)
    paths = {("torch", "fp32"): ckpt}
    paths[("onnxruntime", "fp32")] = export(ckpt, "onnx", parity_clips=1).path
    for precision in ("fp32", "fp16"):
        paths[("openvino", precision)] = export(paths[("onnxruntime", "fp32")], "openvino", precision,
                                                out=workdir / f"{name}.{precision}.xml", parity_clips=1).path
    return paths, count_macs(model, spec.frames, spec.size), meta


def x3d_settings(xml: Path, onnx_path: Path, clip: np.ndarray, threads: int) -> dict[str, Callable[[], object]]:
    """X3D-XS under other runtime settings: OpenVINO hint / threads / dynamic shape, ONNX Runtime threads."""
    core = openvino_core()
    variants = {
        "LATENCY hint, static shape (edgevid default)": ({"PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_NUM_THREADS": threads}, True),
        "LATENCY hint, dynamic shape compiled once": ({"PERFORMANCE_HINT": "LATENCY",
                                                       "INFERENCE_NUM_THREADS": threads}, False),
        "THROUGHPUT hint, static shape": ({"PERFORMANCE_HINT": "THROUGHPUT"}, True),
        "LATENCY hint, static shape, 1 thread": ({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}, True),
    }
    settings = {}
    for label, (config, static) in variants.items():
        model = core.read_model(str(xml))
        if static:
            model.reshape({model.inputs[0].get_any_name(): list(clip.shape)})
        request = core.compile_model(model, "CPU", config).create_infer_request()
        settings[f"openvino fp32: {label}"] = lambda r=request: r.infer([clip])
    for count in sorted({1, threads}):
        predictor = load(onnx_path, threads=count)
        settings[f"onnxruntime fp32: ORT_ENABLE_ALL, {count} thread(s)"] = lambda p=predictor: p.predict(clip)
    return settings


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    labels = [f"{b} {p}" for b, p in BACKENDS]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        by_label = {f"{r['backend']} {r['precision']}": r for r in rows if r["model"] == model}
        medians = [by_label[label]["p50_ms"] if label in by_label else 0 for label in labels]
        spread = [by_label[label]["p95_ms"] - by_label[label]["p50_ms"] if label in by_label else 0
                  for label in labels]
        ax.bar(range(len(labels)), medians, yerr=[np.zeros(len(labels)), spread], capsize=3,
               color=["#999999", "#4c72b0", "#55a868", "#8fd19e"])
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_title(f"{model} ({by_label['torch fp32']['input']})")
    axes[0][0].set_ylabel("batch-1 latency (ms): median, p95 whisker")
    fig.suptitle("edgevid backends on this CPU (random weights)")
    save_figure(fig, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30, help="Timed runs per backend (fewer for slow models).")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None, help="Results folder (default benchmarks/results/<machine>)")
    args = parser.parse_args()
    out = args.out or results_dir("backends")
    info = machine_info()
    torch.set_num_threads(args.threads)
    rows, variants = [], []
    gemm_before = gemm_gflops(args.threads)
    with tempfile.TemporaryDirectory() as tmp, progress() as bar:
        names = args.models.split(",")
        task = bar.add_task("backends", total=len(names) * len(BACKENDS), info="")
        for name in names:
            bar.update(task, info=f"{name}: exporting")
            paths, macs, meta = make_artifacts(name, Path(tmp))
            clip = np.random.default_rng(0).standard_normal((1, 3, meta.frames, meta.size, meta.size),
                                                           dtype=np.float32)
            predictors = {key: load(path, threads=args.threads) for key, path in paths.items()}
            first = time.perf_counter()
            predictors[("torch", "fp32")].predict(clip)
            iters = int(np.clip(60 / max(time.perf_counter() - first, 1e-3), 5, args.iters))
            bar.update(task, info=f"{name}: {len(predictors)} backends interleaved x{iters}")
            timings = time_interleaved({key: (lambda p=predictor, c=clip: p.predict(c))
                                        for key, predictor in predictors.items()}, warmup=3, iters=iters)
            for (backend, precision), stats in timings.items():
                files = (paths[(backend, precision)], paths[(backend, precision)].with_suffix(".bin"))
                rows.append({"model": name, "input": f"{meta.frames}x{meta.size}", "backend": backend,
                             "precision": precision, "p50_ms": stats["p50"], "p95_ms": stats["p95"],
                             "iters": iters, "gmacs": macs / 1e9, "gflops": 2 * macs / (stats["p50"] / 1e3) / 1e9,
                             "size_mb": sum(f.stat().st_size for f in files if f.exists()) / 2**20})
                bar.advance(task)
            if name == "x3d_xs":
                bar.update(task, info=f"{name}: runtime settings interleaved x{iters}")
                settings = x3d_settings(paths[("openvino", "fp32")], paths[("onnxruntime", "fp32")], clip,
                                        args.threads)
                variants = [{"setting": label, "p50_ms": st["p50"], "p95_ms": st["p95"]}
                            for label, st in time_interleaved(settings, warmup=3, iters=iters).items()]
    gemm = (gemm_before + gemm_gflops(args.threads)) / 2
    torch_p50 = {r["model"]: r["p50_ms"] for r in rows if r["backend"] == "torch"}
    for row in rows:
        row["speedup_vs_torch"] = torch_p50[row["model"]] / row["p50_ms"]
        row["pct_of_gemm"] = 100 * row["gflops"] / gemm
    info.update(gemm_gflops_2048=gemm, threads=args.threads, load_avg_end=[round(v, 2) for v in os.getloadavg()])
    best_x3d = max((r for r in rows if r["model"] == "x3d_xs"), key=lambda r: r["speedup_vs_torch"], default=None)
    notes = [
        "Batch 1, random weights, 400 classes, FP32 input; each backend with "
        f"{args.threads} threads; medians and p95 from the same run. The machine is shared with other jobs: "
        f"load average at start {info['load_avg_1_5_15']}, at end {info['load_avg_end']}.",
        f"2048^3 FP32 matmul in PyTorch: {gemm:.1f} GFLOP/s (mean of one measurement before and one after).",
        "OpenVINO fp16 = weights compressed to FP16 (compress_to_fp16); this CPU has no native FP16 arithmetic, "
        "so the CPU plugin computes in FP32: expect FP32 speed, half the file size.",
    ]
    if best_x3d:
        notes.append(f"X3D-XS: best backend {best_x3d['backend']} {best_x3d['precision']} is "
                     f"{best_x3d['speedup_vs_torch']:.1f}x faster than torch eager (target >= 4x).")
    columns = ["model", "input", "backend", "precision", "p50_ms", "p95_ms", "speedup_vs_torch", "gflops",
               "pct_of_gemm", "gmacs", "size_mb", "iters"]
    notes_md = "\n".join(f"- {n}" for n in notes)
    if variants:
        notes_md += "\n\n## X3D-XS (4x160) under other runtime settings\n\n" + markdown_table(variants)
    write_results("backends", rows, {**info, "x3d_variants": variants}, notes=notes_md, columns=columns,
                  directory=out)
    plot(rows, out / "backends.png")
    console.print(make_table(rows, columns, title="batch-1 latency (ms)", formats={
        "p50_ms": ".1f", "p95_ms": ".1f", "speedup_vs_torch": ".2f", "gflops": ".1f", "pct_of_gemm": ".1f",
        "gmacs": ".3f", "size_mb": ".1f"}))
    if variants:
        console.print(make_table(variants, ["setting", "p50_ms", "p95_ms"], title="X3D-XS settings",
                                 formats={"p50_ms": ".1f", "p95_ms": ".1f"}))
    for note in notes:
        console.print(note, highlight=False)
    console.print(f"wrote {out}/backends.json, backends.md, backends.png", highlight=False)


if __name__ == "__main__":
    main()
