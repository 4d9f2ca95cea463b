"""Regenerate ``benchmarks/README.md`` from the committed results under ``benchmarks/results/<machine>/``.

For every machine folder and every known study whose Markdown results exist (``<study>.md``; ``*_quick`` and
``*_history`` files are skipped), the README gets a section: what the study measures and its target, the command
that reproduces it, the results table (the file's own ``# <study>`` heading dropped, its other headings moved
under the section) and the study's PNG plots. Result files of studies not listed here are linked at the end of
their machine's section. Usage::

    .venv/bin/python -m benchmarks.make_readme
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from edgevid.utils.atomic import write_text_atomic

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
README = BENCHMARKS / "README.md"
SKIPPED_SUFFIXES = ("_quick", "_history")

# study -> (title, what it measures and its target, the command that reproduces it)
STUDIES: dict[str, tuple[str, str, str]] = {
    "training": (
        "Training: accuracy within a time budget",
        "Every shipped recipe (X3D-XS, TSM-R18, R(2+1)D-18 and the single-frame X3D-XS baseline) trains with "
        "`edgevid train` on `edgevid data synth` defaults (8 classes, 480 train / 120 val videos); the clock counts "
        "everything from the `train` call, and a run stops at the 15-minute budget. Reported per recipe: input, "
        "params, GMACs, epochs, minutes, best val top-1 and the minute it first reached 90%. Target: X3D-XS reaches "
        "at least 90% val top-1 within 15 minutes; the single-frame baseline should stay near chance (12.5%), "
        "since the synthetic classes differ only over time.",
        ".venv/bin/python -m benchmarks.bench_training  # --quick: a small set, 1 epoch each (pipeline check)",
    ),
    "generalise": (
        "Generalisation: each recipe on each synth style",
        "Every recipe trains with no overrides on each `edgevid data synth --style` default set (shapes: a polygon "
        "on a synthetic texture; photo: a patch of a real photograph moving over another under a panning camera; "
        "wild: photo plus 15-60 fps, 1.5-6 s, non-square frames and three codecs), stopping after the epoch that "
        "passes its budget (a recipe with `train.minutes` fits its epochs and LR schedule to that time itself). "
        "Reported: best and final val top-1, the best checkpoint's top-1 over 3 clips per video (`edgevid eval "
        "--views 3x1`), train top-1 and the fit diagnosis `edgevid train` prints. Targets: X3D-XS at least 90% "
        "val top-1 on every style within 15 minutes; the single-frame "
        "baseline at most 30% on each.",
        ".venv/bin/python -m benchmarks.bench_generalise --styles photo wild --recipes x3d_xs x3d_xs_1frame "
        "--budget-min 15 --budget x3d_xs_1frame=5",
    ),
    "event_coverage": (
        "Event coverage: how much of each video's motion a sampled clip sees",
        "Computed from the data, no training: for every val video of the `photo` and `wild` default sets, the share "
        "of its event (the motion or fade, whose window `synth.json` records as `event_s`) between the first and "
        "last frame of a clip, for dense clips of F frames over S seconds (`FxS`) and for F segments over the "
        "whole video (`Fseg`): the centre clip training validates on and the best of the 3 clips of `edgevid eval "
        "--views 3x1`. A clip that sees little of the motion cannot name the class, whatever the model.",
        ".venv/bin/python -m benchmarks.event_coverage",
    ),
    "wild_formats": (
        "Wild's formats: which one costs accuracy",
        "`wild`'s motions (uneven speeds, pauses, 1.5-6 s videos) with one format factor at a time drawn per video "
        "as in `wild` (frame size and aspect, frame rate, codec) and the others as `photo`'s (128x128, 25 fps, "
        "H.264): `edgevid data synth --style wild --vary F`. Every video is trimmed to its motion, so clip coverage "
        "is not what differs, and X3D-XS's shipped recipe trains on each for 10 minutes.",
        ".venv/bin/python -m benchmarks.wild_formats --minutes 10",
    ),
    "tune": (
        "Tuning: `edgevid tune` on one style, the tuned recipe on the others",
        "`edgevid tune` searches X3D-XS's recipe (learning rate, weight decay, batch, crop size, clip seconds, "
        "augmentation; not epochs: the recipe trains for a time) for 60 minutes on one synth style, 10 minutes per "
        "trial, each trial ending its LR schedule within its budget, TPE sampler and median pruner, its first "
        "trial the shipped recipe's own values. The best trial's recipe then trains like a "
        "shipped recipe (15 minutes, no overrides) on every style, beside the shipped recipe's `generalise` rows. "
        "Target: the tuned recipe not worse than the shipped one on the styles it was not tuned on.",
        ".venv/bin/python -m benchmarks.bench_tune --style photo --budget-min 60 --trial-min 10 --measure-min 15",
    ),
    "onnx_exporters": (
        "ONNX exporters: dynamo vs TorchScript",
        "Export time, graph nodes, file size and ONNX Runtime batch-1 latency of the graphs torch's dynamo-based "
        "exporter (edgevid's default) and its TorchScript exporter (the fallback) write for X3D-XS and TSM-R18, "
        "with their parity against PyTorch.",
        ".venv/bin/python -m benchmarks.bench_onnx_exporters --iters 20",
    ),
    "soak": (
        "Soak: a long live run over a stream that keeps dropping",
        "X3D-XS (OpenVINO FP32) runs `edgevid live` over 20,000 frames of a stream that is lost every 500 frames and "
        "at the end of its file; every loss goes through the live loop's reconnect (a new FFmpeg capture). Targets: "
        "RSS growth from frame 500 to the end < 10 MB, no leaked file descriptor or thread, every drop survived.",
        ".venv/bin/python -m benchmarks.bench_soak [--frames 20000] [--drop-every 500]",
    ),
    "transfer": (
        "Transfer: fine-tuning imported weights vs training from scratch",
        "X3D-XS is pretrained on one synthetic task (move_left, move_right, the two rotations, grow), its weights are "
        "written in PyTorchVideo's `.pyth` layout and brought back with `edgevid import`, then trained on a second "
        "task with other classes (move_up, move_down, shrink, appear, disappear) three ways for the same number of "
        "epochs: from scratch (`x3d_xs` recipe), fine-tuned (`x3d_xs_finetune`: new head, head-only first epoch, "
        "backbone at 0.1x, BN statistics frozen) and linear probing (only the classifier trains). Reported: val "
        "top-1 against training minutes, when each run first reached the from-scratch run's best top-1, and top-1 "
        "at equal times. Target: the fine-tuned model reaches the from-scratch best in at most a third of its time.",
        "OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_transfer --videos 40 --pretrain-epochs 40 "
        "--epochs 25",
    ),
    "data_throughput": (
        "Data pipeline throughput",
        "Synthetic data generation time, CPU milliseconds per clip to decode and to decode + augment + normalise, "
        "and clips/s of the real training loader with 2 workers, next to the X3D-XS training step rate on the "
        "recipe's own clips. Target: the loader delivers at least 2x the clips/s that training consumes.",
        ".venv/bin/python -m benchmarks.data_throughput [--workers 2] [--batches 30]",
    ),
    "backends": (
        "Backends: PyTorch eager vs ONNX Runtime vs OpenVINO",
        "Batch-1 latency (median and p95 from one run; each backend in its own process, timed in alternating "
        "blocks) of X3D-XS, TSM-R18 and R(2+1)D-18 exported with `edgevid export` and run through "
        "`edgevid.runtime.load`: FP32, OpenVINO FP16 and OpenVINO INT8 (`edgevid quantize`), with the achieved "
        "GFLOP/s against a 2048^3 FP32 matmul measured in the same run, and a few OpenVINO / ONNX Runtime settings "
        "for X3D-XS. Target: the best backend is at least 4x faster than PyTorch eager for X3D-XS (4x160x160).",
        ".venv/bin/python -m benchmarks.bench_backends [--rounds 5] [--block 6] "
        "[--models x3d_xs,tsm_r18,r2plus1d_18]",
    ),
    "int8": (
        "INT8 post-training quantization",
        "Each recipe-trained model (X3D-XS, TSM-R18, R(2+1)D-18) quantized with `edgevid quantize` for OpenVINO "
        "(NNCF), ONNX Runtime (QDQ) and TensorRT (symmetric Q/DQ ONNX, run in ONNX Runtime here), from a 128-clip "
        "calibration manifest and global min/max activation ranges (the accuracy guard, `--max-drop`, is on at 1.0 "
        "by default; the committed run's setting is in its notes); FP32 and INT8 batch-1 latency interleaved on the "
        "same backend. Targets: INT8 top-1 within 1.0 point of FP32 on OpenVINO and ONNX "
        "Runtime; INT8 at least 1.5x faster than FP32 on the same backend for TSM-R18 and R(2+1)D-18.",
        ".venv/bin/python -m benchmarks.bench_int8 [--num 128] [--max-drop 1.0] [--recipes x3d_xs tsm_r18 r2plus1d_18]",
    ),
    "int8_calibration_size": (
        "INT8: how many calibration clips are enough",
        "INT8 top-1 of one model against the size N of the calibration manifest, without the accuracy guard "
        "(the table behind `calibration/README.md`).",
        ".venv/bin/python -m benchmarks.bench_int8 --sweep 8 16 32 64 128 --sweep-recipe x3d_xs",
    ),
    "pruning": (
        "Structured pruning",
        "`edgevid prune RUN --ratio 0.5` on each recipe-trained model (Torch-Pruning DepGraph, L2 importance, "
        "uniform channel ratio found by bisection on MACs), fine-tuned with the run's recipe; original vs pruned "
        "params, GMACs, val top-1 and batch-1 latency on PyTorch, ONNX Runtime and OpenVINO, timed interleaved. "
        "With `--control` the unpruned model is fine-tuned the same way too (`drop_vs_control`: the drop at equal "
        "training). Targets: top-1 within 2 points of the original, at least 1.4x faster.",
        ".venv/bin/python -m benchmarks.bench_pruning [--ratio 0.5] [--finetune-epochs N] [--control]",
    ),
    "streaming": (
        "Streaming: one new frame vs the whole clip",
        "Online TSM-R18 (8x224) and causal X3D-XS (8x160): the clip export and the streaming export (`edgevid "
        "export --streaming`, states as inputs/outputs), on ONNX Runtime and OpenVINO, measured in alternating "
        "blocks in the same run; the streaming exports are checked frame by frame against the causal clip model. "
        "Target: step p50 at most 0.35x clip p50 (the ideal for T=8 is 0.125).",
        ".venv/bin/python -m benchmarks.bench_streaming [--rounds 5] [--iters 10]",
    ),
    "live": (
        "Live loop: latency, frame drops, memory",
        "`run_live` on a synthetic 30 fps video played like a camera (`--realtime`): a model faster than the frame "
        "interval (tiny3d, OpenVINO), X3D-XS (OpenVINO) and one far slower (R(2+1)D-18, PyTorch eager), plus a "
        "5000-frame memory run. Targets: end-to-end latency p95 (capture timestamp to label) at most model p95 + "
        "5 ms when the model keeps up; frames dropped, never queued, when it does not; RSS growth under 10 MB "
        "between frame 500 and frame 5000.",
        ".venv/bin/python -m benchmarks.bench_live [--seconds 20] [--memory-frames 5000]",
    ),
    "live_serve": (
        "Live web view: what an open page costs",
        "`edgevid live --serve` on a synthetic 30 fps camera (tiny3d and X3D-XS, OpenVINO FP32) while a viewer "
        "alternates between attached (reading the MJPEG stream, polling `/status`) and detached, in the same run. "
        "Target: end-to-end latency p95 with the page open at most 1 ms above p95 without.",
        ".venv/bin/python -m benchmarks.bench_live_serve [--seconds 40] [--phase 2] [--threads 1]",
    ),
    "formats": (
        "Every format of the demo model (`edgevid bench`)",
        "`edgevid bench` on the X3D-XS trained by `make demo`: every target x precision at batch 1 and 4, with "
        "size, val top-1, latency p50/p95/p99, FPS, peak RSS and GMACs in one table; formats that cannot run here "
        "(TensorRT without a GPU) are recorded with the reason. This is the table to decide what to ship from.",
        "make demo && .venv/bin/python -m benchmarks.bench_formats [--seconds 10] [--batch 1,4]",
    ),
}

INTRO = """# Benchmarks

