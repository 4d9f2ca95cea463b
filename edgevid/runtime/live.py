"""The real-time loop: newest-frame capture, a sliding temporal buffer (or streaming steps), labels, report.

``run_live(model, source, options) -> LiveReport`` is the Python API behind ``edgevid live``. The capture thread
keeps only the newest frame (:mod:`edgevid.runtime.sources`); each frame is preprocessed once into the ring buffer
(:mod:`edgevid.runtime.buffer`) and the model runs on the newest window every K frames; with ``streaming`` each
sampled frame is one step of a streaming model (:mod:`edgevid.runtime.streaming`). Latency and memory are measured
throughout (:mod:`edgevid.runtime.metrics`).

Several sources share one model: each stream has its own capture thread (one slot each), ring buffer, smoothing,
labels and report section, and the windows of the streams that are due in the same pass of the loop go through the
model as one batch (as DeepStream's sequence preprocessing batches ready sequences across streams). Around the loop,
without touching its timing: the web view (:mod:`edgevid.runtime.serve`) and the events for other programs
(:mod:`edgevid.runtime.events`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.runtime.base import Predictor, load
from edgevid.runtime.buffer import EveryK, FrameRing, window_stride
from edgevid.runtime.events import EventHub
from edgevid.runtime.metrics import LatencyStats, LiveReport, MemoryMonitor, log_line
from edgevid.runtime.serve import FrameHub, LiveServer, parse_bind
from edgevid.runtime.sources import Frame, LatestFrameGrabber, Source, open_source
from edgevid.runtime.streaming import load_streaming
from edgevid.utils.atomic import atomic_path
from edgevid.utils.console import console, err_console
from edgevid.utils.machine import cpu_features

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
    precision: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    stall_timeout: float = 10.0
    reconnect_attempts: int = 5
    open_timeout: float = 5.0
    serve: str | None = None
    token: str | None = None
    serve_fps: float = 15.0
    events: str | None = None
    events_every: float = 10.0
    webhook: str | None = None
    webhook_queue: int = 64
    webhook_timeout: float = 2.0

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
        for name in ("events_every", "serve_fps", "webhook_timeout"):
            if getattr(self, name) <= 0:
                raise EdgevidError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.webhook_queue < 1:
            raise EdgevidError(f"--webhook-queue must be >= 1, got {self.webhook_queue}")
        if self.serve is not None:
            parse_bind(self.serve)
        elif self.token:
            raise EdgevidError("--token protects the web view: it goes with --serve [HOST:]PORT")
        if self.webhook and not self.webhook.lower().startswith(("http://", "https://")):
            raise EdgevidError(f"--webhook {self.webhook}: expected an http:// or https:// URL")

    def public(self) -> dict[str, Any]:
        """The options as stored in the report (the access token is never written out)."""
        data = asdict(self)
        if data.get("token"):
            data["token"] = "<set>"
        return data


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

    def __init__(self, predictor: Predictor, stride: float, every: int) -> None:
        meta = predictor.meta
        self.predictor = predictor
        self.ring = FrameRing(meta.frames, stride, (3, meta.size, meta.size))
        self.schedule = EveryK(every)

    def add(self, frame: Frame, rgb: np.ndarray) -> np.ndarray | None:
        """Preprocess the frame into the ring; the clip [1, 3, T, S, S] of the newest window when the model is due."""
        self.ring.push(frame.index, frame.timestamp, self.predictor.preprocess(rgb[None]))
        if not self.schedule.due(self.ring.ready):
            return None
        return self.ring.window()[0]

    def push(self, frame: Frame, rgb: np.ndarray) -> Inference | None:
        clip = self.add(frame, rgb)
        if clip is None:
            return None
        start = time.perf_counter()
        output = self.predictor.predict(clip)
        model_ms = (time.perf_counter() - start) * 1e3
        return Inference(clip_probabilities(output, self.predictor.meta.head), model_ms, frame.timestamp)


class StreamRunner:
    """Streaming: every ``stride``-th source frame is one model step; the label updates at every step."""

    mode = "streaming"

    def __init__(self, streamer, stride: float) -> None:
        self.streamer = streamer
        self.stride = stride
        self.last: int | None = None

    def add(self, frame: Frame, rgb: np.ndarray) -> np.ndarray | None:
        """The preprocessed step input when this frame is a model step, else None."""
        if self.last is not None and frame.index - self.last < self.stride:
            return None
        self.last = frame.index
        return self.streamer.preprocess(rgb[None])

    def push(self, frame: Frame, rgb: np.ndarray) -> Inference | None:
        step_input = self.add(frame, rgb)
        if step_input is None:
            return None
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
    if options.streaming:
        return load_streaming(model, device=options.device, threads=options.threads, precision=options.precision)
    return load(model, device=options.device, threads=options.threads, precision=options.precision)


def stream_output(path: str, index: int, streams: int) -> str:
    """``--output out.mp4`` for stream ``index``: itself with one source, ``out.<index>.mp4`` with several."""
    if streams == 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}.{index}{p.suffix}"))


class StreamState:
    """One source of a live run: its capture thread, temporal buffer, smoothing, label, output and figures."""

    def __init__(self, index: int, model, source: Source, options: LiveOptions, notify: threading.Event) -> None:
        meta: ArtifactMeta = model.meta
        self.index = index
        self.source = source
        # the window spans the training clip's seconds at the stream's own rate; a source that does not say its
        # rate is taken to run at the training rate (the frame stride the model was trained with)
        self.window_fps = source.fps if source.fps_reported else meta.fps
        self.fps_note = None if source.fps_reported else (
            f"{source.name}: the source does not report its frame rate; windows assume the model's {meta.fps:g} fps "
            "(pass --fps to state the source's rate)")
        self.stride = window_stride(meta.frames, meta.sampling_stride, meta.fps, self.window_fps, meta.clip_seconds)
        self.window_seconds = meta.frames * self.stride / self.window_fps  # PyTorchVideo's clip_seconds convention
        if model.streaming:
            model.reset()
            self.runner: ClipRunner | StreamRunner = StreamRunner(model, self.stride)
        else:
            self.runner = ClipRunner(model, self.stride, options.every)
        self.smoother = make_smoother(options)
        self.e2e_latency = LatencyStats()
        self.drop = source.live or options.realtime
        self.grabber = LatestFrameGrabber(
            source, drop=self.drop, pace_fps=source.fps if options.realtime and not source.live else None,
            max_frames=options.max_frames, reconnect_attempts=options.reconnect_attempts, notify=notify)
        self.processed = self.predictions = 0
        self.last_taken: float | None = None
        self.label: Label | None = None
        self.last_model_ms: float | None = None
        self.last_e2e_ms: float | None = None
        self.last_written = -1
        self.waiting_since = time.perf_counter()
        self.stop_reason: str | None = None
        self.failed = False
        self.output: str | None = None
        self.sink: VideoSink | None = None
        self.display: Display | None = None

    def end(self, reason: str, failed: bool) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.failed = reason, failed

    def rates(self, elapsed: float) -> dict[str, float | None]:
        """Frames per second captured and processed, and model calls per second.

        Captured and processed rates count the same way, intervals between frames from the first capture: (captured
        - 1) over first to last capture, (processed - 1) over first capture to the last frame taken. A frame is
        taken after it is captured, so the processed rate of the same frames cannot read above the captured one
        (counting frames over the whole run's time, as before, gave one more frame to the processed rate).
        """
        grabber, capture, processed = self.grabber, None, None
        if grabber.captured > 1 and grabber.last_capture and grabber.first_capture:
            span = grabber.last_capture - grabber.first_capture
            capture = (grabber.captured - 1) / span if span > 0 else None
        if self.processed > 1 and grabber.first_capture and self.last_taken:
            span = self.last_taken - grabber.first_capture
            processed = (self.processed - 1) / span if span > 0 else None
        return {"capture": capture, "processed": processed,
                "inference": self.predictions / elapsed if elapsed > 0 else None}

    def counts(self) -> dict[str, int]:
        return {"captured": self.grabber.captured, "processed": self.processed, "dropped": self.grabber.dropped,
                "predictions": self.predictions}

    def status(self, elapsed: float) -> dict[str, Any]:
        """This stream's state for ``/status`` and the metrics (read from the web server's threads)."""
        label = self.label
        return {"stream": self.index, "source": self.source.name, "frames": self.counts(),
                "predictions": self.predictions, "reconnects": self.grabber.reconnects, "fps": self.rates(elapsed),
                "latency_ms": self.e2e_latency.summary(), "label": label.label if label else None,
                "score": label.score if label else None, "topk": label.to_list() if label else [],
                "done": self.stop_reason is not None, "stop_reason": self.stop_reason}

    def section(self, elapsed: float) -> dict[str, Any]:
        """This stream's section of the report."""
        return {"stream": self.index, "source": self.source.name, "frames_captured": self.grabber.captured,
                "frames_processed": self.processed, "frames_dropped": self.grabber.dropped,
                "predictions": self.predictions, "reconnects": self.grabber.reconnects, "fps": self.rates(elapsed),
                "latency_ms": {"end_to_end": self.e2e_latency.summary()},
                "stop_reason": self.stop_reason or "stopped", "failed": self.failed,
                "last_prediction": self.label.to_list() if self.label else [], "source_fps": self.source.fps,
                **self.window(), "drop_frames": self.drop, "output": self.output}

    def window(self) -> dict[str, Any]:
        """The effective sampling of this stream: stride in source frames, the rate it assumed and the seconds."""
        return {"source_stride": round(self.stride, 4), "window_fps": self.window_fps,
                "fps_reported": self.source.fps_reported, "window_seconds": round(self.window_seconds, 4)}


