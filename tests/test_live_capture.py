import threading
import time

import numpy as np
import pytest

from edgevid.errors import EdgevidError
from edgevid.runtime.sources import (
    ImageFolderSource,
    LatestFrameGrabber,
    Source,
    SourceLost,
    backoff_delays,
    open_source,
)


class CountingSource(Source):
    """Frames numbered in their first pixel, produced as fast as asked, like a camera with no frame limit."""

    def __init__(self, total: int, live: bool = True, interval_s: float = 0.0) -> None:
        self.name = "counting"
        self.total = total
        self.live = live
        self.interval_s = interval_s
        self.produced = 0

    def read(self):
        if self.produced >= self.total:
            return None
        if self.interval_s:
            time.sleep(self.interval_s)
        frame = np.full((4, 4, 3), self.produced % 256, np.uint8)
        self.produced += 1
        return frame


def _drain(grabber, delay_s=0.0):
    taken = []
    while True:
        frame = grabber.get(timeout=1.0)
        if frame is None:
            break
        taken.append(frame)
        time.sleep(delay_s)
    return taken


def test_slow_consumer_gets_newest_frames_and_the_rest_is_dropped():
    source = CountingSource(400, interval_s=0.0005)
    with LatestFrameGrabber(source, drop=True) as grabber:
        taken = _drain(grabber, delay_s=0.01)
    assert grabber.finished
    assert grabber.captured == 400
    assert grabber.dropped > 200  # ~20x more frames than the consumer can take
    assert len(taken) + grabber.dropped == grabber.captured
    indices = [f.index for f in taken]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert max(np.diff(indices)) > 1  # skipped ahead instead of queueing


def test_frames_taken_are_fresh_not_queued():
    source = CountingSource(300, interval_s=0.001)
    with LatestFrameGrabber(source, drop=True) as grabber:
        ages = []
        while (frame := grabber.get(timeout=1.0)) is not None:
            ages.append(time.perf_counter() - frame.timestamp)
            time.sleep(0.02)
    # a queue would make later frames ever older; one slot keeps them within about one consumer period
    assert np.median(ages) < 0.03


def test_lossless_mode_hands_over_every_frame_in_order():
    source = CountingSource(50)
    with LatestFrameGrabber(source, drop=False) as grabber:
        taken = _drain(grabber, delay_s=0.001)
    assert [f.index for f in taken] == list(range(50))
    assert [int(f.bgr[0, 0, 0]) for f in taken] == list(range(50))
    assert grabber.dropped == 0 and grabber.end_reason == "end of source"


def test_pacing_and_max_frames():
    source = CountingSource(1000, live=False)
    start = time.perf_counter()
    with LatestFrameGrabber(source, drop=False, pace_fps=200, max_frames=20) as grabber:
        taken = _drain(grabber)
    assert len(taken) == 20 and grabber.end_reason == "max frames"
    assert time.perf_counter() - start >= 19 / 200
    stamps = [f.timestamp for f in taken]
    assert np.median(np.diff(stamps)) == pytest.approx(1 / 200, rel=0.5)


def test_stop_counts_the_frame_left_in_the_slot_as_dropped():
    grabber = LatestFrameGrabber(CountingSource(10**6, interval_s=0.001), drop=True).start()
    time.sleep(0.05)
    grabber.get(timeout=1.0)
    time.sleep(0.02)
    grabber.stop()
    assert grabber.taken + grabber.dropped == grabber.captured


class FlakyStream(Source):
    """A network stream that drops after a few frames; reconnecting works ``recoverable`` times."""

    live = True

    def __init__(self, frames_per_connection: int, recoverable: int) -> None:
        self.name = "rtsp://flaky"
        self.frames_per_connection = frames_per_connection
        self.recoverable = recoverable
        self.left = frames_per_connection
        self.reconnect_calls = 0

    def read(self):
        if self.left == 0:
            raise SourceLost("dropped")
        self.left -= 1
        return np.zeros((2, 2, 3), np.uint8)

    def reconnect(self) -> None:
        self.reconnect_calls += 1
        if self.reconnect_calls > self.recoverable:
            raise SourceLost("refused")
        self.left = self.frames_per_connection


def test_stream_reconnects_with_backoff_then_gives_up():
    stream = FlakyStream(frames_per_connection=3, recoverable=2)
    with LatestFrameGrabber(stream, drop=False, reconnect_attempts=3, first_backoff_s=0.01) as grabber:
        taken = _drain(grabber)
    assert len(taken) == 9  # 3 connections x 3 frames
    assert grabber.reconnects == 2
    assert "3 reconnect attempts failed" in grabber.end_reason
    assert backoff_delays(5, 0.5, 4.0) == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_stalled_source_does_not_block_get():
    release = threading.Event()

    class Stalled(Source):
        live = True
        name = "stalled"

        def read(self):
            release.wait(5)
            return None

    grabber = LatestFrameGrabber(Stalled(), drop=True).start()
    start = time.perf_counter()
    assert grabber.get(timeout=0.2) is None and not grabber.finished
    assert time.perf_counter() - start < 1.0
    release.set()
    grabber.stop()


def test_unopenable_sources_are_clear_errors(tmp_path):
    with pytest.raises(EdgevidError, match="camera 9: cannot be opened"):
        open_source(9)
    with pytest.raises(EdgevidError, match="cannot open the stream"):
        open_source("rtsp://127.0.0.1:1/none", timeout_s=1.0)
    with pytest.raises(EdgevidError, match="no such video file"):
        open_source(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(EdgevidError, match="cannot be opened as a video"):
        open_source(broken)
    with pytest.raises(EdgevidError, match="no images"):
        open_source(tmp_path)


def test_image_folder_natural_order(tmp_path):
    import cv2

    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((4, 4, 3), i, np.uint8))
    source = ImageFolderSource(tmp_path)
    assert [int(source.read()[0, 0, 0]) for _ in range(3)] == [1, 2, 10]
    assert source.read() is None
