"""INT8 post-training quantization on the synthetic benchmark data: accuracy and speed against FP32.

For each model trained by a shipped recipe (X3D-XS, TSM-R18, R(2+1)D-18) this quantizes with ``edgevid
quantize`` for OpenVINO (NNCF), ONNX Runtime (QDQ) and TensorRT (symmetric Q/DQ ONNX, checked in ONNX Runtime
since no GPU is here), with a 128-clip calibration manifest from the training split and the accuracy guard
(``--max-drop`` 1.0 point) on the validation split, then measures batch-1 latency of FP32 and INT8 on the same
backend interleaved in one run (so the speed-ups compare like with like on a shared machine).

A second study measures INT8 top-1 against the calibration-set size N (``--sweep``) for one model, without the
guard: how many clips are enough (the table in ``calibration/README.md``).

Trained runs are taken from ``--runs/<recipe>`` (default ``runs/bench``, where ``benchmarks.bench_training``
writes them); a missing run is trained there with ``edgevid.train.train`` and the recipe (``--train-epochs``
overrides its epochs). The calibration manifests are written to ``calibration/synth_<recipe>.json``.

    .venv/bin/python -m benchmarks.bench_int8 [--data DIR] [--runs DIR] [--recipes x3d_xs tsm_r18 r2plus1d_18]
        [--num 128] [--sweep 8 16 32 64 128] [--sweep-recipe x3d_xs] [--iters 30] [--threads N]

Results: ``benchmarks/results/<machine>/int8.{json,md}`` and ``int8_calibration_size.{json,md}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_training import ensure_data
from benchmarks.common import machine_info, merged_rows, stamp, write_results
from edgevid.compress.accuracy import AccuracyGuardError, ValidationSet, ort_predict
from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.compress.quantize import quantize
from edgevid.compress.report import add_speedups, benchmark_artifacts, print_report
from edgevid.export import export
from edgevid.meta import read_meta
from edgevid.models import count_macs, create_model
from edgevid.runtime import load
from edgevid.runtime.openvino_backend import device_capabilities
from edgevid.train import train
from edgevid.utils.console import console, make_table

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ("x3d_xs", "tsm_r18", "r2plus1d_18")
COLUMNS = ["model", "backend", "precision", "execution", "size_mb", "top1", "drop", "max_logit_diff", "p50_ms",
           "p95_ms", "speedup", "vs_bf16", "float_layers"]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every study on trained runs shares: data, runs folder, recipes, training epochs."""
    parser.add_argument("--data", type=Path, help="Dataset root (default: synth defaults in runs/bench/synth).")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench", help="Trained runs, one per recipe.")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--train-epochs", type=int, help="Epochs when a run has to be trained here.")


def ensure_run(recipe: str, data: Path, runs: Path, epochs: int | None) -> Path:
    """``runs/<recipe>`` with a trained checkpoint, trained now with the shipped recipe when missing."""
    run = runs / recipe
    if not (run / "best.pt").is_file():
        console.print(f"training {recipe} into {run}")
        train(ROOT / "recipes" / f"{recipe}.yaml", data, run, epochs=epochs)
    return run


def manifest_for(run: Path, data: Path, num: int, out: Path) -> Path:
    meta = read_meta(run)
    manifest, skipped = build_manifest(data, num, Preprocessing.from_meta(meta), model=meta.model,
                                       classes=meta.classes)
    if skipped:
        console.print(f"[yellow]calibration skipped {len(skipped)} unreadable videos[/]")
    return manifest.save(out)


TRT_BACKEND = "tensorrt Q/DQ (in onnxruntime)"


