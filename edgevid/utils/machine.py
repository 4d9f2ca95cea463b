"""What a measurement ran on, and how it is timed: machine name and info, latency percentiles.

``machine_name()`` (``cpu-<cores>c-<short cpu model>-<ISA level>``, e.g. ``cpu-2c-amd-epyc-avx2``) names the
results folder of a machine; ``cpu_features()`` (what decides precisions) is read from /proc/cpuinfo;
``machine_info()`` is stored in every benchmark result. ``time_callable`` is the one latency loop shared by
``edgevid bench`` and the scripts in ``benchmarks/``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = ("torch", "onnx", "onnxruntime", "onnxslim", "openvino", "nncf", "numpy", "tensorrt")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown-cpu"


def _short_cpu(model: str) -> str:
    noise = r"\(r\)|\(tm\)|\bcpu\b|\bprocessor\b|@.*$|\d+-core|\bwith\b.*$"
    words = re.sub(noise, " ", model.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", words).strip("-")
    return "-".join(slug.split("-")[:4]) or "unknown-cpu"


# /proc/cpuinfo flags behind each feature that decides which precisions run natively.
_FEATURE_FLAGS = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "vnni": ("avx512_vnni", "avx_vnni", "amx_int8"),
    "bf16": ("avx512_bf16", "amx_bf16"),
    "amx": ("amx_tile",),
    "fp16": ("avx512_fp16", "amx_fp16"),
    "neon": ("asimd", "neon"),
}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``) from /proc/cpuinfo; empty where it is absent."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return frozenset()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_features(flags: frozenset[str] | None = None) -> dict[str, bool]:
    """Which of AVX2, AVX-512, VNNI, BF16, AMX, FP16 (and ARM NEON) this CPU has, detected from its flags."""
    flags = cpu_flags() if flags is None else flags
    return {name: any(f in flags for f in names) for name, names in _FEATURE_FLAGS.items()}


def isa_level(flags: frozenset[str] | None = None) -> str:
    """The highest level that changes what runs fast: ``amx``, ``avx512-bf16``, ``avx512-vnni``, ``avx512``,
    ``avx2``, ``neon`` or the architecture's name."""
    features = cpu_features(flags)
    for level, needs in (("amx", "amx"), ("avx512-bf16", "bf16"), ("avx512-vnni", "vnni"), ("avx512", "avx512"),
                         ("avx2", "avx2"), ("neon", "neon")):
        if features[needs] and (needs not in ("bf16", "vnni") or features["avx512"]):
            return level
    return platform.machine().lower() or "unknown-isa"


def cpu_cores() -> int:
    """CPU cores this process may use (affinity-aware on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_name() -> str:
    """``cpu-<cores>c-<short cpu model>-<ISA level>``, e.g. ``cpu-2c-amd-epyc-avx2``; the results folder of this
    machine (one CPU model name covers CPUs of several ISA levels)."""
    return f"cpu-{cpu_cores()}c-{_short_cpu(cpu_model())}-{isa_level()}"


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def jetson_model() -> str | None:
    """The Jetson module's name (device tree) on an L4T system, else None."""
    model = Path("/proc/device-tree/model")
    if Path("/etc/nv_tegra_release").exists() and model.exists():
        return model.read_text(errors="replace").strip("\x00\n ")
    return None


def jetson_power_mode() -> str | None:
    """The current nvpmodel power mode (e.g. ``MAXN``) on a Jetson, else None."""
    if jetson_model() is None:
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"NV Power Mode:\s*(\S+)", out)
    return match.group(1) if match else None


def gpu_name() -> str | None:
    try:
        import torch  # torch: heavy, loaded only where a model or CUDA is asked about
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, RAM, OS, load, library versions, GPU/Jetson when present."""
    import psutil  # psutil: only where the standard library has no answer

    info: dict[str, Any] = {
        "machine": machine_name(),
        "cpu_model": cpu_model(),
        "cpu_cores": cpu_cores(),
        "cpu_features": [name for name, present in cpu_features().items() if present],
        "isa_level": isa_level(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {name: v for name in PACKAGES if (v := package_version(name))},
    }
    if gpu := gpu_name():
        info["gpu"] = gpu
    if jetson := jetson_model():
        info["jetson"] = jetson
        info["power_mode"] = jetson_power_mode()
    return info


def time_callable(fn: Callable[[], Any], warmup: int = 5, iters: int = 30, max_seconds: float | None = None,
                  min_iters: int = 5) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then up to ``iters`` times timed; latency statistics in milliseconds.

    With ``max_seconds`` the timed loop stops once that much time has passed and at least ``min_iters`` calls
    were timed, so a slow format cannot stall a benchmark; ``iters`` in the result is the count actually timed.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        fn()
    samples = []
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    while len(samples) < iters:
        start = time.perf_counter()
        fn()
        end = time.perf_counter()
        samples.append((end - start) * 1e3)
        if deadline is not None and end >= deadline and len(samples) >= min(min_iters, iters):
            break
    return latency_stats(samples)


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99, mean, min, max (ms) and the count of latency samples."""
    values = np.asarray(samples_ms)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(values.mean()),
            "min": float(values.min()), "max": float(values.max()), "iters": len(values)}


__all__ = [
    "PACKAGES",
    "cpu_cores",
    "cpu_features",
    "cpu_flags",
    "cpu_model",
    "gpu_name",
    "isa_level",
    "jetson_model",
    "jetson_power_mode",
    "latency_stats",
    "machine_info",
    "machine_name",
    "package_version",
    "time_callable",
]
