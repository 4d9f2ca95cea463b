"""The one table of artifact formats: per target, its files, backend, precisions, streaming and package.

Every other place that needs a format fact derives it from :data:`FORMATS` (the CLI's target names, the runtime's
suffix registry, exporters' suffixes and precisions, checkpoint suffixes, the files of an OpenVINO IR, bench
rows and default output names). Adding a target is one row here plus an exporter (:mod:`edgevid.export`) and a
Predictor (:mod:`edgevid.runtime`) registered under the row's names (see ARCHITECTURE.md).

- ``target``: the name the CLI and the export/quantize/bench APIs take (``--target``).
- ``backend``: the name of the runtime that runs it (:attr:`edgevid.runtime.Predictor.backend`).
- ``suffixes``: the entry file's suffixes; the first is the one edgevid writes.
- ``companions``: files beside the entry file, same stem, that belong to it (an IR's ``.bin`` weights).
- ``precisions``: what ``edgevid export`` writes for the target (the torch row: what a checkpoint runs in).
- ``streaming_precisions``: what ``edgevid export --streaming`` writes for it (empty: no streaming export).
- ``package``: the Python package its backend needs.
- ``noun``: how messages name one artifact; ``label``: how tables name the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevid.precision import PRECISION_NAMES


@dataclass(frozen=True)
class ArtifactFormat:
    """One row of the format table (see the module docstring for the fields)."""

    target: str
    backend: str
    suffixes: tuple[str, ...]
    precisions: tuple[str, ...]
    streaming_precisions: tuple[str, ...]
    package: str
    noun: str
    label: str
    companions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.precisions + self.streaming_precisions) - set(PRECISION_NAMES)
        if unknown:
            raise ValueError(f"format {self.target}: unknown precisions {sorted(unknown)}")

    @property
    def suffix(self) -> str:
        """The suffix edgevid writes."""
        return self.suffixes[0]

    @property
    def streaming(self) -> bool:
        """Whether ``edgevid export --streaming`` writes this target."""
        return bool(self.streaming_precisions)

    def files(self, path: Path) -> list[Path]:
        """The entry file and its companions (``model.xml`` -> ``model.xml``, ``model.bin``)."""
        return [path, *(path.with_suffix(suffix) for suffix in self.companions)]


FORMATS: dict[str, ArtifactFormat] = {f.target: f for f in (
    ArtifactFormat("torch", "torch", (".pt", ".pth", ".ckpt"), ("fp32", "bf16"), (), "torch",
                   "a PyTorch checkpoint", "PyTorch"),
    ArtifactFormat("onnx", "onnxruntime", (".onnx",), ("fp32", "fp16", "int8"), ("fp32",), "onnxruntime",
                   "an ONNX model", "ONNX Runtime"),
    ArtifactFormat("openvino", "openvino", (".xml",), ("fp32", "fp16", "bf16", "int8"), ("fp32", "fp16", "bf16"),
                   "openvino", "an OpenVINO IR", "OpenVINO", companions=(".bin",)),
    ArtifactFormat("trt", "tensorrt", (".engine", ".plan"), ("fp32", "fp16", "int8"), (), "tensorrt",
                   "a TensorRT engine", "TensorRT"),
)}
TARGETS = tuple(FORMATS)
EXPORT_TARGETS = tuple(t for t in TARGETS if t != "torch")
STREAMING_TARGETS = tuple(t for t, f in FORMATS.items() if f.streaming)
CHECKPOINT_SUFFIXES = FORMATS["torch"].suffixes
BACKEND_TARGETS = {f.backend: f.target for f in FORMATS.values()}
TARGET_BACKENDS = {f.target: f.backend for f in FORMATS.values()}
_BY_SUFFIX = {suffix: f for f in FORMATS.values() for suffix in f.suffixes}


def format_of(path: str | Path) -> ArtifactFormat | None:
    """The format of an artifact path by its suffix (a directory is a run: torch); ``None`` when unknown."""
    path = Path(path)
    return FORMATS["torch"] if path.is_dir() else _BY_SUFFIX.get(path.suffix.lower())


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint file (by suffix) or a run directory."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in CHECKPOINT_SUFFIXES


def artifact_stem(path: str | Path) -> str:
    """An artifact's name without its suffix and the precision and target tags default names carry
    (``tiny3d.int8.trt.onnx`` -> ``tiny3d``), so a name derived from it carries each tag once."""
    path = Path(path)
    parts = (path.name[: -len(path.suffix)] if path.suffix else path.name).split(".")
    while len(parts) > 1 and parts[-1].lower() in (*PRECISION_NAMES, *FORMATS):
        parts.pop()
    return ".".join(parts)


def artifact_files(path: str | Path) -> list[Path]:
    """The files an artifact is made of: the path, and for an OpenVINO IR its ``.bin`` as well."""
    path = Path(path)
    found = _BY_SUFFIX.get(path.suffix.lower())
    return found.files(path) if found else [path]


__all__ = ["BACKEND_TARGETS", "CHECKPOINT_SUFFIXES", "EXPORT_TARGETS", "FORMATS", "STREAMING_TARGETS",
           "TARGETS", "TARGET_BACKENDS", "ArtifactFormat", "artifact_files", "format_of", "is_checkpoint"]
