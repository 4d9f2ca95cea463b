"""The Exporter interface, the registry of targets, the shared parity check and atomic writes.

One module per target registers an :class:`Exporter` subclass with :func:`register_exporter`;
:func:`edgevid.export.export` (:mod:`edgevid.export.api`) opens the source artifact once, picks the exporter by
target name and returns an :class:`ExportResult`.
Every exporter writes under a temporary name, checks parity against the source artifact, and only then moves
its file(s) onto the final name: a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgevid.data.decode import VIDEO_EXTENSIONS, probe, read_clip
from edgevid.errors import EdgevidError
from edgevid.formats import CHECKPOINT_SUFFIXES, FORMATS, artifact_stem
from edgevid.meta import ArtifactMeta, artifact_size_mb
from edgevid.precision import get_precision
from edgevid.runtime.base import Predictor, load
from edgevid.utils.atomic import temp_prefix

SOURCE_SUFFIXES = (*CHECKPOINT_SUFFIXES, *FORMATS["onnx"].suffixes)

# The opset every ONNX export writes by default: the lowest the dynamo exporter (onnxscript's torchlib) writes
# without converting down, and one that ONNX Runtime, OpenVINO and TensorRT 10 read. Lower opsets down to
# MIN_ONNX_OPSET can be asked for (the dynamo exporter then converts its graph down).
ONNX_OPSET = 18
MIN_ONNX_OPSET = 17
# torch.onnx's exporters: "dynamo" (torch.export, the default; falls back to "torchscript" with a warning when it
# fails for a model) or "torchscript" (the deprecated tracer, asked for explicitly).
ONNX_EXPORTERS = ("dynamo", "torchscript")


def check_onnx_options(opset: int, onnx_exporter: str) -> None:
    """An error naming the option when ``opset`` or ``onnx_exporter`` is not one edgevid exports with."""
    if opset < MIN_ONNX_OPSET:
        raise EdgevidError(f"ONNX opset must be >= {MIN_ONNX_OPSET}, got {opset}")
    if onnx_exporter not in ONNX_EXPORTERS:
        raise EdgevidError(f"--onnx-exporter must be {' or '.join(ONNX_EXPORTERS)}, got {onnx_exporter!r}")


@dataclass
class ExportOptions:
    """Everything an exporter may need besides the source and the output path."""

    precision: str = "fp32"
    batch_max: int = 8
    data: Path | None = None
    tolerance: float | None = None
    parity_clips: int = 4
    opset: int = ONNX_OPSET
    onnx_exporter: str = "dynamo"
    dynamic_time: bool | None = None
    onnx_only: bool = False
    workspace_mb: int = 1024
    timing_cache: Path | None = None
    trt_version: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        get_precision(self.precision)
        if self.batch_max < 1:
            raise EdgevidError(f"--batch-max must be >= 1, got {self.batch_max}")
        if self.parity_clips < 1:
            raise EdgevidError(f"parity needs at least 1 clip, got {self.parity_clips}")
        if self.tolerance is not None and self.tolerance <= 0:
            raise EdgevidError(f"--tolerance must be > 0, got {self.tolerance}")
        if self.trt_version not in (None, 10, 11):
            raise EdgevidError(f"--trt-version must be 10 or 11, got {self.trt_version}")
        if self.workspace_mb < 1:
            raise EdgevidError(f"--workspace-mb must be >= 1, got {self.workspace_mb}")
        check_onnx_options(self.opset, self.onnx_exporter)
        if self.data is not None:
            self.data = Path(self.data)
            if not self.data.exists():
                raise EdgevidError(f"--data {self.data}: no such file or directory")

    @property
    def limit_fraction(self) -> float:
        return self.tolerance if self.tolerance is not None else get_precision(self.precision).tolerance


@dataclass
class Parity:
    """How an artifact's outputs compare with a reference's on the same clips (an export and its source, an INT8
    model and its FP32 one). ``limit``: the largest |logit difference| that passes; None where no tolerance
    applies (INT8 is judged by its top-1, the accuracy guard's job)."""

    max_abs_diff: float
    top1_agreement: float
    clips: int
    limit: float | None
    reference: str
    clip_source: str
    execution: str = ""

    @property
    def passed(self) -> bool:
        return self.limit is None or self.max_abs_diff <= self.limit


@dataclass
class ExportResult:
    """What an export produced: the artifact, its metadata, the parity check and, for TensorRT, the command."""

    target: str
    precision: str
    path: Path
    meta: ArtifactMeta
    parity: Parity | None
    onnx_path: Path | None = None
    command: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def size_mb(self) -> float:
        return artifact_size_mb(self.path)

    def row(self) -> dict:
        """One table row (CLI and benchmarks)."""
        return {
            "target": self.target,
            "precision": self.precision,
            "path": str(self.path),
            "size_mb": self.size_mb,
            "max_abs_diff": self.parity.max_abs_diff if self.parity else None,
            "top1_agreement": self.parity.top1_agreement if self.parity else None,
            "execution": self.parity.execution if self.parity else None,
        }


@dataclass
class Source:
    """The artifact being exported, opened once: its metadata and a Predictor that is the parity reference."""

    path: Path
    reference: Predictor

    @property
    def meta(self) -> ArtifactMeta:
        return self.reference.meta

    @property
    def is_onnx(self) -> bool:
        return self.path.suffix.lower() in FORMATS["onnx"].suffixes

    def torch_model(self, target: str):
        """The PyTorch module of a checkpoint source; an error for sources that are already exported."""
        model = getattr(self.reference, "model", None)
        if model is None:
            raise EdgevidError(f"{self.path}: --target {target} needs a checkpoint or run directory as the source")
        return model


class Exporter(ABC):
    """Turns a :class:`Source` into one deployable artifact for one target."""

    target: ClassVar[str]
    suffix: ClassVar[str]  # suffix, precisions and backend: from the target's row of edgevid.formats.FORMATS
    description: ClassVar[str] = ""
    precisions: ClassVar[tuple[str, ...]]
    backend: ClassVar[str]

    def __init__(self, options: ExportOptions) -> None:
        self.options = options

    def default_out(self, source: Source) -> Path:
        """``<source stem>[.<precision>]<suffix>`` beside the source file (a run directory's best.pt -> best.onnx;
        the stem drops the source's own precision and target tags: tiny3d.int8.trt.onnx -> tiny3d.int8.engine)."""
        base = source.path.with_name(artifact_stem(source.path))
        tag = "" if self.options.precision == "fp32" else f".{self.options.precision}"
        return base.with_name(base.name + tag + self.suffix)

    @abstractmethod
    def export(self, source: Source, out: Path) -> ExportResult:
        """Write the artifact to ``out`` (atomically, after the parity check) and describe it."""


_EXPORTERS: dict[str, type[Exporter]] = {}


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    """Class decorator adding an exporter under its ``target`` name."""
    _EXPORTERS[cls.target] = cls
    return cls


def list_targets() -> list[str]:
    return sorted(_EXPORTERS)


def get_exporter(target: str) -> type[Exporter]:
    try:
        return _EXPORTERS[target]
    except KeyError:
        raise EdgevidError(f"--target {target!r} is not a valid export target; valid targets: "
                           f"{', '.join(list_targets())}") from None


def open_source(artifact: str | Path, threads: int | None = None) -> Source:
    """Open a checkpoint, run directory or ONNX file as an export source."""
    path = Path(artifact)
    if not path.exists():
        raise EdgevidError(f"{path}: no such file or directory")
    if not path.is_dir() and path.suffix.lower() not in SOURCE_SUFFIXES:
        raise EdgevidError(f"{path}: cannot export from a {path.suffix or 'suffix-less'} file; expected a checkpoint "
                           f"({', '.join(SOURCE_SUFFIXES[:-1])}), a run directory or an .onnx file")
    reference = load(path, device="cpu", threads=threads)
    return Source(reference.path, reference)


def parity_clips(source: Source, count: int, data: Path | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
    """``count`` normalised clips [N, 3, T, S, S] and where they came from: the centre clip of evenly chosen
    videos under ``data`` (decoded and preprocessed as at inference) when given, else random frames normalised
    with the artifact's mean/std."""
    meta = source.meta
    if data is not None:
        return _video_clips(source, data, count), str(data)
    rng = np.random.default_rng(seed)
    frames = rng.random((count, meta.frames, meta.size, meta.size, 3), dtype=np.float32)
    clips = (frames - np.asarray(meta.mean, np.float32)) / np.asarray(meta.std, np.float32)
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3)), "random"


