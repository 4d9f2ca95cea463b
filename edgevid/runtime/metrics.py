"""What the live loop measures: latency percentiles, process and accelerator memory, and the run report."""

from __future__ import annotations

import os
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.utils.atomic import write_json_atomic

MB = 2**20
PERCENTILES = (50, 95, 99)


class LatencyStats:
    """Latency samples in milliseconds with bounded memory.

    Keeps every sample up to ``capacity``, then a uniform reservoir sample of that size (Vitter's algorithm R),
    so percentiles stay exact for short runs and unbiased for arbitrarily long ones; count, mean and max are exact.
    """

    def __init__(self, capacity: int = 50_000, seed: int = 0) -> None:
        self.samples = np.empty(capacity, dtype=np.float64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self._rng = random.Random(seed)

    def add(self, ms: float) -> None:
        capacity = len(self.samples)
        if self.count < capacity:
            self.samples[self.count] = ms
        else:
            slot = self._rng.randrange(self.count + 1)
            if slot < capacity:
                self.samples[slot] = ms
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)

    def summary(self) -> dict[str, float | None]:
        """``{p50, p95, p99, max, mean}`` in ms (``None`` without samples)."""
        if not self.count:
            return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
        kept = self.samples[: min(self.count, len(self.samples))]
        p50, p95, p99 = (float(v) for v in np.percentile(kept, PERCENTILES))
        return {"p50": p50, "p95": p95, "p99": p99, "max": self.max, "mean": self.total / self.count}


def rss_mb() -> float:
    """Resident set size of this process in MB."""
    import psutil  # psutil: only where the standard library has no answer

    return psutil.Process().memory_info().rss / MB


def _meminfo_kb(key: str, path: Path = Path("/proc/meminfo")) -> int | None:
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return None


class AcceleratorMemory:
    """Peak accelerator memory of this run, from the first source that applies.

    - ``torch.cuda``: ``max_memory_allocated`` when the torch backend runs on CUDA (``torch_allocator``);
    - ``nvml``: this process's GPU memory from NVML (``pynvml``), e.g. ONNX Runtime CUDA or TensorRT, whose
      memory the torch allocator does not see;
    - ``jetson-nvmap``: ``NvMapMemUsed`` from /proc/meminfo on Jetson (GPU-mapped shared RAM, system wide, the
      figure jtop shows as shared GPU memory);
    - none: ``peak_mb`` stays ``None`` (CPU-only runs).
    """

    def __init__(self, device: str = "cpu", torch_allocator: bool = False) -> None:
        self.source: str | None = None
        self.peak_mb: float | None = None
        self._nvml_handles: list = []
        if torch_allocator and device.startswith("cuda") and self._torch_cuda_ready():
            import torch  # torch: heavy, loaded only where a model or CUDA is asked about

            torch.cuda.reset_peak_memory_stats()
            self.source = "torch.cuda"
        elif self._init_nvml():
            self.source = "nvml"
        elif _meminfo_kb("NvMapMemUsed") is not None:
            self.source = "jetson-nvmap"
        self.sample()

    @staticmethod
    def _torch_cuda_ready() -> bool:
        import torch  # torch: heavy, loaded only where a model or CUDA is asked about

        return torch.cuda.is_available() and torch.cuda.is_initialized()

    def _init_nvml(self) -> bool:
        try:
            import pynvml  # pynvml: optional, NVIDIA GPUs only

            pynvml.nvmlInit()
            self._nvml_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # no pynvml, no driver or no GPU: NVML simply does not apply
            return False
        return bool(self._nvml_handles)

    def _current_mb(self) -> float | None:
        if self.source == "torch.cuda":
            import torch  # torch: heavy, loaded only where a model or CUDA is asked about

            return torch.cuda.max_memory_allocated() / MB
        if self.source == "nvml":
            import pynvml  # pynvml: optional, NVIDIA GPUs only

            pid = os.getpid()
            used = 0
            for handle in self._nvml_handles:
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == pid and proc.usedGpuMemory:
                        used += proc.usedGpuMemory
            return used / MB
        if self.source == "jetson-nvmap":
            kb = _meminfo_kb("NvMapMemUsed")
            return None if kb is None else kb / 1024
        return None

    def sample(self) -> None:
        current = self._current_mb()
        if current is not None:
            self.peak_mb = current if self.peak_mb is None else max(self.peak_mb, current)


