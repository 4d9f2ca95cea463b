"""Events of a live run for other programs: JSON lines (``--events``) and HTTP POSTs (``--webhook``).

One event per label change and one summary per stream every N seconds, plus an ``end`` event; each event is one
JSON object (one line in JSONL, the body of one POST). Times are Unix seconds (``time.time()``); ``capture_time`` is
when the newest frame of the window that produced the label was captured. Nothing here blocks the live loop: the
JSONL writer does a small buffered write per event, and the webhook sender hands events to its own thread through a
bounded queue; when the queue is full (a slow or dead receiver) the event is dropped and counted.

Event kinds (``"event"`` key):

- ``label``: ``stream``, ``source``, ``frame`` (index in the source), ``capture_time``, ``time``, ``label``, ``score``,
  ``previous`` (the label before, ``null`` at the first one), ``topk`` (``[{label, score}]``);
- ``summary``: ``stream``, ``source``, ``from``/``to`` (Unix seconds), ``frames`` captured / ``processed`` /
  ``dropped`` and ``predictions`` in the interval, ``fps`` (processed), ``label``/``score`` (current),
  ``labels`` (predictions per label in the interval), ``latency_ms`` (end-to-end p50/p95 in the interval);
- ``end``: ``stop_reason``, ``failed``, ``streams`` (frames and predictions per stream).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO, Any

from edgevid.errors import EdgevidError
from edgevid.runtime.metrics import LatencyStats


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


class JsonlWriter:
    """Events as JSON lines to a file (appended to, flushed after each event) or ``-`` for stdout."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.written = 0
        self._owned = target != "-"
        if self._owned:
            path = Path(target)
            if path.is_dir():
                raise EdgevidError(f"--events {target}: is a folder; expected a .jsonl file or - for stdout")
            if not path.parent.exists():
                raise EdgevidError(f"--events {target}: folder {path.parent} does not exist")
            self._file: IO[str] = path.open("a", encoding="utf-8")
        else:
            self._file = sys.stdout

    def send(self, event: dict[str, Any]) -> None:
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        if self._owned:
            self._file.close()

    def stats(self) -> dict[str, Any]:
        return {"target": self.target, "written": self.written}


class WebhookSender:
    """POSTs each event as JSON to ``url`` from a background thread, through a queue of at most ``capacity`` events.

    ``send`` never blocks: with the queue full the event is dropped (``dropped``). A POST that fails or times out
    (``timeout_s``) counts in ``failed`` and is not retried, so a dead receiver costs at most one timeout per event
    and the queue bounds memory.
    """

    def __init__(self, url: str, capacity: int = 64, timeout_s: float = 2.0) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise EdgevidError(f"--webhook {url}: expected an http:// or https:// URL")
        if capacity < 1:
            raise EdgevidError(f"--webhook-queue must be >= 1, got {capacity}")
        self.url = url
        self.timeout_s = timeout_s
        self.sent = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="edgevid-webhook", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            body = json.dumps(event, separators=(",", ":")).encode()
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "User-Agent": "edgevid-live"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.sent += 1
            except (OSError, urllib.error.URLError, ValueError) as exc:
                self.failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}"

    def close(self, drain_s: float = 2.0) -> None:
        """Let queued events go out for up to ``drain_s`` seconds, then abandon the rest (counted as dropped)."""
        deadline = time.monotonic() + drain_s
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        while True:  # what is still queued will not be sent
            try:
                if self._queue.get_nowait() is not None:
                    self.dropped += 1
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "queued": self._queue.qsize(), "last_error": self.last_error}


class _Interval:
    """What one stream did since its last summary."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.labels: Counter[str] = Counter()
        self.e2e = LatencyStats(capacity=4096)


class EventHub:
    """Turns the loop's predictions into events and fans them out to the sinks (JSONL, webhook).

    ``clock_offset`` converts the loop's ``perf_counter`` capture timestamps to Unix time.
    """

    def __init__(self, sinks: list, sources: list[str], summary_every: float = 10.0) -> None:
        self.sinks = sinks
        self.sources = sources
        self.summary_every = summary_every
        self.clock_offset = time.time() - time.perf_counter()
        now = time.perf_counter()
        self.last_label: list[str | None] = [None] * len(sources)
        self.intervals = [_Interval(now) for _ in sources]
        self.counts_at_start: list[dict[str, int]] = [{} for _ in sources]
        self.emitted = Counter()

    @classmethod
    def from_options(cls, events: str | None, webhook: str | None, sources: list[str], summary_every: float,
                     webhook_queue: int = 64, webhook_timeout: float = 2.0) -> EventHub | None:
        sinks: list = []
        if events:
            sinks.append(JsonlWriter(events))
        if webhook:
            sinks.append(WebhookSender(webhook, webhook_queue, webhook_timeout))
        return cls(sinks, sources, summary_every) if sinks else None

    def unix(self, perf_time: float) -> float:
        return perf_time + self.clock_offset

    def emit(self, event: dict[str, Any]) -> None:
        self.emitted[event["event"]] += 1
        for sink in self.sinks:
            sink.send(event)

    def prediction(self, stream: int, label, e2e_ms: float, capture_time: float, frame: int) -> None:
        """Called at every prediction: a ``label`` event when the shown label changed."""
        interval = self.intervals[stream]
        interval.labels[label.label] += 1
        interval.e2e.add(e2e_ms)
        previous = self.last_label[stream]
        if label.label == previous:
            return
        self.last_label[stream] = label.label
        self.emit({"event": "label", "time": _round(time.time()), "capture_time": _round(self.unix(capture_time)),
                   "stream": stream, "source": self.sources[stream], "frame": frame, "label": label.label,
                   "score": _round(label.score), "previous": previous,
                   "topk": [{"label": name, "score": _round(score)} for name, score in label.topk]})

    def summary_due(self, now: float) -> bool:
        return now - self.intervals[0].start >= self.summary_every

    def summaries(self, now: float, counts: list[dict[str, int]], labels: list) -> None:
        """One ``summary`` per stream; ``counts`` are each stream's running frame counters (captured, processed,
        dropped, predictions), ``labels`` each stream's current Label (or None)."""
        for stream, interval in enumerate(self.intervals):
            before = self.counts_at_start[stream]
            delta = {key: value - before.get(key, 0) for key, value in counts[stream].items()}
            span = max(now - interval.start, 1e-9)
            e2e = interval.e2e.summary()
            label = labels[stream]
            self.emit({"event": "summary", "time": _round(time.time()), "stream": stream,
                       "source": self.sources[stream], "from": _round(self.unix(interval.start)),
                       "to": _round(self.unix(now)), "frames": delta.get("captured", 0),
                       "processed": delta.get("processed", 0), "dropped": delta.get("dropped", 0),
                       "predictions": delta.get("predictions", 0), "fps": _round(delta.get("processed", 0) / span, 2),
                       "label": label.label if label else None, "score": _round(label.score) if label else None,
                       "labels": dict(interval.labels),
                       "latency_ms": {"p50": _round(e2e["p50"], 2), "p95": _round(e2e["p95"], 2)}})
            self.intervals[stream] = _Interval(now)
            self.counts_at_start[stream] = dict(counts[stream])

    def close(self, stop_reason: str, failed: bool, streams: list[dict[str, Any]]) -> None:
        self.emit({"event": "end", "time": _round(time.time()), "stop_reason": stop_reason, "failed": failed,
                   "streams": streams})
        for sink in self.sinks:
            sink.close()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"emitted": dict(self.emitted)}
        for sink in self.sinks:
            out["webhook" if isinstance(sink, WebhookSender) else "jsonl"] = sink.stats()
        return out