Every study is one script in this folder. Each writes its results under `benchmarks/results/<machine>/`, where
`<machine>` names the hardware (`cpu-<cores>c-<short cpu model>-<ISA level>`, from
`edgevid.utils.machine.machine_name()`; the ISA level, detected from `/proc/cpuinfo`, tells apart CPUs that report
the same model name: `avx2`, `avx512`, `avx512-vnni`, `avx512-bf16`, `amx`), so results from different devices never
overwrite each other: JSON (the raw rows and the machine info: CPU model,
cores, RAM, OS, library versions, load average), a Markdown table, and PNG plots where useful. Run the scripts from
the repository root; this page is regenerated from the results with `.venv/bin/python -m benchmarks.make_readme`.

The committed results come from a shared 2-core cloud VM that other jobs were using at the same time: absolute
latencies are noisy (each file records the load average). Compare ratios measured within one run (speed-ups,
step/clip, INT8/FP32), which every study reports, rather than milliseconds across runs or machines.

On a Jetson, follow [JETSON.md](JETSON.md): install on JetPack, build TensorRT engines with
`edgevid export --target trt`, benchmark them with `edgevid bench` and `trtexec`, and read power and memory.
"""


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _is_study_file(path: Path) -> bool:
    return path.suffix == ".md" and not path.stem.endswith(SKIPPED_SUFFIXES)


def _owner(image: Path, studies: list[str]) -> str | None:
    """The study a plot belongs to: the longest study name its file name starts with."""
    stem = image.stem
    if any(marker in stem for marker in SKIPPED_SUFFIXES):
        return None
    matches = [s for s in studies if stem == s or stem.startswith(s + "_")]
    return max(matches, key=len, default=None)


def _embedded(markdown: str) -> str:
    """A results file's Markdown without its top-level ``# name`` heading, other headings two levels deeper."""
    lines = markdown.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(re.sub(r"^(#{1,4}) ", r"\1## ", line) for line in lines).strip()


