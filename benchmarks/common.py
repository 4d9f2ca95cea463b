"""Shared benchmark plumbing: machine naming and info, latency timing, and atomic JSON + Markdown results.

Machine naming/info, the latency loop and Markdown tables live in the package (:mod:`edgevid.utils.machine`,
:mod:`edgevid.utils.tables`; ``edgevid bench`` uses them too) and are re-exported here. Every benchmark writes
under ``benchmarks/results/<machine>/`` where ``<machine>`` is :func:`machine_name` (e.g. ``cpu-2c-amd-epyc``), so
results from different hardware never overwrite each other.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.utils.atomic import write_json_atomic, write_text_atomic
from edgevid.utils.machine import cpu_cores, cpu_model, machine_info, machine_name, time_callable
from edgevid.utils.tables import markdown_table

RESULTS_ROOT = Path(__file__).resolve().parent / "results"


def results_dir(study: str | None = None) -> Path:
    """``benchmarks/results/<machine>/`` (created); ``study`` names the files a benchmark writes there."""
    if study is not None and not re.fullmatch(r"[\w.-]+", study):
        raise ValueError(f"study name {study!r} must be a plain file stem (letters, digits, _ . -)")
    directory = RESULTS_ROOT / machine_name()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def time_interleaved(fns: dict[Any, Callable[[], Any]], warmup: int = 3, iters: int = 30) -> dict[Any, dict]:
    """Time several callables round-robin (one call of each per round) so that load changes on a shared machine
    hit all of them alike; per name the same statistics as :func:`time_callable` (ms)."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[Any, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    stats = {}
    for name, values in samples.items():
        array = np.asarray(values)
        p50, p95, p99 = np.percentile(array, [50, 95, 99])
        stats[name] = {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(array.mean()),
                       "min": float(array.min()), "max": float(array.max()), "iters": iters}
    return stats


def write_results(name: str, rows: Sequence[dict[str, Any]], info: dict[str, Any], *, notes: str = "",
                  columns: Sequence[str] | None = None, directory: Path | None = None) -> tuple[Path, Path]:
    """Write ``<name>.json`` (info + rows + notes) and ``<name>.md`` atomically; returns both paths."""
    directory = directory or results_dir(name)
    json_path = write_json_atomic(directory / f"{name}.json", {"info": info, "notes": notes, "rows": list(rows)})
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    header = [
        f"# {name}",
        "",
        f"- machine: `{info.get('machine')}` ({info.get('cpu_model')}, {info.get('cpu_cores')} cores, "
        f"{info.get('ram_gb')} GB RAM{', GPU ' + info['gpu'] if info.get('gpu') else ''})",
        f"- os: {info.get('os')}, python {info.get('python')}",
        f"- versions: {versions}",
        f"- load average (1/5/15 min) at start: {info.get('load_avg_1_5_15')}",
        f"- date: {info.get('date')}",
    ]
    body = "\n".join(header) + "\n\n" + (notes.strip() + "\n\n" if notes.strip() else "")
    md_path = write_text_atomic(directory / f"{name}.md", body + markdown_table(rows, columns) + "\n")
    return json_path, md_path


def merged_rows(study: str, rows: list[dict[str, Any]], recipes: list[str]) -> list[dict[str, Any]]:
    """``rows`` plus the rows of other recipes already in ``<study>.json`` (measured by an earlier invocation;
    each row carries its own ``measured_at`` and load average), so recipes can be measured one at a time."""
    path = results_dir() / f"{study}.json"
    earlier = json.loads(path.read_text())["rows"] if path.is_file() else []
    return [r for r in earlier if r.get("recipe") not in recipes] + rows


def stamp(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark rows with when they were measured and the machine's load then."""
    info = machine_info()
    return [{**r, "measured_at": info["date"], "load_avg_1min": info["load_avg_1_5_15"][0]} for r in rows]


__all__ = [
    "RESULTS_ROOT",
    "cpu_cores",
    "cpu_model",
    "machine_info",
    "machine_name",
    "markdown_table",
    "merged_rows",
    "results_dir",
    "stamp",
    "time_callable",
    "time_interleaved",
    "write_results",
]

if __name__ == "__main__":
    import json

    json.dump(machine_info(), sys.stdout, indent=2)
    print()