class LiveLoop:
    """One live run over one or more streams: takes each stream's newest frame, runs the model on the windows that
    are due (batched across streams), draws, writes, publishes, logs, and measures."""

    def __init__(self, model, sources: list[Source], options: LiveOptions, displays: list[Display] | None = None,
                 hub=None, events=None, on_label: Callable | None = None) -> None:
        self.model = model
        self.meta: ArtifactMeta = model.meta
        self.execution: str = model.execution  # what the backend computes in, read back once
        self.options = options
        self.streaming = model.streaming
        self.notify = threading.Event()
        self.streams = [StreamState(i, model, source, options, self.notify) for i, source in enumerate(sources)]
        for stream, display in zip(self.streams, displays or [], strict=False):
            stream.display = display
        if options.output:
            for stream in self.streams:
                stream.output = stream_output(options.output, stream.index, len(self.streams))
        self.hub = hub
        self.events = events
        self.on_label = on_label
        self.model_latency, self.e2e_latency = LatencyStats(), LatencyStats()
        self.memory = MemoryMonitor(options.device, torch_allocator=getattr(model, "backend", "") == "torch")
        self.batches: Counter[int] = Counter()
        self.stop_reason: str | None = None
        self.server_url: str | None = None
        self.start = self.last_log = time.perf_counter()

    # single-stream views, kept for callers of the one-source loop
    @property
    def source(self) -> Source:
        return self.streams[0].source

    @property
    def grabber(self) -> LatestFrameGrabber:
        return self.streams[0].grabber

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self) -> str:
        """Loop until every source ended (or one was lost), a limit is reached or the user stops; returns why."""
        self.stop_reason = self._run()
        return self.stop_reason

    def _run(self) -> str:
        options = self.options
        with contextlib.ExitStack() as stack:
            for stream in self.streams:
                if stream.output:
                    stream.sink = stack.enter_context(VideoSink(stream.output, stream.source.fps))
                stack.enter_context(stream.grabber)
            self.start = self.last_log = time.perf_counter()
            for stream in self.streams:
                stream.waiting_since = self.start
            got_frames = True
            try:
                while True:
                    if options.duration is not None and self.elapsed() >= options.duration:
                        return "duration"
                    if any(s.display is not None and s.display.wants_quit() for s in self.streams):
                        return "user quit"
                    if not got_frames:
                        self.notify.wait(0.05)
                    self.notify.clear()
                    ready = self._take_frames()
                    got_frames = bool(ready)
                    self._infer(ready)
                    for stream, frame, _ in ready:
                        self._show(stream, frame)
                    self.memory.sample()
                    if (reason := self._ended()) is not None:
                        return reason
                    now = time.perf_counter()
                    if self.events is not None and self.events.summary_due(now):
                        self.events.summaries(now, [s.counts() for s in self.streams],
                                              [s.label for s in self.streams])
                    if options.log_every and now - self.last_log >= options.log_every:
                        self.log()
            except KeyboardInterrupt:
                return "interrupted"

    def _take_frames(self) -> list[tuple[StreamState, Frame, np.ndarray | None]]:
        """The newest frame of each active stream that has one, preprocessed; with the model input when due."""
        ready = []
        now = time.perf_counter()
        for stream in self.streams:
            if stream.stop_reason is not None:
                continue
            frame = stream.grabber.get(timeout=0)
            if frame is None:
                if stream.grabber.finished and stream.predictions == 0 and not stream.grabber.failed:
                    stream.end(f"{stream.source.name} ended after {stream.grabber.captured} frame(s) without a single "
                               "prediction: fewer frames than the model's first window needs (or not a video)", True)
                elif stream.grabber.finished:
                    stream.end(stream.grabber.end_reason or "end of source", stream.grabber.failed)
                elif now - stream.waiting_since > self.options.stall_timeout:
                    stream.end(f"source stalled (no frame for {self.options.stall_timeout:g} s)", True)
                continue
            stream.waiting_since = now
            stream.processed += 1
            stream.last_taken = max(now, frame.timestamp)
            ready.append((stream, frame, stream.runner.add(frame, cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2RGB))))
        return ready

    def _ended(self) -> str | None:
        """Why the run ends now: a source lost for good ends it at once; otherwise when every source ended."""
        single = len(self.streams) == 1
        for stream in self.streams:
            if stream.failed:
                return stream.stop_reason if single else f"{stream.source.name}: {stream.stop_reason}"
        if all(s.stop_reason is not None for s in self.streams):
            return self.streams[0].stop_reason if single else "all sources ended"
        return None

    def _infer(self, ready: list[tuple[StreamState, Frame, np.ndarray | None]]) -> None:
        """One model call for every due window (a batch across streams), then each stream's label."""
        due = [(stream, frame, x) for stream, frame, x in ready if x is not None]
        if not due:
            return
        start = time.perf_counter()
        if self.streaming:
            probs = [clip_probabilities(self.model.step(due[0][2]), "clip")]
        else:
            batch = due[0][2] if len(due) == 1 else np.concatenate([x for _, _, x in due])
            output = np.asarray(self.model.predict(batch))
            probs = [clip_probabilities(output[i:i + 1], self.meta.head) for i in range(len(due))]
        model_ms = (time.perf_counter() - start) * 1e3
        self.model_latency.add(model_ms)
        self.batches[len(due)] += 1
        for (stream, frame, _), p in zip(due, probs, strict=True):
            smoothed, index = stream.smoother.update(p)
            stream.label = make_label(smoothed, index, self.meta.classes, self.options.topk, self.options.threshold)
            e2e_ms = (time.perf_counter() - frame.timestamp) * 1e3
            stream.last_e2e_ms, stream.last_model_ms = e2e_ms, model_ms
            stream.e2e_latency.add(e2e_ms)
            self.e2e_latency.add(e2e_ms)
            stream.predictions += 1
            if self.events is not None:
                self.events.prediction(stream.index, stream.label, e2e_ms, frame.timestamp, frame.index)
            if self.on_label is not None:
                self.on_label(stream.index, stream.label, e2e_ms)

    def _show(self, stream: StreamState, frame: Frame) -> None:
        """Hand the frame to the web view (a reference, encoded elsewhere), the output video and the window."""
        elapsed = self.elapsed()
        fps = stream.processed / elapsed if elapsed > 0 else None
        if self.hub is not None:
            self.hub.publish(stream.index, frame.bgr, {"label": stream.label, "fps": fps,
                                                       "model_ms": stream.last_model_ms,
                                                       "e2e_ms": stream.last_e2e_ms})
        if stream.sink is None and stream.display is None:
            return
        shown = annotate(frame.bgr, stream.label, fps, stream.last_model_ms, stream.last_e2e_ms)
        if stream.sink is not None:
            stream.sink.write(shown, repeat=frame.index - stream.last_written)
            stream.last_written = frame.index
        if stream.display is not None:
            stream.display.show(shown)

    def totals(self) -> dict[str, int]:
        keys = ("captured", "processed", "dropped", "predictions")
        counts = [s.counts() for s in self.streams]
        return {key: sum(c[key] for c in counts) for key in keys}

    def rates(self, elapsed: float) -> dict[str, float | None]:
        """Frames per second over all streams: the sums of the streams' captured and processed rates and model calls."""
        if len(self.streams) == 1:
            return self.streams[0].rates(elapsed)
        rates = [s.rates(elapsed) for s in self.streams]
        return {key: sum(r[key] for r in rates if r[key]) or None for key in ("capture", "processed", "inference")}

    def log(self) -> None:
        self.last_log = time.perf_counter()
        elapsed = self.last_log - self.start
        t = self.totals()
        console.print(log_line(elapsed, t["captured"], t["processed"], t["dropped"], t["predictions"],
                               self.rates(elapsed), self.model_latency.summary(), self.e2e_latency.summary(),
                               self.memory.rss_end), highlight=False)

    def status(self) -> dict[str, Any]:
        """The run's state now, for ``/status`` and ``/metrics`` (called from the web server's threads)."""
        elapsed = self.elapsed()
        memory = self.memory.summary()
        memory["history"] = list(self.memory.history)
        return {"model": self.meta.model, "backend": getattr(self.model, "backend", "unknown"),
                "precision": self.model.precision, "execution": self.execution,
                "mode": self.streams[0].runner.mode, "elapsed_s": elapsed,
                "stop_reason": self.stop_reason, "latency_ms": {"model": self.model_latency.summary(),
                                                                "end_to_end": self.e2e_latency.summary()},
                "memory_mb": memory, "streams": [s.status(elapsed) for s in self.streams],
                "batches": {str(k): v for k, v in sorted(self.batches.items())},
                "events": self.events.stats() if self.events is not None else None,
                "viewer": self.hub.stats() if self.hub is not None else None}

    def report(self, stop_reason: str) -> LiveReport:
        elapsed = self.elapsed()
        self.memory.sample(force=True)
        totals, first = self.totals(), self.streams[0]
        single = len(self.streams) == 1
        failed = any(s.failed for s in self.streams)
        return LiveReport(
            model=self.meta.model, backend=getattr(self.model, "backend", "unknown"), precision=self.model.precision,
            execution=self.execution, cpu_features=[name for name, on in cpu_features().items() if on],
            source=", ".join(s.source.name for s in self.streams), mode=first.runner.mode,
            frames_captured=totals["captured"], frames_processed=totals["processed"],
            frames_dropped=totals["dropped"], predictions=totals["predictions"], duration_s=elapsed,
            fps=self.rates(elapsed),
            latency_ms={"model": self.model_latency.summary(), "end_to_end": self.e2e_latency.summary()},
            memory_mb=self.memory.summary(), stop_reason=stop_reason,
            last_prediction=first.label.to_list() if single and first.label else [],
            options={**self.options.public(), "source_fps": first.source.fps, **first.window(),
                     "drop_frames": first.drop},
            failed=failed, streams=[s.section(elapsed) for s in self.streams],
            batches={str(k): v for k, v in sorted(self.batches.items())},
            events=self.events.stats() if self.events is not None else None,
            serve={"url": self.server_url, **self.hub.stats()} if self.hub is not None else None,
        )


