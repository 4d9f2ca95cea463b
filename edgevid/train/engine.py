"""The training engine behind ``edgevid train``: one loop for CPU, one GPU and ``torchrun`` jobs.

A run directory holds ``last.pt`` and ``best.pt`` (by val top-1; both carry the artifact metadata and the full
training state), the resolved ``recipe.yaml``, ``metrics.csv`` / ``metrics.jsonl`` (one row per epoch, train and
val top-1 included), ``curves.png`` and ``summary.json`` (best and last epoch and the fit diagnosis of
:func:`diagnose_fit`, also printed as the last line of a run). ``resume=True`` reloads ``last.pt`` and continues
with the same optimiser, schedule, EMA, epoch counter and RNG states, so an interrupted run ends with the weights
of an uninterrupted one (exactly on CPU with ``train.workers=0``; loader worker processes keep their own
augmentation RNG, which restarts with them).

With ``train.minutes`` the run fits its epochs to a wall-clock budget (:func:`epochs_in_budget`); every metric row
records ``elapsed_s``, the training time so far (time between an interruption and its resume does not count).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import random
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from edgevid.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from edgevid.data import AugmentConfig, build_dataset, build_loader, find_split, mix_batch
from edgevid.data.datasets import PAIR_KINDS, dataset_class_pairs, distinct_skips, suggest_mirror_classes
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.precision import cpu_has_bf16, describe_cpu
from edgevid.train.distributed import DistContext, distributed_context
from edgevid.train.finetune import apply_freeze, check_init_model, load_init_weights, set_frozen_eval
from edgevid.train.optim import ModelEma, WarmupCosine, build_optimizer, scaled_lr
from edgevid.train.plots import plot_curves
from edgevid.train.pretrain import PretrainPlan, ensure_synth, plan_pretraining
from edgevid.train.recipe import Recipe, load_recipe, parse_recipe
from edgevid.utils.atomic import atomic_path, remove_stale_temporaries, write_text_atomic
from edgevid.utils.console import console, progress
from edgevid.utils.interrupts import set_interrupt_hint, train_hint

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr", "clips_per_s",
                  "epoch_time_s", "eval_time_s", "elapsed_s", "skipped")
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class FitThresholds:
    """Where the end-of-training diagnosis draws its lines, in top-1 percentage points (the one place they are set).

    Train top-1 is measured on augmented clips with the model in training mode (dropout, mixup/cutmix), so it reads
    lower than the same clips would in evaluation; a run is only called overfit when the gap is wide.
    """

    overfit_gap: float = 15.0  # train top-1 this far above val top-1 at the last epoch: overfit
    underfit_train: float = 85.0  # train top-1 below this at the last epoch (and the gap narrower): underfit
    val_drop: float = 5.0  # else val top-1 this far below its best at the last epoch, the gap widened: overfit


FIT_THRESHOLDS = FitThresholds()
FIT_ADVICE = {
    "underfit": "the model does not fit even the training clips: train longer (--epochs), use a larger crop "
                "(data.size) or a higher learning rate (optim.lr)",
    "overfit": "the model fits the training clips far better than the validation ones: more augmentation "
               "(data.augment), more data, or regularisation (optim.weight_decay, model.overrides.dropout, "
               "train.label_smoothing)",
    "fine": "train and val top-1 are close and train top-1 is high: neither under- nor overfit",
}


# ------------------------------------------------------------------------------------------------ RNG state
def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors and plain lists (loadable with ``torch.load(weights_only=True)``)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ helpers
def clip_scores(output: torch.Tensor) -> torch.Tensor:
    """Clip-level logits [B, C] from any classification head (frame/dense outputs averaged over positions)."""
    return output.flatten(2).mean(dim=2) if output.dim() > 2 else output


def soft_cross_entropy(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets [B, C]; frame and dense outputs use the clip's target at every
    position (classification data has one label per clip)."""
    if output.dim() > 2:
        targets = targets.reshape(*targets.shape, *([1] * (output.dim() - 2))).expand_as(output)
    return F.cross_entropy(output.float(), targets.float())


def default_run_dir(recipe_name: str, root: Path = Path("runs")) -> Path:
    """``runs/<recipe>``, or ``runs/<recipe>2``, ``3`` ... when taken."""
    candidate, index = root / recipe_name, 2
    while candidate.exists():
        candidate, index = root / f"{recipe_name}{index}", index + 1
    return candidate


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"loss {row['train_loss']:.4f}", f"acc {row['train_acc']:.1f}%"]
    if row.get("val_top1") is not None:
        parts += [f"val loss {row['val_loss']:.4f}", f"top-1 {row['val_top1']:.1f}%", f"top-5 {row['val_top5']:.1f}%"]
    parts += [f"lr {row['lr']:.2e}", f"{row['clips_per_s']:.1f} clips/s", f"{row['epoch_time_s']:.1f}s"]
    return " | ".join(parts)


