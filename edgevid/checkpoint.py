"""Checkpoints: weights + metadata (+ optional training state), saved atomically, loaded without pickle code.

Loading uses ``torch.load(weights_only=True)``: a file that smuggles a pickled callable is refused.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.utils.atomic import atomic_path

FORMAT = "edgevid-checkpoint"
FORMAT_VERSION = 1
RUN_CHECKPOINTS = ("best.pt", "last.pt")


@dataclass
class Checkpoint:
    meta: ArtifactMeta
    state_dict: dict[str, torch.Tensor]
    train_state: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, model_or_state: torch.nn.Module | dict, meta: ArtifactMeta,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file + rename)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "train_state": train_state or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the best (else last) checkpoint of a run directory."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise EdgevidError(f"{path}: run directory has no checkpoint ({' or '.join(RUN_CHECKPOINTS)})")
    if not path.exists():
        raise EdgevidError(f"{path}: no such checkpoint")
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise EdgevidError(
            f"{path}: refused to load checkpoint: it contains objects other than tensors and plain data "
            f"({first[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise EdgevidError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EdgevidError(f"{path}: not an edgevid checkpoint (no '{FORMAT}' format marker / metadata)")
    return Checkpoint(
        meta=ArtifactMeta.from_dict(payload["meta"], str(path)),
        state_dict=payload["state_dict"],
        train_state=payload.get("train_state") or {},
    )


def build_model(meta: ArtifactMeta) -> torch.nn.Module:
    """An untrained model with the architecture that ``meta`` describes (pruned layers re-sliced to the shapes
    recorded in ``meta.extra["pruned_shapes"]``)."""
    from edgevid.models import create_model

    model = create_model(meta.model, num_classes=meta.num_classes, head=meta.head, **meta.arch)
    if meta.extra.get("pruned_shapes"):
        from edgevid.compress.pruning import apply_pruned_shapes

        apply_pruned_shapes(model, meta.extra["pruned_shapes"])
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
