"""The headless web view of a live run (``edgevid live --serve [HOST:]PORT``): stdlib HTTP server, no framework.

- ``/``: a small page: each stream's annotated video (MJPEG), its top-k labels with scores, FPS, latency
  percentiles and a memory chart, updated twice a second from ``/status``;
- ``/stream.mjpg?stream=N``: the annotated video of stream N as ``multipart/x-mixed-replace`` JPEGs;
- ``/frame.jpg?stream=N``: the newest annotated frame as one JPEG;
- ``/status``: the run's state as JSON; ``/metrics``: the same figures in Prometheus text format
  (``prometheus-client``).

The live loop only hands over a reference to each frame it processed (:meth:`FrameHub.publish`, one slot per
stream, microseconds); drawing and JPEG encoding run in the hub's own thread (at a lower CPU priority than the
loop), only while a viewer is attached, at most ``max_fps`` per stream, and every viewer gets the newest JPEG
when it is ready for one: a slow viewer skips frames (counted) and never holds up the loop or the other viewers.
With ``token`` set, every request needs it (``?token=``, ``Authorization: Bearer``, or the cookie the page sets):
401 without it, 403 with a wrong one.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import os
import re
import threading
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

from edgevid.errors import EdgevidError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
BOUNDARY = "edgevidframe"
COOKIE = "edgevid_token"
ENCODER_NICE = 10


def parse_bind(spec: str) -> tuple[str, int]:
    """``PORT`` (localhost), ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    text = str(spec).strip()
    match = re.fullmatch(r"(?:(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\s\[\]]+)):)?(?P<port>\d+)", text)
    if not match:
        raise EdgevidError(f"--serve {spec}: expected [HOST:]PORT, e.g. 8080 (localhost only) or 0.0.0.0:8080")
    port = int(match.group("port"))
    if port > 65535:
        raise EdgevidError(f"--serve {spec}: port must be 0-65535, got {port}")
    return match.group("v6") or match.group("host") or "127.0.0.1", port


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")


class FrameHub:
    """Newest frame per stream in, newest annotated JPEG per stream out, encoded in one background thread.

    ``render(bgr, info) -> bgr`` draws the overlay (called in the hub's thread). ``publish`` stores a reference
    (the loop must not modify the array afterwards: live sources hand out a new array per frame).
    """

    def __init__(self, streams: int, render: Callable[[np.ndarray, dict], np.ndarray] | None = None,
                 max_fps: float = 15.0, quality: int = 80) -> None:
        self.streams = streams
        self.render = render
        self.min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self.params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        self.viewers = [0] * streams
        self.encoded = [0] * streams
        self.sent = [0] * streams
        self.skipped = [0] * streams
        self._inputs: list[tuple[np.ndarray, dict] | None] = [None] * streams
        self._input_seq = [0] * streams
        self._done_seq = [0] * streams
        self._jpeg: list[tuple[int, bytes] | None] = [None] * streams
        self._last_encode = [0.0] * streams
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="edgevid-encoder", daemon=True)

    def start(self) -> FrameHub:
        self._thread.start()
        return self

    def publish(self, stream: int, bgr: np.ndarray, info: dict) -> None:
        """The loop's only call: keep this frame as stream's newest (a slot; older unencoded ones are replaced)."""
        self._inputs[stream] = (bgr, info)
        self._input_seq[stream] += 1
        if self.viewers[stream]:
            self._wake.set()

    def _run(self) -> None:
        # below the loop's priority: on a busy edge CPU the inference path gets the cores first (Linux: per thread)
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENCODER_NICE)
        while not self._stopping:
            self._wake.wait(0.2)
            self._wake.clear()
            pending = False
            for stream in range(self.streams):
                if not self.viewers[stream] or self._input_seq[stream] == self._done_seq[stream]:
                    continue
                wait = self._last_encode[stream] + self.min_interval - time.perf_counter()
                if wait > 0:
                    pending = True
                    continue
                seq, item = self._input_seq[stream], self._inputs[stream]
                if item is None:
                    continue
                bgr, info = item
                shown = self.render(bgr, info) if self.render else bgr
                ok, jpeg = cv2.imencode(".jpg", shown, self.params)
                self._last_encode[stream] = time.perf_counter()
                self._done_seq[stream] = seq
                if not ok:
                    continue
                with self._cond:
                    self.encoded[stream] += 1
                    self._jpeg[stream] = (self.encoded[stream], jpeg.tobytes())
                    self._cond.notify_all()
            if pending:
                time.sleep(min(self.min_interval, 0.01))
                self._wake.set()

    def next_jpeg(self, stream: int, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest JPEG of ``stream`` with a number above ``after`` (waiting up to ``timeout``), else None."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or ((j := self._jpeg[stream]) is not None and j[0] > after),
                                timeout=timeout)
            current = self._jpeg[stream]
            if self._stopping or current is None or current[0] <= after:
                return None
            if after:
                self.skipped[stream] += current[0] - after - 1
            self.sent[stream] += 1
            return current

    def attach(self, stream: int) -> None:
        with self._cond:
            self.viewers[stream] += 1
        self._wake.set()

    def detach(self, stream: int) -> None:
        with self._cond:
            self.viewers[stream] -= 1

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def stats(self) -> dict[str, Any]:
        return {"viewers": list(self.viewers), "jpeg_encoded": list(self.encoded), "jpeg_sent": list(self.sent),
                "jpeg_skipped_by_slow_viewers": list(self.skipped)}


