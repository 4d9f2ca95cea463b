"""Transfer study: does starting from pretrained weights (imported from PyTorchVideo's layout) beat training from
scratch on new classes, for the same training time?

    .venv/bin/python -m benchmarks.bench_transfer [--pretrain-epochs 20] [--epochs 15] [--videos 30]

1. One synthetic dataset of all 10 synth classes (``--videos`` train and a third of that val videos per class) is
   split into two tasks with different classes: task A (move_left, move_right, rotate_clockwise,
   rotate_anticlockwise, grow) and task B (move_up, move_down, shrink, appear, disappear); list files under
   ``runs/bench/transfer/task_{a,b}`` (task A declares its mirror-image pairs in a mirror_classes.txt).
2. X3D-XS is pretrained on task A with the ``x3d_xs`` recipe (pytorchvideo's layout: no BN on stage 1's first
   shortcut), its weights are written as a PyTorchVideo ``.pyth`` (``model_state`` + optimizer state + a cfg
   string, as the model zoo's files are) and imported back with ``edgevid import`` (whose logits are checked
   against the trained model's).
3. On task B, for ``--epochs`` epochs each: from scratch (``x3d_xs`` recipe); fine-tuned from the import
   (``x3d_xs_finetune``: new head, head-only first epoch, backbone at 0.1x, BN statistics frozen); and linear
   probing (only the classifier trains). All three read the decoded videos from memory (cache_gb, workers 0).

Reported: val top-1 against training minutes (every epoch), the scratch run's best top-1 and when it got there,
when the fine-tuned run first reached it (target: at most a third of the scratch time), and each run's top-1 at
equal times. Results: ``benchmarks/results/<machine>/transfer.{json,md}`` and ``transfer_curves.png``.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info, results_dir, stamp, write_results
from edgevid.checkpoint import load_checkpoint, load_model
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.train import train
from edgevid.utils.console import console, make_table
from edgevid.utils.plotting import pyplot, save_figure
from edgevid.weights import import_checkpoint

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
TASK_A = ("move_left", "move_right", "rotate_clockwise", "rotate_anticlockwise", "grow")
TASK_B = ("move_up", "move_down", "shrink", "appear", "disappear")
MEMORY = ["data.cache_gb=4", "train.workers=0"]


def make_tasks(root: Path, videos: int) -> tuple[Path, Path]:
    """Generate the synth set once and write the two tasks' list files."""
    synth = root / "synth"
    if not (synth / "synth.json").is_file():
        generate_synth(synth, SynthConfig(classes=10, videos_per_class=videos, val_per_class=max(videos // 3, 2)),
                       workers=2, overwrite=True)
    tasks = []
    for name, classes, pairs in (("task_a", TASK_A, "move_left, move_right\nrotate_clockwise, rotate_anticlockwise\n"),
                                 ("task_b", TASK_B, "")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            with open(synth / f"{split}.csv", newline="", encoding="utf-8") as f:
                rows = [r for r in csv.reader(f) if r and r[-1] in classes and not r[0].startswith("path")]
            lines = "".join(f"../synth/{path},{label}\n" for path, label in rows)
            (folder / f"{split}.csv").write_text("path,label\n" + lines, encoding="utf-8")
        (folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
        (folder / "mirror_classes.txt").write_text(pairs, encoding="utf-8")
        tasks.append(folder)
    return tasks[0], tasks[1]


class _OverBudget(Exception):
    pass


def run(label: str, recipe: str, data: Path, out: Path, overrides: list[str], budget_s: float,
        init: Path | None = None) -> list[dict[str, Any]]:
    """Train; returns one row per epoch with the minutes since ``train`` was called."""
    if out.exists():
        shutil.rmtree(out)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()

    def on_epoch_end(row: dict[str, Any]) -> None:
        history.append({"run": label, "epoch": row["epoch"], "val_top1": row["val_top1"],
                        "train_loss": row["train_loss"], "minutes": (time.perf_counter() - start) / 60})
        if time.perf_counter() - start > budget_s:
            raise _OverBudget

    try:
        train(RECIPES / f"{recipe}.yaml", data, out, overrides=overrides, on_epoch_end=on_epoch_end, init=init)
    except _OverBudget:
        console.print(f"{label}: stopped at the time budget ({budget_s / 60:.1f} min)")
    return history


_STEM_HEAD = [  # edgevid X3D key -> pytorchvideo create_x3d key (the inverse of edgevid.weights.pytorchvideo)
    (r"stem\.conv_xy\.weight", "blocks.0.conv.conv_t.weight"),
    (r"stem\.conv_t\.weight", "blocks.0.conv.conv_xy.weight"),
    (r"stem\.bn\.(\w+)", r"blocks.0.norm.\1"),
    (r"conv5\.0\.weight", "blocks.5.pool.pre_conv.weight"),
    (r"conv5\.1\.(\w+)", r"blocks.5.pool.pre_norm.\1"),
    (r"head\.hidden\.0\.weight", "blocks.5.pool.post_conv.weight"),
    (r"head\.fc\.(\w+)", r"blocks.5.proj.\1"),
]
_BLOCK = {"shortcut.0": "branch1_conv", "shortcut.1": "branch1_norm", "conv_a": "branch2.conv_a",
          "bn_a": "branch2.norm_a", "conv_b": "branch2.conv_b",
          "bn_b": "branch2.norm_b.0", "se.fc1": "branch2.norm_b.1.block.0",
          "se.fc2": "branch2.norm_b.1.block.2", "conv_c": "branch2.conv_c", "bn_c": "branch2.norm_c"}


def to_pytorchvideo(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An edgevid X3D state_dict (``same_width_shortcut_bn: false``) in pytorchvideo's ``create_x3d`` layout."""
    out = {}
    for key, value in state.items():
        block = re.fullmatch(r"(stages\.(\d)\.(\d+))\.(.+)\.(\w+)", key)
        if block:
            _, stage, index, part, param = block.groups()
            name = _BLOCK[part]
            out[f"blocks.{int(stage) + 1}.res_blocks.{index}.{name}.{param}"] = value
            continue
        for pattern, replacement in _STEM_HEAD:
            m = re.fullmatch(pattern, key)
            if m:
                name = m.expand(replacement)
                out[name] = value.reshape(*value.shape, 1, 1, 1) if name.endswith("post_conv.weight") else value
                break
        else:
            raise KeyError(f"no pytorchvideo name for {key}")
    return out


def first_reaching(history: list[dict[str, Any]], top1: float) -> float | None:
    return next((r["minutes"] for r in history if r["val_top1"] is not None and r["val_top1"] >= top1), None)


def top1_at(history: list[dict[str, Any]], minutes: float) -> float | None:
    """Best val top-1 of the epochs finished by ``minutes`` (to the 0.01 min the column names are rounded to)."""
    done = [r["val_top1"] for r in history if r["minutes"] <= minutes + 0.005 and r["val_top1"] is not None]
    return max(done) if done else None


def plot(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, history in histories.items():
        ax.plot([r["minutes"] for r in history], [r["val_top1"] for r in history], marker="o", markersize=3,
                label=label)
    ax.set_xlabel("training minutes (task B)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("X3D-XS on task B: from scratch vs fine-tuned from task-A weights (PyTorchVideo layout)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "bench" / "transfer")
    parser.add_argument("--videos", type=int, default=30, help="Train videos per class (val: a third).")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15, help="Epochs of each task-B run (same for all).")
    parser.add_argument("--budget-min", type=float, default=10.0, help="Safety stop per run (minutes).")
    args = parser.parse_args()
    task_a, task_b = make_tasks(args.root, args.videos)
    budget = args.budget_min * 60
    base = [*MEMORY, "model.overrides.same_width_shortcut_bn=false"]

    pre = run("pretrain (task A)", "x3d_xs", task_a, args.root / "pretrain",
              [*base, f"train.epochs={args.pretrain_epochs}"], budget)
    trained = load_checkpoint(args.root / "pretrain" / "best.pt")
    pyth = args.root / "X3D_XS_taskA.pyth"
    torch.save({"model_state": to_pytorchvideo(trained.state_dict), "epoch": pre[-1]["epoch"],
                "optimizer_state": trained.train_state["optimizer"], "cfg": "MODEL:\n  ARCH: x3d\n"}, pyth)
    imported = import_checkpoint(pyth, "x3d_xs", out=args.root / "x3d_xs_taskA.pt",
                                 classes=task_a / "classes.txt")
    model_a, _ = load_model(args.root / "pretrain" / "best.pt")
    model_b, _ = load_model(imported)
    clip = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        import_diff = (model_a(clip) - model_b(clip)).abs().max().item()

    epochs = f"train.epochs={args.epochs}"
    histories = {
        "from scratch": run("from scratch", "x3d_xs", task_b, args.root / "scratch", [*base, epochs], budget),
        "fine-tuned": run("fine-tuned", "x3d_xs_finetune", task_b, args.root / "finetune", [*MEMORY, epochs],
                          budget, init=imported),
        "linear probe": run("linear probe", "x3d_xs_finetune", task_b, args.root / "probe",
                            [*MEMORY, epochs, "model.freeze=backbone", "optim.backbone_lr_mult=1",
                             "optim.head_warmup_epochs=0", "optim.lr=0.01"], budget, init=imported),
    }
    scratch = histories["from scratch"]
    best = max(r["val_top1"] for r in scratch)
    best_min = first_reaching(scratch, best)
    tuned_min = first_reaching(histories["fine-tuned"], best)
    marks = sorted({round(best_min / 3, 2), round(best_min / 2, 2), round(best_min, 2)})
    rows = []
    for label, history in histories.items():
        rows.append({"run": label, "epochs": len(history), "minutes": history[-1]["minutes"],
                     "best_val_top1": max(r["val_top1"] for r in history),
                     "min_to_scratch_best": first_reaching(history, best),
                     **{f"top1_at_{m:g}min": top1_at(history, m) for m in marks}})
    rows = stamp(rows)
    out = results_dir("transfer")
    plot(histories, out / "transfer_curves.png")
    ratio = tuned_min / best_min if tuned_min is not None else None
    info = {**machine_info(), "pretrain": {"task": list(TASK_A), "epochs": len(pre),
                                           "minutes": pre[-1]["minutes"],
                                           "best_val_top1": max(r["val_top1"] for r in pre)},
            "task_b": list(TASK_B), "videos_per_class": args.videos, "epochs": args.epochs,
            "import_max_abs_logit_diff": import_diff, "scratch_best_top1": best, "scratch_best_min": best_min,
            "finetune_min_to_scratch_best": tuned_min, "time_ratio": ratio, "target_ratio": 1 / 3,
            "histories": histories}
    notes = (f"Pretrained on task A ({', '.join(TASK_A)}): {info['pretrain']['best_val_top1']:.1f}% val top-1 in "
             f"{info['pretrain']['minutes']:.1f} min; written in PyTorchVideo's .pyth layout and imported back "
             f"(max |logit diff| {import_diff:.2e}). On task B ({', '.join(TASK_B)}), {args.epochs} epochs each, "
             f"{args.videos} train videos per class: from scratch best {best:.1f}% at {best_min:.2f} min; the "
             "fine-tuned run reached it at "
             + (f"{tuned_min:.2f} min ({ratio:.2f}x the scratch time; target <= 0.33x)." if tuned_min is not None
                else "no point within its epochs.")
             + " Minutes include validation after every epoch and the first epoch's decoding.")
    write_results("transfer", rows, info, notes=notes,
                  columns=["run", "epochs", "minutes", "best_val_top1", "min_to_scratch_best",
                           *[f"top1_at_{m:g}min" for m in marks]])
    console.print(make_table(rows, list(rows[0])[:5 + len(marks)], title="transfer study (task B)"))
    console.print(notes, highlight=False)


if __name__ == "__main__":
    main()