def study_section(study: str, markdown: str, images: list[str]) -> str:
    """The README section of one study: title, description, command, results and plots (``images``: links)."""
    title, description, command = STUDIES[study]
    parts = [f"### {title}", description, f"```bash\n{command}\n```", _embedded(markdown)]
    parts += [f"![{Path(link).stem}]({link})" for link in images]
    return "\n\n".join(parts)


def machine_section(machine_dir: Path, readme_dir: Path) -> str:
    """Every known study found in one machine folder, then links to its other result files."""
    found = [s for s in STUDIES if (machine_dir / f"{s}.md").is_file()]
    images: dict[str, list[str]] = {s: [] for s in found}
    for image in sorted(machine_dir.glob("*.png")):
        owner = _owner(image, found)
        if owner:
            images[owner].append(_link(image, readme_dir))
    parts = [f"## `{machine_dir.name}`"]
    parts += [study_section(s, (machine_dir / f"{s}.md").read_text(encoding="utf-8"), images[s]) for s in found]
    others = [p for p in sorted(machine_dir.glob("*.md")) if _is_study_file(p) and p.stem not in STUDIES]
    if others:
        parts.append("Other result files: " + ", ".join(f"[{p.name}]({_link(p, readme_dir)})" for p in others))
    if not found and not others:
        parts.append("No results yet.")
    return "\n\n".join(parts)


