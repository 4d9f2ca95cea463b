"""``bench(artifact)``: every format of a model side by side on this machine, one row per format x batch.

For each target x precision the artifact is produced (:mod:`edgevid.bench.formats`), then each batch size is
measured in a fresh process (:mod:`edgevid.bench.worker`): load, warm-up, a time-boxed timing loop, peak RSS, and
with ``data`` the top-1 on the validation split. A format that cannot be produced or run records the reason in its
row and the run goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgevid.bench.formats import TARGETS, Format, FormatBuilder, FormatUnavailable, artifact_format
from edgevid.bench.report import BenchResult, BenchRow
from edgevid.bench.worker import WorkerSpec
from edgevid.checkpoint import build_model, resolve_checkpoint
from edgevid.errors import EdgevidError
from edgevid.formats import FORMATS
from edgevid.meta import ArtifactMeta, artifact_size_mb, read_meta
from edgevid.models import count_macs
from edgevid.models.streaming import to_streaming
from edgevid.precision import PRECISION_NAMES
from edgevid.utils.console import progress
from edgevid.utils.machine import machine_info
from edgevid.utils.signals import default_sigchld


@dataclass
class BenchOptions:
    """The settings of one ``bench`` run (the ``edgevid bench`` flags)."""

    targets: tuple[str, ...] = TARGETS
    precisions: tuple[str, ...] = PRECISION_NAMES
    batches: tuple[int, ...] = (1,)
    data: Path | None = None
    split: str = "val"
    streaming: bool = False
    iters: int = 100
    warmup: int = 5
    max_seconds: float = 10.0
    threads: int | None = None
    device: str = "cpu"
    calib: Path | None = None
    calib_clips: int = 64
    artifacts: tuple[Path, ...] = ()
    eval_workers: int = 2
    timeout_s: float = 1800.0
    json: Path | None = None
    csv: Path | None = None
    md: Path | None = None
    plot: Path | None = None

    def __post_init__(self) -> None:
        self.targets = _unique(self.targets, TARGETS, "--targets")
        self.precisions = _unique(self.precisions, PRECISION_NAMES, "--precisions")
        self.batches = tuple(dict.fromkeys(int(b) for b in self.batches))
        if not self.batches or min(self.batches) < 1:
            raise EdgevidError(f"--batch: expected positive batch sizes, got {list(self.batches)}")
        if self.streaming and self.batches != (1,):
            raise EdgevidError("--streaming measures one frame per step: --batch must be 1")
        for name in ("iters", "max_seconds", "timeout_s", "calib_clips"):
            if getattr(self, name) <= 0:
                raise EdgevidError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.warmup < 0:
            raise EdgevidError(f"--warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise EdgevidError(f"--threads must be >= 1, got {self.threads}")
        for name in ("data", "calib"):
            value = getattr(self, name)
            if value is not None and not Path(value).exists():
                raise EdgevidError(f"--{name} {value}: no such file or directory")
            setattr(self, name, None if value is None else Path(value))
        self.artifacts = tuple(Path(a) for a in self.artifacts)
        for path in self.artifacts:
            if not path.exists():
                raise EdgevidError(f"--artifact {path}: no such file")

    def settings(self) -> dict:
        """The settings recorded with the results."""
        keep = ("targets", "precisions", "batches", "data", "split", "streaming", "iters", "warmup", "max_seconds",
                "threads", "device", "calib")
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k in keep}


def _unique(values, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip().lower() for v in values if v.strip()))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise EdgevidError(f"{flag}: {', '.join(bad) or 'nothing'} given; choose from {', '.join(allowed)}")
    return values


def parse_list(text: str | None) -> list[str]:
    """``"onnx, openvino"`` -> ``["onnx", "openvino"]`` (the comma-separated CLI lists)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def model_gmacs(meta: ArtifactMeta, streaming: bool = False) -> float | None:
    """GMACs of one clip (one frame step with ``streaming``) of the model ``meta`` describes; None when the
    architecture cannot be rebuilt. Counted by PyTorch's FlopCounterMode (2 FLOPs per MAC)."""
    try:
        model = build_model(meta).eval()
        if not streaming:
            return count_macs(model, meta.frames, meta.size) / 1e9

        stream = to_streaming(model)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            stream(torch.zeros(1, 3, 1, meta.size, meta.size), *stream.initial_states(1, meta.size))
        return counter.get_total_flops() / 2e9
    except (EdgevidError, ValueError, KeyError, RuntimeError, TypeError):
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def run_worker(spec: WorkerSpec, timeout_s: float) -> dict:
    """Measure one row in a fresh ``python -m edgevid.bench.worker`` process; its result dict."""
    with tempfile.TemporaryDirectory(prefix="edgevid-bench-") as tmp, default_sigchld():
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(spec.to_json())
        try:
            proc = subprocess.run([sys.executable, "-m", "edgevid.bench.worker", str(spec_path), str(result_path)],
                                  capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout_s:.0f} s"}
        if not result_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            return {"ok": False, "error": f"worker exited with code {proc.returncode}: "
                                          f"{tail[-1][:300] if tail else 'no output'}"}
        return json.loads(result_path.read_text())


