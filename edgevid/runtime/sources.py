"""Frame sources for the live loop, and the capture thread that keeps only the newest frame.

A source yields BGR uint8 frames (as OpenCV decodes them). :class:`LatestFrameGrabber` reads it in its own
thread, timestamps every frame at capture (``time.perf_counter``) and hands frames to the consumer through ONE
slot: in ``drop`` mode a frame the consumer has not taken yet is overwritten (counted as dropped), so a slow model
never makes frames queue up; in lossless mode the thread waits for the slot to be taken (every frame processed).

:func:`open_source` takes what a user types after ``--source``: a camera index, a V4L2 device (``/dev/videoN``), a
Jetson CSI camera (``csi://N``, an ``nvarguscamerasrc`` pipeline at the requested size and fps), a GStreamer pipeline
ending in ``appsink`` (needs an OpenCV built with GStreamer), an RTSP/HTTP URL, a video file or an image folder.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from edgevid.errors import EdgevidError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FPS = 30.0


@dataclass
class Frame:
    """One captured frame: ``bgr`` uint8 [H, W, 3], its index in the source, and its capture time."""

    bgr: np.ndarray
    index: int
    timestamp: float


class SourceLost(Exception):
    """A network stream failed mid-run; the grabber reconnects with backoff."""


class Source:
    """A sequence of BGR frames. ``read`` returns ``None`` at the end; ``live`` sources run at their own pace."""

    name: str = ""
    fps: float = DEFAULT_FPS
    fps_reported: bool = True  # False: the source did not say its rate (nor did --fps) and ``fps`` is assumed
    live: bool = False

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def reconnect(self) -> None:
        """Reopen after :class:`SourceLost` (only network streams lose their connection)."""
        raise SourceLost(f"{self.name}: cannot reconnect")

    def close(self) -> None:
        """Release the device, file or connection."""


class CaptureSource(Source):
    """An OpenCV capture that ``_open`` makes, and makes again on :meth:`reconnect` (cameras, streams, pipelines)."""

    capture = None
    reopen_failed = "cannot reopen it"

    def _open(self):
        """A fresh, opened ``cv2.VideoCapture``, or None."""
        raise NotImplementedError

    def reconnect(self) -> None:
        self.capture.release()
        capture = self._open()
        if capture is None:
            raise SourceLost(f"{self.name}: {self.reopen_failed}")
        self.capture = capture

    def close(self) -> None:
        self.capture.release()


def _opened(capture):
    """``capture`` if it opened, else None (released)."""
    if capture.isOpened():
        return capture
    capture.release()
    return None


def _fps_of(capture, stated: float | None = None) -> tuple[float, bool]:
    """The capture's frame rate, else the one the user stated, else DEFAULT_FPS; and whether it was not assumed."""
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if 1.0 <= fps <= 1000.0:
        return fps, True
    return (stated, True) if stated else (DEFAULT_FPS, False)


class CameraSource(CaptureSource):
    """A local camera by index or V4L2 device path, with the requested resolution and fps and a one-frame driver
    buffer. A failed read (camera unplugged) is :class:`SourceLost`: the grabber reopens it with backoff."""

    reopen_failed = "cannot reopen the camera"
    live = True

    def __init__(self, index: int | str, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        self.device = index
        self.name = f"camera:{index}" if isinstance(index, int) else str(index)
        self.requested = (width, height, fps)
        self.capture = self._open()
        if self.capture is None:
            what = f"camera {index}" if isinstance(index, int) else f"--source {index}"
            raise EdgevidError(f"{what}: cannot be opened (is it connected and not used by another program? "
                               "try another --camera index, or --source for a file or URL)")
        self.fps, self.fps_reported = _fps_of(self.capture, fps)

    def _open(self):
        if isinstance(self.device, int):
            capture = cv2.VideoCapture(self.device)
        else:
            capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            return None
        width, height, fps = self.requested
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                            (cv2.CAP_PROP_FPS, fps)):
            if value:
                capture.set(prop, value)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if not ok:
            raise SourceLost(f"{self.name}: camera stopped delivering frames")
        return frame


