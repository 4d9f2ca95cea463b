"""`edgevid tune` on one synth style, then the tuned recipe on every style beside the shipped one.

    .venv/bin/python -m benchmarks.bench_tune [--style photo] [--recipe x3d_xs] [--budget-min 60] [--trial-min 10]
        [--measure-styles shapes photo wild] [--measure-min 15] [--set KEY=VALUE ...]

Step 1 is `edgevid tune --recipe R --data runs/bench/synth-<style> --budget 60m --trial-budget 10m --out
runs/bench/tune-<style>` (the Python API, same study): it resumes an interrupted or earlier study in that folder and
does nothing once less than a trial's budget is left. Its first trial is the recipe's own values. Step 2 trains the best
trial's recipe (``best.yaml``, copied to ``<recipe>_tuned_<style>.yaml``) on each measured style exactly as
``bench_generalise`` trains a shipped recipe (same budget, no overrides but ``--set``'s), and merges its rows into
``generalise.*``. Results: ``tune.*`` (the trials, and per style the shipped and the tuned recipe's best val top-1
from ``generalise.json`` of this machine), ``tune.png`` and the tuned recipe. ``--set`` changes the base recipe of
the study and every measured run (e.g. ``model.init=`` a cached pretraining, so that each trial and run spends its
whole budget on the data); the comparison then takes the shipped recipe's rows with the same changes.

Target (issue 25): the tuned recipe never worse than the shipped one on the styles it was not tuned on.
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any

from benchmarks.bench_generalise import changes_label, measure, record, style_data
from benchmarks.bench_training import ROOT, recipe_path
from benchmarks.common import machine_info, markdown_table, results_dir, write_results
from edgevid.data.synth import STYLES
from edgevid.train.tune import tune
from edgevid.utils.console import console, make_table

TRIAL_COLUMNS = ["trial", "state", "best_val_top1", "epochs", "minutes", "stopped", "worker", "params"]
COMPARE_COLUMNS = ["style", "tuned_on", "shipped_best_val_top1", "tuned_best_val_top1", "change_points", "target"]


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                    for k, v in params.items())


def compare(recipe: str, tuned: str, tuned_on: str, styles: list[str], changes: str = "-") -> list[dict[str, Any]]:
    """Shipped vs tuned best val top-1 per style, from this machine's ``generalise.json`` rows with ``changes``."""
    path = results_dir() / "generalise.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    best = {(r["recipe"], r["style"]): r["best_val_top1"] for r in rows if r.get("changes", "-") == changes}
    out = []
    for style in styles:
        shipped, mine = best.get((recipe, style)), best.get((tuned, style))
        change = None if shipped is None or mine is None else mine - shipped
        target = "-" if style == tuned_on or change is None else ("met" if change >= 0 else "MISSED")
        out.append({"style": style, "tuned_on": "yes" if style == tuned_on else "no",
                    "shipped_best_val_top1": shipped, "tuned_best_val_top1": mine, "change_points": change,
                    "target": target + (" (not worse)" if target != "-" else "")})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--style", default="photo", choices=list(STYLES), help="The style the study tunes on.")
    parser.add_argument("--recipe", default="x3d_xs", help="Recipe name in recipes/ or a recipe YAML path.")
    parser.add_argument("--budget-min", type=float, default=60.0, help="Minutes of the whole study.")
    parser.add_argument("--trial-min", type=float, default=10.0, help="Minutes of one trial.")
    parser.add_argument("--measure-styles", nargs="*", default=list(STYLES), choices=list(STYLES),
                        help="Styles the tuned recipe trains on afterwards (none: only the study).")
    parser.add_argument("--measure-min", type=float, default=15.0, help="Training minutes per measured style.")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="changes",
                        help="Recipe overrides for the study and every measured run (shipped rows: the same).")
    args = parser.parse_args()
    base = recipe_path(args.recipe)
    if not base.is_file():
        parser.error(f"--recipe: no recipe {base}")
    info = machine_info()
    out = ROOT / "runs" / "bench" / f"tune-{args.style}"
    result = tune(base, style_data(args.style), out, budget_s=args.budget_min * 60,
                  trial_budget_s=args.trial_min * 60, overrides=args.changes)
    if result.best is None:
        raise SystemExit(f"the study in {out} has no completed trial")
    tuned_name = f"{base.stem}_tuned_{args.style}"
    results = results_dir("tune")
    shutil.copyfile(out / "tune.png", results / "tune.png")
    retrained = not result.best["base"]  # the best trial is a tuned recipe, not the study's trial of the base one
    tuned = out / f"{tuned_name}.yaml"
    if retrained:
        shutil.copyfile(out / "best.yaml", tuned)
        shutil.copyfile(tuned, results / tuned.name)
    else:
        console.print(f"the best trial ({result.best['trial']}) is {base.name}'s own values: no tuned recipe to "
                      "measure", highlight=False)
        args.measure_styles = []
    rows = [measure(str(tuned), style, args.measure_min, args.changes) for style in args.measure_styles]
    if rows:
        record(rows, [tuned_name], info)
    trials = [{**{k: r.get(k) for k in TRIAL_COLUMNS if k != "params"}, "params": _params_text(r["params"])}
              for r in result.rows]
    changes = changes_label(args.changes)
    comparison = compare(base.stem, tuned_name, args.style, list(STYLES), changes)
    best = result.best
    notes = (
        f"`edgevid tune --recipe recipes/{base.name} --data runs/bench/synth-{args.style} --budget "
        f"{args.budget_min:g}m --trial-budget {args.trial_min:g}m"
        + "".join(f" {c}" for c in args.changes) + "` (TPE sampler, median pruner; trial 0 is the "
        f"recipe's own values; {len({r['worker'] for r in result.rows})} process(es) ran the study, see worker). "
        + (f"The best trial's recipe ({tuned_name}.yaml: trial {best['trial']}, {best['value']:.1f}% val top-1 "
           f"within its trial budget; {_params_text(best['params'])}) then trained like a shipped recipe "
           f"({args.measure_min:g} minutes, changes: {changes}) on each style"
           if retrained else
           f"The best trial is trial {best['trial']}, the recipe's own values ({best['value']:.1f}% val top-1 "
           "within its trial budget): the search found nothing better, so there is no tuned recipe to retrain")
        + f"; the shipped recipe's rows are the `generalise` study's on this machine (changes: {changes}). "
        "Target: the tuned recipe not "
        "worse than the shipped one on the styles it was not tuned on.\n\n"
        "Tuned vs shipped, best val top-1 (%) within the budget:\n\n"
        + markdown_table(comparison, COMPARE_COLUMNS) + "\n\nTrials:"
    )
    write_results("tune", trials, {**info, "comparison": comparison}, notes=notes, columns=TRIAL_COLUMNS,
                  directory=results)
    console.print(make_table(comparison, COMPARE_COLUMNS, title=f"{tuned_name} vs {base.stem}",
                             formats={"shipped_best_val_top1": ".1f", "tuned_best_val_top1": ".1f",
                                      "change_points": "+.1f"}))
    console.print(f"results in {results}", highlight=False)


if __name__ == "__main__":
    main()