def bench_model(recipe: str, run: Path, data: Path, valset: ValidationSet, calib: Path, work: Path, *,
                max_drop: float, iters: int, threads: int | None) -> list[dict[str, Any]]:
    """FP32 and INT8 rows on OpenVINO and ONNX Runtime, and the TensorRT Q/DQ ONNX checked in ONNX Runtime:
    top-1, drop and FP32/INT8 agreement on the val clips; latency interleaved (not for the TensorRT scheme)."""
    meta = read_meta(run)
    model = create_model(meta.model, num_classes=meta.num_classes, **meta.arch)
    common = {"recipe": recipe, "model": meta.model, "input": f"{meta.frames}x{meta.size}",
              "gmacs": count_macs(model, meta.frames, meta.size) / 1e9}
    backends = {"openvino": "openvino", "onnx": "onnxruntime", "trt": TRT_BACKEND}
    results, refused = {}, []
    for target, suffix in (("openvino", ".xml"), ("onnx", ".onnx"), ("trt", ".onnx")):
        try:
            results[target] = quantize(run, target, calib, out=work / f"{recipe}.int8.{target}{suffix}", data=data,
                                       max_drop=max_drop, bench_iters=0, threads=threads)
        except AccuracyGuardError as exc:  # a result too: this model's INT8 misses the guard on this backend
            refused.append({**common, "backend": backends[target], "precision": "int8",
                            "execution": "refused by the accuracy guard", "top1": exc.int8_top1,
                            "drop": exc.fp32_top1 - exc.int8_top1, "reason": str(exc)})
    artifacts = {("onnxruntime", "fp32"): export(run, "onnx", out=work / f"{recipe}.onnx", threads=threads).path,
                 ("openvino", "fp32"): export(run, "openvino", out=work / f"{recipe}.xml", threads=threads).path}
    if "BF16" in device_capabilities("CPU"):
        artifacts[("openvino", "bf16")] = export(run, "openvino", "bf16", out=work / f"{recipe}.bf16.xml",
                                                 threads=threads).path
    floats = {backends[target]: result for target, result in results.items()}
    artifacts.update({(backend, "int8"): result.path for backend, result in floats.items()})
    predictors = {key: load(path, threads=threads) for key, path in artifacts.items()}
    scores = {key: valset.scores(predictor.predict) for key, predictor in predictors.items()}
    predictions = {key: value.argmax(1) for key, value in scores.items()}
    entries = []
    for (backend, precision), path in artifacts.items():
        fp32_key = ("openvino" if backend == "openvino" else "onnxruntime", "fp32")
        reference = predictions[fp32_key]
        top1 = float(100.0 * (predictions[(backend, precision)] == valset.labels).mean())
        row = {**common, "backend": backend, "top1": top1,
               "drop": float(100.0 * (reference == valset.labels).mean()) - top1,
               "agreement": float((predictions[(backend, precision)] == reference).mean()),
               "max_logit_diff": float(np.abs(scores[(backend, precision)] - scores[fp32_key]).max()),
               "execution": predictors[(backend, precision)].execution}
        if precision == "int8":
            row["float_layers"] = len(floats[backend].float_layers)
        entries.append((row, path))
    timed = benchmark_artifacts([e for e in entries if e[0]["backend"] != TRT_BACKEND], valset=valset, iters=iters,
                                threads=threads)
    untimed = benchmark_artifacts([e for e in entries if e[0]["backend"] == TRT_BACKEND], valset=valset, iters=0,
                                  threads=threads)
    rows = add_speedups(timed, {"precision": "fp32"}) + untimed + refused
    bf16 = next((r for r in rows if r["backend"] == "openvino" and r["precision"] == "bf16"), None)
    for row in rows:
        if bf16 and row["backend"] == "openvino" and row["precision"] == "int8" and row.get("p50_ms"):
            row["vs_bf16"] = bf16["p50_ms"] / row["p50_ms"]
    return rows


