"""The headless web view: a real HTTP client fetches the page, /status, /metrics and MJPEG frames from a live run
on 127.0.0.1, with and without the access token."""

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from edgevid.checkpoint import save_checkpoint
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.runtime.serve import FrameHub, parse_bind
from edgevid.runtime.sources import Source

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    meta = ArtifactMeta(model="tiny3d", classes=["wave", "clap"], frames=4, size=32, sampling_stride=1,
                        mean=(0.45,) * 3, std=(0.225,) * 3, arch={"width": 4}, fps=30.0)
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.pt",
                           create_model("tiny3d", num_classes=2, width=4).eval(), meta)


class Camera(Source):
    """A 60 fps camera of 64x48 frames that runs until ``stop`` is set."""

    live = True
    name = "camera:test"
    fps = 60.0

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.count = 0
        self.stop = stop or threading.Event()

    def read(self):
        if self.stop.wait(1 / 60):
            return None
        self.count += 1
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, : self.count % 64] = 200
        return frame


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _start(checkpoint, options):
    """A live run in a thread; set ``result["stop"]`` to end it (the camera stops delivering)."""
    result = {"stop": threading.Event()}
    camera = Camera(result["stop"])
    thread = threading.Thread(target=lambda: result.setdefault("report", run_live(checkpoint, camera, options)))
    thread.start()
    return thread, result


def _wait_up(base, query=""):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            status, _, body = _get(f"{base}status{query}")
            if status == 200 and json.loads(body)["streams"][0]["predictions"] > 2:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("the web view did not come up")


def _one_mjpeg_frame(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace; boundary=")
    boundary = response.getheader("Content-Type").split("boundary=")[1]
    assert response.readline().strip() == f"--{boundary}".encode()
    headers = {}
    while (line := response.readline().strip()):
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    jpeg = response.read(int(headers["content-length"]))
    conn.close()
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_web_view_page_status_metrics_and_mjpeg(checkpoint):
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    thread, result = _start(checkpoint, LiveOptions(serve=str(port)))
    try:
        _wait_up(base)
        status, headers, page = _get(base)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"stream.mjpg?stream=${s.stream}" in page and b"/status" not in page.replace(b"status?", b"")
        state = json.loads(_get(f"{base}status")[2])
        assert state["model"] == "tiny3d" and state["backend"] == "torch"
        stream = state["streams"][0]
        assert stream["source"] == "camera:test" and stream["frames"]["captured"] >= stream["frames"]["processed"] > 0
        assert set(stream["latency_ms"]) >= {"p50", "p95", "p99"}
        assert state["memory_mb"]["rss_end"] > 0 and state["memory_mb"]["history"]
        status, headers, metrics = _get(f"{base}metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        text = metrics.decode()
        assert 'edgevid_frames_captured_total{source="camera:test",stream="0"}' in text
        assert 'edgevid_end_to_end_latency_ms{quantile="0.95",stream="0"}' in text
        assert "edgevid_rss_bytes" in text and "# TYPE edgevid_predictions_total counter" in text
        frame = _one_mjpeg_frame(port, "/stream.mjpg?stream=0")
        assert frame is not None and frame.shape == (48, 64, 3)
        assert (np.ptp(frame.astype(int), axis=2) > 60).sum() > 5  # the overlay's coloured text on grey frames
        status, headers, jpeg = _get(f"{base}frame.jpg?stream=0")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        assert _get(f"{base}stream.mjpg?stream=3")[0] == 404
        assert _get(f"{base}nothing")[0] == 404
    finally:
        result["stop"].set()
        thread.join(30)
    report = result["report"]
    assert report.stop_reason == "end of source"
    assert report.serve["jpeg_encoded"][0] >= 1 and report.serve["url"] == base
    assert report.options["serve"] == str(port)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"{base}status", timeout=2)  # the server stops with the run


def test_token_protects_every_route(checkpoint):
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    thread, result = _start(checkpoint, LiveOptions(serve=f"127.0.0.1:{port}", token=TOKEN))
    try:
        _wait_up(base, f"?token={TOKEN}")
        for route in ("", "status", "metrics", "frame.jpg", "stream.mjpg"):
            status, headers, _ = _get(base + route)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
            assert _get(f"{base}{route}?token=wrong")[0] == 403
        assert _get(f"{base}metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert _get(f"{base}metrics", {"Authorization": "Bearer nope"})[0] == 403
        status, headers, page = _get(f"{base}?token={TOKEN}")
        assert status == 200 and f"&token={TOKEN}".encode() in page
        cookie = headers["Set-Cookie"].split(";")[0]
        assert _get(f"{base}status", {"Cookie": cookie})[0] == 200  # what the page's own requests use
        assert _one_mjpeg_frame(port, f"/stream.mjpg?stream=0&token={TOKEN}").shape == (48, 64, 3)
    finally:
        result["stop"].set()
        thread.join(30)
    assert result["report"].options["token"] == "<set>"  # never written to the report


def test_bind_addresses_and_the_warning_for_other_hosts(checkpoint, capsys):
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    for bad in ("host:", "80800", "a:b", ":x"):
        with pytest.raises(EdgevidError, match="--serve"):
            parse_bind(bad)
    with pytest.raises(EdgevidError, match="--token protects the web view"):
        LiveOptions(token="x").validate()
    report = run_live(checkpoint, Camera(), LiveOptions(serve=f"0.0.0.0:{_free_port()}", duration=0.3))
    assert report.stop_reason == "duration"
    err = capsys.readouterr().err
    assert "reachable from other machines" in err and "--token" in err


def test_a_slow_viewer_skips_frames_and_never_blocks_publish():
    hub = FrameHub(1, max_fps=1000).start()
    try:
        hub.attach(0)
        frame = np.zeros((32, 32, 3), np.uint8)
        start = time.perf_counter()
        for i in range(200):
            hub.publish(0, frame, {})
            if i % 20 == 0:
                time.sleep(0.01)
        publish_s = time.perf_counter() - start - 0.1
        assert publish_s < 0.05  # publishing is a slot assignment
        first = hub.next_jpeg(0, 0, timeout=2)
        time.sleep(0.1)
        for _ in range(50):
            hub.publish(0, frame, {})
            time.sleep(0.002)
        time.sleep(0.1)
        newest = hub.next_jpeg(0, first[0], timeout=2)  # a viewer that was busy gets the newest, not a backlog
        assert newest[0] > first[0] + 1 and hub.skipped[0] == newest[0] - first[0] - 1
    finally:
        hub.stop()
