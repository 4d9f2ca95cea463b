"""Cross-dataset benchmark: each recipe on each `edgevid data synth` style, under one time budget.

    .venv/bin/python -m benchmarks.bench_generalise [--styles shapes photo wild] [--recipes x3d_xs x3d_xs_1frame]
        [--budget-min 15] [--budget recipe=MIN ...] [--set KEY=VALUE ...]

A recipe is a name in ``recipes/`` or the path of a recipe YAML (e.g. the ``best.yaml`` that ``edgevid tune`` wrote:
a tuned recipe is measured on the styles it was not tuned on). Each style's default set (``edgevid data synth
--style S``, seed 0) is generated once into ``runs/bench/synth-<style>``; every run trains exactly as
``edgevid train --recipe R --data D`` would, with no overrides, on a machine that has not run it before (an
empty pretraining cache per run, so a recipe's ``pretrain`` stage runs within the budget), and stops after the
epoch that passes its budget (``bench_training.run_recipe``). ``--set`` screens a change to the recipes (recipe
overrides such as ``data.clip_seconds=2.0``, usually with a shorter ``--budget-min``): its rows say so in
``changes`` and sit beside the shipped recipe's. Reported per recipe, style and changes: epochs, minutes, best and
final val top-1, train top-1 at the last epoch and the fit diagnosis ``edgevid train`` prints (``diagnose_fit`` on
the epochs run).

Targets (issue 25): X3D-XS >= 90% val top-1 on every style within 15 minutes; the single-frame baseline
(``x3d_xs_1frame``) <= 30% on each (the classes need motion). Results: ``benchmarks/results/<machine>/generalise.*``
(rows merge with earlier runs by recipe and style, so styles and recipes can be measured one invocation at a time).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from benchmarks.bench_training import ROOT, recipe_path, run_recipe
from benchmarks.common import machine_info, merged_rows, results_dir, stamp, write_results
from edgevid.data.synth import STYLES, SynthConfig, generate_synth
from edgevid.train import evaluate
from edgevid.train.engine import diagnose_fit
from edgevid.utils.console import console, make_table

TARGETS = {"x3d_xs": ("min", 90.0), "x3d_xs_1frame": ("max", 30.0)}
COLUMNS = ["recipe", "style", "changes", "input", "pretrain", "budget_min", "epochs", "minutes", "best_val_top1",
           "best_epoch", "best_val_top1_3clips", "final_val_top1", "final_train_top1", "fit", "target", "load_avg_1min"]
VIEWS = (3, 1)  # best_val_top1_3clips: the best checkpoint on 3 clips spread over each video (edgevid eval --views 3x1)


def _current(root: Path, style: str) -> bool:
    """``root`` holds a complete set written by this generator (with its reverse pairs; photo/wild: with each
    video's event window)."""
    if not (root / "synth.json").is_file():
        return False
    meta = json.loads((root / "synth.json").read_text())
    return "reverse_classes" in meta and (style == "shapes" or all("event_s" in video
                                                                   for video in meta.get("videos", {}).values()))


def style_data(style: str) -> Path:
    """The default set of ``style`` (seed 0), generated once (again when an older generator wrote it)."""
    root = ROOT / "runs" / "bench" / f"synth-{style}"
    if not _current(root, style):
        console.print(f"generating edgevid data synth --style {style} into {root}")
        generate_synth(root, SynthConfig(style=style), workers=2, overwrite=root.exists())
    return root


def target_check(recipe: str, best: float | None) -> str:
    if recipe not in TARGETS or best is None:
        return "-"
    kind, bound = TARGETS[recipe]
    met = best >= bound if kind == "min" else best <= bound
    return f"{'met' if met else 'MISSED'} ({'>=' if kind == 'min' else '<='} {bound:g}%)"


def changes_label(changes: list[str]) -> str:
    """The ``changes`` column of a row: its recipe overrides, or ``-`` for the recipe as shipped."""
    return " ".join(changes) or "-"


def measure(recipe: str, style: str, budget_min: float, changes: list[str]) -> dict[str, Any]:
    data = style_data(style)
    runs = ROOT / "runs" / "bench" / f"generalise-{style}"
    row = run_recipe(recipe, data, runs, budget_min * 60, overrides=changes)
    fit = diagnose_fit(row["history"])
    last = row["history"][-1] if row["history"] else {}
    return {**{k: row[k] for k in ("recipe", "input", "pretrain", "budget_min", "epochs", "minutes", "best_val_top1",
                                   "best_epoch", "final_val_top1")},
            "style": style, "changes": changes_label(changes), "final_train_top1": last.get("train_acc"),
            "best_val_top1_3clips": evaluate(row["run_dir"], data, views=VIEWS)["top1"],
            "fit": fit["verdict"] if fit else None,
            "target": target_check(row["recipe"], row["best_val_top1"]),
            "per_class_val_top1": row["per_class_val_top1"]}


def record(rows: list[dict[str, Any]], recipes: list[str], info: dict[str, Any]) -> Path:
    """Merge ``rows`` (of ``recipes``) into ``generalise.*`` of this machine, print the table; returns the folder."""
    out = results_dir("generalise")
    rows = merged_rows("generalise", stamp(rows), recipes, by=("recipe", "style", "changes"))
    per_class = [{"recipe": r["recipe"], "style": r["style"], "changes": r["changes"], **r["per_class_val_top1"]}
                 for r in rows if r.get("per_class_val_top1")]
    notes = (
        "Each recipe trains on each style's default `edgevid data synth --style S` set (seed 0; shapes 8 classes, "
        "photo 8 classes, wild 8 classes; 60 train + 15 val videos per class) with no overrides, exactly as "
        "`edgevid train --recipe R --data D` on a machine that has not run it before: a recipe's pretraining "
        "(pretrain column; X3D-XS: 5 minutes on synth shapes) runs within the budget, each run with an empty cache. "
        "A run stops after the epoch that passes budget_min (wall clock, incl. pretraining and validation). Rows "
        "with pretrain.style=null are the recipe before it pretrained. best_val_top1 counts epochs that ended within "
        "the budget (one centre clip per video, as training validates); best_val_top1_3clips is the best "
        "checkpoint's top-1 over 3 clips spread over each video "
        "(`edgevid eval --views 3x1`: a wild video's motion fills only part of it); final_train_top1 is the training "
        "accuracy (augmented clips) of the last epoch; fit is `edgevid train`'s diagnosis of the epochs run. Targets: "
        "X3D-XS >= 90% on every style, the single-frame baseline <= 30% on each. Shared, noisy 2-core machine: "
        "see the load average per row.\n\nPer-class val top-1 (%) of each run's best checkpoint:\n\n"
        + "\n".join(f"- {p['recipe']} on {p['style']}" + (f" ({p['changes']})" if p["changes"] != "-" else "")
                    + ": " + ", ".join(f"{k} {v:.0f}" for k, v in p.items() if k not in ("recipe", "style", "changes"))
                    for p in per_class)
    )
    write_results("generalise", [{k: r.get(k) for k in [*COLUMNS, "per_class_val_top1"]} for r in rows], info,
                  notes=notes, columns=COLUMNS, directory=out)
    console.print(make_table(rows, COLUMNS, title="recipes across synth styles",
                             formats={"minutes": ".1f", "best_val_top1": ".1f", "best_val_top1_3clips": ".1f",
                                      "final_val_top1": ".1f",
                                      "final_train_top1": ".1f"}))
    console.print(f"results in {out}", highlight=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", nargs="+", default=list(STYLES), choices=list(STYLES))
    parser.add_argument("--recipes", nargs="+", default=["x3d_xs", "x3d_xs_1frame"],
                        help="Recipe names in recipes/ or recipe YAML paths.")
    parser.add_argument("--budget-min", type=float, default=15.0, help="Training minutes per recipe and style.")
    parser.add_argument("--budget", nargs="*", default=[], metavar="RECIPE=MIN",
                        help="A different budget for some recipes, e.g. x3d_xs_1frame=5.")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="changes",
                        help="Recipe overrides to screen, e.g. data.clip_seconds=2.0 (rows are marked with them).")
    args = parser.parse_args()
    budgets = {k: float(v) for k, v in (item.split("=", 1) for item in args.budget)}
    for recipe in args.recipes:
        if not recipe_path(recipe).is_file():
            parser.error(f"--recipes: no recipe {recipe_path(recipe)}")
    info = machine_info()
    info["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    rows = []
    for style in args.styles:
        for recipe in args.recipes:
            budget = budgets.get(recipe, budgets.get(recipe_path(recipe).stem, args.budget_min))
            console.print(f"{recipe} on {style}: training for up to {budget:g} min", highlight=False)
            rows.append(measure(recipe, style, budget, args.changes))
    record(rows, args.recipes, info)


if __name__ == "__main__":
    main()
