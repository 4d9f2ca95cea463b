"""Artifact metadata: the single source of truth that travels with every checkpoint and exported file.

Checkpoints (the container is defined here: :func:`save_checkpoint`, :func:`load_checkpoint`) store it under the
``meta`` key, ONNX files in ``metadata_props["edgevid"]``, OpenVINO IR in
``rt_info["edgevid"]``, and formats without a metadata slot (TensorRT engines) in a sidecar
``<artifact>.edgevid.json``. :func:`read_meta` reads it from any of them.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevid import __version__
from edgevid.data.sampling import FRAME_FITS
from edgevid.errors import EdgevidError
from edgevid.formats import CHECKPOINT_SUFFIXES, FORMATS, artifact_files, format_of
from edgevid.precision import PRECISION_NAMES
from edgevid.utils.atomic import atomic_path
from edgevid.utils.openvino import openvino_core

HEAD_KINDS = ("clip", "frame", "dense", "features")
META_KEY = "edgevid"
# Version of the metadata layout. 1 (never written as a number: no ``meta_version`` key) kept the run facts below
# as untyped ``extra`` keys; :func:`upgrade_meta_dict` turns such a dict into the current layout.
META_VERSION = 2
DEFAULT_SAMPLING = "dense"
DEFAULT_INPUT = "clip"
DEFAULT_OUTPUT = "logits"


@dataclass
class InputSpec:
    """How an exported graph takes its clips: tensor names, dynamic axes and the rules of a dynamic time axis
    (a checkpoint's model knows its own rules; its spec stays at the defaults)."""

    name: str = DEFAULT_INPUT
    output: str = DEFAULT_OUTPUT
    dynamic_batch: bool = False
    dynamic_time: bool = False
    min_frames: int = 1
    frame_multiple: int = 1

    def __post_init__(self) -> None:
        if self.min_frames < 1 or self.frame_multiple < 1:
            raise EdgevidError("metadata input min_frames and frame_multiple must be positive")


@dataclass
class StateSpec:
    """One state tensor of a streaming export (shape for batch 1 at the artifact's size)."""

    name: str
    kind: str
    module: str
    rate: int
    shape: list[int]
    shifted_from: str | None = None


@dataclass
class StreamSpec:
    """The streaming graph ``(frame, *states) -> (logits, *new states)``: its tensor names and state table."""

    input: str = "frame"
    output: str = DEFAULT_OUTPUT
    states: list[StateSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = [s if isinstance(s, StateSpec) else StateSpec(**s) for s in self.states]


@dataclass
class QuantizationInfo:
    """How an INT8 artifact was quantized (``edgevid quantize``)."""

    target: str
    scheme: dict[str, Any] = field(default_factory=dict)
    calibration: str = ""
    calib_clips: int = 0
    float_layers: list[str] = field(default_factory=list)
    weighted_layers: int = 0
    fp32_top1: float | None = None
    int8_top1: float | None = None
    max_drop: float | None = None
    accuracy_guard: str | None = None
    source: str = ""
    cpu_features: list[str] = field(default_factory=list)


def _typed(value: Any, cls: type) -> Any:
    return cls(**value) if isinstance(value, dict) else value


@dataclass
class ArtifactMeta:
    """What a loader needs to run an artifact: model, labels, input geometry, sampling and preprocessing.

    ``extra`` holds what no loader needs (recipe, epoch, validation top-1, reports of pruning or imports).
    """

    model: str
    classes: list[str]
    frames: int
    size: int
    sampling_stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head: str = "clip"
    fps: float = 30.0
    clip_seconds: float | None = None  # a dense clip's span in seconds; None: sampling_stride is in frames
    sampling: str = DEFAULT_SAMPLING  # how clips are drawn from a video (edgevid.data.sampling)
    fit: str = "crop"  # how a frame becomes the square input: crop or squash (edgevid.data.sampling)
    precision: str = "fp32"
    arch: dict[str, Any] = field(default_factory=dict)
    input: InputSpec = field(default_factory=InputSpec)
    streaming: bool = False
    stream: StreamSpec | None = None  # the state table of a streaming export (None: a clip model or a checkpoint)
    pruned_shapes: dict[str, list[int]] = field(default_factory=dict)  # weights whose shape pruning changed
    quantization: QuantizationInfo | None = None
    edgevid_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.input = _typed(self.input, InputSpec)
        self.stream = _typed(self.stream, StreamSpec)
        self.quantization = _typed(self.quantization, QuantizationInfo)
        self.pruned_shapes = {k: [int(d) for d in v] for k, v in self.pruned_shapes.items()}
        if self.head not in HEAD_KINDS:
            raise EdgevidError(f"metadata head {self.head!r} is not one of {', '.join(HEAD_KINDS)}")
        if self.fit not in FRAME_FITS:
            raise EdgevidError(f"metadata fit {self.fit!r} is not one of {', '.join(FRAME_FITS)}")
        if self.precision not in PRECISION_NAMES:
            raise EdgevidError(f"metadata precision {self.precision!r} is not one of {', '.join(PRECISION_NAMES)}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise EdgevidError("metadata mean/std must have 3 values (RGB)")
        if self.frames < 1 or self.size < 1 or self.sampling_stride < 1:
            raise EdgevidError("metadata frames, size and sampling_stride must be positive")
        if self.clip_seconds is not None:
            self.clip_seconds = float(self.clip_seconds)
            if not self.clip_seconds > 0:
                raise EdgevidError("metadata clip_seconds must be positive (or absent for a stride in frames)")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def accepts_frames(self, frames: int) -> bool:
        """Whether an exported artifact takes clips of ``frames`` frames: any count its dynamic time axis allows
        (``input.min_frames``, ``input.frame_multiple``), else only ``self.frames``."""
        if not self.input.dynamic_time:
            return frames == self.frames
        return frames >= self.input.min_frames and frames % self.input.frame_multiple == 0

    def replace(self, **changes: Any) -> ArtifactMeta:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["meta_version"] = META_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "metadata") -> ArtifactMeta:
        """Metadata from a dict of any version written so far (see :func:`upgrade_meta_dict`)."""
        data = upgrade_meta_dict(data, source)
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in data]
        if missing:
            raise EdgevidError(f"{source}: edgevid metadata lacks {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:  # a nested table with unknown or missing keys
            raise EdgevidError(f"{source}: malformed edgevid metadata ({exc})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ArtifactMeta:
        """Metadata from the JSON an artifact carries: the metadata, or one :class:`EdgevidError` naming ``source``
        whatever the text holds (more than :data:`MAX_META_CHARS`, invalid or too deeply nested JSON, not an
        object, fields of the wrong type)."""
        if len(text) > MAX_META_CHARS:
            raise EdgevidError(f"{source}: edgevid metadata of {len(text) / 2**20:.0f} MiB is more than "
                               f"{MAX_META_CHARS / 2**20:g} MiB")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EdgevidError(f"{source}: edgevid metadata is not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise EdgevidError(f"{source}: edgevid metadata is nested too deeply") from None
        if not isinstance(data, dict):
            raise EdgevidError(f"{source}: edgevid metadata is a JSON {type(data).__name__}, not an object")
        try:
            return cls.from_dict(data, source)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError, RecursionError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise EdgevidError(f"{source}: malformed edgevid metadata ({reason})") from None


MAX_META_CHARS = 64 << 20  # metadata JSON inside an artifact: a pruned model's shapes take a few KiB

# Version 1 kept these facts in ``extra``: key there -> field of InputSpec.
_V1_INPUT_KEYS = {"input": "name", "output": "output", "dynamic_batch": "dynamic_batch",
                  "dynamic_time": "dynamic_time", "min_frames": "min_frames", "frame_multiple": "frame_multiple"}


def upgrade_meta_dict(data: dict[str, Any], source: str = "metadata") -> dict[str, Any]:
    """A metadata dict in the current layout (:data:`META_VERSION`), from any layout written so far.

    Version 1 (no ``meta_version``): ``extra["sampling"]``, the ONNX input keys (``input``, ``output``,
    ``dynamic_batch``, ``dynamic_time``, ``min_frames``, ``frame_multiple``), ``extra["streaming"]`` (the state
    table), ``extra["pruned_shapes"]`` and ``extra["quantization"]`` become typed fields; a ``sampling_rate``
    is read as ``sampling_stride``.
    """
    version = data.get("meta_version", 1)
    if not isinstance(version, int) or version > META_VERSION:
        raise EdgevidError(f"{source}: edgevid metadata version {version!r} is newer than this edgevid reads "
                           f"({META_VERSION}); upgrade edgevid")
    data = {k: v for k, v in data.items() if k != "meta_version"}
    if version >= META_VERSION:
        return data
    extra = dict(data.get("extra") or {})
    if "sampling_rate" in data and "sampling_stride" not in data:
        data["sampling_stride"] = data.pop("sampling_rate")
    data["sampling"] = extra.pop("sampling", DEFAULT_SAMPLING)
    data["input"] = {field_name: extra.pop(key) for key, field_name in _V1_INPUT_KEYS.items() if key in extra}
    stream = extra.pop("streaming", None)
    if isinstance(stream, dict):  # a streaming export: its graph takes frames, not clips
        data["stream"] = stream
        data["input"].setdefault("name", stream.get("input", StreamSpec.input))
        data["input"].setdefault("output", stream.get("output", StreamSpec.output))
    data["pruned_shapes"] = extra.pop("pruned_shapes", None) or {}
    if isinstance(extra.get("quantization"), dict):
        data["quantization"] = extra.pop("quantization")
    data["extra"] = extra
    return data


# --------------------------------------------------------------------------------------------- checkpoints
# The checkpoint container is metadata's first carrier; it lives here (not in edgevid.checkpoint, which builds
# models) so that read_meta needs nothing above this layer. edgevid.checkpoint re-exports these names.
FORMAT = "edgevid-checkpoint"
FORMAT_VERSION = 1
RUN_CHECKPOINTS = ("best.pt", "last.pt")


@dataclass
class Checkpoint:
    meta: ArtifactMeta
    state_dict: dict[str, Any]
    train_state: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, model_or_state: Any, meta: ArtifactMeta,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint (a ``torch.nn.Module``'s or a state dict's tensors) atomically (temp file + rename)."""
    import torch  # torch only where a checkpoint is written or read: ONNX/OpenVINO metadata needs none

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
    import torch  # torch only where a checkpoint is written or read: ONNX/OpenVINO metadata needs none

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


def artifact_size_mb(path: str | Path) -> float:
    """Size of an artifact in MiB, the one definition every report uses: a checkpoint's (or run directory's)
    weights without its training state, an OpenVINO IR's .xml + .bin, else the file."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
        state = load_checkpoint(path).state_dict
        return sum(t.numel() * t.element_size() for t in state.values()) / 2**20
    return sum(f.stat().st_size for f in artifact_files(path) if f.exists()) / 2**20


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".edgevid.json")


def read_meta(artifact: str | Path) -> ArtifactMeta:
    """Read the metadata of a checkpoint, run directory, ONNX file, OpenVINO IR or TensorRT engine."""
    path = Path(artifact)
    if not path.exists():
        raise EdgevidError(f"{path}: no such file or directory")
    if path.is_dir():
        path = resolve_checkpoint(path)
    suffix = path.suffix.lower()
    if path.is_file() and path.stat().st_size == 0:
        found = format_of(path)
        kind = found.noun if found and found.target != "torch" else "a model artifact"
        raise EdgevidError(f"{path}: empty file (0 bytes), not {kind}")
    if suffix in CHECKPOINT_SUFFIXES:
        return load_checkpoint(path).meta
    if suffix in FORMATS["onnx"].suffixes:
        return _read_onnx_meta(path)
    if suffix in FORMATS["openvino"].suffixes:
        return _read_openvino_meta(path)
    sidecar = sidecar_path(path)
    if sidecar.exists():
        return ArtifactMeta.from_json(sidecar.read_text(encoding="utf-8"), str(sidecar))
    raise EdgevidError(
        f"{path}: cannot read edgevid metadata (expected a .pt checkpoint, run directory, .onnx, OpenVINO .xml, "
        f"or a sidecar {sidecar.name})"
    )


def _read_onnx_meta(path: Path) -> ArtifactMeta:
    import onnx  # onnx: optional, loaded only where an ONNX graph is read or edited

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for corrupt files
        raise EdgevidError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            return ArtifactMeta.from_json(prop.value, str(path))
    sidecar = sidecar_path(path)
    if sidecar.exists():
        return ArtifactMeta.from_json(sidecar.read_text(encoding="utf-8"), str(sidecar))
    raise EdgevidError(f"{path}: ONNX model has no edgevid metadata (metadata_props['{META_KEY}'])")


def write_onnx_meta(model: Any, meta: ArtifactMeta) -> None:
    """Store ``meta`` in an in-memory ``onnx.ModelProto``'s metadata_props."""
    kept = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = META_KEY
    entry.value = meta.to_json()


def _read_openvino_meta(path: Path) -> ArtifactMeta:
    return openvino_meta(read_openvino_model(path), str(path))


def read_openvino_model(path: Path) -> Any:
    """Read an OpenVINO IR (``.xml`` + ``.bin``); a missing .bin or a corrupt file is an error naming it."""
    _, weights = FORMATS["openvino"].files(path)
    if not weights.exists():
        raise EdgevidError(f"{path}: OpenVINO IR weights {weights.name} are missing")
    try:
        return openvino_core().read_model(str(path), str(weights))
    except Exception as exc:  # openvino raises generic RuntimeErrors for parse errors
        lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.startswith(("Check ", "Exception from"))]
        raise EdgevidError(f"{path}: not a readable OpenVINO IR ({(lines or [type(exc).__name__])[0][:160]})") from None


def openvino_meta(model: Any, source: str) -> ArtifactMeta:
    """Metadata of an in-memory ``openvino.Model``."""
    if not model.has_rt_info(META_KEY):
        raise EdgevidError(f"{source}: OpenVINO model has no edgevid metadata (rt_info['{META_KEY}'])")
    return ArtifactMeta.from_json(model.get_rt_info(META_KEY).astype(str), source)


def write_openvino_meta(model: Any, meta: ArtifactMeta) -> None:
    model.set_rt_info(meta.to_json(), META_KEY)
