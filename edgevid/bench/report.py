"""The benchmark table: one :class:`BenchRow` per format x precision x batch, and the files it is written to.

Every row has every column (``None`` where a figure does not apply or the format failed); ``status`` is one of
:data:`STATUSES` and ``reason`` says why a row is not ``ok``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from edgevid.utils.atomic import write_json_atomic, write_text_atomic
from edgevid.utils.console import make_table
from edgevid.utils.plotting import pyplot, save_figure
from edgevid.utils.tables import markdown_table

STATUSES = ("ok", "export failed", "runtime failed", "unavailable")
TABLE_COLUMNS = ["format", "precision", "execution", "batch", "status", "size_mb", "top1", "p50_ms", "p95_ms",
                 "p99_ms", "fps", "peak_rss_mb", "gmacs"]
TABLE_FORMATS = {"size_mb": ".2f", "top1": ".2f", "p50_ms": ".2f", "p95_ms": ".2f", "p99_ms": ".2f", "fps": ".1f",
                 "peak_rss_mb": ".0f", "gmacs": ".3f"}
PLOT_COLORS = {"torch": "tab:red", "onnx": "tab:blue", "openvino": "tab:green", "trt": "tab:purple"}
PLOT_MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^"}
SCHEMA_VERSION = 1
PLAIN_WIDTH = 170
LONG_COMMAND = 600  # characters; streaming models list every state tensor in their trtexec shapes


@dataclass
class BenchRow:
    """One measured (or failed) format. Latencies are per call of ``batch`` clips (per frame with streaming)."""

    format: str
    target: str
    precision: str
    batch: int
    status: str = "ok"
    reason: str = ""
    artifact: str | None = None
    backend: str | None = None
    execution: str | None = None
    size_mb: float | None = None
    top1: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    iters: int | None = None
    fps: float | None = None
    peak_rss_mb: float | None = None
    rss_delta_mb: float | None = None
    gmacs: float | None = None
    command: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"bench row status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def label(self) -> str:
        return f"{self.format} {self.precision}" + (f" b{self.batch}" if self.batch != 1 else "")

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class BenchResult:
    """Everything one ``bench`` run measured, where, and with which settings."""

    source: str
    model: str
    rows: list[BenchRow]
    machine: dict[str, Any]
    settings: dict[str, Any]
    streaming: bool = False
    notes: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "source": self.source, "model": self.model,
                "streaming": self.streaming, "notes": self.notes, "machine": self.machine, "settings": self.settings,
                "columns": BenchRow.columns(), "rows": [asdict(r) for r in self.rows]}

    @property
    def title(self) -> str:
        unit = "per frame, streaming" if self.streaming else "per batch"
        return f"edgevid bench: {self.model} on {self.machine.get('machine')} (latency {unit})"

    def table(self):
        """The rich table printed by the CLI (reasons of failed rows follow it, see :meth:`failures`)."""
        return make_table([asdict(r) for r in self.rows], TABLE_COLUMNS, title=self.title, formats=TABLE_FORMATS)

    def print(self, console) -> None:
        """The table, then one line per failure and the device command of unavailable TensorRT formats. Off a
        terminal (logs, captured output) the table is laid out 170 columns wide instead of truncated to 80."""
        wide = console if console.is_terminal else Console(file=console.file, width=max(console.width, PLAIN_WIDTH),
                                                           no_color=console.no_color)
        wide.print(self.table())
        for line in self.failures():
            console.print(f"[yellow]{line}[/]", highlight=False, soft_wrap=True)
        commands = {r.command: f"{r.format} {r.precision}" for r in self.rows if r.command}
        for command, name in commands.items():
            if len(command) > LONG_COMMAND:
                console.print(f"{name}: the trtexec command that builds and benchmarks it on the device is in the "
                              "'command' column of the JSON/CSV results", highlight=False)
                continue
            console.print(f"{name}: build and benchmark it on the device with:", highlight=False)
            console.print(command, soft_wrap=True, highlight=False, markup=False)

    def failures(self) -> list[str]:
        """One line per failed format and reason (rows of several batches failing alike are listed once)."""
        return list(dict.fromkeys(f"{r.format} {r.precision}: {r.status}: {r.reason}"
                                  for r in self.rows if r.status != "ok"))

    def markdown(self) -> str:
        info = self.machine
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        extra = "".join(f", {key} {info[key]}" for key in ("gpu", "jetson", "power_mode") if info.get(key))
        lines = [
            f"# {self.title}",
            "",
            f"- source: `{self.source}`",
            f"- machine: `{info.get('machine')}` ({info.get('cpu_model')}, {info.get('cpu_cores')} cores, "
            f"{info.get('ram_gb')} GB RAM{extra})",
            f"- CPU features (detected): {', '.join(info.get('cpu_features') or []) or 'none listed'}; ISA level "
            f"{info.get('isa_level')}; `execution` is the precision each runtime reports it computed in",
            f"- os: {info.get('os')}, python {info.get('python')}; {versions}",
            f"- load average (1/5/15 min) at start: {info.get('load_avg_1_5_15')}; date {info.get('date')}",
            "- settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()),
            "",
            *([self.notes.strip(), ""] if self.notes.strip() else []),
            markdown_table([asdict(r) for r in self.rows], TABLE_COLUMNS),
            "",
        ]
        lines += [f"- {failure}" for failure in self.failures()]
        return "\n".join(lines).rstrip() + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=BenchRow.columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in self.rows)
        return buffer.getvalue()

    def write_json(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    def write_csv(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.csv())

    def write_markdown(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.markdown())

    def plot(self, path: str | Path) -> Path:
        """Latency (p50) against top-1 per format at the smallest batch (colour: target, marker: precision); a
        latency bar chart (p50 bars, p95 ticks) of every measured row when no row has a top-1."""
        plt = pyplot()
        ok = [r for r in self.rows if r.status == "ok" and r.p50_ms is not None]
        smallest = min((r.batch for r in ok), default=1)
        with_top1 = [r for r in ok if r.top1 is not None and r.batch == smallest]
        fig, ax = plt.subplots(figsize=(8, 5))
        if with_top1:
            for row in with_top1:
                ax.scatter(row.p50_ms, row.top1, s=70, color=PLOT_COLORS[row.target],
                           marker=PLOT_MARKERS[row.precision], label=row.label)
                ax.annotate(row.label, (row.p50_ms, row.top1), textcoords="offset points", xytext=(6, 4), fontsize=8)
            ax.set_xlabel(f"latency p50 (ms per call of batch {smallest}, lower is better)")
            ax.set_ylabel("top-1 (%)")
            ax.set_xlim(0, max(r.p50_ms for r in with_top1) * 1.3)
            low, high = min(r.top1 for r in with_top1), max(r.top1 for r in with_top1)
            ax.set_ylim(low - max(2.0, 0.1 * (high - low)), min(100.0, high + 2.0) + 0.5)
            ax.legend(fontsize=8, loc="lower right")
        else:
            labels = [r.label for r in ok]
            ax.barh(labels, [r.p50_ms for r in ok], color=[PLOT_COLORS[r.target] for r in ok], label="p50")
            ax.scatter([r.p95_ms for r in ok], labels, color="black", marker="|", s=200, label="p95", zorder=3)
            ax.invert_yaxis()
            ax.set_xlabel("latency (ms per call)")
            ax.legend()
        if not ok:
            ax.text(0.5, 0.5, "no format ran", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
        ax.set_title(self.title, fontsize=10)
        return save_figure(fig, path)