class VideoFileSource(Source):
    """A video file decoded by OpenCV's FFmpeg backend."""

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.name = str(path)
        self.capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        ok, first = self.capture.read() if self.capture.isOpened() else (False, None)
        if not ok:
            self.capture.release()
            raise EdgevidError(f"{path}: cannot be opened as a video (unsupported or corrupt file)")
        self._first: np.ndarray | None = first
        self.fps, self.fps_reported = _fps_of(self.capture, fps)

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        ok, frame = self.capture.read()
        return frame if ok else None

    def close(self) -> None:
        self.capture.release()


class StreamSource(CaptureSource):
    """A network stream (RTSP, HTTP, ...) with open/read timeouts, so a dead server never blocks for long."""

    reopen_failed = "reconnect failed"
    live = True

    def __init__(self, url: str, timeout_s: float = 5.0, fps: float | None = None) -> None:
        self.name = url
        self.timeout_ms = int(timeout_s * 1000)
        self.capture = self._open()
        if self.capture is None:
            raise EdgevidError(f"{url}: cannot open the stream (check the URL, the network and that the server "
                               f"is up; open timeout {timeout_s:g} s)")
        self.fps, self.fps_reported = _fps_of(self.capture, fps)

    def _open(self):
        return _opened(cv2.VideoCapture(self.name, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms,
                                                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]))

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if not ok:
            raise SourceLost(f"{self.name}: stream stopped delivering frames")
        return frame


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(Source):
    """The images of a folder in natural order (frame2 before frame10), at the frame rate given (``--fps``), else
    an assumed one (``fps_reported`` false)."""

    def __init__(self, folder: Path, fps: float | None = None) -> None:
        self.name = str(folder)
        self.paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not self.paths:
            raise EdgevidError(f"{folder}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps, self.fps_reported = (fps, True) if fps else (DEFAULT_FPS, False)
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image
        return None


GSTREAMER_HELP = (
    "this OpenCV ({version}) was built without GStreamer (cv2.getBuildInformation() says GStreamer: NO; the pip "
    "wheels never have it). Fix: use an OpenCV built with GStreamer, e.g. on a Jetson JetPack's system OpenCV "
    "(`pip uninstall -y opencv-python-headless` in a venv made with `python3 -m venv --system-site-packages`), "
    "or build OpenCV with -D WITH_GSTREAMER=ON"
)
CSI_DEFAULT = (1280, 720, 30.0)


def gstreamer_available() -> bool:
    """Whether this OpenCV can open GStreamer pipelines (its build information says ``GStreamer: YES``)."""
    match = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return bool(match) and match.group(1).upper() != "NO"


def is_url(spec: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec) is not None


def is_gstreamer_pipeline(spec: str) -> bool:
    """A ``gst-launch``-style pipeline: elements joined by ``!`` (``... ! appsink``)."""
    return "!" in spec and not is_url(spec) and not Path(spec).exists()


def _gst_fraction(fps: float) -> str:
    fraction = Fraction(fps).limit_denominator(1001)
    return f"{fraction.numerator}/{fraction.denominator}"


def csi_pipeline(sensor_id: int, width: int | None = None, height: int | None = None, fps: float | None = None,
                 flip_method: int = 0) -> str:
    """The GStreamer pipeline of a Jetson CSI camera (``nvarguscamerasrc``) delivering BGR frames to OpenCV.

    The ISP captures NV12 in NVMM (device) memory at the requested size and rate; ``nvvidconv`` copies it to
    system memory as BGRx, ``videoconvert`` makes BGR, and the appsink keeps only the newest buffer.
    """
    width, height, fps = width or CSI_DEFAULT[0], height or CSI_DEFAULT[1], fps or CSI_DEFAULT[2]
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
            f"framerate=(fraction){_gst_fraction(fps)}, format=(string)NV12 ! "
            f"nvvidconv flip-method={flip_method} ! video/x-raw, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def parse_csi(spec: str, width: int | None = None, height: int | None = None, fps: float | None = None) -> str:
    """``csi://N`` (optionally ``csi://N?flip=M``) -> the nvarguscamerasrc pipeline of sensor N."""
    match = re.fullmatch(r"csi://(\d+)(?:\?flip=([0-7]))?", spec.strip())
    if not match:
        raise EdgevidError(f"--source {spec}: expected csi://N (N: sensor id, e.g. csi://0), optionally ?flip=0-7")
    return csi_pipeline(int(match.group(1)), width, height, fps, int(match.group(2) or 0))


class GStreamerSource(CaptureSource):
    """A GStreamer pipeline ending in ``appsink``, opened with OpenCV's GStreamer backend.

    Camera and network pipelines are live (a failed read reconnects with backoff); a pipeline reading a file
    (``filesrc``) or with ``num-buffers`` ends when it runs out.
    """

    reopen_failed = "cannot restart the pipeline"
    def __init__(self, pipeline: str, name: str | None = None, fps: float | None = None) -> None:
        self.pipeline = pipeline.strip()
        self.name = name or self.pipeline
        if not re.search(r"\bappsink\b", self.pipeline):
            raise EdgevidError(f"--source {self.name}: a GStreamer pipeline for OpenCV must end in appsink "
                               "(... ! videoconvert ! video/x-raw, format=BGR ! appsink)")
        if not gstreamer_available():
            raise EdgevidError(f"--source {self.name}: a GStreamer pipeline needs OpenCV with GStreamer, but "
                               + GSTREAMER_HELP.format(version=cv2.__version__))
        self.live = not re.search(r"\bfilesrc\b|num-buffers=", self.pipeline)
        self.capture = self._open()
        if self.capture is None:
            raise EdgevidError(f"--source {self.name}: GStreamer cannot start this pipeline (check the elements "
                               "with gst-inspect-1.0 and try it with gst-launch-1.0, ending in fakesink)")
        self.fps, self.fps_reported = _fps_of(self.capture, fps)

    def _open(self):
        return _opened(cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER))

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if ok:
            return frame
        if self.live:
            raise SourceLost(f"{self.name}: pipeline stopped delivering frames")
        return None