MULTI_STREAMING = ("--streaming runs one source (a streaming model keeps one stream's state); give one --source, "
                   "or several with a clip model")


def _open_sources(specs: list, options: LiveOptions) -> list[Source]:
    opened: list[Source] = []
    try:
        for spec in specs:
            if isinstance(spec, Source):
                opened.append(spec)
                continue
            with _quiet_opencv():
                opened.append(open_source(spec, width=options.width, height=options.height, fps=options.fps,
                                          timeout_s=options.open_timeout))
    except BaseException:
        for source in opened:
            source.close()
        raise
    return opened


def run_live(model: str | Path | Predictor, source: str | int | Path | Source | list,
             options: LiveOptions | None = None, on_label: Callable[[int, Label, float], None] | None = None,
             ) -> LiveReport:
    """Run a model on cameras, files, URLs, GStreamer pipelines or image folders in real time; returns (and
    optionally writes) the report.

    ``model`` is an artifact path (any backend), a loaded Predictor or a StreamingPredictor; ``source`` one source
    (a camera index, a path, a URL, ``csi://N``, a pipeline or an opened :class:`Source`) or a list of them, which
    share the model (windows due together run as one batch). ``on_label(stream, label, e2e_ms)`` is called at every
    prediction, in the loop (keep it short). The report is written even when the run is interrupted; its ``failed``
    is true when a source was lost for good (``edgevid live`` then exits with code 1).
    """
    options = options or LiveOptions()
    options.validate()
    specs = list(source) if isinstance(source, (list, tuple)) else [source]
    if not specs:
        raise EdgevidError("give at least one --source")
    if options.streaming and len(specs) > 1:
        raise EdgevidError(MULTI_STREAMING)
    loaded = open_model(model, options)
    if options.streaming and not loaded.streaming:
        raise EdgevidError(f"{model}: --streaming needs a streaming predictor (a checkpoint or a streaming export)")
    if loaded.streaming:
        if len(specs) > 1:
            raise EdgevidError(MULTI_STREAMING)
        horizon = loaded.meta.frames if options.horizon is None else options.horizon
        loaded.horizon = horizon or None
    if options.warmup:
        loaded.warmup(options.warmup)
    sources = _open_sources(specs, options)
    title = f"edgevid live: {loaded.meta.model}"
    displays: list[Display] = []
    server = events = loop = None
    try:
        if options.show:
            displays = [Display(title if len(sources) == 1 else f"{title} [{i}]") for i in range(len(sources))]

        events = EventHub.from_options(options.events, options.webhook, [s.name for s in sources],
                                       options.events_every, options.webhook_queue, options.webhook_timeout)
        hub = None
        if options.serve is not None:
            hub = FrameHub(len(sources), _render, max_fps=options.serve_fps)
        loop = LiveLoop(loaded, sources, options, displays, hub=hub, events=events, on_label=on_label)
        for stream in loop.streams:
            if stream.fps_note:
                err_console.print(f"[yellow]warning:[/] {stream.fps_note}", highlight=False)
        if hub is not None:
            server = LiveServer(options.serve, loop.status, hub, token=options.token, title=title,
                                warn=lambda text: err_console.print(f"[yellow]warning:[/] {text}", highlight=False))
            server.start()
            loop.server_url = server.url
            console.print(f"live view: {server.url}" + ("?token=..." if options.token else ""), highlight=False)
        stop_reason = loop.run()
        report = loop.report(stop_reason)
        if events is not None:
            events.close(stop_reason, report.failed,
                         [{"stream": s["stream"], "source": s["source"], "frames": s["frames_captured"],
                           "predictions": s["predictions"], "stop_reason": s["stop_reason"]} for s in report.streams])
            report.events = events.stats()
            events = None
    finally:
        if server is not None:
            server.stop()
        if events is not None:
            events.close("error", True, [])
        for display in displays:
            display.close()
        if loop is None:  # the capture threads close what they read; before them, close what was opened here
            for opened, spec in zip(sources, specs, strict=True):
                if opened is not spec:
                    opened.close()
    if options.report:
        report.write(options.report)
    return report


def _render(bgr: np.ndarray, info: dict) -> np.ndarray:
    """The web view's overlay: the same drawing as the output video (runs in the encoder thread)."""
    return annotate(bgr, info.get("label"), info.get("fps"), info.get("model_ms"), info.get("e2e_ms"))
