"""Which of ``wild``'s video formats costs accuracy: its motions with one format factor varied at a time.

    .venv/bin/python -m benchmarks.wild_formats [--variants none size fps codec size,fps,codec] [--minutes 10]
        [--init CHECKPOINT] [--tag TEXT] [--set KEY=VALUE ...]

A ``wild`` video draws a frame size (160x120, 192x108, 128x128, 120x160), a frame rate (15/24/30/60 fps) and a
codec (H.264 .mp4, MPEG-4 .avi, MJPEG .mkv). ``edgevid data synth --style wild --vary F`` draws them all but keeps
only the factors F, the others as ``photo`` (128x128, 25 fps, H.264); every video draws the same motion (speed
changes, pauses, duration) whatever F is. Each variant's set (seed 0, 8 classes, 60 train + 15 val videos per
class) is generated once into ``runs/bench/wild-formats/<variant>`` and its videos are trimmed to their motion
(``event_coverage.write_trimmed``, at least 1.28 s), so that the clip's coverage of the motion is not what
differs. Then ``recipes/x3d_xs.yaml`` trains on it for ``--minutes`` (``train.minutes``: the schedule anneals within
the budget). ``none`` is wild's motion in photo's format; ``size,fps,codec`` is wild itself, trimmed. ``--init``
starts every run from a checkpoint's weights (``model.init``, a new classifier, which also turns the recipe's
pretraining off), e.g. X3D-XS trained on ``shapes`` (the published rows: its 15-minute run from scratch,
``bench_generalise --styles shapes --set pretrain.style=null``): from scratch a run first sits at chance for
minutes, and when it leaves that plateau varies from run to run more than the formats may; from motion features,
learning starts at once. Without ``--init`` the recipe pretrains for 5 of the ``--minutes`` (its ``pretrain``
section, cached in ``$EDGEVID_CACHE``).

Results: ``benchmarks/results/<machine>/wild_formats.*``; rows merge with earlier runs by variant, minutes, init and
``--tag`` (a note on what else differs, e.g. the code a row was measured with) and ``--set`` (recipe overrides to
screen, e.g. ``data.augment.aspect=[1,1]``).
One run per variant on a shared 2-core machine: differences of a few points are within run-to-run spread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.bench_training import ROOT, run_recipe
from benchmarks.common import machine_info, merged_rows, results_dir, stamp, write_results
from benchmarks.event_coverage import write_trimmed
from edgevid.data.synth import SynthConfig, generate_synth, parse_vary
from edgevid.errors import EdgevidError
from edgevid.train.engine import diagnose_fit
from edgevid.utils.console import console, make_table

COLUMNS = ["variant", "init", "tag", "changes", "sizes", "fps", "codecs", "minutes", "epochs", "best_val_top1",
           "best_epoch", "final_val_top1", "final_train_top1", "fit", "load_avg_1min"]
DEFAULT_VARIANTS = ["none", "size", "fps", "codec", "size,fps,codec"]
MIN_SECONDS = 1.28  # the shipped recipe's clip


def variant_data(variant: str) -> Path:
    """The variant's set (generated once) with list files trimmed to each video's motion; returns the list folder."""
    root = ROOT / "runs" / "bench" / "wild-formats" / variant.replace(",", "-")
    videos = root / "videos"
    if not (videos / "synth.json").is_file():
        console.print(f"generating edgevid data synth --style wild --vary {variant} into {videos}", highlight=False)
        generate_synth(videos, SynthConfig(style="wild", vary=parse_vary(variant)), workers=2,
                       overwrite=videos.exists())
    return write_trimmed(videos, root / "trimmed", MIN_SECONDS)


def measure(variant: str, minutes: float, init: Path | None, changes: list[str]) -> dict[str, Any]:
    data = variant_data(variant)
    choices = json.loads((data.parent / "videos" / "synth.json").read_text())["choices"]
    # train.minutes ends the schedule within the budget; the extra minute lets its last epoch and validation count
    overrides = [f"train.minutes={minutes}", *([f"model.init={init}"] if init else []), *changes]
    row = run_recipe("x3d_xs", data, data.parent / "runs", (minutes + 1) * 60, overrides=overrides)
    fit = diagnose_fit(row["history"])
    last = row["history"][-1] if row["history"] else {}
    return {"variant": variant, "init": str(init) if init else "-", "changes": " ".join(changes) or "-",
            "sizes": " ".join(choices["size"]),
            "fps": " ".join(choices["fps"]), "codecs": " ".join(choices["codec"]),
            **{k: row[k] for k in ("minutes", "epochs", "best_val_top1", "best_epoch", "final_val_top1")},
            "final_train_top1": last.get("train_acc"), "fit": fit["verdict"] if fit else None,
            "per_class_val_top1": row["per_class_val_top1"]}


def record(rows: list[dict[str, Any]], info: dict[str, Any]) -> Path:
    out = results_dir("wild_formats")
    rows = merged_rows("wild_formats", stamp(rows), [], by=("variant", "minutes_budget", "init", "tag", "changes"))
    notes = (
        "Wild's motions (uneven speed, pauses, 1.5-6 s videos, seed 0, 8 classes, 60 train + 15 val videos per "
        "class) with the format factors named by variant drawn per video as in `--style wild` and the others as "
        "photo's (128x128, 25 fps, H.264): `edgevid data synth --style wild --vary VARIANT`. Every video is trimmed "
        "to its motion (at least 1.28 s) in the list files. recipes/x3d_xs.yaml with train.minutes=minutes_budget, "
        "best val top-1 over its epochs (centre clip); chance is 12.5%. init: the checkpoint a run starts from (`-`: "
        "from scratch). sizes/fps/codecs: what the set holds. One "
        "run per row on a shared, noisy 2-core machine.\n\nPer-class val top-1 (%) of each run's best checkpoint:\n\n"
        + "\n".join(f"- {r['variant']} ({r['minutes_budget']:g} min, init {r['init']}, tag {r.get('tag', '-')}, "
                    f"changes {r.get('changes', '-')}): "
                    + ", ".join(f"{k} {v:.0f}" for k, v in r["per_class_val_top1"].items())
                    for r in rows if r.get("per_class_val_top1"))
    )
    columns = ["minutes_budget", *COLUMNS]
    write_results("wild_formats", [{k: r.get(k) for k in [*columns, "measured_at", "per_class_val_top1"]}
                                   for r in rows], info, notes=notes, columns=columns, directory=out)
    console.print(make_table(rows, columns, title="wild's motions, one format factor at a time",
                             formats={"minutes": ".1f", "best_val_top1": ".1f", "final_val_top1": ".1f",
                                      "final_train_top1": ".1f"}))
    console.print(f"results in {out}", highlight=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                        help="'none' or comma-separated factors among size, fps, codec.")
    parser.add_argument("--minutes", type=float, default=10.0, help="Training minutes per variant.")
    parser.add_argument("--init", type=Path, default=None, help="Start each run from this checkpoint's weights.")
    parser.add_argument("--tag", default="-", help="A note on what else differs in these rows (kept beside others).")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="changes",
                        help="Recipe overrides to screen (rows are marked with them).")
    args = parser.parse_args()
    if args.init is not None and not args.init.is_file():
        parser.error(f"--init: no checkpoint {args.init}")
    for variant in args.variants:
        try:
            SynthConfig(style="wild", vary=parse_vary(variant))
        except EdgevidError as exc:
            parser.error(f"--variants {variant}: {exc}")
    info = machine_info()
    rows = []
    for variant in args.variants:
        console.print(f"variant {variant}: training x3d_xs for {args.minutes:g} min", highlight=False)
        row = measure(variant, args.minutes, args.init, args.changes)
        rows.append({"minutes_budget": args.minutes, "tag": args.tag, **row})
    record(rows, info)


if __name__ == "__main__":
    main()
