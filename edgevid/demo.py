"""``edgevid demo``: the whole product, from nothing to a benchmarked, live-running INT8 model, in one command.

Steps (each one calls the Python API of its module; a failing step stops the demo with an error naming it):

1. ``data``: synthetic action videos (:func:`edgevid.data.synth.generate_synth`), reused when an earlier demo
   already wrote the same dataset;
2. ``train``: X3D-XS with the shipped recipe ``recipes/x3d_xs.yaml`` (:func:`edgevid.train.train`) for 30 epochs
   (about 10 minutes on an idle 2-core CPU), stopped early (best checkpoint kept) if the next epoch would not fit
   in a 12-minute training budget; without the recipe's weight averaging (``train.ema=null``), whose 30-epoch
   model sent the INT8 accuracy guard of step 5 into minutes of layer re-ranking, and without its pretraining
   (``pretrain.style=null``: it would pretrain on the very synthetic set the demo trains on);
3. ``eval``: top-1, per-class accuracy and the confusion matrix on the val split;
4. ``calib``: a class-stratified calibration manifest from the train split;
5. ``quantize``: INT8 for OpenVINO (NNCF) and ONNX Runtime (QDQ; skipped by ``quick``), with the accuracy guard
   (``--max-drop 1.0``) on the val split; a target the guard refuses is reported and skipped, not fatal;
6. ``export``: FP32 ONNX and OpenVINO IR, checked against the checkpoint;
7. ``bench``: every format side by side (:func:`edgevid.bench.bench`), TensorRT recorded as unavailable here;
8. ``live``: the fastest INT8 artifact on a held-out generated video, headless, writing an annotated video and a
   latency report (:func:`edgevid.runtime.live.run_live`).

``quick`` swaps in tiny data, the tiny recipe and one epoch: the same path in about a minute (for tests).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.bench import bench
from edgevid.compress.accuracy import AccuracyGuardError
from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.compress.quantize import quantize
from edgevid.data.synth import CLASS_NAMES, SynthConfig, generate_synth, render_video, write_video
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.formats import FORMATS
from edgevid.meta import read_meta
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.train import evaluate, train
from edgevid.utils.atomic import write_json_atomic
from edgevid.utils.console import console, make_table
from edgevid.utils.signals import reset_sigchld

MARKER = "demo.json"
OWNED = ("data", "run", "eval", "artifacts", "bench", "live", "calibration.json", "summary.md", MARKER)
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo: data, recipe, benchmark time boxes and the live video."""

    recipe: str
    epochs: int | None
    train_minutes: float | None
    classes: int
    videos_per_class: int
    val_per_class: int
    frames: int
    size: int
    calib_clips: int
    quantize_targets: tuple[str, ...]
    bench_targets: tuple[str, ...]
    bench_precisions: tuple[str, ...]
    bench_iters: int
    bench_seconds: float
    live_frames_per_class: int
    recipe_overrides: tuple[str, ...] = ()
    seed: int = 0


FULL = DemoConfig(recipe="x3d_xs", epochs=30, train_minutes=12.0, classes=8, videos_per_class=60, val_per_class=15,
                  frames=48, size=128, calib_clips=64, quantize_targets=("openvino", "onnx"),
                  bench_targets=("torch", "onnx", "openvino", "trt"), bench_precisions=("fp32", "bf16", "int8"),
                  bench_iters=100, bench_seconds=5.0, live_frames_per_class=48,
                  recipe_overrides=("train.ema=null", "pretrain.style=null"))
QUICK = DemoConfig(recipe="tiny", epochs=1, train_minutes=None, classes=3, videos_per_class=4, val_per_class=2,
                   frames=16, size=64, calib_clips=6, quantize_targets=("openvino",), bench_targets=("openvino", "trt"),
                   bench_precisions=("fp32", "bf16", "int8"), bench_iters=20, bench_seconds=0.5,
                   live_frames_per_class=16)


@dataclass
class StepRecord:
    """What one demo step produced."""

    step: str
    seconds: float = 0.0
    result: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class DemoSummary:
    """Every step's record and the headline figures (written to ``OUT/demo.json``)."""

    out: str
    quick: bool
    steps: list[StepRecord] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BudgetReached(Exception):
    """Raised after an epoch when the next one would not fit in the demo's training time budget."""