def _video_clips(source: Source, data: Path, count: int) -> np.ndarray:
    videos = [data] if data.is_file() else sorted(p for p in data.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise EdgevidError(f"--data {data}: no video files found for the parity check")
    chosen = [videos[i] for i in np.linspace(0, len(videos) - 1, min(count, len(videos))).round().astype(int)]
    meta = source.meta
    span = (meta.frames - 1) * meta.sampling_stride + 1
    clips = []
    for video in chosen:
        start = max(0, (probe(video).num_frames - span) // 2)
        frames = read_clip(video, start + np.arange(meta.frames) * meta.sampling_stride)
        clips.append(source.reference.preprocess(frames))
    return np.stack(clips)


def check_parity(source: Source, candidate: Predictor, options: ExportOptions, label: str) -> Parity:
    """Run source and candidate on the same clips (as one batch and one clip alone, so a batch size baked into
    the graph is caught); raise when the max |logit difference| exceeds the tolerance."""
    clips, clip_source = parity_clips(source, options.parity_clips, options.data)
    reference = source.reference.predict(clips)
    outputs = candidate.predict(clips)
    single = candidate.predict(clips[:1])
    if outputs.shape != reference.shape or single.shape != reference[:1].shape:
        raise EdgevidError(f"{label}: output shape {list(outputs.shape)} (batch 1: {list(single.shape)}) differs from "
                           f"the source's {list(reference.shape)}")
    diff = float(max(np.abs(outputs - reference).max(), np.abs(single - reference[:1]).max()))
    agreement = float(np.mean(outputs.argmax(axis=1) == reference.argmax(axis=1)))
    limit = options.limit_fraction * max(1.0, float(np.abs(reference).max()))
    parity = Parity(diff, agreement, len(clips), limit, source.reference.backend, clip_source, candidate.execution)
    if not parity.passed or not np.isfinite(diff):
        raise EdgevidError(
            f"{label}: parity check failed: max |logit diff| {diff:.3g} against {source.reference.backend} exceeds "
            f"{limit:.3g} ({options.precision} tolerance {options.limit_fraction:g} x max(1, max |logit|)); "
            f"top-1 agreement {agreement:.0%}; nothing written"
        )
    return parity


@contextlib.contextmanager
def atomic_files(*finals: Path) -> Iterator[list[Path]]:
    """Temporary paths with the final names, in a temp directory beside ``finals[0]``; all are moved onto their
    final names only if the block succeeds (the first, the entry point, last), else none are."""
    finals = tuple(Path(f) for f in finals)
    if len({f.name for f in finals}) != len(finals):
        raise ValueError("atomic_files needs distinct file names")
    finals[0].parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=temp_prefix(finals[0].name), dir=finals[0].parent))
    try:
        temps = [tmpdir / f.name for f in finals]
        yield temps
        missing = [t.name for t in temps if not t.is_file()]
        if missing:
            raise EdgevidError(f"{finals[0]}: export did not produce {', '.join(missing)}")
        for tmp, final in reversed(list(zip(temps, finals, strict=True))):
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def with_precision(options: ExportOptions, precision: str) -> ExportOptions:
    """A copy of ``options`` for an intermediate artifact of another precision."""
    return replace(options, precision=precision)