class LiveCollector:
    """A prometheus-client collector reading the run's ``/status`` dict at scrape time."""

    def __init__(self, status: Callable[[], dict]) -> None:
        self.status = status

    def describe(self):
        return []

    def collect(self):
        # prometheus_client: loaded only when metrics are served
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self.status()
        streams = state.get("streams", [])
        info = GaugeMetricFamily("edgevid_live_info", "The model of this live run", labels=["model", "backend",
                                                                                             "precision", "mode"])
        info.add_metric([str(state.get(k, "")) for k in ("model", "backend", "precision", "mode")], 1.0)
        yield info
        counters = (("captured", "edgevid_frames_captured", "Frames captured"),
                    ("processed", "edgevid_frames_processed", "Frames processed"),
                    ("dropped", "edgevid_frames_dropped", "Frames dropped (newest-frame capture)"),
                    ("predictions", "edgevid_predictions", "Model results"),
                    ("reconnects", "edgevid_reconnects", "Source reconnects"))
        for key, name, doc in counters:
            family = CounterMetricFamily(name, doc, labels=["stream", "source"])
            for s in streams:
                value = s["frames"][key] if key in s["frames"] else s.get(key, 0)
                family.add_metric([str(s["stream"]), s["source"]], float(value))
            yield family
        fps = GaugeMetricFamily("edgevid_fps", "Frames per second since the start", labels=["stream", "kind"])
        e2e = GaugeMetricFamily("edgevid_end_to_end_latency_ms", "Capture-to-label latency percentiles (ms)",
                                labels=["stream", "quantile"])
        score = GaugeMetricFamily("edgevid_label_score", "Score of the label shown now", labels=["stream", "label"])
        for s in streams:
            for kind, value in s["fps"].items():
                if value is not None:
                    fps.add_metric([str(s["stream"]), kind], float(value))
            for q in ("p50", "p95", "p99"):
                if s["latency_ms"].get(q) is not None:
                    e2e.add_metric([str(s["stream"]), f"0.{q[1:]}"], float(s["latency_ms"][q]))
            if s.get("label"):
                score.add_metric([str(s["stream"]), s["label"]], float(s.get("score") or 0.0))
        yield from (fps, e2e, score)
        model = GaugeMetricFamily("edgevid_model_latency_ms", "Model latency percentiles per batch (ms)",
                                  labels=["quantile"])
        for q in ("p50", "p95", "p99"):
            value = state.get("latency_ms", {}).get("model", {}).get(q)
            if value is not None:
                model.add_metric([f"0.{q[1:]}"], float(value))
        yield model
        memory = state.get("memory_mb", {})
        rss = GaugeMetricFamily("edgevid_rss_bytes", "Resident set size of the process", labels=["when"])
        for key in ("rss_end", "rss_peak"):
            if memory.get(key) is not None:
                rss.add_metric(["now" if key == "rss_end" else "peak"], memory[key] * 2**20)
        yield rss
        events = state.get("events") or {}
        dropped = CounterMetricFamily("edgevid_events_dropped", "Events dropped by a full webhook queue")
        dropped.add_metric([], float((events.get("webhook") or {}).get("dropped", 0)))
        yield dropped
        viewer = state.get("viewer") or {}
        skipped = CounterMetricFamily("edgevid_viewer_frames_skipped", "JPEG frames a slow viewer skipped",
                                      labels=["stream"])
        for i, value in enumerate(viewer.get("jpeg_skipped_by_slow_viewers", [])):
            skipped.add_metric([str(i)], float(value))
        yield skipped
        uptime = GaugeMetricFamily("edgevid_uptime_seconds", "Seconds since the live run started")
        uptime.add_metric([], float(state.get("elapsed_s", 0.0)))
        yield uptime