def calibration_sweep(recipe: str, run: Path, data: Path, valset: ValidationSet, sizes: list[int], work: Path,
                      threads: int | None) -> list[dict[str, Any]]:
    """INT8 top-1 (no accuracy guard) for each calibration-set size on OpenVINO and ONNX Runtime."""
    meta = read_meta(run)
    fp32 = valset.top1(valset.scores(ort_predict(export(run, "onnx", out=work / "sweep_fp32.onnx").path)))
    rows = []
    for num in sizes:
        calib = manifest_for(run, data, num, work / f"calib_{num}.json")
        row: dict[str, Any] = {"model": meta.model, "clips": num, "fp32_top1": fp32}
        for target, suffix in (("openvino", ".xml"), ("onnx", ".onnx")):
            out = work / f"sweep_{num}.{target}{suffix}"
            quantize(run, target, calib, out=out, bench_iters=0, threads=threads, show_progress=False)
            row[f"{target}_int8_top1"] = valset.top1(valset.scores(load(out, threads=threads).predict))
            row[f"{target}_drop"] = fp32 - row[f"{target}_int8_top1"]
        rows.append(row)
        console.print(make_table([row], list(row), formats={k: ".2f" for k in row if k not in ("model", "clips")}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--num", type=int, default=128, help="Calibration clips.")
    parser.add_argument("--max-drop", type=float, default=1.0, help="Accuracy guard, top-1 points.")
    parser.add_argument("--sweep", type=int, nargs="*", default=[8, 16, 32, 64, 128],
                        help="Calibration sizes for the accuracy-vs-N study (none: skip it).")
    parser.add_argument("--sweep-recipe", default="x3d_xs")
    parser.add_argument("--iters", type=int, default=30, help="Latency iterations per artifact.")
    parser.add_argument("--threads", type=int, help="Runtime threads (default: the runtimes' own).")
    args = parser.parse_args()

    data = ensure_data(args.data, quick=False)
    info = machine_info()
    rows, sweep = [], []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        work = Path(tmp)
        for recipe in args.recipes:
            run = ensure_run(recipe, data, args.runs, args.train_epochs)
            valset = ValidationSet.load(data, read_meta(run))
            calib = manifest_for(run, data, args.num, ROOT / "calibration" / f"synth_{recipe}.json")
            model_rows = bench_model(recipe, run, data, valset, calib, work, max_drop=args.max_drop,
                                     iters=args.iters, threads=args.threads)
            print_report(model_rows, f"{recipe}: FP32 vs BF16 vs INT8", COLUMNS[1:])
            rows += stamp(model_rows)
            if recipe == args.sweep_recipe and args.sweep:
                sweep = calibration_sweep(recipe, run, data, valset, args.sweep, work, args.threads)
    load_avg = info.get("load_avg_1_5_15")
    guard = (f"accuracy guard --max-drop {args.max_drop:g}" if args.max_drop < 100
             else "no accuracy guard (--max-drop 100): plain post-training quantization")
    notes = (
        f"Data: `{data}` (edgevid data synth defaults: 8 classes, 480 train / 120 val videos). Models: the runs in "
        f"`{args.runs}` trained with the shipped recipes. Calibration: {args.num} clips from the training split "
        f"(class-stratified manifests in `calibration/`); {guard}. "
        "top1: val split, centre clip; drop: FP32 top-1 minus this row's (points); max_logit_diff: largest |logit "
        "difference| against FP32 on the same backend over the val clips; execution: what the runtime computed in "
        "(OpenVINO: read back from the compiled model); vs_bf16: OpenVINO BF16 p50 / INT8 p50 (where the CPU has "
        "BF16). float_layers: weighted layers left "
        "in float (by the guard, or by NNCF's own scheme). Latency: batch 1, p50/p95 over interleaved rounds of "
        "FP32 and INT8 in the same run; "
        "speedup = FP32 p50 / INT8 p50 on the same backend. The TensorRT row is the symmetric Q/DQ ONNX run in ONNX "
        f"Runtime (no GPU here); its size is the ONNX. agreement: share of val clips where INT8 and FP32 pick the "
        f"same class. Shared 2-core machine (load average {load_avg} at the start of the last invocation; each "
        "row has the 1-minute load when it was measured): absolute latencies are noisy, ratios from the same "
        "rounds are the numbers to read."
    )
    write_results("int8", merged_rows("int8", rows, args.recipes), info, notes=notes,
                  columns=["recipe", "input", "gmacs", *COLUMNS, "agreement", "load_avg_1min"])
    if sweep:
        write_results("int8_calibration_size", sweep, info, notes=(
            f"INT8 top-1 on the val split against the number of calibration clips (class-stratified, seed 0) for "
            f"{args.sweep_recipe}, without the accuracy guard; FP32 top-1 for reference. Data: `{data}`."))


if __name__ == "__main__":
    main()
