"""Optimisers, batch-size LR scaling, the per-step warmup + cosine schedule, and an EMA of the weights."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from edgevid.train.recipe import OptimConfig


def scaled_lr(lr: float, effective_batch: int, base_batch: int) -> float:
    """Linear scaling rule: ``lr`` is given for ``base_batch`` clips per optimiser step."""
    return lr * effective_batch / base_batch


def build_optimizer(model: nn.Module, config: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW or SGD+momentum; biases and normalisation weights (1-D parameters) get no weight decay."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov and
                               config.momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


class WarmupCosine:
    """Per-step LR: linear warmup from 0 to the peak over ``warmup_steps``, then cosine (or constant) down to
    ``min_lr_ratio`` x peak at ``total_steps``. Its state is only the step count, so a resumed run that plans the
    same number of steps follows the same curve."""

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, total_steps: int, warmup_steps: int,
                 schedule: str = "cosine", min_lr_ratio: float = 0.0) -> None:
        self.optimizer = optimizer
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
        return self.optimizer.param_groups[0]["lr"]

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
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