V4L2_DEVICE = re.compile(r"^/dev/video\d+$")
SOURCE_KINDS = ("camera index (0)", "/dev/videoN", "csi://N", "a GStreamer pipeline ending in appsink",
                "rtsp:// or http(s):// URL", "video file", "image folder")


def open_source(spec: str | int | Path, *, width: int | None = None, height: int | None = None,
                fps: float | None = None, timeout_s: float = 5.0) -> Source:
    """Open a camera index, a V4L2 device, ``csi://N``, a GStreamer pipeline, a URL, an image folder or a video
    file. ``width``/``height``/``fps`` are requested from a camera (and CSI pipeline); ``fps`` is assumed for an
    image folder and for a file or stream that does not report its rate."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return CameraSource(int(spec), width, height, fps)
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower().startswith("csi://"):
            return GStreamerSource(parse_csi(text, width, height, fps), name=text, fps=fps)
        if V4L2_DEVICE.match(text):
            if not Path(text).exists():
                raise EdgevidError(f"--source {text}: no such V4L2 device (is the camera connected? "
                                   "`ls /dev/video*` lists the devices)")
            return CameraSource(text, width, height, fps)
        if is_gstreamer_pipeline(text):
            return GStreamerSource(text, fps=fps)
        if is_url(text):
            return StreamSource(text, timeout_s, fps)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, fps)
    if not path.exists():
        raise EdgevidError(f"{path}: no such video file, image folder or URL (a --source is one of: "
                           f"{', '.join(SOURCE_KINDS)})")
    return VideoFileSource(path, fps)


def backoff_delays(attempts: int, first_s: float = 0.5, cap_s: float = 8.0) -> list[float]:
    """Exponential reconnect delays: first, 2x first, 4x first ... capped at ``cap_s``."""
    return [min(first_s * 2**i, cap_s) for i in range(attempts)]


class LatestFrameGrabber:
    """Reads a source in a daemon thread and offers the newest frame in one slot.

    ``drop=True``: a frame not taken before the next one arrives is overwritten and counted in ``dropped``.
    ``drop=False``: the thread waits until the consumer took the slot, so every frame is processed.
    ``pace_fps`` releases frames no faster than that rate (a file played as if it were a camera).
    ``max_frames`` ends the capture after that many frames. ``captured == taken + dropped`` once stopped.
    ``notify`` (an Event shared by the grabbers of several streams) is set at every new frame and at the end, so
    one consumer can wait for whichever stream delivers first. ``failed`` tells a lost source (reconnects
    exhausted, a capture error) from one that ended.
    """

    def __init__(self, source: Source, drop: bool, pace_fps: float | None = None, max_frames: int | None = None,
                 reconnect_attempts: int = 5, first_backoff_s: float = 0.5,
                 notify: threading.Event | None = None) -> None:
        self.source = source
        self.drop = drop
        self.pace_fps = pace_fps
        self.max_frames = max_frames
        self.reconnect_delays = backoff_delays(reconnect_attempts, first_backoff_s)
        self.captured = 0
        self.dropped = 0
        self.taken = 0
        self.reconnects = 0
        self.first_capture: float | None = None
        self.last_capture: float | None = None
        self.end_reason: str | None = None
        self.failed = False
        self._notify = notify
        self._slot: Frame | None = None
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._capture_loop, name="edgevid-capture", daemon=True)

    def start(self) -> LatestFrameGrabber:
        self._thread.start()
        return self

    def __enter__(self) -> LatestFrameGrabber:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def finished(self) -> bool:
        return self.end_reason is not None

    def _read(self) -> np.ndarray | None:
        try:
            return self.source.read()
        except SourceLost:
            pass
        for delay in self.reconnect_delays:
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, timeout=delay):
                    return None
            try:
                self.source.reconnect()
                self.reconnects += 1
                return self.source.read()
            except SourceLost:
                continue
        raise SourceLost(f"{self.source.name}: stream lost, {len(self.reconnect_delays)} reconnect attempts failed")

    def _capture_loop(self) -> None:
        reason = "end of source"
        failed = False
        start = time.perf_counter()
        try:
            while not self._stopping:
                if self.max_frames is not None and self.captured >= self.max_frames:
                    reason = "max frames"
                    break
                if self.pace_fps:
                    delay = start + self.captured / self.pace_fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                image = self._read()
                timestamp = time.perf_counter()
                if image is None:
                    break
                if not self._put(Frame(image, self.captured, timestamp)):
                    break
        except SourceLost as exc:
            reason, failed = str(exc), True
        except Exception as exc:  # a decoder or driver failure ends the run with its reason in the report
            reason, failed = f"capture failed: {type(exc).__name__}: {exc}", True
        with self._cond:
            if self.end_reason is None:
                self.failed = failed and not self._stopping
                self.end_reason = "stopped" if self._stopping else reason
            self._cond.notify_all()
        if self._notify is not None:
            self._notify.set()

    def _put(self, frame: Frame) -> bool:
        with self._cond:
            if not self.drop:
                self._cond.wait_for(lambda: self._slot is None or self._stopping)
            if self._stopping:
                return False
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.captured += 1
            self.first_capture = self.first_capture or frame.timestamp
            self.last_capture = frame.timestamp
            self._cond.notify_all()
        if self._notify is not None:
            self._notify.set()
        return True

    def get(self, timeout: float) -> Frame | None:
        """The newest frame (waiting up to ``timeout`` s), or ``None`` when the source ended or stalled."""
        with self._cond:
            self._cond.wait_for(lambda: self._slot is not None or self.end_reason is not None, timeout=timeout)
            frame, self._slot = self._slot, None
            if frame is None:
                return None
            self.taken += 1
            self._cond.notify_all()
            return frame

    def stop(self, join_timeout: float = 2.0) -> None:
        """Stop capturing; a frame left in the slot counts as dropped. A read blocked in a driver is abandoned
        (the thread is a daemon) after ``join_timeout``."""
        with self._cond:
            self._stopping = True
            if self._slot is not None:
                self._slot = None
                self.dropped += 1
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(join_timeout)
        if not self._thread.is_alive():
            self.source.close()
