"""Live-loop benchmark: capture-to-label latency against model latency, frame drops, and memory over time.

Four runs of ``run_live`` on a synthetic 30 fps video (rendered by ``edgevid.data.synth``):

- ``fast``: tiny3d (width 8, 8x112) exported to OpenVINO FP32 on the video played with ``--realtime`` (30 fps,
  like a camera), a model surely faster than the 33 ms frame interval: end-to-end latency (capture timestamp of
  the newest frame -> label available) should stay within model latency + 5 ms (p95): nothing queues.
- ``edge``: X3D-XS (4x160) in OpenVINO FP32 on the same source: about 20 ms on an idle 2-core CPU (faster than
  the frame interval), slower when the machine is busy; the check applies whichever case it is.
- ``slow``: R(2+1)D-18 in PyTorch eager (far slower than 33 ms) on the same realtime source: frames are dropped,
  not queued, so end-to-end latency stays about one to two model latencies instead of growing.
- ``memory``: X3D-XS OpenVINO on every frame of a long synthetic source (no pacing, model every 2nd frame):
  RSS is sampled by the source itself every 250 frames; growth between frame 500 and 5000 should be < 10 MB.

Weights are random (latency and memory do not depend on them). Results go to
``benchmarks/results/<machine>/live.{json,md,png}``. Usage::

    .venv/bin/python -m benchmarks.bench_live [--seconds 20] [--memory-frames 5000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, results_dir, write_results
from edgevid.checkpoint import save_checkpoint
from edgevid.data.synth import SynthConfig, render_video, write_video
from edgevid.export import export
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model, get_spec
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.runtime.metrics import rss_mb
from edgevid.runtime.sources import Source
from edgevid.utils.console import console, make_table
from edgevid.utils.plotting import pyplot, save_figure

FPS = 30.0
FRAME_SIZE = 240
CLASSES = [f"class_{i}" for i in range(10)]
RSS_EVERY = 250


def checkpoint(name: str, work: Path, **arch) -> Path:
    """A random-weight checkpoint of a zoo model at its default input."""
    spec = get_spec(name)
    meta = ArtifactMeta(model=name, classes=CLASSES, frames=spec.frames, size=spec.size,
                        sampling_stride=spec.sampling_stride, mean=spec.mean, std=spec.std, fps=FPS, arch=arch)
    return save_checkpoint(work / f"{name}.pt", create_model(name, num_classes=len(CLASSES), **arch).eval(), meta)


def synthetic_video(path: Path, frames: int) -> Path:
    kind = SynthConfig().class_names[0]
    return write_video(path, render_video(kind, np.random.default_rng(0), frames, FRAME_SIZE), fps=FPS)


class LoopingFrames(Source):
    """Pre-rendered frames repeated up to ``total`` frames, recording RSS every ``RSS_EVERY`` frames read."""

    def __init__(self, frames: np.ndarray, total: int) -> None:
        self.name = f"synthetic loop ({total} frames)"
        self.fps = FPS
        self.frames = np.ascontiguousarray(frames[..., ::-1])
        self.total = total
        self.read_count = 0
        self.rss: dict[int, float] = {}

    def read(self) -> np.ndarray | None:
        if self.read_count >= self.total:
            return None
        self.read_count += 1
        if self.read_count % RSS_EVERY == 0:
            self.rss[self.read_count] = rss_mb()
        return self.frames[self.read_count % len(self.frames)].copy()


def live_row(case: str, artifact: Path, source, options: LiveOptions) -> dict:
    report = run_live(artifact, source, options)
    model, e2e = report.latency_ms["model"], report.latency_ms["end_to_end"]
    interval_ms = 1000.0 / FPS
    row = {
        "case": case, "model": report.model, "backend": report.backend, "realtime": options.realtime,
        "every": options.every, "captured": report.frames_captured, "processed": report.frames_processed,
        "dropped": report.frames_dropped, "predictions": report.predictions,
        "fps_capture": report.fps["capture"], "fps_inference": report.fps["inference"],
        "model_p50": model["p50"], "model_p95": model["p95"], "e2e_p50": e2e["p50"], "e2e_p95": e2e["p95"],
        "e2e_max": e2e["max"], "e2e_minus_model_p50": e2e["p50"] - model["p50"],
        "e2e_minus_model_p95": e2e["p95"] - model["p95"],
        "model_faster_than_frame": model["p95"] < interval_ms,
        "rss_start": report.memory_mb["rss_start"], "rss_peak": report.memory_mb["rss_peak"],
    }
    if row["model_faster_than_frame"]:
        row["check"] = "pass" if row["e2e_minus_model_p95"] <= 5.0 else "FAIL: e2e p95 > model p95 + 5 ms"
    else:
        queued = e2e["p95"] > 3 * model["p95"]
        row["check"] = "pass" if report.frames_dropped > 0 and not queued else "FAIL: frames queued"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of the realtime runs.")
    parser.add_argument("--memory-frames", type=int, default=5000, help="Frames of the memory run.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each backend (default 1: on 2 "
                                                                "cores, the other core decodes and captures).")
    args = parser.parse_args()
    info = machine_info()
    rows, rss_curve = [], {}
    with tempfile.TemporaryDirectory(prefix="edgevid-bench-live-") as tmp:
        work = Path(tmp)
        video = synthetic_video(work / "camera30.mp4", int(args.seconds * FPS))
        console.print("exporting tiny3d and x3d_xs to OpenVINO ...")
        tiny = export(checkpoint("tiny3d", work, width=8), "openvino", out=work / "tiny3d.xml",
                      threads=args.threads).path
        x3d = export(checkpoint("x3d_xs", work), "openvino", out=work / "x3d_xs.xml", threads=args.threads).path
        r2plus1d = checkpoint("r2plus1d_18", work)
        realtime = LiveOptions(realtime=True, threads=args.threads)
        rows.append(live_row("fast", tiny, video, realtime))
        rows.append(live_row("edge", x3d, video, realtime))
        rows.append(live_row("slow", r2plus1d, video, realtime))
        frames = render_video(SynthConfig().class_names[1], np.random.default_rng(1), 300, FRAME_SIZE)
        looping = LoopingFrames(frames, args.memory_frames)
        memory = live_row("memory", x3d, looping, LiveOptions(every=2, threads=args.threads))
        rss_curve = dict(sorted(looping.rss.items()))
        start = max(k for k in rss_curve if k <= 500)
        memory["rss_at_500"], memory["rss_at_end"] = rss_curve[start], rss_curve[max(rss_curve)]
        memory["rss_growth_500_to_end"] = memory["rss_at_end"] - memory["rss_at_500"]
        memory["check"] = "pass" if memory["rss_growth_500_to_end"] < 10.0 else "FAIL: RSS grew >= 10 MB"
        rows.append(memory)
    load_end = [round(v, 2) for v in os.getloadavg()]
    columns = ["case", "model", "backend", "captured", "processed", "dropped", "predictions", "fps_inference",
               "model_p50", "model_p95", "e2e_p50", "e2e_p95", "e2e_minus_model_p50", "e2e_minus_model_p95", "check"]
    notes = (
        f"Shared 2-core machine (load average at start {info.get('load_avg_1_5_15')}, at end {load_end}: other "
        "jobs may have run too); absolute latencies are noisy, the comparisons "
        "(e2e vs model in the same run, drops vs queueing) are what this measures. Backends ran with "
        f"{args.threads} thread(s): the loop also needs a core for capture and decoding.\n\n"
        f"Source: synthetic {FRAME_SIZE}x{FRAME_SIZE} video at {FPS:g} fps, played with --realtime (fast/slow) or "
        "unpaced with every frame processed (memory). Latencies in ms; e2e = capture timestamp of the newest "
        "frame of the window -> label available. Memory run: RSS (MB) sampled every "
        f"{RSS_EVERY} frames: " + ", ".join(f"{k}: {v:.1f}" for k, v in rss_curve.items())
        + f". RSS growth frame 500 -> {max(rss_curve)}: {rows[-1]['rss_growth_500_to_end']:.2f} MB."
    )
    info["load_avg_end"] = load_end
    json_path, md_path = write_results("live", rows, info, notes=notes, columns=columns)
    plot_rss(rss_curve, results_dir("live") / "live_rss.png")
    console.print(make_table(rows, columns, title="edgevid live benchmark",
                             formats={c: ".1f" for c in columns if c.startswith(("model_", "e2e", "fps"))}))
    console.print(f"wrote {json_path}, {md_path}")


def plot_rss(curve: dict[int, float], path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(6, 3.2))
    ax.plot(list(curve), list(curve.values()), marker="o", markersize=3)
    ax.set_xlabel("frame")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("edgevid live: RSS over a long run")
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
