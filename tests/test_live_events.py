"""Events for other programs: JSON lines per label change and per summary interval, and a webhook that never
blocks the loop (bounded queue, drops counted)."""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.runtime.base import Predictor
from edgevid.runtime.events import WebhookSender
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.runtime.sources import Source

SEGMENT = 12  # frames per bright or dark stretch


class BrightnessModel(Predictor):
    """A stand-in model: 'bright' when the clip's mean pixel is above grey, else 'dark'."""

    backend = "stub"

    def __init__(self) -> None:
        meta = ArtifactMeta(model="brightness", classes=["dark", "bright"], frames=2, size=8, sampling_stride=1,
                            mean=(0.5,) * 3, std=(0.5,) * 3, fps=30.0)
        super().__init__(meta, Path("brightness"), "cpu")

    def _run(self, clips):
        x = clips.mean(axis=(1, 2, 3, 4)) * 5
        return np.stack([-x, x], axis=1)


class Blinking(Source):
    """Alternating dark and bright stretches of SEGMENT frames; ``total`` frames, then the end."""

    name = "blinking"
    fps = 30.0

    def __init__(self, total: int, live: bool = False, interval_s: float = 0.0) -> None:
        self.total, self.live, self.interval_s, self.count = total, live, interval_s, 0

    def read(self):
        if self.count >= self.total:
            return None
        if self.interval_s:
            threading.Event().wait(self.interval_s)
        value = 255 if (self.count // SEGMENT) % 2 else 0
        self.count += 1
        return np.full((16, 16, 3), value, np.uint8)


def _read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_label_changes_and_end_as_json_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    before = time.time()
    report = run_live(BrightnessModel(), Blinking(6 * SEGMENT), LiveOptions(smooth="none", events=str(path)))
    events = _read(path)
    labels = [e for e in events if e["event"] == "label"]
    assert [e["label"] for e in labels] == ["dark", "bright"] * 3
    assert labels[0]["previous"] is None
    assert all(b["previous"] == a["label"] for a, b in itertools.pairwise(labels))
    # each change is seen at the first window whose newest frame is in the new stretch (T=2: mean 0 is 'dark')
    assert [e["frame"] for e in labels] == [1, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 1, 4 * SEGMENT,
                                            5 * SEGMENT + 1]
    for e in labels:
        assert e["stream"] == 0 and e["source"] == "blinking" and 0.5 <= e["score"] <= 1.0
        assert before <= e["capture_time"] <= e["time"] <= time.time()
        assert e["topk"][0]["score"] == e["score"] and {t["label"] for t in e["topk"]} == {"dark", "bright"}
    assert events[-1]["event"] == "end" and events[-1]["stop_reason"] == "end of source"
    assert events[-1]["streams"][0]["frames"] == 6 * SEGMENT
    assert report.events["jsonl"]["written"] == len(events) and report.events["emitted"]["label"] == 6


def test_summaries_every_n_seconds_per_stream(tmp_path):
    path = tmp_path / "events.jsonl"
    run_live(BrightnessModel(), [Blinking(10**6, live=True, interval_s=0.005), Blinking(10**6, live=True,
                                                                                      interval_s=0.005)],
             LiveOptions(smooth="none", events=str(path), events_every=0.3, duration=1.1))
    summaries = [e for e in _read(path) if e["event"] == "summary"]
    assert {e["stream"] for e in summaries} == {0, 1} and len(summaries) >= 4
    for e in summaries:
        assert 0.25 < e["to"] - e["from"] < 0.6
        assert e["frames"] > 0 and e["processed"] > 0 and e["predictions"] > 0
        assert sum(e["labels"].values()) == e["predictions"] and set(e["labels"]) <= {"dark", "bright"}
        assert e["latency_ms"]["p95"] >= e["latency_ms"]["p50"] > 0 and e["fps"] > 0
        assert e["label"] in ("dark", "bright")


def test_events_to_stdout_from_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("edgevid.runtime.live.open_model", lambda model, options: BrightnessModel())
    monkeypatch.setattr("edgevid.runtime.live.open_source", lambda *a, **k: Blinking(4 * SEGMENT))
    assert main(["live", "--model", "m.pt", "--source", "cam", "--events", "-", "--smooth", "none"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [e["label"] for e in lines if e["event"] == "label"] == ["dark", "bright", "dark", "bright"]
    assert main(["live", "--model", "m.pt", "--source", "cam", "--events", str(tmp_path / "no" / "e.jsonl")]) == 1
    assert "--events" in capsys.readouterr().err


class Receiver:
    """A local HTTP server recording the JSON bodies POSTed to it, answering after ``delay_s``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.bodies: list = []
        received, delay = self.bodies, delay_s

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                received.append((self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhook_posts_the_same_events(tmp_path):
    receiver = Receiver()
    try:
        path = tmp_path / "events.jsonl"
        report = run_live(BrightnessModel(), Blinking(4 * SEGMENT),
                          LiveOptions(smooth="none", events=str(path), webhook=receiver.url))
    finally:
        receiver.close()
    assert report.events["webhook"]["sent"] == len(receiver.bodies) and report.events["webhook"]["dropped"] == 0
    assert {kind for kind, _ in receiver.bodies} == {"application/json"}
    assert [body for _, body in receiver.bodies] == _read(path)  # the same events, in the same order


def test_a_slow_receiver_never_blocks_and_drops_are_counted():
    receiver = Receiver(delay_s=0.2)
    try:
        sender = WebhookSender(receiver.url, capacity=4, timeout_s=2.0)
        start = time.perf_counter()
        for i in range(40):
            sender.send({"event": "label", "n": i})
        assert time.perf_counter() - start < 0.05  # 40 sends against a 0.2 s receiver: nothing waited
        assert sender.dropped >= 40 - 4 - 1  # the queue holds 4, the sender thread took at most one
        sender.close(drain_s=3.0)
        stats = sender.stats()
    finally:
        receiver.close()
    assert stats["sent"] == len(receiver.bodies) >= 4
    assert stats["sent"] + stats["dropped"] + stats["failed"] == 40
    numbers = [body["n"] for _, body in receiver.bodies]
    assert numbers == sorted(numbers) and numbers[0] == 0


def test_a_dead_receiver_counts_failures(tmp_path):
    sender = WebhookSender("http://127.0.0.1:9/none", capacity=8, timeout_s=0.5)
    for i in range(3):
        sender.send({"n": i})
    sender.close(drain_s=3.0)
    assert sender.failed == 3 and sender.sent == 0 and "Error" in sender.last_error
    with pytest.raises(EdgevidError, match="--webhook ftp://x: expected an http"):
        LiveOptions(webhook="ftp://x").validate()