def diagnose_fit(rows: Sequence[dict[str, Any]], thresholds: FitThresholds = FIT_THRESHOLDS) -> dict[str, Any] | None:
    """What limits accuracy, from the metric rows: ``underfit``, ``overfit`` or ``fine`` (rules:
    :class:`FitThresholds`), with train and val top-1 at the best and last validated epochs; None without validation.
    """
    validated = [r for r in rows if r.get("val_top1") is not None and r.get("train_acc") is not None]
    if not validated:
        return None
    best = max(validated, key=lambda r: r["val_top1"])  # the first of equals, as the trainer keeps best.pt
    last = validated[-1]
    gap, best_gap = last["train_acc"] - last["val_top1"], best["train_acc"] - best["val_top1"]
    if gap >= thresholds.overfit_gap:
        verdict = "overfit"
    elif last["train_acc"] < thresholds.underfit_train:  # a falling val top-1 is noise while train top-1 is low
        verdict = "underfit"
    elif best["val_top1"] - last["val_top1"] >= thresholds.val_drop and gap > best_gap:
        verdict = "overfit"
    else:
        verdict = "fine"
    epoch = {key: {"epoch": int(r["epoch"]), "train_top1": float(r["train_acc"]), "val_top1": float(r["val_top1"])}
             for key, r in (("best", best), ("last", last))}
    return {"verdict": verdict, **epoch, "gap": float(gap), "advice": FIT_ADVICE[verdict],
            "thresholds": dataclasses.asdict(thresholds)}


def fit_line(diagnosis: dict[str, Any]) -> str:
    """The one line that ends a run: the verdict, the numbers behind it and what to try."""
    best, last = diagnosis["best"], diagnosis["last"]
    numbers = (f"train top-1 {last['train_top1']:.1f}% vs val {last['val_top1']:.1f}% at the last epoch "
               f"({last['epoch']})")
    if best["epoch"] != last["epoch"]:
        numbers += f", {best['train_top1']:.1f}% vs {best['val_top1']:.1f}% at the best ({best['epoch']})"
    return f"fit: {diagnosis['verdict']}: {numbers}; {diagnosis['advice']}"


def epochs_in_budget(budget_s: float, elapsed_s: float, epoch_walls: Sequence[float], done: int, cap: int) -> int:
    """How many epochs a run with a wall-clock budget plans after ``done`` epochs took ``elapsed_s`` seconds: those
    that fit in what is left at the median time of its last epochs (the first is left out once there are others:
    it also decodes and caches the videos), at least ``done`` and at most ``cap``."""
    if not epoch_walls:
        return cap
    recent = list(epoch_walls[1:] or epoch_walls)[-5:]
    fit = math.floor(max(budget_s - elapsed_s, 0.0) / max(statistics.median(recent), 1e-9))
    return max(done, min(cap, done + fit))


def write_metrics(run_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``metrics.jsonl`` and ``metrics.csv`` with one row per epoch."""
    write_text_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def newest_checkpoint(run_dir: Path) -> Checkpoint:
    """The run's latest commit: last.pt or best.pt, whichever holds the later epoch (an epoch that improved val
    top-1 is committed by best.pt and an interruption can stop before last.pt follows)."""
    return _newest(_run_checkpoints(run_dir), run_dir)


def _run_checkpoints(run_dir: Path) -> dict[str, Checkpoint]:
    return {name: load_checkpoint(run_dir / name) for name in ("last.pt", "best.pt") if (run_dir / name).is_file()}


def _newest(found: dict[str, Checkpoint], run_dir: Path) -> Checkpoint:
    if not found:
        raise EdgevidError(f"{run_dir}: nothing to resume (no last.pt)")
    return max(found.values(), key=lambda c: int(c.train_state.get("epoch", -1)))  # last.pt on a tie


def _has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / name).is_file() for name in ("last.pt", "best.pt"))


def _set_loader_epoch(loader: torch.utils.data.DataLoader, epoch: int, seed: int) -> None:
    """Make the epoch's shuffle order (and the seeds of workers started for it) a function of (seed, epoch)
    only, so a resumed run draws the same order as an uninterrupted one."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed + epoch)


