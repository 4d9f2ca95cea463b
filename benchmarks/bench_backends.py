"""Batch-1 latency of X3D-XS, TSM-R18 and R(2+1)D-18 on this CPU: PyTorch eager vs ONNX Runtime vs OpenVINO, in every
precision the machine runs (FP32, BF16, FP16, INT8).

Every model is exported through ``edgevid export`` (random weights, 400 classes: latency does not depend on the
weights) and run through ``edgevid.runtime.load``, so the numbers are those of the shipped code paths; INT8 comes
from ``edgevid quantize`` (OpenVINO: NNCF; ONNX Runtime: QDQ) with 32 calibration clips of the synthetic benchmark
data. Each row records the precision the runtime reports it computed in (OpenVINO: read back from the compiled
model's runtime graph); a precision this machine cannot run is a row with the reason. Each backend
runs in its own process, and the processes are timed in alternating blocks (2 warm-up + ``--block`` timed calls
per round), so no other runtime's thread pool competes with the one timed and load changes on the shared machine
hit all of them alike; median and p95 come from that one run. The achieved GFLOP/s (2 x MACs / median latency)
is put against a 2048^3 FP32 matmul measured in the same run. For X3D-XS a few OpenVINO / ONNX Runtime settings
are compared as well (threads, performance hint, static vs dynamic shapes), and OpenVINO's own per-node profiles
(FP32, BF16 and INT8 of every model) are summed by kind of layer (1x1 convs, depthwise convs, other convs,
reorders, FakeQuantize, the rest) with each kind's GFLOP/s and the precisions its nodes ran in.

    python -m benchmarks.bench_backends [--rounds 5] [--block 6] [--models x3d_xs,tsm_r18,r2plus1d_18] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_training import ensure_data
from benchmarks.common import (
    machine_info,
    markdown_table,
    results_dir,
    time_callable,
    time_in_processes,
    write_results,
)
from edgevid.checkpoint import save_checkpoint
from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.compress.quantize import quantize
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.meta import ArtifactMeta
from edgevid.models import count_macs, create_model, get_spec
from edgevid.precision import describe_cpu
from edgevid.runtime import load
from edgevid.runtime.openvino_backend import compile_model, device_capabilities, precision_hint
from edgevid.utils.console import console, make_table, progress
from edgevid.utils.openvino import openvino_core
from edgevid.utils.plotting import pyplot, save_figure

MODELS = ("x3d_xs", "tsm_r18", "r2plus1d_18")
BACKENDS = (("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
            ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "bf16"), ("openvino", "int8"))
FLOAT_PRECISIONS = ("fp32", "fp16")
PROFILED = ("fp32", "bf16", "int8")
NODE_KINDS = {"Reorder": "reorders", "FakeQuantize": "FakeQuantize"}
CALIBRATION_CLIPS = 32
GEMM_N = 2048


def gemm_gflops(threads: int, repeats: int = 7) -> float:
    """FP32 GFLOP/s of a 2048^3 matmul in PyTorch (median of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    stats = time_callable(lambda: torch.mm(a, b), warmup=2, iters=repeats)
    return 2 * GEMM_N**3 / (stats["p50"] / 1e3) / 1e9


Key = tuple[str, str]  # (backend, precision)


def make_artifacts(name: str, workdir: Path, data: Path) -> tuple[dict[Key, Path], dict[Key, str], int, ArtifactMeta]:
    """Checkpoint, ONNX FP32/INT8, OpenVINO FP32/FP16/BF16/INT8 of a randomly initialised model (torch BF16 runs the
    checkpoint with autocast); the reason of each format this machine cannot run; its MACs."""
    spec = get_spec(name)
    model = create_model(name, num_classes=400).eval()
    meta = ArtifactMeta(model=name, classes=[f"c{i}" for i in range(400)], frames=spec.frames, size=spec.size,
                        sampling_stride=spec.sampling_stride, mean=spec.mean, std=spec.std)
    ckpt = save_checkpoint(workdir / f"{name}.pt", model, meta)
    paths, unavailable = {("torch", "fp32"): ckpt, ("torch", "bf16"): ckpt}, {}
    paths[("onnxruntime", "fp32")] = export(ckpt, "onnx", parity_clips=1).path
    for precision in (*FLOAT_PRECISIONS, "bf16"):
        try:
            paths[("openvino", precision)] = export(paths[("onnxruntime", "fp32")], "openvino", precision,
                                                    out=workdir / f"{name}.{precision}.xml", parity_clips=1).path
        except EdgevidError as exc:
            unavailable[("openvino", precision)] = str(exc)
    try:
        load(ckpt, precision="bf16")
    except EdgevidError as exc:
        unavailable[("torch", "bf16")] = str(exc)
        del paths[("torch", "bf16")]
    manifest, _ = build_manifest(data, CALIBRATION_CLIPS, Preprocessing.from_meta(meta), model=name,
                                 show_progress=False)
    # random weights: calibration only looks at activations, so the synth labels can stand for the 400 classes
    calib = dataclasses.replace(manifest, classes=meta.classes).save(workdir / f"{name}.calibration.json")
    for target in ("openvino", "onnx"):
        backend = "onnxruntime" if target == "onnx" else target
        paths[(backend, "int8")] = quantize(ckpt, target, calib, out=workdir / f"{name}.int8{SUFFIX[target]}",
                                            bench_iters=0, show_progress=False).path
    return paths, unavailable, count_macs(model, spec.frames, spec.size), meta


SUFFIX = {"openvino": ".xml", "onnx": ".onnx"}


def predictor_call(path: str, threads: int, shape: tuple[int, ...], precision: str | None = None
                   ) -> Callable[[], object]:
    """One ``predict`` of a fixed random clip through ``edgevid.runtime.load(path)`` (built in a timing process)."""
    clip = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    predictor = load(path, threads=threads, precision=precision)
    return lambda: predictor.predict(clip)


def openvino_call(xml: str, threads: int, static: bool, shape: tuple[int, ...], extra: dict | None = None
                  ) -> Callable[[], object]:
    """One raw FP32 OpenVINO inference of a fixed random clip (static or dynamic input shape), compiled by
    edgevid's ``compile_model`` with ``extra`` settings on top."""
    clip = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    model = _read_ir(openvino_core(), xml, shape if static else None)
    request = compile_model(model, "fp32", "CPU", threads, **(extra or {})).create_infer_request()
    return lambda: request.infer([clip])


def _read_ir(core, xml: str | Path, shape: tuple[int, ...] | None):
    """The IR at ``xml``, reshaped to the static input ``shape`` unless it is None."""
    model = core.read_model(xml)
    if shape is not None:
        model.reshape({model.inputs[0].get_any_name(): list(shape)})
    return model


def openvino_profile(xml: Path, shape: tuple[int, ...], threads: int, precision: str = "fp32",
                     iters: int = 20) -> list[dict]:
    """OpenVINO's per-node times (PERF_COUNT, static shape) summed by layer kind, with MACs, GFLOP/s and the
    precisions the kind's nodes ran in."""
    core = openvino_core()
    model = _read_ir(core, xml, shape)
    kinds: dict[str, tuple[str, int]] = {}
    for op in model.get_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution"):
            weight = list(op.input(1).get_shape())
            if op.get_type_name() == "GroupConvolution":
                kind, per_output = "depthwise/grouped conv", int(np.prod(weight[2:]))
            else:
                kind = "1x1 conv" if all(k == 1 for k in weight[2:]) else "other conv"
                per_output = int(np.prod(weight[1:]))
            kinds[op.get_friendly_name()] = (kind, int(np.prod(op.get_output_shape(0))) * per_output)
    request = compile_model(model, precision, "CPU", threads, PERF_COUNT=True).create_infer_request()
    clip = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    for _ in range(3):
        request.infer([clip])
    order = ["1x1 conv", "depthwise/grouped conv", "other conv", "reorders", "FakeQuantize", "everything else"]
    seconds, macs = dict.fromkeys(order, 0.0), dict.fromkeys(order, 0)
    ran: dict[str, dict[str, int]] = {kind: {} for kind in order}
    for kind, count in kinds.values():
        macs[kind] += count
    for index in range(iters):
        request.infer([clip])
        for node in request.profiling_info:
            kind = kinds.get(node.node_name, (None, 0))[0] or NODE_KINDS.get(node.node_type, "everything else")
            seconds[kind] += node.real_time.total_seconds() / iters
            if index == 0 and node.real_time.total_seconds() > 0:
                ran[kind][node.exec_type] = ran[kind].get(node.exec_type, 0) + 1
    return [{"precision": precision, "layers": kind, "gmacs": macs[kind] / 1e9, "ms": seconds[kind] * 1e3,
             "gflops": 2 * macs[kind] / seconds[kind] / 1e9 if macs[kind] and seconds[kind] else None,
             "kernels": ", ".join(f"{name} x{n}" for name, n in sorted(ran[kind].items(), key=lambda kv: -kv[1])[:3])}
            for kind in order if seconds[kind] > 0]


def x3d_settings(xml: Path, onnx_path: Path, shape: tuple[int, ...], threads: int) -> dict[str, tuple]:
    """X3D-XS under other runtime settings: OpenVINO hint / threads / dynamic shape, ONNX Runtime threads."""
    variants = {
        "LATENCY hint, static shape (edgevid default)": (threads, True, None),
        "LATENCY hint, dynamic shape compiled once": (threads, False, None),
        "THROUGHPUT hint, static shape": (None, True, {"PERFORMANCE_HINT": "THROUGHPUT"}),
        "LATENCY hint, static shape, 1 thread": (1, True, None),
    }
    settings = {f"openvino fp32: {label}": (openvino_call, {"xml": str(xml), "threads": count, "static": static,
                                                           "shape": shape, "extra": extra})
                for label, (count, static, extra) in variants.items()}
    for count in sorted({1, threads}):
        settings[f"onnxruntime fp32: ORT_ENABLE_ALL, {count} thread(s)"] = (
            predictor_call, {"path": str(onnx_path), "threads": count, "shape": shape})
    return settings


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    labels = [f"{b} {p}" for b, p in BACKENDS]
    colors = {"torch": "#999999", "onnxruntime": "#4c72b0", "openvino": "#55a868"}
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        by_label = {f"{r['backend']} {r['precision']}": r for r in rows if r["model"] == model and r.get("p50_ms")}
        medians = [by_label[label]["p50_ms"] if label in by_label else 0 for label in labels]
        spread = [by_label[label]["p95_ms"] - by_label[label]["p50_ms"] if label in by_label else 0
                  for label in labels]
        ax.bar(range(len(labels)), medians, yerr=[np.zeros(len(labels)), spread], capsize=3,
               color=[colors[b] for b, _ in BACKENDS], hatch=None)
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
        ax.set_title(f"{model} ({by_label['torch fp32']['input']})")
    axes[0][0].set_ylabel("batch-1 latency (ms): median, p95 whisker")
    fig.suptitle("edgevid backends and precisions on this CPU (random weights; missing bar = unavailable)")
    save_figure(fig, path, dpi=110)


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, as measured: X3D-XS best artifact vs torch eager, OpenVINO INT8 vs BF16 per model."""
    lines = []
    ok = [r for r in rows if r.get("p50_ms")]
    x3d = [r for r in ok if r["model"] == "x3d_xs"]
    if x3d:
        best = max(x3d, key=lambda r: r["speedup_vs_torch"])
        best_float = max((r for r in x3d if r["precision"] in FLOAT_PRECISIONS), key=lambda r: r["speedup_vs_torch"])
        lines.append(f"X3D-XS: fastest artifact {best['backend']} {best['precision']} (ran {best['execution']}) is "
                     f"{best['speedup_vs_torch']:.2f}x torch eager (target >= 6x on a BF16 CPU); best FP32/FP16 "
                     f"{best_float['backend']} {best_float['precision']} {best_float['speedup_vs_torch']:.2f}x.")
    for model in dict.fromkeys(r["model"] for r in ok):
        by = {(r["backend"], r["precision"]): r for r in ok if r["model"] == model}
        int8, bf16 = by.get(("openvino", "int8")), by.get(("openvino", "bf16"))
        if int8 and bf16:
            target = "not slower than BF16" if model == "x3d_xs" else ">= 1.3x"
            lines.append(f"{model}: OpenVINO INT8 {int8['p50_ms']:.1f} ms vs BF16 {bf16['p50_ms']:.1f} ms = "
                         f"{bf16['p50_ms'] / int8['p50_ms']:.2f}x (target {target}).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="Rounds of alternating blocks.")
    parser.add_argument("--block", type=int, default=6, help="Timed calls per backend and round.")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", type=Path, help="Calibration data for INT8 (default: synth defaults in "
                                                  "runs/bench/synth, generated when missing).")
    parser.add_argument("--out", type=Path, default=None, help="Results folder (default benchmarks/results/<machine>)")
    args = parser.parse_args()
    out = args.out or results_dir("backends")
    data = ensure_data(args.data, quick=False)
    info = machine_info()
    torch.set_num_threads(args.threads)
    rows, variants, profile = [], [], []
    gemm_before = gemm_gflops(args.threads)
    timing = {"rounds": args.rounds, "block": args.block}
    with tempfile.TemporaryDirectory() as tmp, progress() as bar:
        names = args.models.split(",")
        task = bar.add_task("backends", total=len(names) * len(BACKENDS), info="")
        for name in names:
            bar.update(task, info=f"{name}: exporting and quantizing")
            paths, unavailable, macs, meta = make_artifacts(name, Path(tmp), data)
            shape = (1, 3, meta.frames, meta.size, meta.size)
            base = {"model": name, "input": f"{meta.frames}x{meta.size}", "gmacs": macs / 1e9}
            for (backend, precision), reason in unavailable.items():
                rows.append({**base, "backend": backend, "precision": precision, "execution": "unavailable",
                             "reason": reason})
                bar.advance(task)
            bar.update(task, info=f"{name}: {len(paths)} backends, one process each, {args.rounds} rounds")
            timings = time_in_processes({key: (predictor_call, {"path": str(path), "threads": args.threads,
                                                                "shape": shape, "precision": key[1]})
                                         for key, path in paths.items()}, **timing)
            for (backend, precision), stats in timings.items():
                path = paths[(backend, precision)]
                files = (path, path.with_suffix(".bin"))
                execution = load(path, threads=args.threads, precision=precision).execution
                rows.append({**base, "backend": backend, "precision": precision, "execution": execution,
                             "p50_ms": stats["p50"], "p95_ms": stats["p95"], "iters": stats["iters"],
                             "gflops": 2 * macs / (stats["p50"] / 1e3) / 1e9,
                             "size_mb": sum(f.stat().st_size for f in files if f.exists()) / 2**20})
                bar.advance(task)
            bar.update(task, info=f"{name}: OpenVINO per-node profiles")
            for precision in PROFILED:
                if ("openvino", precision) in paths:
                    profile += [{"model": name, **row} for row in
                                openvino_profile(paths[("openvino", precision)], shape, args.threads, precision)]
            if name == "x3d_xs":
                bar.update(task, info=f"{name}: runtime settings, one process each")
                settings = x3d_settings(paths[("openvino", "fp32")], paths[("onnxruntime", "fp32")], shape,
                                        args.threads)
                variants = [{"setting": label, "p50_ms": st["p50"], "p95_ms": st["p95"]}
                            for label, st in time_in_processes(settings, **timing).items()]
    gemm = (gemm_before + gemm_gflops(args.threads)) / 2
    torch_p50 = {r["model"]: r["p50_ms"] for r in rows if r["backend"] == "torch" and r["precision"] == "fp32"}
    for row in rows:
        if row.get("p50_ms"):
            row["speedup_vs_torch"] = torch_p50[row["model"]] / row["p50_ms"]
            row["pct_of_gemm"] = 100 * row["gflops"] / gemm
    for row in profile:
        row["pct_of_gemm"] = 100 * row["gflops"] / gemm if row["gflops"] else None
    info.update(gemm_gflops_2048=gemm, threads=args.threads, load_avg_end=[round(v, 2) for v in os.getloadavg()],
                openvino_cpu_capabilities=device_capabilities("CPU"))
    fp16_compute = "FP16" if precision_hint("fp16") == "f16" else "FP32"
    notes = [
        f"Batch 1, random weights, 400 classes, FP32 input; each backend with {args.threads} threads in its own "
        f"process, timed in {args.rounds} rounds of alternating blocks (2 warm-up + {args.block} timed calls); "
        "medians and p95 from the same run. The machine is shared with other jobs: "
        f"load average at start {info['load_avg_1_5_15']}, at end {info['load_avg_end']}.",
        f"CPU features (detected from /proc/cpuinfo): {describe_cpu()}; OpenVINO CPU capabilities: "
        f"{', '.join(info['openvino_cpu_capabilities'])}. `execution` is what each runtime reports it computed in "
        "(OpenVINO: the weighted layers' runtime precisions in the compiled model).",
        f"2048^3 FP32 matmul in PyTorch: {gemm:.1f} GFLOP/s (mean of one measurement before and one after).",
        f"OpenVINO fp16 = weights compressed to FP16; on this CPU the plugin computes it in {fp16_compute}. "
        "OpenVINO bf16 = FP32 weights, BF16 arithmetic (INFERENCE_PRECISION_HINT=bf16); torch bf16 = autocast.",
        f"INT8: `edgevid quantize` (OpenVINO: NNCF, min/max ranges; ONNX Runtime: QDQ) with {CALIBRATION_CLIPS} "
        f"calibration clips of {data.name}; the layers left in float run in FP32.",
        *targets(rows),
    ]
    columns = ["model", "input", "backend", "precision", "execution", "p50_ms", "p95_ms", "speedup_vs_torch", "gflops",
               "pct_of_gemm", "gmacs", "size_mb", "iters"]
    notes_md = "\n".join(f"- {n}" for n in notes)
    missing = [r for r in rows if r.get("reason")]
    if missing:
        notes_md += "\n\nUnavailable here:\n" + "\n".join(f"- {r['model']} {r['backend']} {r['precision']}: "
                                                          f"{r['reason']}" for r in missing)
    if variants:
        notes_md += "\n\n## X3D-XS (4x160) under other runtime settings\n\n" + markdown_table(variants)
    if profile:
        notes_md += ("\n\n## Where OpenVINO spends the time (per-node profile, PERF_COUNT, summed by kind of layer; "
                     "kernels: the three most used oneDNN kernels (ISA and precision in the name) and their node "
                     "counts; pct_of_gemm against the 2048^3 FP32 matmul)"
                     "\n\n" + markdown_table(profile))
    write_results("backends", rows, {**info, "x3d_variants": variants, "openvino_profiles": profile},
                  notes=notes_md, columns=columns, directory=out)
    plot(rows, out / "backends.png")
    console.print(make_table(rows, columns, title="batch-1 latency (ms)", formats={
        "p50_ms": ".1f", "p95_ms": ".1f", "speedup_vs_torch": ".2f", "gflops": ".1f", "pct_of_gemm": ".1f",
        "gmacs": ".3f", "size_mb": ".1f"}))
    if variants:
        console.print(make_table(variants, ["setting", "p50_ms", "p95_ms"], title="X3D-XS settings",
                                 formats={"p50_ms": ".1f", "p95_ms": ".1f"}))
    if profile:
        console.print(make_table(profile, ["model", "precision", "layers", "gmacs", "ms", "gflops", "kernels"],
                                 title="OpenVINO profiles", formats={"gmacs": ".3f", "ms": ".2f", "gflops": ".1f"}))
    for note in notes:
        console.print(note, highlight=False)
    console.print(f"wrote {out}/backends.json, backends.md, backends.png", highlight=False)


if __name__ == "__main__":
    main()
