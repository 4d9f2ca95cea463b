"""Structured pruning on the synthetic benchmark data: 50% of the MACs removed, fine-tuned, measured.

For each model trained by a shipped recipe this runs ``edgevid prune RUN --ratio 0.5`` (Torch-Pruning DepGraph,
L2 importance, uniform channel ratio found by bisection on MACs), fine-tunes with the run's recipe for
``--finetune-epochs``, and reports original vs pruned: params, GMACs, val top-1 and batch-1 latency on PyTorch,
ONNX Runtime and OpenVINO (original and pruned timed interleaved in one run). Targets: top-1 within 2 points
of the original, at least 1.4x faster. ``--control`` also fine-tunes the unpruned model the same way, so an
original that had not converged is compared at equal training (``drop_vs_control``).

Trained runs come from ``--runs/<recipe>`` (default ``runs/bench``; trained there with the recipe when missing,
as in ``benchmarks.bench_int8``); pruned runs go to ``--runs/<recipe>-pruned50``.

    .venv/bin/python -m benchmarks.bench_pruning [--data DIR] [--runs DIR] [--recipes x3d_xs tsm_r18 r2plus1d_18]
        [--ratio 0.5] [--round-to 8] [--finetune-epochs N] [--control] [--reuse] [--iters 20] [--threads N]

Results: ``benchmarks/results/<machine>/pruning.{json,md}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import shutil
from pathlib import Path

from benchmarks.bench_int8 import add_run_arguments, ensure_run
from benchmarks.bench_training import ensure_data
from benchmarks.common import machine_info, merged_rows, stamp, write_results
from edgevid.checkpoint import load_checkpoint, resolve_checkpoint
from edgevid.compress.pruning import PruneResult, default_out, prune, report_pruning
from edgevid.meta import read_meta
from edgevid.train import load_recipe, train
from edgevid.train.engine import read_metrics

COLUMNS = ["recipe", "model", "backend", "params_m", "gmacs", "top1", "drop", "p50_ms", "p95_ms", "speedup",
           "status"]


def finetuned_epochs(out: Path) -> int:
    """Epochs a finished fine-tuning run in ``out`` trained."""
    return len(read_metrics(out))


def report_existing(run: Path, out: Path, data: Path, iters: int, threads: int | None) -> PruneResult:
    """The before/after report of a pruned run already fine-tuned in ``out`` (by an interrupted invocation)."""
    info = load_checkpoint(out / "pruned.pt").meta.extra["pruning"]
    info["finetune_epochs"] = finetuned_epochs(out)
    return report_pruning(resolve_checkpoint(run), PruneResult(out, resolve_checkpoint(out), info), data,
                          read_meta(run), bench_iters=iters, threads=threads)


def control_top1(run: Path, data: Path, epochs: int, reuse: bool) -> float:
    """Best val top-1 of the unpruned model fine-tuned exactly like the pruned one (its recipe, ``epochs`` more
    epochs from its best checkpoint) in ``<run>-finetuned<epochs>``: the reference at the same training budget,
    which matters when the original run had not converged. ``reuse`` reads a finished earlier control run."""
    out = run.parent / f"{run.name}-finetuned{epochs}"
    if not (reuse and len(read_metrics(out)) == epochs):
        if out.exists():
            shutil.rmtree(out)
        train(run / "recipe.yaml", data, out=out, epochs=epochs, start_from=load_checkpoint(resolve_checkpoint(run)))
    return max(row["val_top1"] for row in read_metrics(out) if row.get("val_top1") is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--ratio", type=float, default=0.5, help="Fraction of MACs to remove.")
    parser.add_argument("--finetune-epochs", type=int, help="Fine-tuning epochs (default: the recipe's).")
    parser.add_argument("--importance", default="l2", choices=["l2", "bn"])
    parser.add_argument("--global-pruning", action="store_true", help="Global instead of uniform ratio.")
    parser.add_argument("--round-to", type=int, default=8, help="Pruned channel counts are multiples of this.")
    parser.add_argument("--iters", type=int, default=20, help="Latency iterations per model and backend.")
    parser.add_argument("--threads", type=int, help="Runtime threads (default: the runtimes' own).")
    parser.add_argument("--control", action="store_true",
                        help="Also fine-tune the unpruned model for the same epochs (drop_vs_control column).")
    parser.add_argument("--reuse", action="store_true",
                        help="Report a pruned run already fine-tuned in <run>-pruned<percent> (and a finished "
                             "control run) instead of redoing them.")
    args = parser.parse_args()

    data = ensure_data(args.data, quick=False)
    info = machine_info()
    rows = []
    for recipe in args.recipes:
        run = ensure_run(recipe, data, args.runs, args.train_epochs)
        out = default_out(run, args.ratio)
        reuse = args.reuse and (out / "best.pt").is_file()
        epochs = finetuned_epochs(out) if reuse else args.finetune_epochs
        if epochs is None:
            epochs = load_recipe(run / "recipe.yaml").train.epochs
        control = control_top1(run, data, epochs, args.reuse) if args.control else None
        if reuse:
            result = report_existing(run, out, data, args.iters, args.threads)
        else:
            if out.exists():
                shutil.rmtree(out)
            result = prune(run, args.ratio, data, finetune_epochs=args.finetune_epochs, importance=args.importance,
                           global_pruning=args.global_pruning, round_to=args.round_to, out=out, bench_iters=args.iters,
                           threads=args.threads)
        original = {r["backend"]: r.get("top1") for r in result.rows if r["model"] == "original"}
        recipe_rows = []
        for row in result.rows:
            base = original.get(row["backend"])
            pruned_top1 = row.get("top1") if row["model"] == "pruned" else None
            recipe_rows.append({
                "recipe": recipe, **row,
                "drop": base - row["top1"] if base is not None and row.get("top1") is not None else None,
                "control_top1": control if pruned_top1 is not None else None,
                "drop_vs_control": control - pruned_top1 if control is not None and pruned_top1 is not None else None,
                "mac_reduction": result.info["mac_reduction"], "channel_ratio": result.info["channel_ratio"],
                "round_to": result.info["round_to"], "finetune_epochs": epochs})
        rows += stamp(recipe_rows)
    load_avg = info.get("load_avg_1_5_15")
    notes = (
        f"Data: `{data}`. Pruning: {args.ratio:.0%} of the MACs removed (Torch-Pruning DepGraph, {args.importance} "
        f"importance, {'global' if args.global_pruning else 'uniform'} channel ratio by bisection, channel counts "
        "rounded to multiples of round_to per row), then "
        "fine-tuned with the run's recipe (finetune_epochs per row). top1: val split, centre clip; drop: original "
        "top-1 minus pruned (points); negative when the original was under-trained and the fine-tuning epochs went on "
        "training it. control_top1 (with --control): the unpruned model fine-tuned the same way for the same "
        "epochs; drop_vs_control = control_top1 minus pruned top-1, the drop at equal training. Latency: batch 1, "
        "original and pruned interleaved in the same run; speedup = "
        f"original p50 / pruned p50 on the same backend. Shared 2-core machine (load average {load_avg} at the "
        "start of the last invocation; each row has the 1-minute load when it was measured): absolute latencies "
        "are noisy, ratios from the same rounds are the numbers to read."
    )
    write_results("pruning", merged_rows("pruning", rows, args.recipes), info, notes=notes,
                  columns=[*COLUMNS, "control_top1", "drop_vs_control", "round_to", "finetune_epochs",
                           "load_avg_1min"])


if __name__ == "__main__":
    main()