# ------------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Builds data, model and optimiser from a resolved recipe and runs the epochs (one process of the job)."""

    def __init__(self, recipe: Recipe, recipe_name: str, data: Path, run_dir: Path, ctx: DistContext,
                 resume: bool, start_from: Checkpoint | None = None) -> None:
        self.recipe, self.recipe_name, self.data_root, self.run_dir, self.ctx = recipe, recipe_name, data, run_dir, ctx
        cfg = recipe.train
        seed_everything(cfg.seed + ctx.rank)
        found = _run_checkpoints(run_dir) if resume else {}
        checkpoint = _newest(found, run_dir) if resume else None
        # interrupted between an improving epoch's best.pt and its last.pt: last.pt is brought up to date first
        self._last_behind = checkpoint if resume and found.get("last.pt") is not checkpoint else None
        self.start_from = start_from
        self.init = None
        if recipe.model.init and checkpoint is None and start_from is None:
            self.init = load_checkpoint(recipe.model.init)
            check_init_model(self.init, recipe.model.name, recipe.model.init)
        self.base_meta = checkpoint.meta if checkpoint else start_from.meta if start_from else None
        self._build_data(self.base_meta.classes if self.base_meta else None)
        self._build_model()
        self.steps_per_epoch = math.ceil(len(self.train_loader) / cfg.accum_steps)
        self.effective_batch = cfg.batch_size * cfg.accum_steps * ctx.world_size
        peak = scaled_lr(recipe.optim.lr, self.effective_batch, recipe.optim.base_batch)
        self.optimizer = build_optimizer(self.model, recipe.optim, peak)
        self.scheduler = WarmupCosine(self.optimizer, peak, cfg.epochs * self.steps_per_epoch,
                                      round(recipe.optim.warmup_epochs * self.steps_per_epoch),
                                      recipe.optim.schedule, recipe.optim.min_lr_ratio,
                                      round(recipe.optim.head_warmup_epochs * self.steps_per_epoch))
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
        self.amp = cfg.amp and ctx.device.type == "cuda"
        if ctx.device.type == "cpu" and cfg.cpu_amp:
            self.amp, self.amp_dtype = cpu_has_bf16(), torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.start_epoch, self.global_step, self.best_top1, self.best_epoch = 0, 0, -1.0, 0
        self.rows: list[dict[str, Any]] = []
        if checkpoint:
            self._restore(checkpoint.state_dict, checkpoint.train_state)
        self.planned_epochs = cfg.epochs
        self.elapsed_before = self._elapsed_marks()[-1]
        self._plan(self.elapsed_before, self.start_epoch)
        self.ddp = self._wrap_ddp()

    # -- construction
    def _pair_augment(self, classes: list[str]) -> AugmentConfig:
        """The recipe's augmentation with this dataset's mirror-image and time-reversed class pairs (DataConfig)."""
        data, augment = self.recipe.data, self.recipe.data.augment
        self.class_pairs: dict[str, list[tuple[str, str]]] = {}
        self.pair_sources: dict[str, str] = {}
        for kind in PAIR_KINDS:
            field_name = f"{kind}_classes"
            given = getattr(data, field_name)
            if given is not None:
                declared, self.pair_sources[kind] = list(given), f"data.{field_name}"
            else:
                found = dataset_class_pairs(self.data_root, kind)
                declared = [p for p in found or [] if set(p) <= set(classes)]
                self.pair_sources[kind] = "the dataset" if found is not None else "none declared"
            recipe_pairs = getattr(augment, field_name)
            _check_class_pairs(recipe_pairs, classes, f"data.augment.{field_name}", kind)
            _check_class_pairs(given or [], classes, f"data.{field_name}", kind)
            self.class_pairs[kind] = list(dict.fromkeys([*recipe_pairs, *declared]))
        known = {frozenset(p) for p in self.class_pairs["mirror"]}
        self.mirror_suggestions = [p for p in suggest_mirror_classes(classes) if frozenset(p) not in known]
        return dataclasses.replace(augment, mirror_classes=self.class_pairs["mirror"],
                                   reverse_classes=self.class_pairs["reverse"])

    def _build_data(self, classes: list[str] | None) -> None:
        data, cfg, ctx = self.recipe.data, self.recipe.train, self.ctx
        common = dict(frames=data.frames, size=data.size, sampling_stride=data.frame_stride(), mean=data.mean,
                      std=data.std, sampling=data.sampling, strict=data.strict, cache_gb=data.cache_gb,
                      clip_seconds=data.span_seconds(), fit=data.fit)
        names = classes if classes is not None else find_split(self.data_root, data.train_split).classes
        self.train_set = build_dataset(self.data_root, data.train_split, train=True,
                                       augment=self._pair_augment(names), classes=classes, **common)
        self.classes = list(self.train_set.classes)
        val_set = build_dataset(self.data_root, data.val_split, train=False, classes=self.classes, **common)
        self.val_size = len(val_set)
        self._short: set[str] = set()
        self._short_said = False
        if len(self.train_set) == 0 or self.val_size == 0:
            raise EdgevidError(f"{self.data_root}: the {data.train_split!r} and {data.val_split!r} splits need clips")
        val_shard = copy.copy(val_set)
        val_shard.samples = val_set.samples[ctx.rank::ctx.world_size]
        self.train_loader = build_loader(self.train_set, cfg.batch_size, shuffle=True, workers=cfg.workers,
                                         seed=cfg.seed, distributed=ctx.enabled)
        self.val_loader = build_loader(val_shard, cfg.batch_size, shuffle=False, workers=cfg.workers, seed=cfg.seed)

    def _build_model(self) -> None:
        model_cfg = self.recipe.model
        if self.base_meta is not None:  # resuming or fine-tuning: that checkpoint's architecture (e.g. pruned)
            model = build_model(self.base_meta)
            if self.start_from is not None:
                model.load_state_dict(self.start_from.state_dict)
        else:
            try:
                model = create_model(model_cfg.name, num_classes=len(self.classes), head=model_cfg.head,
                                     **self.arch)
            except ValueError as exc:
                raise EdgevidError(f"recipe model.overrides: {exc}") from None
            if self.init is not None:
                self.init_report = load_init_weights(model, self.init, self.classes, model_cfg.init)
        self.trainable = apply_freeze(model, model_cfg.freeze)
        self.model = model.to(self.ctx.device)
        self.ema = ModelEma(self.model, self.recipe.train.ema) if self.recipe.train.ema else None
        if self.recipe.train.sync_bn and self.ctx.enabled:
            if self.ctx.device.type != "cuda":
                raise EdgevidError("train.sync_bn: PyTorch's SyncBatchNorm runs on GPUs only; set train.sync_bn=false "
                                   "for CPU (gloo) training")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)

    def _wrap_ddp(self) -> nn.Module:
        if not self.ctx.enabled:
            return self.model
        device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    @property
    def arch(self) -> dict[str, Any]:
        """Architecture overrides of a fresh model: an init checkpoint's (e.g. an import's), then the recipe's."""
        return {**(self.init.meta.arch if self.init else {}), **self.recipe.model.overrides}

    def meta(self, **extra: Any) -> ArtifactMeta:
        data, base = self.recipe.data, self.base_meta
        if self.init is not None:
            extra = {"init": str(self.recipe.model.init), **extra}
        return ArtifactMeta(
            model=self.recipe.model.name, classes=self.classes, frames=data.frames, size=data.size,
            sampling_stride=data.frame_stride(), mean=data.mean, std=data.std,
            head=base.head if base else self.recipe.model.head, fps=data.model_fps(),
            clip_seconds=data.span_seconds(),
            arch=dict(base.arch if base else self.arch),
            sampling=data.sampling, fit=data.fit, pruned_shapes=dict(base.pruned_shapes) if base else {},
            extra={**(base.extra if base else {}), "recipe": self.recipe_name, **extra},
        )

    # -- state
    def _elapsed_marks(self) -> list[float]:
        """Training seconds at the start and at the end of each recorded epoch."""
        return [0.0, *(float(r.get("elapsed_s") or 0.0) for r in self.rows)]

    def _plan(self, elapsed_s: float, done: int) -> None:
        """With ``train.minutes``: plan the epochs that fit the budget after ``done`` epochs and ``elapsed_s``
        seconds (past the last recorded epoch: epoch ``done`` is still being finished) and end the LR schedule at
        the last of them."""
        cfg = self.recipe.train
        if cfg.minutes is None:
            return
        marks = self._elapsed_marks()
        walls = np.diff([*marks, elapsed_s] if elapsed_s > marks[-1] else marks).tolist()
        self.planned_epochs = self.ctx.broadcast(epochs_in_budget(cfg.minutes * 60, elapsed_s, walls, done,
                                                                  cfg.epochs))
        self.scheduler.replan(self.planned_epochs * self.steps_per_epoch)

    def _train_state(self, epoch: int, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        state = {
            "epoch": epoch, "global_step": self.global_step, "best_top1": self.best_top1,
            "best_epoch": self.best_epoch, "world_size": self.ctx.world_size,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_states, "recipe": self.recipe.to_dict(),
            "rows": [dict(row) for row in self.rows],
        }
        if self.ema:
            state["ema"] = {"updates": self.ema.updates}
            state["model"] = self.model.state_dict()
        return state

    def _restore(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        if "epoch" not in state:
            raise EdgevidError(f"{self.run_dir / 'last.pt'}: checkpoint has no training state to resume from")
        if self.ema:
            self.ema.load_state_dict({"weights": weights, "updates": state.get("ema", {}).get("updates", 0)})
        self.model.load_state_dict(state.get("model", weights))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.best_top1, self.best_epoch = float(state["best_top1"]), int(state["best_epoch"])
        if "rows" in state:  # the rows committed with this checkpoint (metrics.jsonl may lag one epoch behind)
            self.rows = [dict(row) for row in state["rows"]]
        else:
            self.rows = [r for r in read_metrics(self.run_dir) if r["epoch"] <= self.start_epoch]
        rng = state.get("rng") or []
        if state.get("world_size") == self.ctx.world_size and len(rng) == self.ctx.world_size:
            set_rng_state(rng[self.ctx.rank])
        else:
            seed_everything(self.recipe.train.seed + self.ctx.rank + 1000 * self.start_epoch)

    def _save(self, epoch: int, row: dict[str, Any]) -> None:
        """The epoch's one commit point: a single atomic checkpoint write holding its weights (EMA too), the full
        training state and every metric row so far. An epoch that improves val top-1 commits by writing best.pt
        (then last.pt, the same content); any other epoch by writing last.pt. Resuming takes the newer of the two
        (:func:`newest_checkpoint`), so an interruption at any write leaves a best.pt that is the best epoch
        recorded and a run that continues exactly; metrics.jsonl/csv and curves.png are rewritten from the rows."""
        rng_states = self.ctx.all_gather(rng_state())
        if not self.ctx.is_main:
            return
        val_top1 = row["val_top1"]
        weights = self.ema.module.state_dict() if self.ema else self.model.state_dict()
        improved = val_top1 is not None and val_top1 > self.best_top1
        if improved:
            self.best_top1, self.best_epoch = val_top1, epoch
        self.rows.append(row)
        meta = self.meta(epoch=epoch, val_top1=val_top1, best_val_top1=self.best_top1)
        state = self._train_state(epoch, rng_states)
        if improved:
            save_checkpoint(self.run_dir / "best.pt", weights, meta, state)
        save_checkpoint(self.run_dir / "last.pt", weights, meta, state)

    # -- loop
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.amp_dtype)

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], list[tuple[str, str]]]:
        cfg, ctx = self.recipe.train, self.ctx
        self.ddp.train()
        set_frozen_eval(self.model, self.recipe.model.freeze)
        _set_loader_epoch(self.train_loader, epoch, cfg.seed)
        loss_sum, correct, seen = 0.0, 0, 0
        skipped: list[tuple[str, str]] = []
        batches = len(self.train_loader)
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with progress(transient=True) if ctx.is_main else contextlib.nullcontext() as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{self.planned_epochs}", total=batches, info="") if bar else None
            for index, batch in enumerate(self.train_loader):
                clips, labels, bad = batch
                skipped.extend(bad)
                self._short.update(batch.short)
                if labels.numel():
                    boundary = (index + 1) % cfg.accum_steps == 0 or index + 1 == batches
                    loss, hits = self._train_batch(clips.to(ctx.device, non_blocking=True),
                                                   labels.to(ctx.device, non_blocking=True), boundary)
                    loss_sum, correct, seen = loss_sum + loss * labels.numel(), correct + hits, seen + labels.numel()
                if bar:
                    rate = seen * ctx.world_size / max(time.perf_counter() - start, 1e-9)
                    bar.update(task, advance=1, info=f"loss {loss_sum / max(seen, 1):.4f} "
                                                     f"acc {100 * correct / max(seen, 1):.1f}% {rate:.1f} clips/s "
                                                     f"lr {self.scheduler.lr:.2e}")
        elapsed = time.perf_counter() - start
        loss_sum, correct, seen = ctx.all_reduce_sum([loss_sum, correct, seen])
        stats = {"train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
                 "clips_per_s": seen / elapsed, "epoch_time_s": elapsed, "lr": self.scheduler.lr}
        return stats, [item for part in ctx.all_gather(skipped) for item in part]

    def _train_batch(self, clips: torch.Tensor, labels: torch.Tensor, boundary: bool) -> tuple[float, int]:
        """Forward and backward one (mixed) batch, stepping the optimiser at an accumulation boundary; returns the
        loss and how many clips the model got right."""
        cfg = self.recipe.train
        mixed, targets = mix_batch(clips, labels, len(self.classes), self.recipe.data.augment,
                                   label_smoothing=cfg.label_smoothing)
        sync = contextlib.nullcontext() if boundary or not self.ctx.enabled else self.ddp.no_sync()
        with sync:
            with self._autocast():
                output = self.ddp(mixed)
                loss = soft_cross_entropy(output, targets)
            self.scaler.scale(loss / cfg.accum_steps).backward()
        if boundary:
            self._optimizer_step()
        return loss.item(), int((clip_scores(output.detach()).argmax(1) == labels).sum())

    def _optimizer_step(self) -> None:
        if self.recipe.train.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.train.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.global_step += 1
        if self.ema:
            self.ema.update(self.model)

    @torch.no_grad()
    def _validate(self) -> tuple[dict[str, float], list[tuple[str, str]]]:
        model = self.ema.module if self.ema else self.model
        model.eval()
        loss_sum, top1, top5, seen = 0.0, 0, 0, 0
        skipped: list[tuple[str, str]] = []
        start = time.perf_counter()
        for batch in self.val_loader:
            clips, labels, bad = batch
            skipped.extend(bad)
            self._short.update(batch.short)
            if labels.numel() == 0:
                continue
            clips, labels = clips.to(self.ctx.device), labels.to(self.ctx.device)
            with self._autocast():
                scores = clip_scores(model(clips)).float()
            loss_sum += F.cross_entropy(scores, labels, reduction="sum").item()
            ranked = scores.topk(min(5, scores.shape[1]), dim=1).indices
            top1 += int((ranked[:, 0] == labels).sum())
            top5 += int((ranked == labels[:, None]).any(dim=1).sum())
            seen += labels.numel()
        loss_sum, top1, top5, seen = self.ctx.all_reduce_sum([loss_sum, top1, top5, seen])
        stats = {"val_loss": loss_sum / max(seen, 1), "val_top1": 100.0 * top1 / max(seen, 1),
                 "val_top5": 100.0 * top5 / max(seen, 1), "eval_time_s": time.perf_counter() - start}
        return stats, [item for part in self.ctx.all_gather(skipped) for item in part]

    def fit(self, on_epoch_end: EpochCallback | None = None) -> Path:
        cfg, ctx = self.recipe.train, self.ctx
        finished = self.start_epoch >= self.planned_epochs
        if ctx.is_main:
            if not finished:
                self._announce()
            if self._last_behind is not None:
                behind, self._last_behind = self._last_behind, None
                save_checkpoint(self.run_dir / "last.pt", behind.state_dict, behind.meta, behind.train_state)
            if self.rows and len(read_metrics(self.run_dir)) != len(self.rows):  # interrupted after a commit
                write_metrics(self.run_dir, self.rows)
                plot_curves(self.rows, self.run_dir / "curves.png",
                            title=f"{self.recipe_name} ({self.recipe.model.name})")
            if finished:
                more = (f"train.minutes=M (M > {cfg.minutes:g})" if self.planned_epochs < cfg.epochs
                        else f"--epochs N (N > {cfg.epochs})")
                console.print(f"nothing to do: {self.run_dir} has finished its {self.planned_epochs} epochs (best val "
                              f"top-1 {self.best_top1:.1f}% at epoch {self.best_epoch}); to train longer, resume with "
                              f"{more}", highlight=False, soft_wrap=True)
        if finished:
            return self.run_dir
        clock = time.perf_counter()
        epoch = self.start_epoch
        while epoch < self.planned_epochs:
            stats, skipped = self._train_epoch(epoch)
            row: dict[str, Any] = {"epoch": epoch + 1, **stats, "val_loss": None, "val_top1": None,
                                   "val_top5": None, "eval_time_s": None}
            self._plan(self.elapsed_before + time.perf_counter() - clock, epoch + 1)
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == self.planned_epochs:
                val_stats, val_skipped = self._validate()
                row.update(val_stats)
                skipped += val_skipped
            skipped = distinct_skips(skipped)
            row["skipped"] = len(skipped)
            row["elapsed_s"] = self.elapsed_before + time.perf_counter() - clock
            self._save(epoch + 1, row)
            if ctx.is_main:
                write_metrics(self.run_dir, self.rows)
                plot_curves(self.rows, self.run_dir / "curves.png",
                            title=f"{self.recipe_name} ({self.recipe.model.name})")
                console.print(_format_row(row), highlight=False)
                _report_skipped(skipped)
                if on_epoch_end:
                    on_epoch_end(row)
            self._report_short()
            ctx.barrier()
            epoch += 1
        if ctx.is_main:
            within = (f" ({self.planned_epochs} epochs fitted train.minutes={cfg.minutes:g})"
                      if cfg.minutes is not None and self.planned_epochs < cfg.epochs else "")
            console.print(f"done: best val top-1 {self.best_top1:.1f}% at epoch {self.best_epoch}{within}; "
                          f"run directory {self.run_dir}", highlight=False)
            self._summarise()
        return self.run_dir

    def _summarise(self) -> None:
        """Write ``summary.json`` and print the fit diagnosis line (what limits accuracy)."""
        diagnosis = diagnose_fit(self.rows)
        summary = {"epochs": len(self.rows), "best_epoch": self.best_epoch, "best_val_top1": self.best_top1,
                   "last": self.rows[-1] if self.rows else None, "fit": diagnosis}
        write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        if diagnosis is not None:
            console.print(fit_line(diagnosis), highlight=False, markup=False, soft_wrap=True)

    def _report_short(self) -> None:
        """Say once per run how many videos are shorter than the clip and the rule that pads them (every rank
        calls it: the paths are gathered)."""
        short = {path for part in self.ctx.all_gather(sorted(self._short)) for path in part}
        if short and not self._short_said and self.ctx.is_main:
            console.print(f"note: {self.train_set.short_note(len(short))}", highlight=False, soft_wrap=True)
            self._short_said = True

    def _arithmetic(self) -> str:
        if self.amp:
            return f" ({'bf16' if self.amp_dtype == torch.bfloat16 else 'fp16'} autocast)"
        if self.recipe.train.cpu_amp and self.ctx.device.type == "cpu":
            return f" (fp32: train.cpu_amp needs a CPU with AVX512_BF16 or AMX; detected: {describe_cpu()})"
        return ""

    def _announce(self) -> None:
        cfg = self.recipe.train
        budget = (f" (as many as fit in train.minutes={cfg.minutes:g}, {self.elapsed_before / 60:.1f} used)"
                  if cfg.minutes is not None else "")
        console.print(
            f"training {self.recipe.model.name} ({len(self.classes)} classes, {len(self.train_set)} train / "
            f"{self.val_size} val clips) on {self.ctx.device} x{self.ctx.world_size}{self._arithmetic()}: "
            f"epochs {self.start_epoch + 1}-{cfg.epochs}{budget}, effective batch {self.effective_batch}, "
            f"peak lr {self.scheduler.peak_lr:.2e}, {self.steps_per_epoch} steps/epoch -> {self.run_dir}",
            highlight=False,
        )
        if self.recipe.data.augment.flip:
            pairs = ", ".join("/".join(p) for p in self.class_pairs["mirror"]) or "none"
            console.print(f"flip augmentation swaps the labels of mirror-image classes: {pairs} "
                          f"({self.pair_sources['mirror']})", highlight=False, markup=False)
            if self.mirror_suggestions:
                hint = ", ".join(f"[{a}, {b}]" for a, b in self.mirror_suggestions)
                console.print(f"these class names look like mirror images: {hint}; if a flip turns one into the "
                              f"other, declare them (data.mirror_classes=[{hint}] or a mirror_classes.txt beside the "
                              "data), or set data.augment.flip=false", highlight=False, markup=False)
        if self.class_pairs["reverse"]:
            pairs = ", ".join("/".join(p) for p in self.class_pairs["reverse"])
            if self.recipe.data.augment.reverse:
                console.print(f"time-reversal augmentation plays clips of these classes backwards as the other: "
                              f"{pairs} ({self.pair_sources['reverse']})", highlight=False, markup=False)
            else:
                console.print(f"{self.pair_sources['reverse']} declares time-reversed classes: {pairs}; "
                              "data.augment.reverse=true trains on them played backwards", highlight=False,
                              markup=False)
        model_cfg, optim = self.recipe.model, self.recipe.optim
        if self.init is not None:
            console.print(f"fine-tuning from {model_cfg.init}: {self.init_report}", highlight=False, soft_wrap=True)
        if model_cfg.freeze != "none" or optim.backbone_lr_mult != 1 or optim.head_warmup_epochs:
            console.print(f"freeze {model_cfg.freeze} ({self.trainable:,} parameters train), backbone lr x"
                          f"{optim.backbone_lr_mult:g}, head-only warm-up {optim.head_warmup_epochs:g} epochs",
                          highlight=False)


