"""Sources a Jetson, a robot or a kiosk has: V4L2 devices, CSI cameras and GStreamer pipelines, and what happens when
a camera is unplugged (reconnect with backoff, then a failed run with a non-zero exit)."""

import json
from typing import ClassVar

import cv2
import numpy as np
import pytest

import edgevid.runtime.sources as sources
from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.runtime.sources import (
    CameraSource,
    GStreamerSource,
    LatestFrameGrabber,
    Source,
    SourceLost,
    csi_pipeline,
    open_source,
    parse_csi,
)

PIPELINE = "videotestsrc num-buffers=60 ! videoconvert ! appsink"


class FakeCapture:
    """cv2.VideoCapture stand-in: records how it was opened, delivers ``frames`` frames, then fails to read."""

    opened: ClassVar[list] = []
    frames_per_open = 5
    open_ok = True

    def __init__(self, *args) -> None:
        FakeCapture.opened.append(args)
        self.left = FakeCapture.frames_per_open
        self.ok = FakeCapture.open_ok
        self.props = {}

    def isOpened(self):
        return self.ok

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.zeros((6, 8, 3), np.uint8)

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.ok = False


@pytest.fixture
def fake_capture(monkeypatch):
    FakeCapture.opened, FakeCapture.frames_per_open, FakeCapture.open_ok = [], 5, True
    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCapture)
    return FakeCapture


def test_gstreamer_pipeline_without_gstreamer_names_the_fix(monkeypatch, checkpoint, capsys):
    monkeypatch.setattr(sources, "gstreamer_available", lambda: False)
    with pytest.raises(EdgevidError, match=r"GStreamer: NO.*system OpenCV.*WITH_GSTREAMER=ON") as info:
        open_source(PIPELINE)
    assert str(info.value).startswith(f"--source {PIPELINE}: a GStreamer pipeline needs OpenCV with GStreamer")
    with pytest.raises(EdgevidError, match="GStreamer"):
        open_source("csi://0")
    assert main(["live", "--model", str(checkpoint), "--source", PIPELINE]) == 1
    err = capsys.readouterr().err
    assert "GStreamer" in err and "no such video file" not in err


def test_the_pip_opencv_reports_no_gstreamer_and_we_read_it_right():
    has = "GStreamer:                   YES" in cv2.getBuildInformation()
    assert sources.gstreamer_available() == has


def test_pipeline_must_end_in_appsink(monkeypatch):
    monkeypatch.setattr(sources, "gstreamer_available", lambda: True)
    with pytest.raises(EdgevidError, match="must end in appsink"):
        open_source("videotestsrc ! autovideosink")


def test_csi_shorthand_builds_the_nvargus_pipeline():
    assert parse_csi("csi://0") == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM), width=(int)1280, height=(int)720, "
        "framerate=(fraction)30/1, format=(string)NV12 ! nvvidconv flip-method=0 ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")
    pipeline = parse_csi("csi://1?flip=2", width=1920, height=1080, fps=29.97)
    assert "sensor-id=1" in pipeline and "flip-method=2" in pipeline
    assert "width=(int)1920, height=(int)1080, framerate=(fraction)2997/100" in pipeline
    assert csi_pipeline(0, fps=60).count("appsink") == 1 and "framerate=(fraction)60/1" in csi_pipeline(0, fps=60)
    for bad in ("csi://", "csi://a", "csi://0?flip=9"):
        with pytest.raises(EdgevidError, match="expected csi://N"):
            parse_csi(bad)


def test_csi_and_pipelines_open_with_the_gstreamer_backend(monkeypatch, fake_capture):
    monkeypatch.setattr(sources, "gstreamer_available", lambda: True)
    source = open_source("csi://0", width=640, height=480, fps=15)
    assert isinstance(source, GStreamerSource) and source.live and source.name == "csi://0"
    pipeline, api = fake_capture.opened[-1]
    assert api == cv2.CAP_GSTREAMER and pipeline == csi_pipeline(0, 640, 480, 15)
    assert source.fps == 25.0  # what the capture reports
    finite = open_source(PIPELINE)
    assert not finite.live  # num-buffers: ends instead of reconnecting
    for _ in range(5):
        assert finite.read() is not None
    assert finite.read() is None
    for _ in range(5):
        source.read()
    with pytest.raises(SourceLost):
        source.read()  # a live camera pipeline that stops is lost, not ended


def test_v4l2_device_paths(fake_capture, tmp_path):
    with pytest.raises(EdgevidError, match="--source /dev/video97: no such V4L2 device"):
        open_source("/dev/video97")
    camera = CameraSource("/dev/video0", width=320, height=240)
    assert fake_capture.opened[-1] == ("/dev/video0", cv2.CAP_V4L2)
    assert camera.name == "/dev/video0" and camera.live


def test_unplugged_camera_reconnects_with_backoff_then_fails(fake_capture):
    fake_capture.frames_per_open = 3
    camera = CameraSource(0)
    assert fake_capture.opened[-1] == (0,)
    with LatestFrameGrabber(camera, drop=False, reconnect_attempts=2, first_backoff_s=0.01) as grabber:
        taken = 0
        while grabber.get(timeout=1.0) is not None:
            taken += 1
            if taken == 8:  # unplugged for good: reopening fails from now on
                fake_capture.open_ok = False
    assert grabber.reconnects == 2 and grabber.failed and taken == 9
    assert "2 reconnect attempts failed" in grabber.end_reason


class LostCamera(Source):
    """A camera that delivers 20 frames, then is unplugged and never comes back."""

    live = True
    name = "/dev/video0"
    fps = 30.0

    def __init__(self) -> None:
        self.reads = 0

    def read(self):
        self.reads += 1
        if self.reads > 20:
            raise SourceLost("camera stopped delivering frames")
        return np.full((32, 32, 3), self.reads, np.uint8)

    def reconnect(self):
        raise SourceLost("cannot reopen the camera")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    meta = ArtifactMeta(model="tiny3d", classes=["a", "b", "c"], frames=4, size=32, sampling_stride=1,
                        mean=(0.45,) * 3, std=(0.225,) * 3, arch={"width": 4}, fps=30.0)
    return save_checkpoint(tmp_path_factory.mktemp("src") / "tiny.pt",
                           create_model("tiny3d", num_classes=3, width=4).eval(), meta)


def test_lost_source_ends_the_run_with_a_failed_report_and_exit_1(checkpoint, tmp_path, monkeypatch, capsys):
    report = run_live(checkpoint, LostCamera(), LiveOptions(reconnect_attempts=1))
    assert report.failed and "1 reconnect attempts failed" in report.stop_reason
    assert report.frames_captured == 20 and report.streams[0]["failed"]
    monkeypatch.setattr("edgevid.runtime.live.open_source", lambda *a, **k: LostCamera())
    path = tmp_path / "r.json"
    code = main(["live", "--model", str(checkpoint), "--source", "/dev/video0", "--report", str(path),
                 "--reconnect-attempts", "1"])
    assert code == 1
    assert "reconnect attempts failed" in capsys.readouterr().err
    data = json.loads(path.read_text())
    assert data["failed"] is True and data["frames_captured"] == 20
