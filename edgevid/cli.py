"""The ``edgevid`` command line: thin wrappers over the Python API.

Every command is a plain function of the API; this module only parses options and prints results.
User errors (:class:`EdgevidError`, ``ValueError``, missing files) are shown as one line with exit code 1, usage
errors (an unknown option, a missing argument) as one line with exit code 2; Ctrl-C as one line saying what was
kept, with exit code 130; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from edgevid import __version__
from edgevid.errors import EdgevidError
from edgevid.formats import EXPORT_TARGETS, FORMATS, TARGETS, artifact_stem
from edgevid.precision import describe_cpu
from edgevid.utils.console import console, err_console, make_table
from edgevid.utils.logs import quiet_libraries


def _or(names: tuple[str, ...]) -> str:
    """``a, b or c``: a choice list for help texts."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)


class _Interrupted(Exception):
    """Ctrl-C carried out of a command: the CLI framework would turn a KeyboardInterrupt into a silent exit 130."""


class _Group(typer.core.TyperGroup):
    def invoke(self, ctx):  # every command and sub-group runs inside the root group's invoke
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc


app = typer.Typer(
    cls=_Group,
    name="edgevid",
    help="Compact video action-recognition models: train, compress, export and run them on edge hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
_state = {"verbose": False}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"edgevid {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["verbose"] = verbose
    quiet_libraries(verbose)


# ----------------------------------------------------------------------------------------------------- models
@app.command("models")
def models_cmd(
    pattern: str = typer.Argument("*", help="Glob over model names, e.g. 'x3d_*'."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
    num_classes: int = typer.Option(400, "--classes", help="Classes used for the params/MACs figures."),
) -> None:
    """List the model zoo with params and GMACs.

    One row per registered model: family, params, GMACs at its default input,
    frames x size and sampling rate.

    Example: edgevid models 'x3d_*' --classes 101
    """
    from edgevid.models.summary import zoo_summary
    from edgevid.weights import outside_sources

    rows = zoo_summary(pattern, num_classes)
    sources = outside_sources()
    for row in rows:
        row["imports_from"] = [f"{s['format']}:{s['source']}" for s in sources.get(row["family"], [])
                               if s["model"] == row["name"]]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    columns = ["name", "family", "params_m", "gmacs", "input", "sampling_stride"]
    console.print(make_table(rows, columns, title=f"edgevid model zoo ({num_classes} classes)",
                             formats={"params_m": ".2f", "gmacs": ".3f"}))
    pretrained = [{"model": row["name"], "family": row["family"], "imports from (--from source)": "; ".join(
        row["imports_from"])} for row in rows if row["imports_from"]]
    if pretrained:
        console.print(make_table(pretrained, list(pretrained[0]),
                                 title="pretrained weights: edgevid import FILE --model NAME"))
        used = {s["format"]: s["where"] for family in sources.values() for s in family
                if any(f"{s['format']}:{s['source']}" in row["imports_from"] for row in rows)}
        for fmt, where in used.items():
            console.print(f"  {fmt}: {where}", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------------------------------- import
@app.command("import")
def import_cmd(
    source: str = typer.Argument(..., help="Checkpoint of another project (.pyth, .pth, .pt)."),
    model: str = typer.Option(..., "--model", "-m", help="edgevid model to import into (see `edgevid models`), or "
                                                         "the PyTorchVideo architecture (slow_r50, c2d_r50)."),
    fmt: str | None = typer.Option(None, "--from", help="Source format: pytorchvideo, torchvision, tsm, mmaction2 "
                                                        "(default: detected from the keys)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output checkpoint (default: SOURCE.edgevid.pt)."),
    classes: str | None = typer.Option(None, "--classes", help="Label file, one name a line, for the head's "
                                                               "outputs (default: Kinetics-400 / ImageNet names "
                                                               "for 400 / 1000 outputs)."),
) -> None:
    """Turn another project's checkpoint into an edgevid checkpoint.

    PyTorchVideo (.pyth), torchvision, the TSM authors' and MMAction2
    checkpoints; every tensor must map onto the model (else the unmapped keys
    and shape mismatches are listed). Nothing in the file is executed.

    Example: edgevid import X3D_XS.pyth --model x3d_xs --out x3d_xs_k400.pt
    """
    from edgevid.checkpoint import load_checkpoint
    from edgevid.weights import import_checkpoint

    path = import_checkpoint(source, model, fmt=fmt, out=out, classes=classes)
    meta = load_checkpoint(path).meta
    info = meta.extra["imported_from"]
    console.print(f"wrote {path}: {meta.model} from a {info['format']} checkpoint, {meta.num_classes} classes "
                  f"({', '.join(meta.classes[:3])}, ...), input {meta.frames}x{meta.size} every "
                  f"{meta.sampling_stride} frames ({meta.sampling}), mean {meta.mean}", highlight=False)
    if info["ignored"]:
        console.print(f"ignored entries of the file: {', '.join(info['ignored'])}", highlight=False)
    for note in info["notes"]:
        console.print(f"note: {note}", highlight=False)


# --- train / eval / predict
@app.command("train")
def train_cmd(
    overrides: list[str] = typer.Argument(None, help="Recipe overrides as dotted key=value, e.g. optim.lr=0.01."),
    recipe: str = typer.Option(None, "--recipe", "-r", help="Recipe YAML (default with --resume: the run's own)."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset root (folder per class, list files, UCF101...)."),
    out: str = typer.Option(None, "--out", "-o", help="Output run directory (default: runs/<recipe>, numbered if "
                                                      "taken)."),
    epochs: int = typer.Option(None, "--epochs", help="Override train.epochs."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
    device: str = typer.Option("cpu", "--device", help="Device to run on (cpu or cuda[:N]; under torchrun one GPU "
                                                       "per process)."),
    init: str = typer.Option(None, "--init", help="Start from this checkpoint's weights (e.g. from `edgevid "
                                                  "import`); a new classifier when the classes differ."),
) -> None:
    """Train a model from a recipe YAML.

    Writes checkpoints (best.pt, last.pt), logs and plots into the run
    directory; works under [bold]torchrun --nproc_per_node N -m edgevid train[/]
    too.

    Example: edgevid train -r recipes/x3d_xs_finetune.yaml --init x3d_xs_k400.pt -d my_videos
    """
    from edgevid.train import train

    train(recipe, data, out=out, epochs=epochs, resume=resume, overrides=overrides or (), device=device, init=init)


@app.command("tune")
def tune_cmd(
    overrides: list[str] = typer.Argument(None, help="Base recipe overrides as dotted key=value, e.g. "
                                                     "train.workers=0."),
    recipe: str = typer.Option(..., "--recipe", "-r", help="Recipe YAML whose hyperparameters are searched."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset root (folder per class, list files, UCF101...)."),
    budget: str = typer.Option(..., "--budget", help="Total wall-clock budget of the study, e.g. 90s, 15m, 1h "
                                                     "(a resumed study spends what is left)."),
    trial_budget: str = typer.Option(None, "--trial-budget", help="Stop a trial after the epoch that passes this "
                                                                  "(default: a quarter of --budget); a trial "
                                                                  "starts only while this much of it is left."),
    out: str = typer.Option(None, "--out", "-o", help="Output directory for trials, best.yaml, trials.csv, "
                                                      "tune.png (default: runs/tune/<recipe>)."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL shared by every process of the study "
                                                        "(default: sqlite:///OUT/study.db)."),
    study: str = typer.Option(None, "--study", help="Study name in the storage (default: the recipe's name)."),
    trials: int = typer.Option(None, "--trials", help="Stop once the study has this many finished trials."),
    space: str = typer.Option(None, "--space", help="YAML file updating the search space: per recipe key a list "
                                                    "of choices, {low, high, log: true} or null (not searched)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the TPE sampler."),
    device: str = typer.Option("cpu", "--device", help="Device to run on (cpu or cuda[:N])."),
) -> None:
    """Search a recipe's hyperparameters with Optuna (TPE sampler, median pruning).

    Each trial is a real training run in OUT/trials/NNNN, stopped early when
    it falls behind or passes --trial-budget. Running the same command again
    continues the study; processes on several machines share one study with
    the same --storage URL and --study name.

    Example: edgevid tune --recipe recipes/x3d_xs.yaml --data data --budget 60m --trial-budget 10m
    """
    from edgevid.train.tune import parse_duration, tune

    budget_s = parse_duration(budget, "--budget")
    trial_budget_s = parse_duration(trial_budget, "--trial-budget") if trial_budget is not None else None
    result = tune(recipe, data, out=out, budget_s=budget_s, trial_budget_s=trial_budget_s, storage=storage,
                  study_name=study, n_trials=trials, space=space, seed=seed, overrides=overrides or (),
                  device=device)
    result.print(console)
    console.print("wrote " + ", ".join(str(p) for p in result.files.values()), highlight=False, soft_wrap=True)


@app.command("eval")
def eval_cmd(
    artifact: str = typer.Argument(..., help="Run directory, checkpoint, .onnx, OpenVINO .xml or TensorRT engine."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset root: the videos of its --split are evaluated."),
    split: str = typer.Option("val", "--split", help="Split to evaluate."),
    views: str = typer.Option("1x1", "--views", help="Test views CLIPSxCROPS, e.g. 3x3."),
    batch: int = typer.Option(8, "--batch", help="Videos per batch."),
    workers: int = typer.Option(2, "--workers", help="Data-loading worker processes."),
    device: str = typer.Option("cpu", "--device", help="Device to run on (cpu, cuda[:N], or an OpenVINO device: "
                                                       "CPU, GPU, NPU, AUTO)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an unreadable video instead of skipping it."),
    precision: str | None = typer.Option(None, "--precision", "-p", help="Run in this precision (default: the "
                                         "artifact's own; bf16 runs an FP32 checkpoint or IR in BF16)."),
    out: str = typer.Option(None, "--out", "-o", help="Output folder for eval.json and confusion.png (default: "
                                                      "none written)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Evaluate a model or exported artifact on a dataset split.

    Top-1/top-5, per-class and mean-class accuracy and the confusion matrix;
    frame mAP (frame head) or dense mIoU (dense head) where the artifact has
    them. Any backend: checkpoint, ONNX, OpenVINO IR, TensorRT engine.

    Example: edgevid eval runs/x3d -d data/synth --views 3x3 -o runs/x3d/eval
    """
    from edgevid.train import evaluate, parse_views

    results = evaluate(artifact, data, split=split, views=parse_views(views), batch=batch, device=device,
                       workers=workers, strict=strict, out=out, precision=precision)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    keys = [k for k in ("top1", "top5", "mean_class_acc", "frame_map", "miou") if k in results]
    summary = [{"metric": k, "value": f"{results[k]:.2f}"} for k in keys]
    summary.append({"metric": "clips", "value": str(results["clips"])})
    console.print(make_table(summary, ["metric", "value"],
                             title=f"{results['model']} ({results['backend']}) on {split}, {results['views']} views"))
    per_class = [{"class": name, "accuracy": acc} for name, acc in results["per_class_acc"].items()]
    console.print(make_table(per_class, ["class", "accuracy"], title="per-class accuracy (%)",
                             formats={"accuracy": ".1f"}))
    for path, reason in results["skipped"]:
        err_console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if results["short_note"]:
        err_console.print(f"note: {results['short_note']}", highlight=False, soft_wrap=True, markup=False)
    if out:
        console.print(f"wrote {out}/eval.json and {out}/confusion.png", highlight=False)


@app.command("predict")
def predict_cmd(
    artifact: str = typer.Argument(..., help="Run directory, checkpoint, .onnx, OpenVINO .xml or TensorRT engine."),
    video: str = typer.Argument(..., help="Video file to classify."),
    topk: int = typer.Option(5, "--topk", help="How many labels to show."),
    views: str = typer.Option("1x1", "--views", help="Test views CLIPSxCROPS, e.g. 3x3."),
    device: str = typer.Option("cpu", "--device", help="Device to run on (cpu, cuda[:N], or an OpenVINO device: "
                                                       "CPU, GPU, NPU, AUTO)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Classify one video: the top-k labels and their scores.

    The video is decoded and preprocessed with the artifact's own metadata
    (frames, size, stride, mean/std); --views averages several clips and crops.

    Example: edgevid predict runs/x3d/best.onnx video.mp4 --topk 3
    """
    from edgevid.train import parse_views, predict_video

    ranked = predict_video(artifact, video, topk=topk, views=parse_views(views), device=device)
    rows = [{"rank": i + 1, "label": label, "score": score} for i, (label, score) in enumerate(ranked)]
    if as_json:
        print(json.dumps({"video": video, "predictions": rows}, indent=2))
        return
    console.print(make_table(rows, ["rank", "label", "score"], title=video, formats={"score": ".4f"}))


# ----------------------------------------------------------------------------------------------------- export
@app.command("export")
def export_cmd(
    artifact: str = typer.Argument(..., help="Checkpoint or run directory (or an .onnx file for openvino/trt)."),
    target: str = typer.Option("onnx", "--target", "-t", help=f"{_or(EXPORT_TARGETS)}."),
    precision: str = typer.Option("fp32", "--precision", "-p",
                                  help="fp32, fp16, bf16 (openvino, on CPUs with BF16) or int8 (int8: a source "
                                       "quantized with `edgevid quantize`, or --calib)."),
    calib: str | None = typer.Option(None, "--calib", help="int8 from a float source: calibration manifest "
                                                           "(`edgevid calib build`) to quantize with first."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output file (default: beside the source)."),
    onnx_only: bool = typer.Option(False, "--onnx-only",
                                   help="trt: write the ONNX and print the trtexec command; build no engine."),
    batch_max: int = typer.Option(8, "--batch-max", help="Largest batch of the TensorRT optimisation profile."),
    data: str | None = typer.Option(None, "--data", help="Video file or folder for the parity clips (default: "
                                                         "random normalised clips)."),
    tolerance: float | None = typer.Option(None, "--tolerance", help="Max |logit diff| against the source, as a "
                                           "fraction of max(1, max |logit|) (default 1e-3 fp32, 5e-2 fp16, "
                                           "6e-2 bf16, 0.25 int8)."),
    trt_version: int | None = typer.Option(None, "--trt-version", help="TensorRT major (10 or 11) the trtexec line "
                                           "targets when tensorrt is not installed here (default 10, JetPack 6)."),
    workspace_mb: int = typer.Option(1024, "--workspace-mb", help="TensorRT builder workspace limit (MiB)."),
    streaming: bool = typer.Option(False, "--streaming", help="Export the streaming form of a causal model (one "
                                                              "frame in, states as inputs/outputs; onnx/openvino)."),
    onnx_exporter: str = typer.Option("dynamo", "--onnx-exporter", help="torch.onnx exporter of the ONNX graph: "
                                      "dynamo (falls back to torchscript, with a warning, when it fails) or "
                                      "torchscript."),
) -> None:
    """Export a trained model to ONNX, OpenVINO IR or a TensorRT engine.

    Every export is checked against its source (max |logit diff|, top-1
    agreement) before it is written; without tensorrt installed, --target trt
    writes the ONNX and prints the trtexec command for the device.

    Example: edgevid export runs/x3d --target openvino --precision fp16
    """
    from edgevid.export import TensorRTUnavailableError
    from edgevid.pipeline import export

    try:
        with console.status(f"exporting {artifact} to {target} {precision}, then checking parity"):
            result = export(artifact, target, precision, out, streaming=streaming, calib=calib, onnx_only=onnx_only,
                            batch_max=batch_max, data=data, tolerance=tolerance, trt_version=trt_version,
                            workspace_mb=workspace_mb, onnx_exporter=onnx_exporter)
    except TensorRTUnavailableError as exc:
        _print_export(exc.result)
        raise
    _print_export(result)


def _print_export(result) -> None:
    columns = ["target", "precision", "execution", "path", "size_mb", "max_abs_diff", "top1_agreement"]
    console.print(make_table([result.row()], columns, title=f"edgevid export ({result.meta.model})",
                             formats={"size_mb": ".2f", "max_abs_diff": ".2e", "top1_agreement": ".0%"}))
    for note in result.notes:
        console.print(note, highlight=False)
    if result.parity is not None:
        console.print(f"parity checked on {result.parity.reference} vs the artifact computing in "
                      f"{result.parity.execution}; CPU features (detected): {describe_cpu()}", highlight=False)
    if result.command:
        console.print("build and benchmark on the device with:")
        console.print(result.command, soft_wrap=True, highlight=False, markup=False)


# ------------------------------------------------------------------------------------------------------- data
data_app = typer.Typer(help="Video datasets: synthetic benchmark data, layout and class inspection.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
def data_synth_cmd(
    out: str = typer.Argument(..., help="Output directory (created; must be empty or an earlier synth output)."),
    style: str = typer.Option("shapes", "--style", help="shapes (polygon on a synthetic texture), photo (a "
                                                          "photograph patch over a photograph, moving camera) or "
                                                          "wild (photo with mixed fps, durations, sizes, codecs)."),
    classes: int = typer.Option(8, "--classes", help="Number of classes, 2-10 (2-11 for wild)."),
    videos_per_class: int = typer.Option(60, "--videos-per-class", help="Training videos per class."),
    val_per_class: int = typer.Option(15, "--val-per-class", help="Validation videos per class."),
    frames: int = typer.Option(48, "--frames", help="Frames per video (wild: durations 1.5-6 s x FRAMES/48)."),
    size: int = typer.Option(128, "--size", help="Frame width and height in pixels, even (wild: scales its sizes)."),
    fps: int = typer.Option(25, "--fps", help="Frame rate of the files (wild draws 15/24/30/60 per video)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same videos."),
    vary: str = typer.Option("size,fps,codec", "--vary",
                             help="wild: the format factors each video draws (size, fps, codec; comma-separated, "
                                  "'none' for none); the others keep photo's (SIZE squared, 25 fps, H.264)."),
    workers: int = typer.Option(2, "--workers", help="Processes rendering and encoding videos."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier synth dataset in OUT."),
) -> None:
    """Write a synthetic action-video dataset.

    Videos in a folder per class with train/val lists; the classes differ in
    motion, so a model needs time (not one frame) to tell them apart.

    Example: edgevid data synth data/synth-photo --style photo --classes 10
    """
    from edgevid.data.datasets import PAIR_KINDS
    from edgevid.data.synth import SynthConfig, generate_synth, parse_vary

    config = SynthConfig(classes=classes, videos_per_class=videos_per_class, val_per_class=val_per_class,
                         frames=frames, size=size, fps=fps, seed=seed, style=style, vary=parse_vary(vary))
    summary = generate_synth(out, config, workers=workers, overwrite=overwrite)
    counts = summary["counts"]
    console.print(f"wrote {counts['train']} train + {counts['val']} val {style} videos of {len(summary['classes'])} "
                  f"classes to {out} in {summary['seconds']:.1f} s", highlight=False)
    for kind, what in PAIR_KINDS.items():
        pairs = ", ".join("/".join(pair) for pair in summary[f"{kind}_classes"]) or "none"
        console.print(f"{what} class pairs (synth.json {kind}_classes): {pairs}", highlight=False)


@data_app.command("info")
def data_info_cmd(
    root: str = typer.Argument(..., help="Dataset directory or list file."),
    splits: str = typer.Option("train,val,test", "--splits", help="Comma-separated splits to look for."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Show a dataset's layout, classes and videos per split.

    The detected layout of each split (folder per class, list files, UCF101
    splits), the classes in index order and the number of videos per class.

    Example: edgevid data info data/synth --splits train,val
    """
    from edgevid.data.datasets import dataset_info

    info = dataset_info(root, [s.strip() for s in splits.split(",") if s.strip()])
    if as_json:
        print(json.dumps(info, indent=2))
        return
    found = list(info["splits"])
    rows = [{"class": name, "index": i, **info["counts"][name]} for i, name in enumerate(info["counts"])]
    rows.append({"class": "total", **{split: info["splits"][split]["videos"] for split in found}})
    for split, meta in info["splits"].items():
        console.print(f"{split}: {meta['layout']} layout, {meta['videos']} videos, from {meta['source']}",
                      highlight=False)
    for split, twin in info["same_as"].items():
        console.print(f"{split}: the same {info['splits'][twin]['videos']} videos as {twin} (one held-out set), "
                      "not counted again", highlight=False)
    for split, reason in info["absent"].items():
        console.print(f"{split}: absent ({reason})", highlight=False, soft_wrap=True, markup=False)
    console.print(make_table(rows, ["class", "index", *found], title=f"{root}: {len(info['classes'])} classes"))


# --- bench / demo
@app.command("bench")
def bench_cmd(
    artifact: str = typer.Argument(..., help="Run directory or checkpoint (every format is produced from it); an "
                                             "exported .onnx/.xml/.engine is measured as it is."),
    targets: str = typer.Option(",".join(TARGETS), "--targets", help="Comma-separated targets."),
    precisions: str = typer.Option("fp32,fp16,bf16,int8", "--precisions",
                                   help="Comma-separated precisions (bf16 rows say why where the CPU has no BF16)."),
    batch: str = typer.Option("1", "--batch", help="Comma-separated batch sizes, e.g. 1,4."),
    data: str | None = typer.Option(None, "--data", "-d", help="Dataset root: top-1 on its --split, and the INT8 "
                                                               "calibration set when the run has none."),
    split: str = typer.Option("val", "--split", help="Split evaluated for top-1."),
    streaming: bool = typer.Option(False, "--streaming", help="Measure the streaming form: one frame per step."),
    iters: int = typer.Option(100, "--iters", help="Most timed calls per row."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed calls before timing."),
    seconds: float = typer.Option(10.0, "--seconds", help="Time box of each row's timing loop (at least 5 calls)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads of each runtime (default: the "
                                                               "runtime's own)."),
    device: str = typer.Option("cpu", "--device", help="Device to run on (torch, onnx, openvino; trt always runs on "
                                                       "cuda)."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration manifest for INT8 (from `edgevid calib "
                                                           "build`; default: the run's own, else built from --data)."),
    artifacts: list[str] = typer.Option(None, "--artifact", help="An already exported or quantized artifact to "
                                                                 "measure as its format (repeatable)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output folder for results and artifacts (default: "
                                                             "<run>/bench)."),
    json_out: str | None = typer.Option(None, "--json", help="JSON results path (default OUT/bench.json)."),
    csv_out: str | None = typer.Option(None, "--csv", help="CSV results path (default OUT/bench.csv)."),
    md_out: str | None = typer.Option(None, "--md", help="Markdown table path (default OUT/bench.md)."),
    plot_out: str | None = typer.Option(None, "--plot", help="PNG plot path (default OUT/bench.png)."),
) -> None:
    """Benchmark every format of a model side by side.

    One row per target x precision x batch: size, top-1, latency p50/p95/p99,
    FPS, peak RSS and GMACs; missing formats are exported (and quantized) first,
    and a format that fails records its reason in its row.

    Example: edgevid bench runs/x3d --targets torch,onnx,openvino -d data/synth
    """
    from edgevid.bench import bench, parse_list

    result = bench(artifact, out, targets=parse_list(targets), precisions=parse_list(precisions),
                   batches=[_positive_int(b, "--batch") for b in parse_list(batch)], data=data, split=split,
                   streaming=streaming, iters=iters, warmup=warmup, max_seconds=seconds, threads=threads,
                   device=device, calib=calib, artifacts=artifacts or (), json=json_out, csv=csv_out, md=md_out,
                   plot=plot_out)
    result.print(console)
    console.print("wrote " + ", ".join(str(p) for p in result.files.values()), highlight=False, soft_wrap=True)
    if not any(row.status == "ok" for row in result.rows):
        err_console.print("[bold red]error:[/] no format ran (each row gives its reason)", highlight=False)
        raise typer.Exit(code=1)


def _positive_int(text: str, flag: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise EdgevidError(f"{flag}: expected positive integers separated by commas, got {text!r}")
    return int(text)


@app.command("demo")
def demo_cmd(
    out: str = typer.Option("demo_out", "--out", "-o", help="Output folder for everything the demo writes."),
    quick: bool = typer.Option(False, "--quick", help="Tiny data and model, one epoch: the whole path in about a "
                                                      "minute (used by the tests)."),
) -> None:
    """Run the whole product end to end on synthetic data.

    Generates data, trains X3D-XS, evaluates, quantizes to INT8, exports,
    benchmarks and runs live on a held-out video, then prints where every output
    is and a summary table.

    Example: edgevid demo --quick --out demo_out
    """
    from edgevid.demo import run_demo

    run_demo(out, quick=quick)


# --- live
@app.command("live")
def live_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Run directory, checkpoint, .onnx, OpenVINO .xml or "
                                                         "TensorRT engine (a streaming export runs streaming)."),
    camera: int | None = typer.Option(None, "--camera", "-c", help="Camera index (OpenCV)."),
    source: list[str] | None = typer.Option(None, "--source", "-s", help="Video file, image folder, RTSP/HTTP URL, "
                                            "/dev/videoN, csi://N (Jetson CSI camera) or a GStreamer pipeline ending "
                                            "in appsink; repeat for several streams sharing the model."),
    realtime: bool = typer.Option(False, "--realtime", help="Play a file at its own fps like a camera (frames are "
                                                            "dropped when the model is slower); default: every frame."),
    every: int = typer.Option(1, "--every", help="Run the model every K frames (sliding window)."),
    topk: int = typer.Option(3, "--topk", help="Labels shown with their scores."),
    smooth: str = typer.Option("ema", "--smooth", help="ema (moving average of probabilities), vote (label "
                                                       "switches after --votes wins in a row) or none."),
    alpha: float = typer.Option(0.5, "--alpha", help="EMA weight of the newest window."),
    votes: int = typer.Option(3, "--votes", help="Consecutive wins a new label needs with --smooth vote."),
    threshold: float = typer.Option(0.0, "--threshold", help="Below this probability the label is 'no action'."),
    show: bool = typer.Option(False, "--show", help="Show the annotated video in a window (q/Esc quits)."),
    output: str | None = typer.Option(None, "--output", "-o", help="Output annotated video (.mp4/.avi)."),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Stop after this many captured frames."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds."),
    report: str | None = typer.Option(None, "--report", help="Write the run report (JSON)."),
    log_every: float | None = typer.Option(None, "--log-every", help="Print a status line every S seconds."),
    streaming: bool = typer.Option(False, "--streaming", help="One model step per sampled frame (causal models)."),
    horizon: int | None = typer.Option(None, "--horizon", help="Streaming: average over about this many steps "
                                                               "(default the clip length T; 0 = whole stream)."),
    device: str = typer.Option("cpu", "--device", help="Device to run on (cpu, cuda[:N], or an OpenVINO device: "
                                                       "CPU, GPU, NPU, AUTO)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads of each runtime (default: the "
                                                               "runtime's own)."),
    precision: str | None = typer.Option(None, "--precision", "-p", help="Run in this precision (default: the "
                                         "artifact's own; bf16 runs an FP32 checkpoint or IR in BF16)."),
    width: int | None = typer.Option(None, "--width", help="Camera: requested frame width."),
    height: int | None = typer.Option(None, "--height", help="Camera: requested frame height."),
    fps: float | None = typer.Option(None, "--fps", help="Camera: requested fps; image folder, or a file or "
                                                 "stream that does not report its rate: its frame rate."),
    serve: str | None = typer.Option(None, "--serve", help="Web view on [HOST:]PORT (localhost unless a host is "
                                                           "given): MJPEG video, labels, /status, /metrics."),
    token: str | None = typer.Option(None, "--token", envvar="EDGEVID_TOKEN", help="Access token the web view "
                                                                                   "requires (?token=...)."),
    events: str | None = typer.Option(None, "--events", help="Write events as JSON lines to this file (- for "
                                                             "stdout): label changes and summaries."),
    events_every: float = typer.Option(10.0, "--events-every", help="Seconds between summary events."),
    webhook: str | None = typer.Option(None, "--webhook", help="POST every event as JSON to this URL (never "
                                                               "blocks the loop; a full queue drops events)."),
    webhook_queue: int = typer.Option(64, "--webhook-queue", help="Events the webhook queue holds."),
    serve_fps: float = typer.Option(15.0, "--serve-fps", help="Web view: most JPEG frames per second per stream."),
    reconnect_attempts: int = typer.Option(5, "--reconnect-attempts", min=0, help="Reopen a lost camera or stream "
                                           "this many times (backoff 0.5 s doubling to 8 s), then exit with code 1."),
) -> None:
    """Recognise actions in real time on a camera, video file, stream or image folder.

    A sliding window (or, with --streaming, one model step per frame) with
    smoothed labels, an optional annotated video, and a latency/memory report.

    Example: edgevid live -m runs/x3d/best.xml -s video.mp4 -o annotated.mp4
    """
    from edgevid.runtime.live import LiveOptions, run_live

    if (camera is None) == (not source):
        raise EdgevidError("give exactly one of --camera N or --source PATH_OR_URL (--source may repeat)")
    options = LiveOptions(realtime=realtime, every=every, topk=topk, smooth=smooth, alpha=alpha, votes=votes,
                          threshold=threshold, show=show, output=output, max_frames=max_frames, duration=duration,
                          report=report, log_every=log_every, streaming=streaming, horizon=horizon, device=device,
                          threads=threads, precision=precision, width=width, height=height, fps=fps, serve=serve,
                          token=token,
                          events=events, events_every=events_every, webhook=webhook, webhook_queue=webhook_queue,
                          reconnect_attempts=reconnect_attempts, serve_fps=serve_fps)
    result = run_live(model, camera if camera is not None else list(source), options)
    console.print(make_table(result.rows(), ["metric", "value"], title=f"edgevid live: {result.model}"))
    outputs = [s["output"] for s in result.streams if s.get("output")] or ([output] if output else [])
    for path, what in [*((p, "annotated video") for p in outputs), (report, "report")]:
        if path:
            console.print(f"wrote {what} {path}", highlight=False)
    if result.failed:
        err_console.print(f"[bold red]error:[/] {result.stop_reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


# --- compress
calib_app = typer.Typer(help="Calibration sets (clip manifests) for INT8 quantization.", no_args_is_help=True)
app.add_typer(calib_app, name="calib")


@calib_app.command("build")
def calib_build_cmd(
    data: str = typer.Option(..., "--data", "-d", help="Dataset root; clips come from its training split."),
    out: str = typer.Option(..., "--out", "-o", help="Output manifest (JSON), e.g. calibration/x3d_xs.json."),
    num: int = typer.Option(128, "--num", "-n", help="Number of clips (spread evenly over the classes)."),
    artifact: str | None = typer.Option(None, "--artifact", "-a", help="Trained run, checkpoint or export whose "
                                                                       "preprocessing the clips get."),
    model: str | None = typer.Option(None, "--model", "-m", help="Zoo model whose default input the clips get "
                                                                 "(instead of --artifact)."),
    frames: int | None = typer.Option(None, "--frames", help="With --model: frames per clip."),
    size: int | None = typer.Option(None, "--size", help="With --model: crop size."),
    stride: int | None = typer.Option(None, "--stride", help="With --model: sampling stride."),
    sampling: str = typer.Option("dense", "--sampling", help="With --model: dense or segments."),
    split: str = typer.Option("train", "--split", help="Split to draw from."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same manifest."),
) -> None:
    """Build an INT8 calibration manifest from a dataset split.

    Deterministic and class-stratified: the same seed gives the same clips,
    preprocessed like the artifact (or the zoo model) they calibrate.

    Example: edgevid calib build -d data/synth -a runs/x3d -o calib/x3d.json
    """
    import dataclasses

    from edgevid.compress.calibration import Preprocessing, build_manifest
    from edgevid.meta import read_meta

    if (artifact is None) == (model is None):
        raise EdgevidError("give exactly one of --artifact PATH (a trained model) or --model NAME (a zoo model)")
    if artifact is not None:
        if any(v is not None for v in (frames, size, stride)):
            raise EdgevidError("--frames/--size/--stride go with --model; --artifact brings its own preprocessing")
        meta = read_meta(artifact)
        prep, name, classes = Preprocessing.from_meta(meta), meta.model, meta.classes
    else:
        prep, name, classes = Preprocessing.from_model(model, sampling), model, None
        prep = dataclasses.replace(prep, frames=frames or prep.frames, size=size or prep.size,
                                   sampling_stride=stride or prep.sampling_stride)
    manifest, skipped = build_manifest(data, num, prep, seed=seed, split=split, model=name, classes=classes)
    path = manifest.save(out)
    rows = [{"class": c, "clips": n} for c, n in manifest.class_counts().items()]
    console.print(make_table(rows, ["class", "clips"], title=f"{path}: {len(manifest.clips)} clips"))
    console.print(f"preprocessing: {prep.describe()}", highlight=False)
    for video, reason in skipped:
        err_console.print(f"[yellow]skipped[/] {video}: {reason}", highlight=False, soft_wrap=True)


@app.command("quantize")
def quantize_cmd(
    artifact: str = typer.Argument(..., help="FP32 run directory, checkpoint or ONNX (or OpenVINO IR for openvino)."),
    target: str = typer.Option(..., "--target", "-t", help="openvino, onnx (ONNX Runtime) or trt (TensorRT Q/DQ)."),
    calib: str = typer.Option(..., "--calib", "-c", help="Calibration manifest from `edgevid calib build`."),
    data: str | None = typer.Option(None, "--data", "-d", help="Dataset root: accuracy guard and top-1 on val."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="Largest top-1 drop (points) the guard accepts."),
    method: str = typer.Option("minmax", "--method", help="Activation ranges: minmax, entropy or percentile."),
    symmetric: bool = typer.Option(False, "--symmetric-activations", help="onnx: int8 symmetric activations."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output file (default: <source>.int8.xml/.onnx, "
                                                             "<source>.int8.trt.onnx)."),
    val_clips: int | None = typer.Option(None, "--val-clips", help="Use at most this many val clips."),
    bench_iters: int = typer.Option(20, "--bench-iters", help="Latency iterations per artifact (0: skip)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads of each runtime (default: the "
                                                               "runtime's own)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Quantize a model to INT8 after training.

    Post-training quantization for OpenVINO (NNCF), ONNX Runtime (QDQ) or
    TensorRT (Q/DQ ONNX) with a calibration manifest; with --data an accuracy
    guard refuses a model that loses more than --max-drop top-1 points.

    Example: edgevid quantize runs/x3d -t openvino -c calib/x3d.json -d data/synth
    """
    from edgevid.compress.quantize import quantize

    result = quantize(artifact, target, calib, out=out, data=data, max_drop=max_drop, method=method,
                      symmetric_activations=symmetric, val_clips=val_clips, bench_iters=bench_iters, threads=threads)
    if as_json:
        print(json.dumps(result.summary(), indent=2))
        return
    floats = ", ".join(result.float_layers) or "none"
    console.print(f"wrote {result.path} ({result.weighted_layers - len(result.float_layers)}/"
                  f"{result.weighted_layers} weighted layers INT8; in float: {floats})", highlight=False)
    console.print(f"INT8 vs FP32 on {result.parity.clips} calibration clips: top-1 agreement "
                  f"{result.parity.top1_agreement:.0%}, max |logit diff| {result.parity.max_abs_diff:.3g}",
                  highlight=False)
    if result.report_path:
        console.print(f"report: {result.report_path}", highlight=False)
    if target == "trt":
        engine = Path(result.path).with_name(f"{artifact_stem(result.path)}.int8{FORMATS['trt'].suffix}")
        console.print(f"build the engine: edgevid export {result.path} --target trt --precision int8 (writes "
                      f"{engine})", highlight=False, soft_wrap=True)


@app.command("prune")
def prune_cmd(
    run: str = typer.Argument(..., help="Trained run directory (or its checkpoint; fine-tuning uses its recipe)."),
    ratio: float = typer.Option(..., "--ratio", "-r", help="Fraction of the MACs to remove, in (0, 1)."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset root: fine-tuning and top-1 on val."),
    finetune_epochs: int | None = typer.Option(None, "--finetune-epochs", help="Fine-tuning epochs (default: the "
                                                                               "recipe's; 0: none)."),
    importance: str = typer.Option("l2", "--importance", help="l2 (channel weight norm) or bn (|BN scale|)."),
    global_pruning: bool = typer.Option(False, "--global/--uniform", help="One ranking across layers, or the "
                                                                          "same fraction of every layer."),
    round_to: int = typer.Option(8, "--round-to", min=1, help="Keep channel counts multiples of this (1: any)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output run directory (default: <run>-pruned<pct>)."),
    overrides: list[str] = typer.Argument(None, help="Recipe overrides for fine-tuning, e.g. optim.lr=0.002."),
    val_clips: int | None = typer.Option(None, "--val-clips", help="Val clips for the report's top-1 (0: skip)."),
    bench_iters: int = typer.Option(20, "--bench-iters", help="Latency iterations per model and backend."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads of each runtime (default: the "
                                                               "runtime's own)."),
) -> None:
    """Prune channels of a trained model to a MAC budget.

    Structured channel pruning (Torch-Pruning DepGraph), then fine-tuning with
    the run's recipe; the report compares params, MACs, top-1 and latency before
    and after.

    Example: edgevid prune runs/x3d -r 0.3 -d data/synth --finetune-epochs 2
    """
    from edgevid.compress.pruning import prune

    result = prune(run, ratio, data, finetune_epochs=finetune_epochs, importance=importance,
                   global_pruning=global_pruning, round_to=round_to, out=out, overrides=tuple(overrides or ()),
                   val_clips=val_clips, bench_iters=bench_iters, threads=threads)
    info = result.info
    console.print(f"removed {info['mac_reduction']:.1%} of the MACs ({info['macs_before'] / 1e9:.3f} -> "
                  f"{info['macs_after'] / 1e9:.3f} GMACs, {info['params_before'] / 1e6:.2f}M -> "
                  f"{info['params_after'] / 1e6:.2f}M params); model: {result.checkpoint}", highlight=False)
    if result.report_path:
        console.print(f"report: {result.report_path}", highlight=False)


def _user_message(exc: BaseException) -> str:
    """The first line of an error; for one re-raised from a DataLoader worker ("Caught VideoDecodeError in
    DataLoader worker process 0" first), the original error's own line, which names the file."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = text.splitlines()
    if lines[0].startswith("Caught ") and "DataLoader worker process" in lines[0]:
        last = next((line.strip() for line in reversed(lines) if line.strip()), lines[0])
        name, sep, rest = last.partition(": ")
        message = rest if sep and (name.endswith("Error") or "." in name) else last
        return f"{message} (in a data-loading worker)"
    return lines[0]


def _command_name(args: list[str]) -> str:
    """The command words of a command line, e.g. ``calib build`` of ``calib build -d data -o x.json``."""
    command, words = typer.main.get_command(app), []
    for arg in (a for a in args if not a.startswith("-")):
        sub = getattr(command, "commands", {}).get(arg)
        if sub is None:
            break
        command, words = sub, [*words, arg]
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgevid`` console script and ``python -m edgevid``.

    Exit codes: 0 done, 1 a user error (one ``error:`` line naming the file, key or option) or a run that failed
    on its own terms (e.g. a live stream lost for good, a benchmark where no format ran), 2 a usage error (bad
    option syntax: an unknown option, a missing argument or value), 130 interrupted (one line saying what was
    kept and how to continue).
    """
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    from edgevid.utils.interrupts import interrupt_message, set_interrupt_hint

    args = sys.argv[1:] if argv is None else list(argv)
    set_interrupt_hint(None)
    try:
        code = typer.main.get_command(app).main(args=args, prog_name="edgevid", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (_Interrupted, KeyboardInterrupt):
        err_console.print(interrupt_message(_command_name(args)), highlight=False, soft_wrap=True, markup=False)
        return 130
    except NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except ClickException as exc:  # unknown option, missing or bad value: one line, not the framework's box
        where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "edgevid"
        message = " ".join(exc.format_message().split())
        err_console.print(f"[bold red]error:[/] {message} (see {where} --help)", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Abort:
        err_console.print("[bold red]error:[/] aborted", highlight=False)
        return 1
    except (EdgevidError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        if _state["verbose"]:
            raise
        err_console.print(f"[bold red]error:[/] {_user_message(exc)}", highlight=False, soft_wrap=True)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