def _check_class_pairs(pairs: Sequence[tuple[str, str]], classes: Sequence[str], where: str, kind: str) -> None:
    """A class pair naming something that is not a class: an error naming where the pair came from."""
    unknown = next((name for pair in pairs for name in pair if name not in classes), None)
    if unknown is None:
        return
    shown = ", ".join(classes[:8]) + (f", ... ({len(classes)} in all)" if len(classes) > 8 else "")
    off = ", or turn flipping off with data.augment.flip=false" if kind == "mirror" else ""
    raise EdgevidError(f"{where}: {PAIR_KINDS[kind]} pair names {unknown!r}, which is not a class of the data "
                       f"(classes: {shown}); correct the pair or declare none with '{where}=[]'{off}")


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    """Print the skipped videos of an epoch (already :func:`distinct_skips`, the count of the metrics row)."""
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} unreadable video(s):[/]")
        for path, reason in skipped:
            console.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------ API
def _prepare_run(recipe: str | Path | Recipe | None, out: str | Path | None, epochs: int | None, resume: bool,
                 overrides: Sequence[str]) -> tuple[Recipe, str, Path]:
    """The resolved recipe, its name and the run directory, after checking that the run can start (or resume)."""
    run_dir = Path(out) if out is not None else None
    if resume:
        if run_dir is None:
            raise EdgevidError("--resume needs --out: the run directory to continue")
        if not _has_checkpoint(run_dir):
            raise EdgevidError(f"{run_dir}: nothing to resume (no last.pt)")
    elif run_dir is not None and _has_checkpoint(run_dir):
        raise EdgevidError(f"{run_dir}: already holds a run (last.pt); pass --resume to continue it or "
                           "choose another --out")
    overrides = [*overrides, *([f"train.epochs={epochs}"] if epochs is not None else [])]
    if isinstance(recipe, Recipe):
        parsed, name = parse_recipe(recipe.to_dict(), "recipe", overrides), "recipe"
    elif recipe is not None:
        parsed, name = load_recipe(recipe, overrides), Path(recipe).stem
    elif resume:
        parsed = load_recipe(run_dir / "recipe.yaml", overrides)
        name = str(newest_checkpoint(run_dir).meta.extra.get("recipe", run_dir.name))
    else:
        raise EdgevidError("train needs --recipe (or --resume with --out of an earlier run)")
    if parsed.model.init and not resume and (parsed.data.mean is None or parsed.data.std is None):
        init_meta = load_checkpoint(parsed.model.init).meta  # the weights expect the normalisation they learnt with
        parsed = dataclasses.replace(parsed, data=dataclasses.replace(
            parsed.data, mean=parsed.data.mean or init_meta.mean, std=parsed.data.std or init_meta.std))
    return parsed.resolved(), name, run_dir or default_run_dir(name)