class LiveServer:
    """A ThreadingHTTPServer in a daemon thread serving the page, MJPEG streams, /status and /metrics."""

    def __init__(self, bind: str, status: Callable[[], dict], hub: FrameHub, token: str | None = None,
                 title: str = "edgevid live", warn: Callable[[str], None] | None = None) -> None:
        from prometheus_client import CollectorRegistry  # prometheus_client: loaded only when metrics are served

        self.host, self.port = parse_bind(bind)
        self.status = status
        self.hub = hub
        self.token = token or None
        self.title = title
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LiveCollector(status))
        self.requests = 0
        self.stopping = False
        if not is_local(self.host) and warn is not None:
            warn(f"--serve {self.host}:{self.port}: the live view is reachable from other machines"
                 + ("" if self.token else "; anyone who can reach this port sees the video (add --token)"))
        try:
            self.httpd = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        except OSError as exc:
            raise EdgevidError(f"--serve {bind}: cannot listen on {self.host}:{self.port} ({exc.strerror or exc})")\
                from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgevid-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> LiveServer:
        self.hub.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.hub.stop()
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> int | None:
        """None when allowed, else the HTTP status to answer (401 no token, 403 wrong token)."""
        if self.token is None:
            return None
        given = (query.get("token") or [None])[0]
        auth = handler.headers.get("Authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given is None and (raw := handler.headers.get("Cookie")):
            cookie = SimpleCookie(raw)
            given = cookie[COOKIE].value if COOKIE in cookie else None
        if given is None:
            return 401
        return None if hmac.compare_digest(given.encode(), self.token.encode()) else 403

    def page(self, token: str | None) -> bytes:
        suffix = f"&token={quote(token)}" if token else ""
        return PAGE.replace("{{TITLE}}", html.escape(self.title)).replace("{{TOKEN}}", suffix).encode()


def _handler_for(server: LiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "edgevid-live"

        def log_message(self, format: str, *args) -> None:  # no access log on the console
            return

        def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            server.requests += 1
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            denied = server.authorize(self, query)
            if denied is not None:
                message = b"token required\n" if denied == 401 else b"wrong token\n"
                self._send(denied, message, "text/plain; charset=utf-8",
                           {"WWW-Authenticate": 'Bearer realm="edgevid"'} if denied == 401 else None)
                return
            try:
                stream = int((query.get("stream") or ["0"])[0])
            except ValueError:
                stream = -1
            route = parts.path.rstrip("/") or "/"
            if route in ("/", "/index.html"):
                token = (query.get("token") or [None])[0] if server.token else None
                headers = {"Set-Cookie": f"{COOKIE}={quote(token)}; HttpOnly; SameSite=Strict; Path=/"} if token \
                    else None
                self._send(200, server.page(token), "text/html; charset=utf-8", headers)
            elif route == "/status":
                self._send(200, json.dumps(server.status()).encode(), "application/json")
            elif route == "/metrics":
                # prometheus_client: loaded only when metrics are served
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
            elif route in ("/stream.mjpg", "/frame.jpg"):
                if not 0 <= stream < server.hub.streams:
                    self._send(404, f"no stream {stream}\n".encode(), "text/plain; charset=utf-8")
                elif route == "/frame.jpg":
                    self._frame(stream)
                else:
                    self._mjpeg(stream)
            elif route == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _frame(self, stream: int) -> None:
            server.hub.attach(stream)
            try:
                got = server.hub.next_jpeg(stream, 0, timeout=5.0)
            finally:
                server.hub.detach(stream)
            if got is None:
                self._send(503, b"no frame yet\n", "text/plain; charset=utf-8")
            else:
                self._send(200, got[1], "image/jpeg")

        def _mjpeg(self, stream: int) -> None:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            hub = server.hub
            hub.attach(stream)
            number = 0
            try:
                while not server.stopping:
                    got = hub.next_jpeg(stream, number, timeout=0.5)
                    if got is None:
                        continue
                    number, jpeg = got
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                     "\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
                pass
            finally:
                hub.detach(stream)

    return Handler


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:1em}
h1{font-size:1.2em;margin:0 0 .5em} .streams{display:flex;flex-wrap:wrap;gap:1em}
.card{background:#1c1c1c;border-radius:6px;padding:.6em;max-width:660px}
.card img{width:100%;max-width:640px;image-rendering:auto;background:#000;display:block}
table{border-collapse:collapse;margin-top:.4em} td{padding:1px 8px 1px 0;font-variant-numeric:tabular-nums}
.label{font-size:1.3em;color:#6f6} .bar{background:#3a7;height:8px;display:inline-block}
.muted{color:#999;font-size:.9em} canvas{background:#1c1c1c;border-radius:6px}
</style></head><body>
<h1>{{TITLE}} <span class="muted" id="summary"></span></h1>
<div class="streams" id="streams"></div>
<h1>memory (RSS, MB)</h1><canvas id="mem" width="640" height="140"></canvas>
<div class="muted" id="foot"></div>
<script>
const TOKEN = "{{TOKEN}}";
const esc = t => String(t).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);
const fmt = (v, d=1) => v === null || v === undefined ? "-" : Number(v).toFixed(d);
function card(s) {
  let el = document.getElementById("s" + s.stream);
  if (!el) {
    el = document.createElement("div"); el.className = "card"; el.id = "s" + s.stream;
    el.innerHTML = `<img src="stream.mjpg?stream=${s.stream}${TOKEN}" alt="stream ${s.stream}">
      <div class="muted src"></div><div class="label"></div><table class="topk"></table><table class="stats"></table>`;
    document.getElementById("streams").appendChild(el);
  }
  el.querySelector(".src").textContent = `#${s.stream} ${s.source}` + (s.done ? ` (ended: ${s.stop_reason})` : "");
  el.querySelector(".label").textContent = s.label ? `${s.label} ${fmt(s.score, 2)}` : "warming up";
  el.querySelector(".topk").innerHTML = (s.topk || []).map(t =>
    `<tr><td>${esc(t.label)}</td><td>${fmt(t.score, 3)}</td>` +
    `<td><span class="bar" style="width:${Math.round(t.score * 120)}px"></span></td></tr>`).join("");
  const l = s.latency_ms, f = s.fps, n = s.frames;
  el.querySelector(".stats").innerHTML =
    `<tr><td>fps capture / processed / inference</td>` +
    `<td>${fmt(f.capture)} / ${fmt(f.processed)} / ${fmt(f.inference)}</td></tr>
     <tr><td>end-to-end ms p50 / p95 / p99</td><td>${fmt(l.p50)} / ${fmt(l.p95)} / ${fmt(l.p99)}</td></tr>
     <tr><td>frames captured / processed / dropped</td><td>${n.captured} / ${n.processed} / ${n.dropped}</td></tr>`;
}
function chart(history) {
  const c = document.getElementById("mem"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!history || history.length < 2) return;
  const ts = history.map(p => p[0]), ms = history.map(p => p[1]);
  const t0 = ts[0], t1 = ts[ts.length - 1] || 1, lo = Math.min(...ms) * 0.98, hi = Math.max(...ms) * 1.02 + 1e-9;
  g.strokeStyle = "#5af"; g.lineWidth = 2; g.beginPath();
  history.forEach((p, i) => { const x = 40 + (c.width - 50) * (p[0] - t0) / Math.max(t1 - t0, 1e-9);
    const y = c.height - 15 - (c.height - 25) * (p[1] - lo) / (hi - lo); i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke(); g.fillStyle = "#aaa"; g.font = "11px sans-serif";
  g.fillText(hi.toFixed(0), 2, 12); g.fillText(lo.toFixed(0), 2, c.height - 15);
  g.fillText(`${(t1 - t0).toFixed(0)} s`, c.width - 40, c.height - 2);
}
async function tick() {
  try {
    const r = await fetch("status?" + TOKEN.slice(1), {cache: "no-store"});
    if (r.ok) {
      const st = await r.json();
      st.streams.forEach(card);
      const m = st.latency_ms.model;
      document.getElementById("summary").textContent =
        `${st.model} (${st.backend}, ${st.precision}) | model ms p50/p95 ${fmt(m.p50)}/${fmt(m.p95)} | ` +
        `RSS ${fmt(st.memory_mb.rss_end, 0)} MB | ${fmt(st.elapsed_s, 0)} s` +
        (st.stop_reason ? ` | stopped: ${st.stop_reason}` : "");
      chart(st.memory_mb.history);
    }
  } catch (e) {}
  setTimeout(tick, 500);
}
tick();
</script></body></html>
"""