def side_by_side(machines: list[Path]) -> str | None:
    """The backends study of every machine in one table: batch-1 p50 (ms) and speed-up over torch eager FP32 per
    model x backend x precision, a column per machine ("-": not measured or unavailable there)."""
    measured: dict[str, dict[tuple[str, str, str], dict]] = {}
    for machine in machines:
        path = machine / "backends.json"
        if path.is_file():
            rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
            measured[machine.name] = {(r["model"], r["backend"], r["precision"]): r for r in rows if r.get("p50_ms")}
    if len(measured) < 2:
        return None
    keys = list(dict.fromkeys(k for rows in measured.values() for k in rows))
    models = list(dict.fromkeys(k[0] for k in keys))
    order = ["fp32", "fp16", "bf16", "int8"]
    keys.sort(key=lambda k: (models.index(k[0]), k[1], order.index(k[2]) if k[2] in order else len(order)))
    names = list(measured)
    lines = ["## Machines side by side: backends (batch-1 p50 ms, and x torch eager FP32 in the same run)", "",
             "| model | backend | precision | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for key in keys:
        cells = []
        for name in names:
            row = measured[name].get(key)
            cells.append(f"{row['p50_ms']:.1f} ({row['speedup_vs_torch']:.2f}x)" if row else "-")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results: Path, readme_dir: Path) -> str:
    """The whole README for every machine folder under ``results``: the machines side by side, then each one."""
    machines = sorted(d for d in results.iterdir() if d.is_dir()) if results.is_dir() else []
    sections = [machine_section(d, readme_dir) for d in machines] or ["No results yet: run the scripts above."]
    table = side_by_side(machines)
    return "\n\n".join([INTRO.strip(), *([table] if table else []), *sections]) + "\n"


def main(results: Path = RESULTS, out: Path = README) -> Path:
    """Write the README for ``results`` to ``out`` (atomically) and return its path."""
    write_text_atomic(out, render(results, out.parent))
    return out


if __name__ == "__main__":
    print(f"wrote {main()}")