def ensure_pretrained(plan: PretrainPlan, device: str = "cpu", world_size: int = 1) -> Path:
    """The checkpoint of a recipe's pretraining stage, trained and cached here when missing (resuming the stage's
    run if an earlier one was interrupted)."""
    if plan.checkpoint.is_file():
        console.print(f"pretrained weights: {plan.checkpoint} (cached: {plan.describe()})", highlight=False,
                      soft_wrap=True)
        return plan.checkpoint
    if world_size > 1:
        raise EdgevidError(f"pretrain.style={plan.synth.style}: the pretrained weights are not cached yet "
                           f"({plan.checkpoint}); run the same training once without torchrun to build them, "
                           "or set pretrain.style=null to train from scratch")
    console.print(f"pretraining: {plan.describe()}, cached as {plan.checkpoint}", highlight=False, soft_wrap=True)
    stage = train(plan.recipe, ensure_synth(plan), out=plan.run_dir, resume=_has_checkpoint(plan.run_dir),
                  device=device)
    with atomic_path(plan.checkpoint) as tmp:
        shutil.copyfile(stage / "best.pt", tmp)
    return plan.checkpoint


def _pretrained_start(recipe: Recipe, ctx: DistContext, device: str) -> Recipe:
    """The run's recipe starting from its ``pretrain`` stage's weights; the time spent training them here comes
    off ``train.minutes`` (see :mod:`edgevid.train.pretrain`)."""
    plan = plan_pretraining(recipe)
    if plan is None:
        return recipe
    fresh, start = not plan.checkpoint.is_file(), time.perf_counter()
    checkpoint = ensure_pretrained(plan, device, ctx.world_size)
    minutes = recipe.train.minutes
    if fresh and minutes is not None:
        spent = (time.perf_counter() - start) / 60
        minutes = round(max(minutes - spent, 0.01), 2)
        console.print(f"pretraining took {spent:.1f} minutes of train.minutes={recipe.train.minutes:g}; "
                      f"{minutes:.1f} left for the run", highlight=False)
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, init=str(checkpoint)),
                               train=dataclasses.replace(recipe.train, minutes=minutes))