@dataclass
class _Plan:
    """The formats to measure and how their artifacts are obtained."""

    formats: list[Format]
    prebuilt: dict[Format, Path] = field(default_factory=dict)
    builder: FormatBuilder | None = None


def _plan(source: Path, meta: ArtifactMeta, options: BenchOptions, artifacts_dir: Path) -> _Plan:
    source_format = artifact_format(source)
    prebuilt = {artifact_format(p): p for p in options.artifacts}
    if source_format.target != "torch":
        prebuilt[source_format] = source
        return _Plan(list(prebuilt), prebuilt)

    checkpoint = resolve_checkpoint(source)
    builder = FormatBuilder(checkpoint, meta, artifacts_dir, data=options.data, calib=options.calib,
                            calib_clips=options.calib_clips, streaming=options.streaming, threads=options.threads)
    formats = [Format(t, p) for t in options.targets for p in options.precisions]
    formats += [f for f in prebuilt if f not in formats]
    return _Plan(formats, prebuilt, builder)


def _default_out(source: Path) -> Path:
    return (source if source.is_dir() else source.parent) / "bench"


def bench(artifact: str | Path, out: str | Path | None = None, *, show_progress: bool = True, notes: str = "",
          **options) -> BenchResult:
    """Benchmark every requested format of ``artifact`` (a run directory or checkpoint; an exported artifact is
    measured as it is) and write ``bench.json``, ``bench.csv``, ``bench.md`` and ``bench.png`` under ``out``
    (default ``<run>/bench``) or the paths given as ``json``/``csv``/``md``/``plot``.

    ``options`` are the fields of :class:`BenchOptions`; ``notes`` is free text stored with the results.
    """

    opts = BenchOptions(**options)
    source = Path(artifact)
    if not source.exists():
        raise EdgevidError(f"{source}: no such run directory, checkpoint or artifact")
    meta = read_meta(source)
    out_dir = Path(out) if out is not None else _default_out(source)
    plan = _plan(source, meta, opts, out_dir / "artifacts")
    gmacs = model_gmacs(meta, opts.streaming)
    rows: list[BenchRow] = []
    total = len(plan.formats) * len(opts.batches)
    with progress(transient=not show_progress) as bar:
        task = bar.add_task("bench", total=total, info="", visible=show_progress)
        for fmt in plan.formats:
            bar.update(task, info=f"{fmt.key} prepare")
            rows += _measure_format(fmt, plan, opts, gmacs, lambda label: bar.update(task, info=label))
            bar.update(task, completed=len(rows))
    result = BenchResult(source=str(source), model=meta.model, rows=rows, machine=machine_info(),
                         settings=opts.settings(), streaming=opts.streaming, notes=notes)
    result.files = {
        "json": result.write_json(opts.json or out_dir / "bench.json"),
        "csv": result.write_csv(opts.csv or out_dir / "bench.csv"),
        "md": result.write_markdown(opts.md or out_dir / "bench.md"),
        "plot": result.plot(opts.plot or out_dir / "bench.png"),
    }
    return result


def _measure_format(fmt: Format, plan: _Plan, opts: BenchOptions, gmacs: float | None, report) -> list[BenchRow]:
    """The rows of one format: one per batch, or one failed row per batch carrying the reason."""
    base = {"format": FORMATS[fmt.target].label, "target": fmt.target, "precision": fmt.precision, "gmacs": gmacs}
    try:
        path = plan.prebuilt.get(fmt) or plan.builder.build(fmt)
    except FormatUnavailable as exc:
        return [BenchRow(**base, batch=b, status="unavailable", reason=_first_line(exc), command=exc.command)
                for b in opts.batches]
    except ImportError as exc:
        return [BenchRow(**base, batch=b, status="unavailable", reason=f"missing package: {_first_line(exc)}")
                for b in opts.batches]
    except Exception as exc:  # any failure to produce the artifact is this row's result, the run goes on
        return [BenchRow(**base, batch=b, status="export failed", reason=_first_line(exc)) for b in opts.batches]
    device = opts.device if fmt.target != "trt" or opts.device.startswith("cuda") else "cuda"
    size_mb = artifact_size_mb(path)
    rows, top1 = [], None
    for index, batch in enumerate(opts.batches):
        report(f"{fmt.key} batch {batch}")
        spec = WorkerSpec(artifact=str(path), device=device, threads=opts.threads, batch=batch, warmup=opts.warmup,
                          iters=opts.iters, max_seconds=opts.max_seconds, streaming=opts.streaming,
                          precision=fmt.precision,
                          data=str(opts.data) if opts.data is not None and index == 0 else None, split=opts.split,
                          eval_workers=opts.eval_workers)
        measured = run_worker(spec, opts.timeout_s)
        row = BenchRow(**base, batch=batch, artifact=str(path), size_mb=size_mb)
        if not measured.pop("ok"):
            row.status, row.reason = "runtime failed", measured["error"]
        else:
            top1 = measured.pop("top1", top1)
            for key, value in measured.items():
                setattr(row, key, value)
            row.top1 = top1
        rows.append(row)
    return rows