class MemoryMonitor:
    """RSS at start, peak and end, plus the accelerator peak; sampled at most every ``interval_s``.

    ``history`` keeps ``(seconds since start, RSS MB)`` at most every ``history_every_s`` (the web view's chart),
    bounded to the last ``history_len`` points.
    """

    def __init__(self, device: str = "cpu", torch_allocator: bool = False, interval_s: float = 0.1,
                 history_every_s: float = 1.0, history_len: int = 600) -> None:
        self.interval_s = interval_s
        self.rss_start = rss_mb()
        self.rss_peak = self.rss_start
        self.rss_end = self.rss_start
        self.accelerator = AcceleratorMemory(device, torch_allocator)
        self._start = self._last = time.perf_counter()
        self.history_every_s = history_every_s
        self.history: deque[tuple[float, float]] = deque([(0.0, self.rss_start)], maxlen=history_len)

    def sample(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        self.rss_end = rss_mb()
        self.rss_peak = max(self.rss_peak, self.rss_end)
        self.accelerator.sample()
        elapsed = now - self._start
        if elapsed - self.history[-1][0] >= self.history_every_s:
            self.history.append((round(elapsed, 2), round(self.rss_end, 2)))

    def summary(self) -> dict[str, Any]:
        return {"rss_start": self.rss_start, "rss_peak": self.rss_peak, "rss_end": self.rss_end,
                "accelerator_peak": self.accelerator.peak_mb, "accelerator_source": self.accelerator.source}


@dataclass
class LiveReport:
    """What a live run did and how fast: the content of ``report.json``.

    Invariant: ``frames_processed + frames_dropped == frames_captured``. ``latency_ms.end_to_end`` runs from the
    capture timestamp of the newest frame of a window to the moment its label is available. With several sources
    the top-level figures add up all streams and ``streams`` has one section per source (its frames, latency,
    labels and stop reason); ``failed`` is true when a source was lost (reconnects exhausted) or stalled.
    """

    model: str
    backend: str
    precision: str
    execution: str
    source: str
    mode: str
    frames_captured: int
    frames_processed: int
    frames_dropped: int
    predictions: int
    duration_s: float
    fps: dict[str, float | None]
    latency_ms: dict[str, dict[str, float | None]]
    memory_mb: dict[str, Any]
    stop_reason: str
    last_prediction: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    streams: list[dict[str, Any]] = field(default_factory=list)
    cpu_features: list[str] = field(default_factory=list)
    batches: dict[str, int] = field(default_factory=dict)
    events: dict[str, Any] | None = None
    serve: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    def rows(self) -> list[dict[str, Any]]:
        """One row per figure, for the summary table."""
        rows: list[dict[str, Any]] = [
            {"metric": "model", "value": f"{self.model} ({self.backend}, {self.precision} ran as {self.execution}, "
                                         f"{self.mode})"},
            {"metric": "source", "value": self.source},
            {"metric": "stop reason", "value": self.stop_reason},
            {"metric": "frames captured / processed / dropped",
             "value": f"{self.frames_captured} / {self.frames_processed} / {self.frames_dropped}"},
            {"metric": "predictions", "value": str(self.predictions)},
            {"metric": "fps capture / processed / inference",
             "value": " / ".join(_fmt(self.fps.get(k), ".1f") for k in ("capture", "processed", "inference"))},
        ]
        for name, stats in self.latency_ms.items():
            rows.append({"metric": f"{name} latency ms p50 / p95 / p99 / max",
                         "value": " / ".join(_fmt(stats.get(k), ".1f") for k in ("p50", "p95", "p99", "max"))})
        mem = self.memory_mb
        rows.append({"metric": "RSS MB start / peak / end",
                     "value": " / ".join(_fmt(mem.get(k), ".0f") for k in ("rss_start", "rss_peak", "rss_end"))})
        accelerator = _fmt(mem.get("accelerator_peak"), ".0f")
        source = mem.get("accelerator_source") or "none"
        rows.append({"metric": "accelerator peak MB", "value": f"{accelerator} ({source})"})
        if len(self.streams) > 1:
            rows.append({"metric": "model batches (streams per call: calls)",
                         "value": ", ".join(f"{k}: {v}" for k, v in sorted(self.batches.items()))})
            for s in self.streams:
                e2e = s["latency_ms"]["end_to_end"]
                label = s["last_prediction"][0]["label"] if s["last_prediction"] else "-"
                rows.append({"metric": f"stream {s['stream']}: {s['source']}",
                             "value": f"{s['frames_captured']} / {s['frames_processed']} / {s['frames_dropped']} "
                                      f"frames, {s['predictions']} pred, e2e p95 {_fmt(e2e.get('p95'), '.1f')} ms, "
                                      f"{label}; {s['stop_reason']}"})
        if self.events:
            hook = self.events.get("webhook")
            value = ", ".join(f"{k} {v}" for k, v in sorted(self.events.get("emitted", {}).items())) or "none"
            if hook:
                value += f"; webhook sent {hook['sent']}, failed {hook['failed']}, dropped {hook['dropped']}"
            rows.append({"metric": "events", "value": value})
        return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def log_line(elapsed_s: float, captured: int, processed: int, dropped: int, predictions: int,
             fps: dict[str, float | None], model: dict[str, float | None], end_to_end: dict[str, float | None],
             rss: float) -> str:
    """The one-line live status printed every ``--log-every`` seconds."""
    return (f"[{elapsed_s:6.1f}s] frames {captured} cap / {processed} proc / {dropped} drop, {predictions} pred | "
            f"fps cap {_fmt(fps.get('capture'), '.1f')} inf {_fmt(fps.get('inference'), '.1f')} | "
            f"model p50/p95 {_fmt(model.get('p50'), '.1f')}/{_fmt(model.get('p95'), '.1f')} ms | "
            f"e2e p50/p95 {_fmt(end_to_end.get('p50'), '.1f')}/{_fmt(end_to_end.get('p95'), '.1f')} ms | "
            f"rss {rss:.0f} MB")