def train(recipe: str | Path | Recipe | None, data: str | Path, out: str | Path | None = None,
          epochs: int | None = None, resume: bool = False, overrides: Sequence[str] = (), device: str = "cpu",
          on_epoch_end: EpochCallback | None = None, start_from: Checkpoint | None = None,
          init: str | Path | None = None) -> Path:
    """Train a model from a recipe on a video dataset; returns the run directory.

    Under ``torchrun`` every process calls this; rank 0 writes the run directory. ``on_epoch_end`` receives each
    epoch's metric row on rank 0 (raising from it stops training after that epoch's checkpoint is written).
    ``start_from`` fine-tunes a given checkpoint (its architecture, e.g. a pruned one, its weights, classes and
    metadata extras) with the recipe's data, optimiser and schedule instead of a freshly initialised model.
    ``init`` (same as the recipe's ``model.init``) starts from a checkpoint's weights on the dataset's own classes:
    a new classifier when they differ, everything else loaded (see :mod:`edgevid.train.finetune`).
    """
    if init is not None:
        overrides = [*overrides, f"model.init={init}"]
    data = Path(data)
    if not data.exists():
        raise EdgevidError(f"{data}: no such data directory")
    with distributed_context(device) as ctx:
        resolved, name, run_dir = _prepare_run(recipe, out, epochs, resume, overrides)
        run_dir = Path(ctx.broadcast(str(run_dir)))
        if not resume and start_from is None:
            resolved = _pretrained_start(resolved, ctx, device)
        if start_from is not None and start_from.meta.model != resolved.model.name:
            raise EdgevidError(f"start_from is a {start_from.meta.model} checkpoint but the recipe trains "
                               f"{resolved.model.name}")
        if ctx.is_main:
            remove_stale_temporaries(run_dir)
            set_interrupt_hint(train_hint(run_dir, data, device))
        trainer = Trainer(resolved, name, data, run_dir, ctx, resume, start_from)
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(run_dir / "recipe.yaml", resolved.to_yaml())
        return trainer.fit(on_epoch_end)
