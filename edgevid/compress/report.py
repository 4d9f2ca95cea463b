"""Compression reports: model x precision x backend -> size, top-1, latency p50/p95 and speed-up over the
reference on the same backend, printed as a table and saved as JSON.

Latency is measured interleaved: every artifact runs a few calls in turn, round after round, so a load change
on a shared machine hits all of them alike and the speed-ups (ratios of medians from the same rounds) stay fair.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.compress.accuracy import ValidationSet
from edgevid.errors import EdgevidError
from edgevid.meta import artifact_size_mb
from edgevid.runtime import load
from edgevid.utils.atomic import write_json_atomic
from edgevid.utils.console import console, make_table
from edgevid.utils.machine import machine_info

REPORT_COLUMNS = ("backend", "precision", "size_mb", "top1", "p50_ms", "p95_ms", "speedup")
ROUNDS = 5


def benchmark_artifacts(entries: Sequence[tuple[dict[str, Any], str | Path]], *, valset: ValidationSet | None = None,
                        iters: int = 20, threads: int | None = None, batch: int = 8) -> list[dict[str, Any]]:
    """One row per ``(row, artifact)`` entry, loaded with :func:`edgevid.runtime.load`: ``row`` plus precision,
    size, top-1 on ``valset`` (unless ``row`` has it) and batch-1 latency over ``iters`` interleaved calls.
    An artifact that fails to load or run gets ``status: failed: ...`` and the others go on."""

    rows, runners = [], []
    for base, path in entries:
        row = {**base, "size_mb": artifact_size_mb(path), "artifact": str(path)}
        try:
            predictor = load(path, threads=threads)
            row.setdefault("backend", predictor.backend)
            row["precision"] = predictor.meta.precision
            if row.get("top1") is None and valset is not None:
                row["top1"] = valset.top1(valset.scores(predictor.predict, batch=batch))
            clip = valset.clips[:1] if valset is not None else np.zeros((1, *predictor.input_shape), np.float32)
            runners.append((row, lambda p=predictor, c=clip: p.predict(c)))
            row["status"] = "ok"
        except EdgevidError as exc:
            row["status"] = f"failed: {str(exc).splitlines()[0]}"
        rows.append(row)
    if iters > 0 and runners:
        for row, timing in zip((r for r, _ in runners), interleaved_latency([run for _, run in runners], iters),
                               strict=True):
            row.update(timing)
    return rows


def interleaved_latency(runs: Sequence, iters: int, rounds: int = ROUNDS, warmup: int = 2) -> list[dict[str, float]]:
    """p50/p95 milliseconds per call of each function, timed in ``rounds`` interleaved rounds."""
    for run in runs:
        for _ in range(warmup):
            run()
    per_round = max(1, -(-iters // rounds))
    samples: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, times in zip(runs, samples, strict=True):
            for _ in range(per_round):
                start = time.perf_counter()
                run()
                times.append((time.perf_counter() - start) * 1e3)
    return [{"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)), "latency_iters": len(t)}
            for t in samples]


def add_speedups(rows: Sequence[dict[str, Any]], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """``speedup`` = reference p50 / p50, the reference being the row on the same backend whose items include
    ``reference`` (e.g. ``{"precision": "fp32"}`` or ``{"model": "original"}``)."""
    base = {r.get("backend"): r.get("p50_ms") for r in rows if all(r.get(k) == v for k, v in reference.items())}
    out = []
    for row in rows:
        ref = base.get(row.get("backend"))
        out.append({**row, "speedup": ref / row["p50_ms"] if ref and row.get("p50_ms") else None})
    return out


def print_report(rows: Sequence[dict[str, Any]], title: str, columns: Sequence[str] = REPORT_COLUMNS) -> None:
    console.print(make_table(rows, columns, title=title,
                             formats={"size_mb": ".2f", "top1": ".2f", "p50_ms": ".1f", "p95_ms": ".1f",
                                      "speedup": ".2f", "params_m": ".2f", "gmacs": ".3f"}))


def write_report(path: str | Path, rows: Sequence[dict[str, Any]], **context: Any) -> Path:
    """JSON with the machine (CPU, cores, load average), the ``context`` (what was compressed, how) and the rows."""

    return write_json_atomic(path, {"machine": machine_info(), **context, "rows": list(rows)})
