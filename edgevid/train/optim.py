"""Optimisers, batch-size LR scaling, the per-step warmup + cosine schedule, and an EMA of the weights."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from edgevid.errors import EdgevidError
from edgevid.train.recipe import OptimConfig


def scaled_lr(lr: float, effective_batch: int, base_batch: int) -> float:
    """Linear scaling rule: ``lr`` is given for ``base_batch`` clips per optimiser step."""
    return lr * effective_batch / base_batch


def build_optimizer(model: nn.Module, config: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW or SGD+momentum; biases and normalisation weights (1-D parameters) get no weight decay.

    With ``config.backbone_lr_mult != 1`` or ``config.head_warmup_epochs > 0`` (fine-tuning), the parameters of
    the classifier head (``head.*``) and of the rest (the backbone) go into separate groups; each group's
    ``lr_scale`` (1 for the head, the multiplier for the backbone) scales the schedule's rate and ``backbone``
    marks the groups that :class:`WarmupCosine` holds at 0 during the head warm-up. Frozen parameters are left out.
    """
    split = config.backbone_lr_mult != 1.0 or config.head_warmup_epochs > 0
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            backbone = split and not name.startswith("head.")
            groups.setdefault((backbone, param.ndim <= 1), []).append(param)
    param_groups = []
    for backbone in ((False, True) if split else (False,)):
        for no_decay in (False, True):
            params = groups.get((backbone, no_decay), [])
            if params or not split:  # without a split: always the two groups (decay, no decay)
                param_groups.append({"params": params, "weight_decay": 0.0 if no_decay else config.weight_decay,
                                     "lr_scale": config.backbone_lr_mult if backbone else 1.0,
                                     "backbone": backbone})
    if not any(g["params"] for g in param_groups):
        raise EdgevidError("no trainable parameters (everything is frozen)")
    if config.name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov and
                               config.momentum > 0)
    return torch.optim.AdamW(param_groups, lr=lr)


class WarmupCosine:
    """Per-step LR: linear warmup from 0 to the peak over ``warmup_steps``, then cosine (or constant) down to
    ``min_lr_ratio`` x peak at ``total_steps`` (:meth:`replan` moves the end; the state holds it and the step
    count, so a resumed run follows the same curve). Each parameter group's rate is scaled by its ``lr_scale``; groups
    marked ``backbone`` stay at 0 for the first ``head_warmup_steps`` (only the new head trains)."""

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, total_steps: int, warmup_steps: int,
                 schedule: str = "cosine", min_lr_ratio: float = 0.0, head_warmup_steps: int = 0) -> None:
        self.optimizer = optimizer
        self.head_warmup_steps = head_warmup_steps
        self.peak_lr = peak_lr
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = min(warmup_steps, self.total_steps)
        self.schedule = schedule
        self.min_lr_ratio = min_lr_ratio
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        """The LR used for optimiser step number ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.peak_lr
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        floor = self.min_lr_ratio * self.peak_lr
        return floor + (self.peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    @property
    def lr(self) -> float:
        """The current rate of the head's (first) parameter group."""
        return self.optimizer.param_groups[0]["lr"]

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            held = group.get("backbone", False) and self.step_count < self.head_warmup_steps
            group["lr"] = 0.0 if held else lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def replan(self, total_steps: int) -> None:
        """End the schedule at ``total_steps`` instead (the warmup stays as it was)."""
        self.total_steps = max(total_steps, self.warmup_steps, 1)
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.total_steps = int(state.get("total_steps", self.total_steps))
        self._apply()


class ModelEma:
    """Exponential moving average of a model's weights and buffers.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates (as TensorFlow's
    ExponentialMovingAverage does with ``num_updates``) so short runs are not dominated by the initial weights.
    Integer buffers (BatchNorm's batch counter) are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(live[name].detach(), 1.0 - decay)
            else:
                value.copy_(live[name])

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
