"""Checkpoints: weights + metadata (+ optional training state), and the model they describe.

The container (``save_checkpoint`` / ``load_checkpoint``, saved atomically, loaded without pickle code) lives in
:mod:`edgevid.meta`, below the models, so that reading any artifact's metadata needs no model code; this module
adds what needs the model zoo: :func:`build_model` and :func:`load_model`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgevid.errors import EdgevidError
from edgevid.meta import (
    FORMAT,
    FORMAT_VERSION,
    RUN_CHECKPOINTS,
    ArtifactMeta,
    Checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from edgevid.models import create_model
from edgevid.models.pruned import apply_pruned_shapes

__all__ = ["FORMAT", "FORMAT_VERSION", "RUN_CHECKPOINTS", "Checkpoint", "build_model", "load_checkpoint",
           "load_model", "resolve_checkpoint", "save_checkpoint"]


def build_model(meta: ArtifactMeta) -> torch.nn.Module:
    """An untrained model with the architecture that ``meta`` describes (pruned layers re-sliced to the shapes
    recorded in ``meta.pruned_shapes``)."""
    model = create_model(meta.model, num_classes=meta.num_classes, head=meta.head, **meta.arch)
    if meta.pruned_shapes:
        apply_pruned_shapes(model, meta.pruned_shapes)
    return model


def load_model(path: str | Path) -> tuple[torch.nn.Module, ArtifactMeta]:
    """Rebuild the model of a checkpoint (or run directory), load its weights, and return it in eval mode."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt.meta)
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise EdgevidError(f"{path}: weights do not fit model {ckpt.meta.model!r}: {first}") from None
    return model.eval(), ckpt.meta
