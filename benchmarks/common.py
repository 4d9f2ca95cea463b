"""Shared benchmark plumbing: machine naming and info, latency timing, and atomic JSON + Markdown results.

Machine naming/info, the latency loop and Markdown tables live in the package (:mod:`edgevid.utils.machine`,
:mod:`edgevid.utils.tables`; ``edgevid bench`` uses them too) and are re-exported here. Every benchmark writes
under ``benchmarks/results/<machine>/`` where ``<machine>`` is :func:`machine_name` (e.g. ``cpu-2c-amd-epyc-avx2``), so
results from different hardware never overwrite each other.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgevid.utils.atomic import write_json_atomic, write_text_atomic
from edgevid.utils.machine import cpu_cores, cpu_model, latency_stats, machine_info, machine_name, time_callable
from edgevid.utils.tables import markdown_table

RESULTS_ROOT = Path(__file__).resolve().parent / "results"


def results_dir(study: str | None = None) -> Path:
    """``benchmarks/results/<machine>/`` (created); ``study`` names the files a benchmark writes there."""
    if study is not None and not re.fullmatch(r"[\w.-]+", study):
        raise ValueError(f"study name {study!r} must be a plain file stem (letters, digits, _ . -)")
    directory = RESULTS_ROOT / machine_name()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _block_worker(conn, factory: Callable[..., Callable[[], Any]], kwargs: dict[str, Any]) -> None:
    """Build ``factory(**kwargs)``, then time blocks of calls on request: ``(warmup, iters)`` -> samples (ms)."""
    try:
        fn = factory(**kwargs)
        conn.send(None)
        while (request := conn.recv()) is not None:
            warmup, iters = request
            for _ in range(warmup):
                fn()
            samples = []
            for _ in range(iters):
                start = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - start) * 1e3)
            conn.send(samples)
    except Exception as exc:  # reported to the parent, which raises it with the callable's name
        conn.send(f"{type(exc).__name__}: {exc}")


def time_in_processes(factories: dict[Any, tuple[Callable[..., Callable[[], Any]], dict[str, Any]]], *,
                      rounds: int = 5, block: int = 6, warmup: int = 2) -> dict[Any, dict]:
    """Latency statistics (ms, as :func:`time_callable`) of callables each built in its own process by
    ``factory(**kwargs)`` (a module-level function) and timed in alternating blocks: per round, each process makes
    ``warmup`` untimed and ``block`` timed calls while the others wait.

    One runtime per process, so no other runtime's thread pool competes with the one timed (in one process,
    PyTorch eager X3D-XS took 44 to 95 ms depending on which runtime had run just before it), and the rounds
    spread load changes of a shared machine over all of them.
    """
    if rounds < 1 or block < 1:
        raise ValueError(f"rounds and block must be >= 1, got {rounds} and {block}")
    context = multiprocessing.get_context("spawn")
    workers: dict[Any, tuple[Any, Any]] = {}

    def reply(name: Any) -> Any:
        answer = workers[name][1].recv()
        if isinstance(answer, str):
            raise RuntimeError(f"{name}: {answer}")
        return answer

    samples: dict[Any, list[float]] = {name: [] for name in factories}
    try:
        for name, (factory, kwargs) in factories.items():
            conn, child = context.Pipe()
            process = context.Process(target=_block_worker, args=(child, factory, kwargs), daemon=True)
            process.start()
            child.close()
            workers[name] = (process, conn)
            reply(name)
        for _ in range(rounds):
            for name, (_, conn) in workers.items():
                conn.send((warmup, block))
                samples[name] += reply(name)
    finally:
        for process, conn in workers.values():
            with contextlib.suppress(OSError):
                conn.send(None)
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return {name: latency_stats(values) for name, values in samples.items()}


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
        f"- CPU features (detected): {', '.join(info.get('cpu_features') or []) or 'not recorded'}",
        f"- os: {info.get('os')}, python {info.get('python')}",
        f"- versions: {versions}",
        f"- load average (1/5/15 min) at start: {info.get('load_avg_1_5_15')}",
        f"- date: {info.get('date')}",
    ]
    body = "\n".join(header) + "\n\n" + (notes.strip() + "\n\n" if notes.strip() else "")
    md_path = write_text_atomic(directory / f"{name}.md", body + markdown_table(rows, columns) + "\n")
    return json_path, md_path


def merged_rows(study: str, rows: list[dict[str, Any]], recipes: list[str],
                by: Sequence[str] = ("recipe",)) -> list[dict[str, Any]]:
    """``rows`` plus the rows already in ``<study>.json`` (measured by an earlier invocation; each row carries its
    own ``measured_at`` and load average) of other recipes, or with ``by`` of other combinations of those fields than
    this run's (e.g. recipe and dataset style), so they can be measured one invocation at a time."""
    path = results_dir() / f"{study}.json"
    earlier = json.loads(path.read_text())["rows"] if path.is_file() else []
    if tuple(by) == ("recipe",):
        return [r for r in earlier if r.get("recipe") not in recipes] + rows
    measured = {tuple(r.get(k) for k in by) for r in rows}
    return [r for r in earlier if tuple(r.get(k) for k in by) not in measured] + rows


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
    "time_in_processes",
    "write_results",
]

if __name__ == "__main__":
    import json

    json.dump(machine_info(), sys.stdout, indent=2)
    print()
