"""Import other projects' checkpoints as edgevid checkpoints: ``edgevid import SOURCE --model NAME``.

Formats (detected from the keys; ``fmt`` forces one): ``pytorchvideo`` (PyTorchVideo / ``.pyth`` model zoo),
``torchvision``, ``tsm`` (the TSM authors' repository) and ``mmaction2``. Each module says which of its
architectures are the same network as an edgevid model. An import renames keys, checks that every edgevid layer
gets a tensor of its shape and every source tensor lands somewhere (else one error listing the offenders), and
writes a checkpoint with full metadata: classes (Kinetics-400 or ImageNet names for 400/1000-way heads, or a
label file), input frames/size/sampling and mean/std of the source's recipe. Files are read with
``torch.load(weights_only=True)``: nothing in them is run, and their other entries (optimizer state, config,
epoch) are listed as ignored in the metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from edgevid.checkpoint import FORMAT as EDGEVID_FORMAT
from edgevid.checkpoint import save_checkpoint
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import get_spec
from edgevid.weights import mmaction2, pytorchvideo, torchvision, tsm_authors
from edgevid.weights.common import default_classes, fit, imagenet_classes, kinetics400_classes
from edgevid.weights.safeload import load_payload, split_weights

FORMATS: dict[str, ModuleType] = {m.NAME: m for m in (pytorchvideo, torchvision, tsm_authors, mmaction2)}
# Tried in this order: the most specific key patterns first.
_DETECT_ORDER = (mmaction2, tsm_authors, pytorchvideo, torchvision)

__all__ = [
    "FORMATS",
    "ImportReport",
    "detect_format",
    "imagenet_classes",
    "import_checkpoint",
    "kinetics400_classes",
    "load_external",
    "outside_sources",
]


@dataclass
class ImportReport:
    """What an import produced: the model (eval mode), its metadata and the source entries left out."""

    model: torch.nn.Module
    meta: ArtifactMeta
    fmt: str
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def detect_format(state: Mapping[str, torch.Tensor], payload: Any = None) -> str:
    """The source format of a state_dict (``payload``: the whole file, whose top-level keys help)."""
    if isinstance(payload, Mapping) and "model_state" in payload and pytorchvideo.detect(state):
        return pytorchvideo.NAME
    if any(k.startswith("s1.pathway0_stem") for k in state):
        raise EdgevidError("this is a PySlowFast checkpoint (s1.pathway0_stem... keys): import the PyTorchVideo "
                           "checkpoint of the same model instead (same weights, pytorchvideo layout)")
    for module in _DETECT_ORDER:
        if module.detect(state):
            return module.NAME
    sample = ", ".join(list(state)[:4])
    raise EdgevidError(f"unknown checkpoint layout (keys like {sample}); pass --from with one of "
                       f"{', '.join(FORMATS)}")


def _read_classes(path: str | Path, count: int) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise EdgevidError(f"{path}: no such label file")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != count:
        raise EdgevidError(f"{path}: {len(names)} labels for a head of {count} classes")
    return names


def load_external(source: str | Path, model: str, fmt: str | None = None,
                  classes: str | Path | None = None) -> ImportReport:
    """Convert ``source`` (another project's checkpoint) into an edgevid model of ``model`` with its metadata."""
    path = Path(source)
    payload = load_payload(path)
    if isinstance(payload, Mapping) and payload.get("format") == EDGEVID_FORMAT:
        raise EdgevidError(f"{path}: already an edgevid checkpoint; use it as it is (e.g. train --init)")
    state, ignored = split_weights(payload, path)
    if fmt is None:
        try:
            fmt = detect_format(state, payload)
        except EdgevidError as exc:
            raise EdgevidError(f"{path}: {exc}") from None
    if fmt not in FORMATS:
        raise EdgevidError(f"--from must be one of {', '.join(FORMATS)}, got {fmt!r}")
    conversion = FORMATS[fmt].convert(state, model, path)
    head = conversion.state_dict.get("head.fc.weight")
    if head is None:
        raise EdgevidError(f"{path}: no classifier weights found for {conversion.model}'s head")
    count = int(head.shape[0])
    net = fit(conversion, count, path)
    prep = conversion.preprocess
    names = _read_classes(classes, count) if classes is not None else default_classes(count)
    meta = ArtifactMeta(
        model=conversion.model, classes=names, frames=prep.frames, size=prep.size,
        sampling_stride=prep.sampling_stride, mean=prep.mean, std=prep.std, head="clip", fps=30.0,
        arch=dict(conversion.arch),
        sampling=prep.sampling,
        extra={"imported_from": {"file": path.name, "format": fmt, "source_model": model, "ignored": ignored,
                                 "notes": conversion.notes}},
    )
    return ImportReport(net, meta, fmt, ignored, conversion.notes)


def default_output(source: str | Path) -> Path:
    source = Path(source)
    return source.with_name(f"{source.stem}.edgevid.pt")


def import_checkpoint(source: str | Path, model: str, fmt: str | None = None, out: str | Path | None = None,
                      classes: str | Path | None = None) -> Path:
    """Convert another project's checkpoint into an edgevid checkpoint (written atomically); returns its path.

    ``model``: the edgevid model (or, for PyTorchVideo, the source architecture such as ``slow_r50``);
    ``fmt``: force a source format; ``classes``: a label file (one name a line) for the head's outputs.
    """
    report = load_external(source, model, fmt, classes)
    return save_checkpoint(out if out is not None else default_output(source), report.model, report.meta)


def outside_sources() -> dict[str, list[dict[str, str]]]:
    """Per model family: which outside checkpoints import into it, and where users get them."""
    table: dict[str, list[dict[str, str]]] = {}
    for module in FORMATS.values():
        for name, target in module.TARGETS.items():
            edgevid_model = target[0] if isinstance(target, tuple) else name
            source_model = name if isinstance(target, tuple) else target
            family = get_spec(edgevid_model).family
            table.setdefault(family, []).append({"format": module.NAME, "model": edgevid_model,
                                                 "source": source_model, "where": module.WHERE})
    return table
