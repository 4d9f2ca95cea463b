"""Fine-tuning: start a model from a checkpoint's weights (a new head for new classes) and freeze parts of it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edgevid.checkpoint import Checkpoint
from edgevid.errors import EdgevidError
from edgevid.models import get_spec
from edgevid.models.base import VideoModel

FREEZE_MODES = ("none", "bn", "backbone")


def check_init_model(ckpt: Checkpoint, model: str, source: str | Path) -> None:
    """The checkpoint must hold the recipe's model, or one of the same family (X3D-XS/S/M share a network)."""
    if ckpt.meta.model != model and get_spec(ckpt.meta.model).family != get_spec(model).family:
        raise EdgevidError(f"{source}: model.init is a {ckpt.meta.model} checkpoint but the recipe trains {model}")


def load_init_weights(model: VideoModel, ckpt: Checkpoint, classes: Sequence[str], source: str | Path) -> str:
    """Load ``ckpt``'s weights into ``model`` (built for ``classes``); returns a one-line report.

    Same classes: everything is loaded. Classes that are all among the checkpoint's: the classifier keeps their
    rows. Otherwise the classifier (``model.get_classifier()``) keeps the model's fresh initialisation and every
    other tensor is loaded. Any other missing or mismatching tensor is an error listing them.
    """
    state = dict(ckpt.state_dict)
    prefix = model.classifier_name() + "."
    old = list(ckpt.meta.classes)
    target = model.state_dict()
    if list(classes) == old:
        how = "all weights loaded (same classes)"
    elif set(classes) <= set(old) and prefix + "weight" in state:
        rows = torch.tensor([old.index(c) for c in classes])
        for name in ("weight", "bias"):
            if prefix + name in state:
                state[prefix + name] = state[prefix + name][rows]
        how = f"classifier rows of {len(classes)} of its {len(old)} classes kept"
    else:
        for name in list(state):
            if name.startswith(prefix):
                state.pop(name)
                state[name] = target[name]
        how = (f"new classifier for the dataset's {len(classes)} classes (the checkpoint's {len(old)} classes "
               "differ); the rest loaded")
    unexpected = sorted(k for k in state if k not in target)
    missing = sorted(k for k in target if k not in state and not k.endswith("num_batches_tracked"))
    shapes = sorted(k for k in state if k in target and state[k].shape != target[k].shape)
    if unexpected or missing or shapes:
        parts = [f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                 for label, keys in (("unexpected", unexpected), ("missing", missing), ("shape mismatch", shapes))
                 if keys]
        raise EdgevidError(f"{source}: weights do not fit {ckpt.meta.model} as the recipe builds it "
                           f"({'; '.join(parts)})")
    for key, value in target.items():
        state.setdefault(key, value)
    model.load_state_dict(state)
    return how


def apply_freeze(model: nn.Module, mode: str) -> int:
    """Stop gradients for the frozen parameters; returns how many parameters still train.

    ``bn``: BatchNorm weights and biases; ``backbone``: everything except the classifier head (``head.*``).
    Call :func:`set_frozen_eval` after every ``model.train()`` so frozen BatchNorms keep their statistics too.
    """
    if mode not in FREEZE_MODES:
        raise EdgevidError(f"model.freeze must be one of {', '.join(FREEZE_MODES)}, got {mode!r}")
    for name, module in model.named_modules():
        frozen = (mode == "bn" and isinstance(module, nn.modules.batchnorm._BatchNorm)) or \
            (mode == "backbone" and name != "head" and not name.startswith("head.") and name != "")
        if frozen:
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_frozen_eval(model: nn.Module, mode: str) -> None:
    """Put frozen BatchNorms (all of them for ``bn`` and ``backbone``) in eval mode: running statistics fixed."""
    if mode == "none":
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
