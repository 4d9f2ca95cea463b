"""The real-time loop: newest-frame capture, a sliding temporal buffer (or streaming steps), labels, report.

``run_live(model, source, options) -> LiveReport`` is the Python API behind ``edgevid live``. The capture thread
keeps only the newest frame (:mod:`edgevid.runtime.sources`); each frame is preprocessed once into the ring buffer
(:mod:`edgevid.runtime.buffer`) and the model runs on the newest window every K frames; with ``streaming`` each
sampled frame is one step of a streaming model (:mod:`edgevid.runtime.streaming`). Latency and memory are measured
throughout (:mod:`edgevid.runtime.metrics`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.runtime.base import Predictor
from edgevid.runtime.buffer import EveryK, FrameRing, source_stride
from edgevid.runtime.metrics import LatencyStats, LiveReport, MemoryMonitor, log_line
from edgevid.runtime.sources import Frame, LatestFrameGrabber, Source, open_source
from edgevid.utils.atomic import atomic_path

SMOOTHING = ("ema", "vote", "none")
NO_ACTION = "no action"
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
QUIT_KEYS = (ord("q"), ord("Q"), 27)


@dataclass
class LiveOptions:
    """Options of :func:`run_live` (the ``edgevid live`` flags)."""

    realtime: bool = False
    every: int = 1
    topk: int = 3
    smooth: str = "ema"
    alpha: float = 0.5
    votes: int = 3
    threshold: float = 0.0
    show: bool = False
    output: str | None = None
    max_frames: int | None = None
    duration: float | None = None
    report: str | None = None
    log_every: float | None = None
    streaming: bool = False
    horizon: int | None = None
    warmup: int = 2
    device: str = "cpu"
    threads: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    stall_timeout: float = 10.0
    reconnect_attempts: int = 5
    open_timeout: float = 5.0

    def validate(self) -> None:
        if self.every < 1:
            raise EdgevidError(f"--every must be >= 1, got {self.every}")
        if self.streaming and self.every != 1:
            raise EdgevidError("--every does not apply to --streaming (the model steps on every sampled frame)")
        if self.topk < 1:
            raise EdgevidError(f"--topk must be >= 1, got {self.topk}")
        if self.smooth not in SMOOTHING:
            raise EdgevidError(f"--smooth must be one of {', '.join(SMOOTHING)}, got {self.smooth!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise EdgevidError(f"--alpha must be in (0, 1], got {self.alpha}")
        if self.votes < 1:
            raise EdgevidError(f"--votes must be >= 1, got {self.votes}")
        if not 0.0 <= self.threshold <= 1.0:
            raise EdgevidError(f"--threshold is a probability in [0, 1], got {self.threshold}")
        if self.horizon is not None and self.horizon < 0:
            raise EdgevidError(f"--horizon must be >= 0 (0: average over the whole stream), got {self.horizon}")
        for name in ("max_frames", "duration", "log_every", "stall_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise EdgevidError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.output and Path(self.output).suffix.lower() not in VIDEO_FOURCC:
            raise EdgevidError(f"--output {self.output}: expected a video file ({', '.join(VIDEO_FOURCC)})")


# ------------------------------------------------------------------------------------------ scores and labels
def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    exp = np.exp(shifted)
    return exp / exp.sum()


def clip_probabilities(output: np.ndarray, head: str) -> np.ndarray:
    """Class probabilities [C] of the newest moment from a model output of the artifact's head kind.

    clip [1, C]; frame [1, C, T'] -> the last time step; dense [1, C, T', H', W'] -> spatial mean at the last step.
    """
    output = np.asarray(output, dtype=np.float64)
    if head == "frame":
        output = output[..., -1]
    elif head == "dense":
        output = output.mean(axis=(-2, -1))[..., -1]
    elif head == "features":
        raise EdgevidError("live needs a classifier head (clip, frame or dense); this artifact outputs features")
    return softmax(output.reshape(-1))


class EmaSmoother:
    """Exponential moving average of the probabilities: ``p = alpha * new + (1 - alpha) * p``."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.probs: np.ndarray | None = None

    def update(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        self.probs = probs if self.probs is None else self.alpha * probs + (1 - self.alpha) * self.probs
        return self.probs, int(self.probs.argmax())


class VoteSmoother:
    """Hysteresis: the shown label switches only after another label wins ``votes`` consecutive windows."""

    def __init__(self, votes: int) -> None:
        self.votes = votes
        self.label: int | None = None
        self.candidate: int | None = None
        self.streak = 0

    def update(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        winner = int(probs.argmax())
        if self.label is None or winner == self.label:
            self.label, self.candidate, self.streak = winner, None, 0
        elif winner == self.candidate:
            self.streak += 1
        else:
            self.candidate, self.streak = winner, 1
        if self.candidate is not None and self.streak >= self.votes:
            self.label, self.candidate, self.streak = winner, None, 0
        return probs, self.label


class NoSmoother:
    def update(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        return probs, int(probs.argmax())


def make_smoother(options: LiveOptions) -> EmaSmoother | VoteSmoother | NoSmoother:
    if options.smooth == "ema":
        return EmaSmoother(options.alpha)
    if options.smooth == "vote":
        return VoteSmoother(options.votes)
    return NoSmoother()


@dataclass
class Label:
    """What is shown for a window: the label (or "no action" below the threshold) and the top-k."""

    label: str
    score: float
    topk: list[tuple[str, float]]

    def to_list(self) -> list[dict[str, Any]]:
        return [{"label": name, "score": score} for name, score in self.topk]


def make_label(probs: np.ndarray, index: int, classes: list[str], topk: int, threshold: float) -> Label:
    order = np.argsort(probs)[::-1][:topk]
    score = float(probs[index])
    name = classes[index] if score >= threshold else NO_ACTION
    return Label(name, score, [(classes[i], float(probs[i])) for i in order])


# ----------------------------------------------------------------------------------------- model runners
@dataclass
class Inference:
    probs: np.ndarray
    model_ms: float
    timestamp: float


class ClipRunner:
    """Sliding window: each frame preprocessed once into the ring, the model on the newest window every K frames."""

    mode = "clip"

    def __init__(self, predictor: Predictor, stride: int, every: int) -> None:
        meta = predictor.meta
        self.predictor = predictor
        self.ring = FrameRing(meta.frames, stride, (3, meta.size, meta.size))
        self.schedule = EveryK(every)

    def push(self, frame: Frame, rgb: np.ndarray) -> Inference | None:
        self.ring.push(frame.index, frame.timestamp, self.predictor.preprocess(rgb[None]))
        if not self.schedule.due(self.ring.ready):
            return None
        clip, _ = self.ring.window()
        start = time.perf_counter()
        output = self.predictor.predict(clip)
        model_ms = (time.perf_counter() - start) * 1e3
        return Inference(clip_probabilities(output, self.predictor.meta.head), model_ms, frame.timestamp)


class StreamRunner:
    """Streaming: every ``stride``-th source frame is one model step; the label updates at every step."""

    mode = "streaming"

    def __init__(self, streamer, stride: int) -> None:
        self.streamer = streamer
        self.stride = stride
        self.last: int | None = None

    def push(self, frame: Frame, rgb: np.ndarray) -> Inference | None:
        if self.last is not None and frame.index - self.last < self.stride:
            return None
        self.last = frame.index
        step_input = self.streamer.preprocess(rgb[None])
        start = time.perf_counter()
        logits = self.streamer.step(step_input)
        model_ms = (time.perf_counter() - start) * 1e3
        return Inference(clip_probabilities(logits, "clip"), model_ms, frame.timestamp)


# ----------------------------------------------------------------------------------------- drawing, output
def annotate(bgr: np.ndarray, label: Label | None, fps: float | None, model_ms: float | None,
             e2e_ms: float | None) -> np.ndarray:
    """A copy of the frame with the label, top-k scores, FPS and latency drawn in the top-left corner."""
    out = bgr.copy()
    lines = []
    if label is not None:
        lines.append((f"{label.label}  {label.score:.2f}", (60, 255, 60) if label.label != NO_ACTION else
                      (200, 200, 200)))
        lines += [(f"{i + 1}. {name} {score:.2f}", (255, 255, 255)) for i, (name, score) in enumerate(label.topk)]
    stats = [f"{fps:.1f} fps" if fps else None, f"model {model_ms:.0f} ms" if model_ms is not None else None,
             f"e2e {e2e_ms:.0f} ms" if e2e_ms is not None else None]
    lines.append((" | ".join(s for s in stats if s) or "warming up", (0, 220, 255)))
    scale = max(0.4, min(out.shape[0], out.shape[1]) / 600)
    line_h = int(24 * scale) + 4
    box_w = int(max(len(text) for text, _ in lines) * 11 * scale) + 12
    region = out[: line_h * len(lines) + 8, :box_w]
    region[:] = (region * 0.4).astype(np.uint8)
    for i, (text, color) in enumerate(lines):
        cv2.putText(out, text, (6, (i + 1) * line_h), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color,
                    max(1, round(scale)), cv2.LINE_AA)
    return out


class VideoSink:
    """Annotated frames to a video file, written atomically (nothing under the final name until the run ends).

    Opened at the first frame (its size fixes the video size); a run without frames writes no file. Written at
    the source's fps; frames dropped by a slow model are filled with the next shown frame, so the video lasts
    as long as the run.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self._writer = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)

    def write(self, bgr: np.ndarray, repeat: int = 1) -> None:
        """Append a frame ``repeat`` times (a frame standing in for dropped ones keeps the video's timing)."""
        if self._writer is None:
            tmp = self._stack.enter_context(atomic_path(self.path, suffix=self.path.suffix))
            self.size = (bgr.shape[1], bgr.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(tmp), fourcc, self.fps, self.size)
            self._stack.callback(self._writer.release)
            if not self._writer.isOpened():
                raise EdgevidError(f"--output {self.path}: OpenCV cannot write this video format here")
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            bgr = cv2.resize(bgr, self.size)
        for _ in range(max(repeat, 1)):
            self._writer.write(bgr)
        self.frames += max(repeat, 1)


GUI_HELP = ("--show needs OpenCV with GUI support, but this OpenCV build has none (opencv-python-headless); "
            "install it with `pip uninstall -y opencv-python-headless && pip install opencv-python`, "
            "or use --output out.mp4 to write the annotated video instead")


class Display:
    """An OpenCV window; ``q``/``Esc`` or closing the window asks the loop to stop."""

    def __init__(self, title: str) -> None:
        self.title = title
        if "GUI:" in (info := cv2.getBuildInformation()) and "NONE" in info.split("GUI:", 1)[1].splitlines()[0]:
            raise EdgevidError(GUI_HELP)
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise EdgevidError("--show: no display (DISPLAY/WAYLAND_DISPLAY unset); use --output out.mp4 to write "
                               "the annotated video instead")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise EdgevidError(GUI_HELP) from None

    def show(self, bgr: np.ndarray) -> None:
        cv2.imshow(self.title, bgr)

    def wants_quit(self) -> bool:
        key = cv2.waitKey(1) & 0xFF
        return key in QUIT_KEYS or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)


# ------------------------------------------------------------------------------------------------- the loop
@contextlib.contextmanager
def _quiet_opencv():
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_model(model: str | Path | Predictor, options: LiveOptions):
    """A Predictor (sliding window) or a StreamingPredictor (``--streaming`` or a streaming export)."""
    if not isinstance(model, (str, Path)):
        return model
    from edgevid.meta import read_meta

    checkpoint = Path(model).is_dir() or Path(model).suffix.lower() in (".pt", ".pth", ".ckpt")
    if options.streaming or (not checkpoint and read_meta(model).streaming):
        from edgevid.runtime.streaming import load_streaming

        return load_streaming(model, device=options.device, threads=options.threads)
    from edgevid.runtime import load

    return load(model, device=options.device, threads=options.threads)


class LiveLoop:
    """One live run: takes the newest frame, runs the model when due, draws, writes, logs, and measures."""

    def __init__(self, model, source: Source, options: LiveOptions, display: Display | None) -> None:
        self.model = model
        self.meta: ArtifactMeta = model.meta
        self.source = source
        self.options = options
        self.display = display
        self.stride = source_stride(self.meta.sampling_stride, self.meta.fps, source.fps)
        if hasattr(model, "step"):
            model.reset()
            self.runner: ClipRunner | StreamRunner = StreamRunner(model, self.stride)
        else:
            self.runner = ClipRunner(model, self.stride, options.every)
        self.smoother = make_smoother(options)
        self.model_latency, self.e2e_latency = LatencyStats(), LatencyStats()
        self.memory = MemoryMonitor(options.device, torch_allocator=getattr(model, "backend", "") == "torch")
        self.drop = source.live or options.realtime
        self.grabber = LatestFrameGrabber(
            source, drop=self.drop, pace_fps=source.fps if options.realtime and not source.live else None,
            max_frames=options.max_frames, reconnect_attempts=options.reconnect_attempts)
        self.processed = self.predictions = 0
        self.label: Label | None = None
        self.last_model_ms: float | None = None
        self.last_e2e_ms: float | None = None
        self.last_written = -1
        self.start = self.last_log = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self) -> str:
        """Loop until the source ends, a limit is reached or the user stops; returns why it stopped."""
        options = self.options
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(VideoSink(options.output, self.source.fps)) if options.output else None
            stack.enter_context(self.grabber)
            self.start = self.last_log = waiting_since = time.perf_counter()
            try:
                while True:
                    if options.duration is not None and self.elapsed() >= options.duration:
                        return "duration"
                    if self.display is not None and self.display.wants_quit():
                        return "user quit"
                    frame = self.grabber.get(timeout=0.05)
                    if frame is None:
                        if self.grabber.finished:
                            return self.grabber.end_reason or "end of source"
                        if time.perf_counter() - waiting_since > options.stall_timeout:
                            return f"source stalled (no frame for {options.stall_timeout:g} s)"
                        continue
                    waiting_since = time.perf_counter()
                    self.process(frame, sink)
                    if options.log_every and time.perf_counter() - self.last_log >= options.log_every:
                        self.log()
            except KeyboardInterrupt:
                return "interrupted"

    def process(self, frame: Frame, sink: VideoSink | None) -> None:
        self.processed += 1
        result = self.runner.push(frame, cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2RGB))
        if result is not None:
            probs, index = self.smoother.update(result.probs)
            self.label = make_label(probs, index, self.meta.classes, self.options.topk, self.options.threshold)
            self.last_e2e_ms = (time.perf_counter() - result.timestamp) * 1e3
            self.last_model_ms = result.model_ms
            self.model_latency.add(result.model_ms)
            self.e2e_latency.add(self.last_e2e_ms)
            self.predictions += 1
        self.memory.sample()
        if sink is None and self.display is None:
            return
        elapsed = self.elapsed()
        shown = annotate(frame.bgr, self.label, self.processed / elapsed if elapsed > 0 else None,
                         self.last_model_ms, self.last_e2e_ms)
        if sink is not None:
            sink.write(shown, repeat=frame.index - self.last_written)
            self.last_written = frame.index
        if self.display is not None:
            self.display.show(shown)

    def rates(self, elapsed: float) -> dict[str, float | None]:
        """Frames per second captured (between the first and last capture), processed and inferred."""
        grabber, capture = self.grabber, None
        if grabber.captured > 1 and grabber.last_capture and grabber.first_capture:
            span = grabber.last_capture - grabber.first_capture
            capture = (grabber.captured - 1) / span if span > 0 else None
        return {"capture": capture,
                "processed": self.processed / elapsed if elapsed > 0 else None,
                "inference": self.predictions / elapsed if elapsed > 0 else None}

    def log(self) -> None:
        from edgevid.utils.console import console

        self.last_log = time.perf_counter()
        elapsed = self.last_log - self.start
        console.print(log_line(elapsed, self.grabber.captured, self.processed, self.grabber.dropped,
                               self.predictions, self.rates(elapsed), self.model_latency.summary(),
                               self.e2e_latency.summary(), self.memory.rss_end), highlight=False)

    def report(self, stop_reason: str) -> LiveReport:
        elapsed = self.elapsed()
        self.memory.sample(force=True)
        return LiveReport(
            model=self.meta.model, backend=getattr(self.model, "backend", "unknown"), precision=self.meta.precision,
            source=self.source.name, mode=self.runner.mode, frames_captured=self.grabber.captured,
            frames_processed=self.processed, frames_dropped=self.grabber.dropped, predictions=self.predictions,
            duration_s=elapsed, fps=self.rates(elapsed),
            latency_ms={"model": self.model_latency.summary(), "end_to_end": self.e2e_latency.summary()},
            memory_mb=self.memory.summary(), stop_reason=stop_reason,
            last_prediction=self.label.to_list() if self.label else [],
            options={**asdict(self.options), "source_fps": self.source.fps, "source_stride": self.stride,
                     "drop_frames": self.drop},
        )


def run_live(model: str | Path | Predictor, source: str | int | Path | Source,
             options: LiveOptions | None = None) -> LiveReport:
    """Run a model on a camera, file, URL or image folder in real time; returns (and optionally writes) the report.

    ``model`` is an artifact path (any backend), a loaded Predictor or a StreamingPredictor; ``source`` a camera
    index, a path, a URL or an opened :class:`Source`. The report is written even when the run is interrupted.
    """
    options = options or LiveOptions()
    options.validate()
    loaded = open_model(model, options)
    if options.streaming and not hasattr(loaded, "step"):
        raise EdgevidError(f"{model}: --streaming needs a streaming predictor (a checkpoint or a streaming export)")
    if hasattr(loaded, "step"):
        horizon = loaded.meta.frames if options.horizon is None else options.horizon
        loaded.horizon = horizon or None
    if options.warmup:
        loaded.warmup(options.warmup)
    display = Display(f"edgevid live: {loaded.meta.model}") if options.show else None
    try:
        if not isinstance(source, Source):
            with _quiet_opencv():
                source = open_source(source, width=options.width, height=options.height, fps=options.fps,
                                     timeout_s=options.open_timeout)
        loop = LiveLoop(loaded, source, options, display)
        report = loop.report(loop.run())
    finally:
        if display is not None:
            display.close()
    if options.report:
        report.write(options.report)
    return report