class TrainingBudget:
    """``on_epoch_end`` callback of the demo's training: counts epochs and the best val top-1, and stops training
    (after that epoch's checkpoint is written) when another epoch of the mean length would pass ``minutes``."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self.start = time.perf_counter()
        self.epochs = 0
        self.best_top1 = 0.0

    def __call__(self, row: dict[str, Any]) -> None:
        self.epochs += 1
        if row.get("val_top1") is not None:
            self.best_top1 = max(self.best_top1, float(row["val_top1"]))
        elapsed = time.perf_counter() - self.start
        if self.minutes is not None and elapsed * (self.epochs + 1) / self.epochs > self.minutes * 60:
            raise BudgetReached


def recipe_path(name: str) -> Path:
    """A shipped recipe (``recipes/<name>.yaml`` of the source tree)."""
    path = RECIPES / f"{name}.yaml"
    if not path.is_file():
        raise EdgevidError(f"{path}: shipped recipe not found; the demo runs from a clone of edgevid "
                           "(pip install -e .)")
    return path


def _prepare_out(out: Path) -> None:
    """Use an empty (or new) folder, or replace what an earlier demo wrote there; refuse anything else."""
    if out.is_file():
        raise EdgevidError(f"--out {out}: is a file, expected a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise EdgevidError(f"--out {out}: not empty and not an earlier demo output; choose another folder")
    for name in OWNED:
        if name == "data":
            continue
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class Demo:
    """Runs the steps in order, timing each and recording its outputs. After every step SIGCHLD goes back to its
    default disposition (see :mod:`edgevid.utils.signals`): training and evaluation leave PyTorch's DataLoader
    handler behind, and after OpenVINO quantization a child exiting into it would crash the demo."""

    def __init__(self, out: Path, config: DemoConfig, quick: bool) -> None:
        self.out = out
        self.config = config
        self.summary = DemoSummary(out=str(out), quick=quick)
        self.total_steps = 8

    @contextlib.contextmanager
    def step(self, name: str, title: str) -> Iterator[StepRecord]:
        record = StepRecord(step=name)
        index = len(self.summary.steps) + 1
        console.rule(f"[bold]{index}/{self.total_steps} {name}[/]: {title}")
        start = time.perf_counter()
        try:
            yield record
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise EdgevidError(f"demo step '{name}' failed: {reason}") from exc
        finally:
            reset_sigchld()
        record.seconds = time.perf_counter() - start
        self.summary.steps.append(record)
        console.print(f"[green]{name} done[/] in {record.seconds:.1f} s: {record.result}", highlight=False)
        for label, path in record.outputs.items():
            console.print(f"  {label}: {path}", highlight=False, soft_wrap=True)

    # ------------------------------------------------------------------------------------------------ steps
    def data(self) -> Path:
        c = self.config
        root = self.out / "data"
        with self.step("data", "synthetic action videos (H.264, folder per class)") as record:
            synth = SynthConfig(classes=c.classes, videos_per_class=c.videos_per_class,
                                val_per_class=c.val_per_class, frames=c.frames, size=c.size, seed=c.seed)
            previous = root / "synth.json"
            if previous.is_file() and json.loads(previous.read_text()).get("config") == asdict(synth):
                summary = json.loads(previous.read_text())
                record.result = "reused the dataset of an earlier demo: "
            else:
                summary = generate_synth(root, synth, workers=2, overwrite=True)
                record.result = ""
            counts = summary["counts"]
            record.result += f"{counts['train']} train + {counts['val']} val videos, {c.classes} classes"
            record.outputs["dataset"] = str(root)
        return root

    def train(self, data: Path) -> Path:
        with self.step("train", f"recipes/{self.config.recipe}.yaml on the synthetic data") as record:
            recipe = recipe_path(self.config.recipe)
            budget = TrainingBudget(self.config.train_minutes)
            run = self.out / "run"
            try:
                train(recipe, data, out=run, epochs=self.config.epochs, overrides=self.config.recipe_overrides,
                      on_epoch_end=budget)
                record.result = f"{budget.epochs} epoch{'s' * (budget.epochs != 1)} of {recipe.name}"
            except BudgetReached:
                record.result = (f"stopped after {budget.epochs} epochs of {recipe.name}: the next would pass the "
                                 f"{self.config.train_minutes:g}-minute training budget")
            record.result += f", best val top-1 {budget.best_top1:.1f}%"
            record.outputs.update(run=str(run), curves=str(run / "curves.png"))
        return run

    def evaluate(self, run: Path, data: Path) -> dict[str, Any]:
        with self.step("eval", "top-1, per-class accuracy and confusion matrix on val") as record:
            metrics = evaluate(run, data, out=self.out / "eval")
            record.result = f"val top-1 {metrics['top1']:.2f}% ({metrics['clips']} clips, {metrics['model']})"
            record.outputs.update(metrics=str(self.out / "eval" / "eval.json"),
                                  confusion=str(self.out / "eval" / "confusion.png"))
        self.summary.figures["val_top1_fp32"] = metrics["top1"]
        return metrics

    def calibration(self, run: Path, data: Path) -> Path:
        with self.step("calib", "class-stratified calibration clips from the train split") as record:
            meta = read_meta(run)
            manifest, skipped = build_manifest(data, self.config.calib_clips, Preprocessing.from_meta(meta),
                                               model=meta.model, classes=meta.classes)
            path = manifest.save(self.out / "calibration.json")
            record.result = f"{len(manifest.clips)} clips, {len(skipped)} unreadable videos skipped"
            record.outputs["manifest"] = str(path)
        return path

    def quantize(self, run: Path, manifest: Path, data: Path) -> dict[str, Path]:
        artifacts = self.out / "artifacts"
        made: dict[str, Path] = {}
        with self.step("quantize", "INT8 post-training quantization (OpenVINO NNCF, ONNX Runtime QDQ), "
                                   "with the accuracy guard on the val split") as record:
            top1 = []
            for target in self.config.quantize_targets:
                suffix = FORMATS[target].suffix
                try:
                    result = quantize(run, target, manifest, out=artifacts / f"model.int8{suffix}", data=data,
                                      bench_iters=0)
                except AccuracyGuardError as refused:
                    console.print(f"[yellow]{target}: {refused}[/]")
                    top1.append(f"{target} INT8 refused by the accuracy guard ({refused.int8_top1:.1f}% vs FP32 "
                                f"{refused.fp32_top1:.1f}%)")
                    continue
                made[f"{target} int8"] = result.path
                top1.append(f"{target} INT8 top-1 {result.int8_top1:.1f}% vs FP32 {result.fp32_top1:.1f}%"
                            + (f" ({len(result.float_layers)} layer{'s' * (len(result.float_layers) != 1)} kept in "
                               "float)" if result.float_layers else ""))
            record.result = "; ".join(top1) + " (val split)"
            record.outputs.update({name: str(path) for name, path in made.items()})
        return made

    def export(self, run: Path, data: Path) -> dict[str, Path]:
        artifacts = self.out / "artifacts"
        made: dict[str, Path] = {}
        with self.step("export", "FP32 ONNX and OpenVINO IR, parity-checked against the checkpoint") as record:
            parity = []
            for target in ("onnx", "openvino"):
                result = export(run, target, "fp32", artifacts / f"model{FORMATS[target].suffix}",
                                data=data / "val")
                made[f"{target} fp32"] = result.path
                parity.append(f"{target} max|diff| {result.parity.max_abs_diff:.1e}" if result.parity else target)
            record.result = "; ".join(parity)
            record.outputs.update({name: str(path) for name, path in made.items()})
        return made

    def bench(self, run: Path, data: Path, artifacts: dict[str, Path], manifest: Path | None):
        """Every requested format; the artifacts made by the earlier steps are measured rather than made again."""
        c = self.config
        reuse = [path for name, path in artifacts.items() if name.split()[0] in c.bench_targets]
        with self.step("bench", "every format side by side (size, top-1, latency, FPS, RSS)") as record:
            result = bench(run, self.out / "bench", targets=c.bench_targets, precisions=c.bench_precisions, data=data,
                           artifacts=reuse, iters=c.bench_iters, max_seconds=c.bench_seconds,
                           calib=manifest)
            result.print(console)
            ok = [r for r in result.rows if r.status == "ok"]
            if not ok:
                raise EdgevidError("no format ran")
            fastest = min(ok, key=lambda r: r.p50_ms)
            record.result = (f"{len(ok)} of {len(result.rows)} formats ran; fastest {fastest.label} "
                             f"{fastest.p50_ms:.1f} ms p50")
            record.outputs.update({kind: str(path) for kind, path in result.files.items()})
        self.summary.figures["bench"] = [
            {k: getattr(r, k) for k in ("format", "precision", "status", "size_mb", "top1", "p50_ms", "fps")}
            for r in result.rows]
        return result

    def live(self, bench_result) -> None:
        live_dir = self.out / "live"
        with self.step("live", "headless live loop on a held-out generated video") as record:
            video, classes = self._held_out_video(live_dir / "input.mp4")
            model = _fastest_artifact(bench_result)
            options = LiveOptions(output=str(live_dir / "annotated.mp4"), report=str(live_dir / "report.json"))
            report = run_live(model, str(video), options)
            console.print(make_table(report.rows(), ["metric", "value"], title="edgevid live report"))
            e2e = report.latency_ms["end_to_end"]
            record.result = (f"{report.frames_processed} frames ({' -> '.join(classes)}), end-to-end p95 "
                             f"{e2e['p95']:.1f} ms with {Path(model).name}")
            record.outputs.update(input=str(video), annotated=options.output, report=options.report)
        self.summary.figures["live"] = {"model": str(model), "fps": report.fps, "latency_ms": report.latency_ms}

    def _held_out_video(self, path: Path) -> tuple[Path, list[str]]:
        """One video chaining a clip of every class, drawn with a seed no dataset video uses."""

        c = self.config
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, 10_000]))
        classes = list(CLASS_NAMES[: c.classes])
        frames = np.concatenate([render_video(name, rng, c.live_frames_per_class, c.size) for name in classes])
        return write_video(path, frames, fps=25), classes

    # ---------------------------------------------------------------------------------------------- summary
    def finish(self, start: float) -> DemoSummary:
        self.summary.seconds = time.perf_counter() - start
        rows = [{"step": r.step, "seconds": r.seconds, "result": r.result} for r in self.summary.steps]
        rows.append({"step": "total", "seconds": self.summary.seconds, "result": str(self.out)})
        console.rule("[bold]edgevid demo summary[/]")
        console.print(make_table(rows, ["step", "seconds", "result"], title="edgevid demo",
                                 formats={"seconds": ".1f"}))
        outputs = [{"step": r.step, "output": label, "path": path}
                   for r in self.summary.steps for label, path in r.outputs.items()]
        console.print(make_table(outputs, ["step", "output", "path"], title="where everything is"))
        write_json_atomic(self.out / MARKER, self.summary.to_dict())
        return self.summary


def _fastest_artifact(bench_result) -> Path:
    """The artifact of the fastest batch-1 format that ran, preferring INT8 rows (the demo's deployable model)."""
    ok = [r for r in bench_result.rows if r.status == "ok" and r.batch == 1 and r.artifact]
    int8 = [r for r in ok if r.precision == "int8"]
    return Path(min(int8 or ok, key=lambda r: r.p50_ms).artifact)


def run_demo(out: str | Path = "demo_out", quick: bool = False) -> DemoSummary:
    """Run every demo step into ``out`` and print where each output is and a summary table."""
    out = Path(out)
    _prepare_out(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MARKER, {"out": str(out), "quick": quick, "status": "running"})
    demo = Demo(out, QUICK if quick else FULL, quick)
    start = time.perf_counter()
    data = demo.data()
    run = demo.train(data)
    demo.evaluate(run, data)
    manifest = demo.calibration(run, data)
    artifacts = demo.quantize(run, manifest, data)
    artifacts.update(demo.export(run, data))
    result = demo.bench(run, data, artifacts, manifest)
    demo.live(result)
    return demo.finish(start)
