"""Structured channel pruning with Torch-Pruning's dependency graph (DepGraph), then fine-tuning.

``ratio`` is the fraction of **MACs** to remove (multiply-adds of one clip at the model's input size, as
:func:`~edgevid.models.registry.count_macs` counts them), in (0, 1). Torch-Pruning removes a fraction of the
channels of every coupled group (a group is every layer that must lose the same channels: a conv's filters, the
next BN, the following convs' input channels, every layer joined by a residual add, a depthwise conv and an SE
block on the same channels); MACs fall roughly with the square of that channel ratio, so the channel ratio that
removes ``ratio`` of the MACs is found by bisection (to within :data:`MAC_TOLERANCE`).

- Importance: ``l2`` (L2 norm of each channel's weights across the whole group) or ``bn`` (|BN scale|).
- ``global_pruning``: one importance ranking across all groups (layers lose different fractions, at most
  :data:`MAX_LAYER_RATIO` of their channels); otherwise every group loses the same fraction (uniform).
- The classifier's output (the classes) is never pruned.
- TSM: a :class:`~edgevid.models.tsm.TemporalShift` maps channel c to channel c (only in time), so DepGraph is
  built with the shifts taken out (their slicing would only confuse its index mapping) and put back afterwards;
  the shift computes its fold from the tensor's channel count at run time (``C // fold_div``), so a pruned block
  shifts 1/8 of its *remaining* channels.

The pruned model is saved as an ordinary checkpoint whose metadata holds ``pruned_shapes`` (the shape
of every weight that differs from a freshly built model); :func:`edgevid.checkpoint.build_model` re-slices a
new model to those shapes (:func:`edgevid.models.pruned.apply_pruned_shapes`), so it loads, exports and
quantizes without the original run.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevid.checkpoint import load_checkpoint, load_model, resolve_checkpoint, save_checkpoint
from edgevid.compress.accuracy import ValidationSet
from edgevid.compress.report import add_speedups, benchmark_artifacts, print_report, write_report
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.formats import FORMATS
from edgevid.meta import ArtifactMeta
from edgevid.models.base import VideoModel
from edgevid.models.layers import ChannelwiseOp
from edgevid.models.pruned import apply_pruned_shapes, pruned_shapes  # noqa: F401  (apply_pruned_shapes re-exported)
from edgevid.models.registry import count_macs, count_params
from edgevid.train import train
from edgevid.utils.atomic import temp_dir
from edgevid.utils.console import console

IMPORTANCES = ("l2", "bn")
MAC_TOLERANCE = 0.01
MAX_LAYER_RATIO = 0.9
BISECTION_STEPS = 14
TRACE_SIZE = 64


# ------------------------------------------------------------------------------------------------ pruning
class _PassThrough(nn.Module):
    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        return x


@contextlib.contextmanager
def _without_channelwise_ops(model: nn.Module) -> Iterator[None]:
    """Swap parameter-free ops that keep channel c at channel c (temporal shifts) for pass-throughs."""
    swapped = []
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, ChannelwiseOp):
                swapped.append((module, child_name, child))
                setattr(module, child_name, _PassThrough())
    try:
        yield
    finally:
        for parent, child_name, child in swapped:
            setattr(parent, child_name, child)


def _importance(kind: str):
    import torch_pruning as tp  # torch_pruning: loaded only when pruning

    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "bn":
        return tp.importance.BNScaleImportance()
    raise EdgevidError(f"--importance {kind!r} is not one of {', '.join(IMPORTANCES)}")


def _classifier_layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, VideoModel):
        raise EdgevidError(f"{type(model).__name__}: not a zoo model (no classifier to protect from pruning)")
    return [model.get_classifier()]


def prune_channels(model: nn.Module, example: torch.Tensor, channel_ratio: float, *, importance: str = "l2",
                   global_pruning: bool = False, round_to: int = 1) -> nn.Module:
    """Remove ``channel_ratio`` of the channels of every prunable group of ``model`` (in place); channel counts
    left are multiples of ``round_to`` (1: any)."""
    import torch_pruning as tp  # torch_pruning: loaded only when pruning

    model.eval()
    with _without_channelwise_ops(model):
        pruner = tp.pruner.BasePruner(
            model, example, importance=_importance(importance), pruning_ratio=channel_ratio,
            global_pruning=global_pruning, max_pruning_ratio=MAX_LAYER_RATIO,
            ignored_layers=_classifier_layers(model), round_to=round_to if round_to > 1 else None,
        )
        pruner.step()
    return model


@dataclass
class PrunedModel:
    """A pruned copy of a model and how far pruning went."""

    model: nn.Module
    channel_ratio: float
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    trials: list[dict[str, float]] = field(default_factory=list)

    @property
    def mac_reduction(self) -> float:
        return 1.0 - self.macs_after / self.macs_before


def prune_to_macs(model: nn.Module, frames: int, size: int, ratio: float, *, importance: str = "l2",
                  global_pruning: bool = False, round_to: int = 1) -> PrunedModel:
    """A copy of ``model`` with ``ratio`` of its MACs (at ``frames`` x ``size``) removed by channel pruning.

    Bisection over the channel ratio; the result removes at least ``ratio - MAC_TOLERANCE`` of the MACs and is
    the closest trial to ``ratio`` found.
    """

    check_ratio(ratio)
    _importance(importance)
    trace = min(size, TRACE_SIZE)
    example = torch.randn(1, 3, frames, trace, trace)
    macs_before = count_macs(model, frames, size)
    best: tuple[float, nn.Module, int] | None = None
    trials = []
    low, high = 0.0, MAX_LAYER_RATIO
    for _ in range(BISECTION_STEPS):
        channel_ratio = (low + high) / 2
        candidate = prune_channels(copy.deepcopy(model), example, channel_ratio, importance=importance,
                                   global_pruning=global_pruning, round_to=round_to)
        macs = count_macs(candidate, frames, size)
        removed = 1.0 - macs / macs_before
        trials.append({"channel_ratio": channel_ratio, "mac_reduction": removed})
        if removed >= ratio - MAC_TOLERANCE and (best is None or abs(removed - ratio) < abs(best[2] - ratio)):
            best = (channel_ratio, candidate, removed)
        if abs(removed - ratio) <= MAC_TOLERANCE / 2:
            break
        low, high = (channel_ratio, high) if removed < ratio else (low, channel_ratio)
    if best is None:
        most = max(t["mac_reduction"] for t in trials)
        fix = "choose a smaller --ratio"
        if round_to > 1:
            free = prune_channels(copy.deepcopy(model), example, MAX_LAYER_RATIO, importance=importance,
                                  global_pruning=global_pruning, round_to=1)
            reach = 1.0 - count_macs(free, frames, size) / macs_before
            if reach > most:
                fix = (f"--round-to {round_to} keeps channel counts multiples of {round_to}, which small layers "
                       f"cannot go below; --round-to 1 (any channel count) removes up to {reach:.0%}"
                       + ("" if reach >= ratio - MAC_TOLERANCE else ", so also choose a smaller --ratio"))
        raise EdgevidError(f"pruning cannot remove {ratio:.0%} of the MACs of {type(model).__name__} "
                           f"(at most {most:.0%} with {MAX_LAYER_RATIO:.0%} of each layer's channels); {fix}")
    channel_ratio, pruned, _ = best
    return PrunedModel(pruned.eval(), channel_ratio, macs_before, count_macs(pruned, frames, size),
                       count_params(model), count_params(pruned), trials)


def check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise EdgevidError(f"--ratio {ratio:g}: the fraction of MACs to remove must be in (0, 1), e.g. 0.5")


def pruned_meta(meta: ArtifactMeta, pruned: PrunedModel, reference: nn.Module, info: dict[str, Any]) -> ArtifactMeta:
    """The metadata of a pruned checkpoint: its weight shapes (so it loads alone) and what pruning did."""
    extra = {k: v for k, v in meta.extra.items() if k not in ("val_top1", "best_val_top1", "epoch")}
    return meta.replace(pruned_shapes=pruned_shapes(pruned.model, reference), extra={**extra, "pruning": info})


# ------------------------------------------------------------------------------------------------ prune a run
REPORT_BACKENDS = ("torch", "onnxruntime", "openvino")
_EXPORT_TARGET = {FORMATS[t].backend: (t, FORMATS[t].suffix) for t in ("onnx", "openvino")}


@dataclass
class PruneResult:
    """Where the pruned (and fine-tuned) model is, what pruning did, and the before/after report rows."""

    run_dir: Path
    checkpoint: Path
    info: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    report_path: Path | None = None


def default_out(run_dir: Path, ratio: float) -> Path:
    """``<run>-pruned<percent>`` beside the run directory."""
    return run_dir.parent / f"{run_dir.name}-pruned{round(ratio * 100)}"


def compare_models(before: Path, after: Path, *, valset=None, backends: tuple[str, ...] = REPORT_BACKENDS,
                   iters: int = 20, threads: int | None = None, work: Path) -> list[dict[str, Any]]:
    """Rows of params, GMACs, top-1 and latency (measured interleaved) for the original and pruned checkpoints on
    each backend (exported to ONNX / OpenVINO as ``edgevid export`` does), with the pruned model's speed-up over
    the original on the same backend. An export that fails is recorded in its row and the others go on."""

    entries, failed = [], []
    for label, checkpoint in (("original", before), ("pruned", after)):
        model, meta = load_model(checkpoint)
        sizes = {"model": label, "params_m": count_params(model) / 1e6,
                 "gmacs": count_macs(model, meta.frames, meta.size) / 1e9}
        for backend in backends:
            row = {**sizes, "backend": backend}
            try:
                if backend == "torch":
                    entries.append((row, checkpoint))
                else:
                    target, suffix = _EXPORT_TARGET[backend]
                    entries.append((row, export(checkpoint, target, out=work / f"{label}{suffix}",
                                                threads=threads).path))
            except EdgevidError as exc:
                failed.append({**row, "status": f"failed: {str(exc).splitlines()[0]}"})
    rows = benchmark_artifacts(entries, valset=valset, iters=iters, threads=threads) + failed
    for row in rows:  # the exports lived in ``work``, which is gone once the report is written
        source = before if row["model"] == "original" else after
        if str(row.get("artifact", "")).startswith(str(work)):
            row["artifact"] = f"{source} exported for {row['backend']} (not kept)"
        row["status"] = _outside(row.get("status", ""), work, source)
    return add_speedups(rows, {"model": "original"})


def _outside(text: str, work: Path, source: Path) -> str:
    """``text`` with paths inside the temporary ``work`` folder replaced by what they were: an export of
    ``source``."""
    return re.sub(re.escape(str(work)) + r"[^\s:;,)']*", f"<export of {source}>", text)


def prune(run: str | Path, ratio: float, data: str | Path, *, finetune_epochs: int | None = None,
          importance: str = "l2", global_pruning: bool = False, round_to: int = 8,
          out: str | Path | None = None, overrides: tuple[str, ...] = (), val_clips: int | None = None,
          bench_iters: int = 20, backends: tuple[str, ...] = REPORT_BACKENDS, threads: int | None = None,
          show_progress: bool = True) -> PruneResult:
    """Prune ``ratio`` of the MACs of a trained run, fine-tune with the run's recipe, and report before/after.

    Writes ``out`` (default ``<run>-pruned<percent>``): ``pruned.pt`` (right after pruning), the fine-tuning
    run (``best.pt``, ``last.pt``, metrics; ``best.pt`` is ``pruned.pt`` when ``finetune_epochs`` is 0) and
    ``prune_report.json``. ``finetune_epochs`` None takes the recipe's epochs; ``overrides`` are recipe
    overrides for fine-tuning (e.g. ``optim.lr=0.001``). ``round_to`` keeps pruned channel counts multiples of
    it (1: any count): CPU and GPU conv kernels work in blocks of 8 or 16 channels, and on TSM-R18 at 50% of the
    MACs removed, ONNX Runtime ran the pruned model 1.81x faster with multiples of 8 but only 1.24x with the odd
    counts (44, 89, 179) of exact pruning.
    """


    check_ratio(ratio)
    _importance(importance)
    unknown = [b for b in backends if b not in REPORT_BACKENDS]
    if unknown:
        raise EdgevidError(f"report backends {', '.join(unknown)} are not among {', '.join(REPORT_BACKENDS)}")
    if finetune_epochs is not None and finetune_epochs < 0:
        raise EdgevidError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    source = resolve_checkpoint(run)
    if not Path(data).exists():
        raise EdgevidError(f"--data {data}: no such data directory")
    recipe = source.parent / "recipe.yaml"
    if finetune_epochs != 0 and not recipe.is_file():
        raise EdgevidError(f"{source.parent}: no recipe.yaml to fine-tune with; pass --finetune-epochs 0 to prune "
                           "without fine-tuning")
    run_dir = Path(out) if out is not None else default_out(source.parent, ratio)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise EdgevidError(f"--out {run_dir}: already exists and is not empty; choose another directory")
    model, meta = load_model(source)
    with console.status(f"pruning {ratio:.0%} of the MACs of {meta.model}"):
        pruned = prune_to_macs(model, meta.frames, meta.size, ratio, importance=importance,
                               global_pruning=global_pruning, round_to=round_to)
    info = {"source": str(source), "ratio": ratio, "mac_reduction": pruned.mac_reduction,
            "channel_ratio": pruned.channel_ratio, "importance": importance,
            "mode": "global" if global_pruning else "uniform", "round_to": round_to,
            "macs_before": pruned.macs_before, "macs_after": pruned.macs_after,
            "params_before": pruned.params_before, "params_after": pruned.params_after,
            "finetune_epochs": finetune_epochs}
    checkpoint = save_checkpoint(run_dir / "pruned.pt", pruned.model, pruned_meta(meta, pruned, model, info))
    if finetune_epochs == 0:
        checkpoint = save_checkpoint(run_dir / "best.pt", pruned.model, load_checkpoint(checkpoint).meta)
    else:
        train(recipe, data, out=run_dir, epochs=finetune_epochs, overrides=overrides,
              start_from=load_checkpoint(checkpoint))
        checkpoint = resolve_checkpoint(run_dir)
    result = PruneResult(run_dir, checkpoint, info)
    if bench_iters > 0 or val_clips != 0:
        report_pruning(source, result, data, meta, val_clips=val_clips, bench_iters=bench_iters, backends=backends,
                       threads=threads, show_progress=show_progress)
    return result


def report_pruning(source: Path, result: PruneResult, data: str | Path, meta: ArtifactMeta, *,
                   val_clips: int | None = None, bench_iters: int = 20,
                   backends: tuple[str, ...] = REPORT_BACKENDS, threads: int | None = None,
                   show_progress: bool = True) -> PruneResult:
    """Compare the original checkpoint ``source`` with ``result.checkpoint`` (:func:`compare_models` on the val
    split of ``data`` unless ``val_clips`` is 0), print the table and write ``prune_report.json`` in the run."""

    valset = ValidationSet.load(data, meta, max_clips=val_clips, show_progress=show_progress) \
        if val_clips != 0 else None
    with temp_dir(result.run_dir, "prune-report") as work:
        result.rows = compare_models(source, result.checkpoint, valset=valset, backends=backends, iters=bench_iters,
                                     threads=threads, work=work)
    print_prune_report(result.rows, f"pruning {meta.model}: {result.info['mac_reduction']:.1%} of MACs removed")
    result.report_path = write_report(result.run_dir / "prune_report.json", result.rows, pruning=result.info)
    return result


def print_prune_report(rows: list[dict[str, Any]], title: str) -> None:
    print_report(rows, title, ["model", "backend", "params_m", "gmacs", "top1", "p50_ms", "p95_ms", "speedup",
                               "status"])
