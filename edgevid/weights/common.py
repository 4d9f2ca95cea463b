"""What every source format shares: key renaming by rules, the strict fit check, preprocessing and label lists."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from edgevid.errors import EdgevidError
from edgevid.models import create_model
from edgevid.models.base import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD

Rule = tuple[str, "str | Callable[[re.Match], str]"]


@dataclass(frozen=True)
class Preprocess:
    """The input the source project's recipe trained with (what the imported model expects)."""

    frames: int
    size: int
    sampling_stride: int
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    sampling: str = "dense"


IMAGENET_SEGMENTS = Preprocess(8, 224, 8, IMAGENET_MEAN, IMAGENET_STD, "segments")


@dataclass
class Conversion:
    """A source state_dict renamed to an edgevid model's keys, with what is needed to write its metadata."""

    model: str
    state_dict: dict[str, torch.Tensor]
    preprocess: Preprocess
    arch: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _preview(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def strip_prefix(state: Mapping[str, torch.Tensor], prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Remove the first matching prefix (``module.`` of DataParallel, ...) from every key that has it."""
    prefixes = tuple(prefixes)
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def rename(state: Mapping[str, torch.Tensor], rules: Sequence[Rule], source: Path, fmt: str,
           ignore: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Rename keys by the first rule (regex, replacement) whose pattern matches the whole key.

    Keys matching an ``ignore`` pattern are dropped (e.g. a second, unused classifier); a key that no rule
    matches is an error that lists every such key.
    """
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    ignored = [re.compile(p) for p in ignore]
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        if any(p.fullmatch(key) for p in ignored):
            continue
        for pattern, replacement in compiled:
            match = pattern.fullmatch(key)
            if match:
                out[replacement(match) if callable(replacement) else match.expand(replacement)] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise EdgevidError(f"{source}: {len(unmapped)} {fmt} key(s) map to no edgevid layer: {_preview(unmapped)}")
    return out


def num_classes_of(state: Mapping[str, torch.Tensor], key: str, source: Path) -> int:
    if key not in state or state[key].dim() < 1:
        raise EdgevidError(f"{source}: no classifier weights ({key}) to take the number of classes from")
    return int(state[key].shape[0])


def fit(conversion: Conversion, num_classes: int, source: Path) -> torch.nn.Module:
    """Build the edgevid model and load the converted weights; every missing key, unmapped key or shape mismatch
    is an error that lists them (never a partial load). BN step counters absent from the source keep 0."""
    try:
        model = create_model(conversion.model, num_classes=num_classes, **conversion.arch)
    except ValueError as exc:
        raise EdgevidError(f"{source}: cannot build {conversion.model}: {exc}") from None
    target = model.state_dict()
    state = dict(conversion.state_dict)
    unexpected = sorted(k for k in state if k not in target)
    missing = sorted(k for k in target if k not in state and not k.endswith("num_batches_tracked"))
    shapes = sorted(f"{k} {list(state[k].shape)} (edgevid {list(target[k].shape)})" for k in state
                    if k in target and state[k].shape != target[k].shape)
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) with no layer in {conversion.model}: {_preview(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} layer(s) of {conversion.model} with no weights in the file: "
                        f"{_preview(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_preview(shapes)}")
    if problems:
        raise EdgevidError(f"{source}: does not fit {conversion.model}: " + "; ".join(problems))
    for key, ref in target.items():
        if key not in state:
            state[key] = ref.clone()
        else:
            state[key] = state[key].to(dtype=ref.dtype)
    model.load_state_dict(state)
    return model.eval()


def _read_labels(name: str) -> list[str]:
    text = resources.files("edgevid.weights").joinpath(name).read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    seen: dict[str, int] = {}
    unique = []
    for index, label in enumerate(names):  # ImageNet repeats two names (crane, maillot): keep them apart
        unique.append(label if label not in seen else f"{label} ({index})")
        seen[label] = index
    return unique


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics-400 action names in the index order of the public checkpoints (sorted by name)."""
    return _read_labels("kinetics400.txt")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in torchvision's index order."""
    return _read_labels("imagenet1k.txt")


def default_classes(count: int) -> list[str]:
    """Label names for a head of ``count`` outputs: Kinetics-400, ImageNet-1k, else class_0 ... class_N-1."""
    if count == 400:
        return kinetics400_classes()
    if count == 1000:
        return imagenet_classes()
    return [f"class_{i}" for i in range(count)]


def reshape_to(shape: torch.Size) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: t.reshape(shape)
