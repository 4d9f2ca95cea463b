"""Web view cost benchmark: end-to-end latency of ``edgevid live --serve`` with and without a page viewer attached.

One ``run_live`` per model on a synthetic camera (240x240 at 30 fps, paced like a real camera, newest-frame
capture) with the web view on 127.0.0.1. A viewer thread does what an open page does, alternating in phases of
``--phase`` seconds: attached (reads the MJPEG stream of the annotated video as fast as the server sends it and
polls ``/status`` twice a second) and detached (nothing). Every prediction's end-to-end latency (capture timestamp
of the newest frame -> label) is tagged with the phase it fell in, so both conditions share the same run, model
warm-up and machine load. The check: p95 with the viewer attached is at most 1 ms above p95 without.

Models (random weights: latency does not depend on them): tiny3d (width 8, 8x112) and X3D-XS (4x160), both
OpenVINO FP32 with ``--threads`` threads. Results go to ``benchmarks/results/<machine>/live_serve.{json,md}``.
Usage::

    .venv/bin/python -m benchmarks.bench_live_serve [--seconds 40] [--phase 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.bench_live import FPS, FRAME_SIZE, checkpoint
from benchmarks.common import machine_info, write_results
from edgevid.data.synth import SynthConfig, render_video
from edgevid.export import export
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.runtime.sources import Source
from edgevid.utils.console import console, make_table


class PacedCamera(Source):
    """Pre-rendered frames looped at ``fps`` like a camera (a new array per frame), for ``seconds``."""

    live = True

    def __init__(self, frames: np.ndarray, fps: float, seconds: float) -> None:
        self.name = f"synthetic camera {FRAME_SIZE}x{FRAME_SIZE}@{fps:g}"
        self.fps = fps
        self.frames = np.ascontiguousarray(frames[..., ::-1])
        self.total = int(seconds * fps)
        self.count = 0
        self.start: float | None = None

    def read(self) -> np.ndarray | None:
        if self.count >= self.total:
            return None
        self.start = self.start or time.perf_counter()
        delay = self.start + self.count / self.fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        frame = self.frames[self.count % len(self.frames)].copy()
        self.count += 1
        return frame


class Viewer:
    """An open page, switched on and off in phases: MJPEG reader + /status poller. Records the phase timeline."""

    def __init__(self, port: int, phase_s: float) -> None:
        self.port = port
        self.phase_s = phase_s
        self.phases: list[tuple[float, float, bool]] = []
        self.jpegs = 0
        self.status_polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _attached(self, until: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/stream.mjpg?stream=0")
        response = conn.getresponse()
        next_poll = 0.0
        try:
            while time.perf_counter() < until and not self.stop.is_set():
                line = response.readline()
                if line.lower().startswith(b"content-length:"):
                    response.readline()
                    response.read(int(line.split(b":")[1]))
                    self.jpegs += 1
                if time.perf_counter() >= next_poll:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as r:
                        r.read()
                    self.status_polls += 1
                    next_poll = time.perf_counter() + 0.5
        finally:
            conn.close()

    def _run(self) -> None:
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:  # wait for the server
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        attached = False
        while not self.stop.is_set():
            start = time.perf_counter()
            until = start + self.phase_s
            try:
                if attached:
                    self._attached(until)
                else:
                    self.stop.wait(self.phase_s)
            except OSError:  # the run ended while attached
                break
            self.phases.append((start, time.perf_counter(), attached))
            attached = not attached

    def attached_at(self, t: float) -> bool | None:
        for start, end, attached in self.phases:
            if start <= t < end:
                return attached
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(name: str, artifact: Path, frames: np.ndarray, args) -> dict:
    port = _free_port()
    samples: list[tuple[float, float]] = []
    viewer = Viewer(port, args.phase)
    options = LiveOptions(serve=f"127.0.0.1:{port}", threads=args.threads, serve_fps=args.serve_fps)
    viewer.thread.start()
    report = run_live(artifact, PacedCamera(frames, FPS, args.seconds), options,
                      on_label=lambda stream, label, e2e_ms: samples.append((time.perf_counter(), e2e_ms)))
    viewer.stop.set()
    viewer.thread.join(10)
    on = np.array([ms for t, ms in samples if viewer.attached_at(t) is True])
    off = np.array([ms for t, ms in samples if viewer.attached_at(t) is False])
    p = {k: np.percentile(v, [50, 95]) if len(v) else [np.nan, np.nan] for k, v in (("on", on), ("off", off))}
    row = {
        "model": name, "backend": report.backend, "frames": report.frames_captured,
        "dropped": report.frames_dropped, "predictions_off": len(off), "predictions_on": len(on),
        "model_p50": report.latency_ms["model"]["p50"], "e2e_p50_off": p["off"][0], "e2e_p50_on": p["on"][0],
        "e2e_p95_off": p["off"][1], "e2e_p95_on": p["on"][1], "p95_delta_ms": p["on"][1] - p["off"][1],
        "jpeg_received": viewer.jpegs, "jpeg_encoded": report.serve["jpeg_encoded"][0],
        "jpeg_skipped": report.serve["jpeg_skipped_by_slow_viewers"][0], "status_polls": viewer.status_polls,
        "phases": len(viewer.phases),
    }
    row["check"] = "pass" if row["p95_delta_ms"] <= 1.0 else "FAIL: p95 rose > 1 ms with a viewer"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="Length of each run.")
    parser.add_argument("--phase", type=float, default=2.0, help="Seconds per viewer-attached/detached phase.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the backend.")
    parser.add_argument("--serve-fps", type=float, default=15.0, help="Web view encode rate (frames/s).")
    args = parser.parse_args()
    info = machine_info()
    frames = render_video(SynthConfig().class_names[0], np.random.default_rng(0), 300, FRAME_SIZE)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevid-bench-serve-") as tmp:
        work = Path(tmp)
        console.print("exporting tiny3d and x3d_xs to OpenVINO ...")
        models = {
            "tiny3d": export(checkpoint("tiny3d", work, width=8), "openvino", out=work / "tiny3d.xml",
                             threads=args.threads).path,
            "x3d_xs": export(checkpoint("x3d_xs", work), "openvino", out=work / "x3d_xs.xml",
                             threads=args.threads).path,
        }
        for name, artifact in models.items():
            rows.append(measure(name, artifact, frames, args))
            console.print(rows[-1])
    load_end = [round(v, 2) for v in os.getloadavg()]
    info["load_avg_end"] = load_end
    columns = ["model", "backend", "frames", "dropped", "predictions_off", "predictions_on", "model_p50",
               "e2e_p50_off", "e2e_p50_on", "e2e_p95_off", "e2e_p95_on", "p95_delta_ms", "jpeg_received",
               "jpeg_skipped", "check"]
    notes = (
        f"One run per model, {args.seconds:g} s of a synthetic {FRAME_SIZE}x{FRAME_SIZE} camera at {FPS:g} fps "
        f"(newest-frame capture), web view on 127.0.0.1 encoding at most {args.serve_fps:g} JPEG/s. A viewer "
        f"alternates {args.phase:g} s attached (MJPEG stream read as fast as it comes + /status twice a second, "
        "what the open page does) and detached; each prediction's end-to-end latency (capture of the newest frame "
        "-> label, ms) is counted in the phase it fell in. Check: e2e p95 with the viewer at most 1 ms above p95 "
        f"without. OpenVINO FP32 with {args.threads} thread(s), random weights. Shared 2-core machine: load "
        f"average at start {info.get('load_avg_1_5_15')}, at end {load_end}."
    )
    json_path, md_path = write_results("live_serve", rows, info, notes=notes, columns=columns)
    console.print(make_table(rows, columns, title="edgevid live --serve: latency with and without a viewer",
                             formats={c: ".2f" for c in columns if c.startswith(("model_", "e2e", "p95"))}))
    console.print(f"wrote {json_path}, {md_path}")


if __name__ == "__main__":
    main()
