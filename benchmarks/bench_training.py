"""Training benchmark on `edgevid data synth` defaults: accuracy within a time budget, and data-loader headroom.

    .venv/bin/python -m benchmarks.bench_training [--data DIR] [--budget-min 15] [--recipes x3d_xs tsm_r18 ...]
    .venv/bin/python -m benchmarks.bench_training --quick      (a small synth set, 1 epoch each: checks the
                                                               pipeline end to end, not accuracy)

Without ``--data`` the synth defaults are generated once into ``runs/bench/synth``. Each recipe in
``recipes/`` (default: x3d_xs, tsm_r18, r2plus1d_18 and the single-frame baseline x3d_xs_1frame) trains with
``edgevid.train.train`` exactly as ``edgevid train`` would, into ``runs/bench/<recipe>``; the clock starts when
``train`` is called (dataset indexing, model building, every epoch's training and validation are all counted),
and a run whose clock passes the budget stops after that epoch. Reported per recipe: input, params and GMACs,
epochs, minutes, best val top-1 within the budget, the minute it first reached 90%, training clips/s, and
the per-class val top-1 of the run's best checkpoint (which classes are left to learn).
The target: X3D-XS >= 90% val top-1 within 15 minutes.

Data loading, next to the X3D-XS step rate: clips/s of the real training loader (decode + augment +
normalise, the x3d_xs recipe's augmentation, ``--workers`` workers, measured after the first batch) and
clips/s of X3D-XS training steps alone (forward + backward + AdamW on a batch already in memory). Target:
loader >= 2x the step rate. Both are measured alone, before the training runs (and kept from the earlier
results when x3d_xs is not among ``--recipes``). Recipes not given keep their earlier rows, so recipes can be
measured one invocation at a time.

Results: ``benchmarks/results/<machine>/training.{json,md}`` (``training_quick.*`` with --quick), a plot of val
top-1 against training minutes for every recipe (``training_curves.png``) and each run's own ``curves.png``.
Each row records the ``OMP_WAIT_POLICY`` it ran under. On an idle 2-core machine OpenMP's default (spinning
threads) trains X3D-XS about 1.6x faster than ``PASSIVE`` (32 vs 50 s per epoch); on a busy one, set
``OMP_WAIT_POLICY=PASSIVE``: spinning threads then slow training steps down many times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info, merged_rows, results_dir, stamp, write_results
from edgevid.data import build_dataset, build_loader
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.meta import read_meta
from edgevid.models import count_macs, count_params, create_model
from edgevid.train import evaluate, load_recipe, train
from edgevid.train.engine import soft_cross_entropy
from edgevid.train.optim import build_optimizer
from edgevid.train.pretrain import plan_pretraining
from edgevid.train.recipe import Recipe
from edgevid.utils.console import console, make_table
from edgevid.utils.plotting import pyplot, save_figure
from edgevid.utils.tables import markdown_table

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
DEFAULT_RECIPES = ("x3d_xs", "tsm_r18", "r2plus1d_18", "x3d_xs_1frame")
TARGET_TOP1 = 90.0
TARGET_MINUTES = 15.0


class _OverBudget(Exception):
    pass


def ensure_data(data: Path | None, quick: bool) -> Path:
    """The dataset to use: ``data``, or synth defaults generated once under runs/bench/synth (quick: 8 train and
    4 val videos per class, in runs/bench/synth_quick)."""
    if data is not None:
        return data
    root = ROOT / "runs" / "bench" / ("synth_quick" if quick else "synth")
    config = SynthConfig(videos_per_class=8, val_per_class=4) if quick else SynthConfig()
    if not (root / "synth.json").is_file():
        console.print(f"generating edgevid data synth into {root}")
        generate_synth(root, config, workers=2, overwrite=root.exists())
    return root


def recipe_dataset(recipe: Recipe, data: Path):
    """The training split of ``data`` as the (resolved) recipe samples and augments it."""
    cfg = recipe.data
    return build_dataset(data, cfg.train_split, frames=cfg.frames, size=cfg.size,
                         sampling_stride=cfg.frame_stride(), clip_seconds=cfg.span_seconds(), mean=cfg.mean,
                         std=cfg.std, train=True, augment=cfg.augment, sampling=cfg.sampling, fit=cfg.fit)


def _loader_for(recipe: Recipe, data: Path, workers: int) -> torch.utils.data.DataLoader:
    return build_loader(recipe_dataset(recipe, data), recipe.train.batch_size, shuffle=True, workers=workers, seed=0)


def loader_clips_per_s(recipe: Recipe, data: Path, workers: int, batches: int) -> float:
    """Clips/s of the training loader alone, after its first batch (worker start-up excluded)."""
    loader = _loader_for(recipe, data, workers)
    iterator = iter(loader)
    next(iterator)
    start, clips = time.perf_counter(), 0
    for _, (batch, _labels, _skipped) in zip(range(batches), iterator, strict=False):
        clips += batch.shape[0]
    return clips / (time.perf_counter() - start)


def step_clips_per_s(recipe: Recipe, data: Path, steps: int) -> float:
    """Clips/s of training steps alone (forward + backward + optimiser) on one batch already in memory."""
    loader = _loader_for(recipe, data, workers=0)
    num_classes = len(loader.dataset.classes)
    clips, labels, _ = next(iter(loader))
    model = create_model(recipe.model.name, num_classes=num_classes, **recipe.model.overrides).train()
    optimizer = build_optimizer(model, recipe.optim, recipe.optim.lr)
    targets = torch.nn.functional.one_hot(labels, num_classes).float()
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = soft_cross_entropy(model(clips), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return clips.shape[0] / statistics.median(times[1:])


def recipe_path(recipe: str | Path) -> Path:
    """A recipe given by name (``recipes/<name>.yaml``) or by the path of a YAML file (e.g. a tuned best.yaml)."""
    return Path(recipe) if str(recipe).endswith((".yaml", ".yml")) else RECIPES / f"{recipe}.yaml"


def run_recipe(name: str | Path, data: Path, runs: Path, budget_s: float, overrides: list[str]) -> dict[str, Any]:
    """Train one recipe (name or YAML path) under the time budget; returns its result row and per-epoch history."""
    path = recipe_path(name)
    name = path.stem if path.parent != RECIPES else str(name)
    recipe = load_recipe(path, overrides).resolved()
    run_dir = runs / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    history: list[dict[str, Any]] = []
    cache = runs / f"{name}.cache"  # every run pays for its own pretraining (a recipe's pretrain section)
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["EDGEVID_CACHE"] = str(cache)
    plan = plan_pretraining(recipe)
    start = time.perf_counter()

    def on_epoch_end(row: dict[str, Any]) -> None:
        history.append({**row, "minutes": (time.perf_counter() - start) / 60})
        if time.perf_counter() - start > budget_s and row["epoch"] < recipe.train.epochs:
            raise _OverBudget

    stopped = False
    try:
        train(path, data, run_dir, overrides=overrides, on_epoch_end=on_epoch_end)
    except _OverBudget:
        stopped = True
    within = [r for r in history if r["minutes"] * 60 <= budget_s and r["val_top1"] is not None]
    best = max(within, key=lambda r: r["val_top1"], default=None)
    reached = next((r["minutes"] for r in within if r["val_top1"] >= TARGET_TOP1), None)
    model = create_model(recipe.model.name, num_classes=read_meta(run_dir).num_classes, **recipe.model.overrides)
    per_class = evaluate(run_dir, data, workers=recipe.train.workers)["per_class_acc"]
    return {
        "recipe": name, "model": recipe.model.name, "budget_min": budget_s / 60,
        "input": f"{recipe.data.frames}x{recipe.data.size} ({recipe.data.sampling}{_span(recipe)})",
        "params_m": count_params(model) / 1e6,
        "gmacs": count_macs(model, recipe.data.frames, recipe.data.size) / 1e9,
        "optimizer": recipe.optim.name, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "pretrain": f"{plan.recipe.train.minutes:g} min {plan.synth.style}" if plan else "-",
        "epochs": f"{len(history)}/{recipe.train.epochs}" + (" (budget)" if stopped else "")
                  + (f" (train.minutes {recipe.train.minutes:g})" if recipe.train.minutes and not stopped
                     and len(history) < recipe.train.epochs else ""),
        "minutes": history[-1]["minutes"] if history else None,
        "best_val_top1": best["val_top1"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_val_top1": history[-1]["val_top1"] if history else None,
        "min_to_90": reached,
        "train_clips_per_s": statistics.median(r["clips_per_s"] for r in history) if history else None,
        "per_class_val_top1": per_class,
        "history": history,
        "run_dir": run_dir,
    }


def _span(recipe: Recipe) -> str:
    data = recipe.data
    if data.sampling != "dense":
        return ""
    return f", {data.clip_seconds:g} s" if data.clip_seconds is not None else f", stride {data.sampling_stride}"


def plot_runs(rows: list[dict[str, Any]], budget_min: float, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(8, 5))
    for row in rows:
        points = [(r["minutes"], r["val_top1"]) for r in row["history"] if r["val_top1"] is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=f"{row['recipe']} ({row['input']})")
    ax.axhline(TARGET_TOP1, color="grey", linestyle="--", linewidth=1)
    ax.axvline(budget_min, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("training minutes (wall clock, incl. validation)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("edgevid train on synth defaults")
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="Dataset root (default: synth defaults in runs/bench/synth).")
    parser.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES), help="Recipe names in recipes/.")
    parser.add_argument("--budget-min", type=float, default=15.0, help="Training minutes per recipe.")
    parser.add_argument("--workers", type=int, default=2, help="Loader workers for the throughput measurement.")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench", help="Where the runs go.")
    parser.add_argument("--quick", action="store_true",
                        help="Small synth set (8+4 videos per class), one epoch per recipe, short timings.")
    args = parser.parse_args()

    info = machine_info()
    info["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    info["torch_threads"] = torch.get_num_threads()
    data = ensure_data(args.data, args.quick)
    overrides = ["train.epochs=1"] if args.quick else []
    x3d = load_recipe(RECIPES / "x3d_xs.yaml").resolved()
    name = "training_quick" if args.quick else "training"
    earlier = results_dir() / f"{name}.json"
    if "x3d_xs" not in args.recipes and earlier.is_file():
        kept = json.loads(earlier.read_text())["info"]["summary"]
        loader_rate, step_rate = kept["loader_clips_per_s"], kept["x3d_xs_step_clips_per_s"]
    else:
        loader_rate = loader_clips_per_s(x3d, data, args.workers, batches=4 if args.quick else 20)
        step_rate = step_clips_per_s(x3d, data, steps=2 if args.quick else 5)
    console.print(f"x3d_xs recipe: loader {loader_rate:.1f} clips/s ({args.workers} workers) vs training steps "
                  f"{step_rate:.1f} clips/s -> {loader_rate / step_rate:.1f}x", highlight=False)

    rows = stamp([run_recipe(name, data, args.runs, args.budget_min * 60, overrides) for name in args.recipes])
    out = results_dir(name)
    for row in rows:
        shutil.copyfile(args.runs / row["recipe"] / "curves.png", out / f"{name}_{row['recipe']}_curves.png")
    rows = merged_rows(name, rows, args.recipes)
    earlier = out / f"{name}_history.json"
    if earlier.is_file():
        history = json.loads(earlier.read_text())["rows"]
        for row in rows:
            row.setdefault("history", [h for h in history if h["recipe"] == row["recipe"]])
    plot_runs(rows, TARGET_MINUTES, out / f"{name}_curves.png")
    columns = ["recipe", "model", "input", "params_m", "gmacs", "optimizer", "budget_min", "epochs", "minutes",
               "best_val_top1", "best_epoch", "final_val_top1", "min_to_90", "train_clips_per_s", "omp_wait_policy",
               "load_avg_1min"]
    per_class = [{"recipe": r["recipe"], **r["per_class_val_top1"]} for r in rows if r.get("per_class_val_top1")]
    x3d_row = next((r for r in rows if r["recipe"] == "x3d_xs"), None)  # this run's or an earlier one's
    summary = {
        "loader_clips_per_s": loader_rate, "x3d_xs_step_clips_per_s": step_rate,
        "loader_over_step": loader_rate / step_rate, "loader_target_met": loader_rate >= 2 * step_rate,
        "x3d_xs_target_met": bool(x3d_row and x3d_row["min_to_90"] is not None
                                  and x3d_row["min_to_90"] <= TARGET_MINUTES),
        "budget_min": args.budget_min, "quick": args.quick, "data": str(data),
    }
    source = "given" if args.data else "small synth set" if args.quick else "synth defaults"
    notes = (
        f"Data: `{data}` ({source}). budget_min: minutes of wall-clock training allowed to the recipe "
        f"(incl. validation each epoch; the run stops after the epoch that passes it); best val top-1 counts "
        f"epochs that ended within it. Target: X3D-XS >= {TARGET_TOP1:g}% within {TARGET_MINUTES:g} min -> "
        f"{'met' if summary['x3d_xs_target_met'] else 'NOT met'}.\n\n"
        f"Data loading vs X3D-XS training (x3d_xs recipe input, batch {x3d.train.batch_size}): loader "
        f"{loader_rate:.1f} clips/s with {args.workers} workers (decode + augment + normalise) vs "
        f"{step_rate:.1f} clips/s of training steps alone = {loader_rate / step_rate:.1f}x (target >= 2x: "
        f"{'met' if summary['loader_target_met'] else 'NOT met'}).\n\n"
        f"Shared, noisy 2-core machine: other jobs may have run at the same time (see load average). "
        f"torch threads {info['torch_threads']}; omp_wait_policy per row (default: OpenMP's spinning threads)."
        + (" QUICK MODE: small data set, one epoch per recipe; accuracy is not meaningful." if args.quick else "")
        + ("\n\nPer-class val top-1 (%) of each run's best checkpoint (`edgevid eval RUN`; recipes measured before "
           "this table existed have no row):\n\n" + markdown_table(per_class) if per_class else "")
    )
    write_results(name, [{k: r.get(k) for k in [*columns, "per_class_val_top1"]} for r in rows],
                  {**info, "summary": summary}, notes=notes,
                  columns=columns, directory=out)
    write_results(f"{name}_history", [{**h, "recipe": r["recipe"]} for r in rows for h in r["history"]],
                  info, directory=out)
    console.print(make_table(rows, columns, title=f"training benchmark ({name})",
                             formats={"params_m": ".2f", "gmacs": ".3f", "minutes": ".1f", "best_val_top1": ".1f",
                                      "final_val_top1": ".1f", "min_to_90": ".1f", "train_clips_per_s": ".1f"}))
    console.print(f"results in {out}", highlight=False)


if __name__ == "__main__":
    main()
