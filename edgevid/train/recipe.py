"""Training recipes: YAML validated into typed dataclasses, with dotted ``key=value`` overrides.

A recipe has four sections (``model``, ``data``, ``optim``, ``train``) and an optional fifth, ``pretrain``
(synthetic motion pretraining, :class:`PretrainConfig`). Every key is checked against the
dataclass field types below: an unknown key, a wrong type or an out-of-range value is an :class:`EdgevidError`
that names the file (or the override) and the dotted key path, e.g.
``recipes/x.yaml: optim.lr: expected float, got 'fast'``. ``data.augment`` takes the fields of
:class:`edgevid.data.AugmentConfig`; ``model.overrides`` is passed to ``create_model`` as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import operator
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from edgevid.data import AugmentConfig
from edgevid.data.synth import STYLES
from edgevid.errors import EdgevidError
from edgevid.models import get_spec
from edgevid.utils.safeyaml import YamlRefusedError, load_yaml_file, load_yaml_text


def _bounded(default: Any, **bounds: float) -> Any:
    """A dataclass field with range bounds checked by the validator (``ge``, ``gt``, ``le``, ``lt``)."""
    return field(default=default, metadata=bounds)


@dataclass
class ModelConfig:
    """Which zoo model to train: ``create_model(name, head=head, **overrides)``.

    ``init``: start from the weights of an edgevid checkpoint (one written by ``edgevid import`` too); when the
    dataset's classes differ from the checkpoint's, the classifier is replaced (fresh, one output per class) and
    everything else is loaded. ``freeze``: ``none``; ``bn`` keeps every BatchNorm's statistics and affine
    parameters fixed (small batches); ``backbone`` trains only the classifier (linear probing).
    """

    name: str
    head: Literal["clip", "frame", "dense"] = "clip"
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    freeze: Literal["none", "bn", "backbone"] = "none"


@dataclass
class DataConfig:
    """Clip geometry and sampling; ``None`` takes the model spec's default (frames, size, sampling rate, mean/std).

    ``cache_gb``: keep decoded videos in memory up to this many GiB per process (each loader worker has its own),
    so a small dataset is decoded once rather than every epoch; 0 decodes every clip.

    ``mirror_classes``: class pairs whose labels swap when the flip augmentation mirrors a clip (e.g. swipe_left /
    swipe_right); ``reverse_classes``: class pairs each of which is the other played backwards (zoom_in / zoom_out,
    open / close), whose clips the time-reversal augmentation reverses and relabels. ``None`` takes the dataset's
    own (``mirror_classes.txt`` / ``reverse_classes.txt`` beside the data, or ``synth.json``); ``[]`` declares none.
    Recipes stay dataset-independent: they never name classes.

    A dense clip's time span is defined one way: ``sampling_stride`` (frames between sampled frames, the same on
    every video), ``sampling_stride`` with ``reference_fps`` (that stride at that frame rate, rescaled to each
    video's fps), or ``clip_seconds`` (PyTorchVideo's convention ``clip_seconds = frames * stride / fps``: each video
    is sampled every ``clip_seconds * video_fps / frames`` frames). ``fps`` is the frame rate the model is taken
    to be trained at where a source does not say (``edgevid live``); ``reference_fps`` replaces it.

    ``fit``: ``crop`` (short side to ``size``, a square crop, as the papers do) or ``squash`` (the whole frame
    resized to ``size x size``: an action anywhere in a wide or tall frame stays in view); it travels with the
    model's metadata, so evaluation, export and ``live`` prepare frames the same way.
    """

    frames: int | None = _bounded(None, ge=1)
    size: int | None = _bounded(None, ge=8)
    sampling_stride: int | None = _bounded(None, ge=1)
    clip_seconds: float | None = _bounded(None, gt=0)
    reference_fps: float | None = _bounded(None, gt=0)
    sampling: Literal["dense", "segments"] = "dense"
    fit: Literal["crop", "squash"] = "crop"
    fps: float = _bounded(30.0, gt=0)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    train_split: str = "train"
    val_split: str = "val"
    strict: bool = False
    cache_gb: float = _bounded(0.0, ge=0)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mirror_classes: list[tuple[str, str]] | None = None
    reverse_classes: list[tuple[str, str]] | None = None

    def span_seconds(self) -> float | None:
        """A dense clip's span in seconds (``frames * stride / fps``), or None when the stride is in frames."""
        if self.clip_seconds is not None:
            return self.clip_seconds
        if self.reference_fps is not None and self.frames and self.sampling_stride:
            return self.frames * self.sampling_stride / self.reference_fps
        return None

    def frame_stride(self) -> int:
        """The stride in frames at :meth:`model_fps` (what artifact metadata records as ``sampling_stride``)."""
        if self.clip_seconds is not None and self.frames:
            return max(1, round(self.clip_seconds * self.model_fps() / self.frames))
        if self.sampling_stride is None:
            raise EdgevidError("data.sampling_stride is unset: resolve the recipe first")
        return self.sampling_stride

    def model_fps(self) -> float:
        """The frame rate a frame stride refers to: ``reference_fps`` if given, else ``fps``."""
        return self.reference_fps if self.reference_fps is not None else self.fps


@dataclass
class OptimConfig:
    """Optimiser and schedule. ``lr`` is the rate for ``base_batch`` clips; it is scaled linearly with the
    effective batch (batch_size x accum_steps x processes). Fine-tuning: ``backbone_lr_mult`` scales the rate of
    everything but the classifier head; ``head_warmup_epochs`` trains only the head for that long first."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = _bounded(1e-3, gt=0)
    base_batch: int = _bounded(16, ge=1)
    weight_decay: float = _bounded(0.05, ge=0)
    momentum: float = _bounded(0.9, ge=0, lt=1)
    nesterov: bool = True
    warmup_epochs: float = _bounded(1.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = _bounded(0.0, ge=0, le=1)
    backbone_lr_mult: float = _bounded(1.0, ge=0)
    head_warmup_epochs: float = _bounded(0.0, ge=0)


@dataclass
class TrainConfig:
    """Loop settings. ``ema`` is the EMA decay of the weights (null: no EMA); ``clip_grad`` a max grad norm.

    ``minutes``: a wall-clock budget (null: none). ``epochs`` is then a cap: after every epoch the run plans as many
    epochs as its measured epoch time fits in what is left, and the LR schedule ends at the last of them, so the
    same recipe anneals fully on a small dataset or a slow machine instead of being cut off at high LR (a timed run
    does not repeat step for step: its plan follows the clock).

    ``amp``/``amp_dtype``: mixed precision on CUDA. ``cpu_amp``: BF16 autocast on a CPU with BF16 arithmetic
    (AVX512_BF16 or AMX; FP32 elsewhere, said at the start); it pays for dense 3D convolutions (R(2+1)D-18 2.5x on
    AMX), not for X3D's depthwise ones (0.8x)."""

    epochs: int = _bounded(30, ge=1)
    minutes: float | None = _bounded(None, gt=0)
    batch_size: int = _bounded(8, ge=1)
    accum_steps: int = _bounded(1, ge=1)
    label_smoothing: float = _bounded(0.0, ge=0, lt=1)
    amp: bool = True
    amp_dtype: Literal["fp16", "bf16"] = "fp16"
    cpu_amp: bool = False
    ema: float | None = _bounded(None, gt=0, lt=1)
    seed: int = 0
    workers: int = _bounded(2, ge=0)
    sync_bn: bool = False
    eval_every: int = _bounded(1, ge=1)
    clip_grad: float | None = _bounded(None, gt=0)


@dataclass
class PretrainConfig:
    """Synthetic motion pretraining, where no pretrained weights exist for the model at the recipe's input.

    With ``style`` set (and no ``model.init``), training first trains the recipe for ``minutes`` on ``edgevid data
    synth --style STYLE`` (``videos_per_class`` train videos of each class, frames twice the crop's side), then
    starts the run from those weights with a new classifier. The pretrained checkpoint is cached per machine
    (:mod:`edgevid.train.pretrain`), keyed by everything that shapes it, so it is trained once; its time counts
    against ``train.minutes`` of the run that trains it. ``style: null`` trains from scratch.
    """

    style: str | None = None
    minutes: float = _bounded(5.0, gt=0)
    videos_per_class: int = _bounded(60, ge=1)

    def __post_init__(self) -> None:
        if self.style is not None and self.style not in STYLES:
            raise EdgevidError(f"style must be null or one of {', '.join(STYLES)}, got {self.style!r}")


@dataclass
class Recipe:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def resolved(self) -> Recipe:
        """A copy with the model spec's defaults filled in for every ``None`` in ``data``."""

        try:
            _check_sampling(self.data)
        except _Invalid as exc:
            raise EdgevidError(str(exc)) from None
        spec = get_spec(self.model.name)
        seconds = self.data.clip_seconds is not None  # the stride is then per video: none to fill in
        data = dataclasses.replace(
            self.data,
            frames=self.data.frames or spec.frames,
            size=self.data.size or spec.size,
            sampling_stride=None if seconds else self.data.sampling_stride or spec.sampling_stride,
            mean=self.data.mean or spec.mean,
            std=self.data.std or spec.std,
        )
        return dataclasses.replace(self, data=data)


class _Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} {_type_name(args[0])}s"
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """``value`` checked against ``annotation`` (ints are accepted for floats, never bools for numbers)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, path)
            except _Invalid:
                continue
        raise _Invalid(path, f"expected {_type_name(annotation)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise _Invalid(path, f"expected {_type_name(annotation)}, got {value!r}")
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Invalid(path, f"expected {_type_name(annotation)}, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Invalid(path, f"expected {_type_name(annotation)}, got {len(value)} values")
            return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        items = [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Invalid(path, f"expected a mapping with string keys, got {value!r}")
        return {k: _coerce(v, args[1], f"{path}.{k}") for k, v in value.items()}
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(annotation)
    if ok is None:
        raise _Invalid(path, f"unsupported recipe type {annotation!r}")
    if not ok:
        raise _Invalid(path, f"expected {_type_name(annotation)}, got {value!r}")
    return float(value) if annotation is float else value


_BOUND_TESTS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"),
                "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def _check_bounds(value: Any, bounds: dict[str, float], path: str) -> None:
    if value is None:
        return
    for key, limit in bounds.items():
        test, symbol = _BOUND_TESTS[key]
        if not test(value, limit):
            raise _Invalid(path, f"must be {symbol} {limit}, got {value!r}")


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise _Invalid(path, f"expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            raise _Invalid(where, f"unknown key (expected one of {', '.join(fields)})")
    kwargs = {}
    for name, spec in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise _Invalid(where, "missing required key")
            continue
        kwargs[name] = _coerce(data[name], hints[name], where)
        _check_bounds(kwargs[name], dict(spec.metadata), where)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, EdgevidError) as exc:
        raise _Invalid(path, str(exc)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.01"`` -> (["optim", "lr"], 0.01); the value is parsed as YAML (numbers, bools, null, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise EdgevidError(f"override {text!r}: expected key=value with a dotted key, e.g. optim.lr=0.01")
    try:
        value = load_yaml_text(raw, f"override {text!r}") if raw.strip() else ""
    except YamlRefusedError:  # an alias bomb in one value is refused; other bad YAML is taken as a string
        raise
    except EdgevidError:
        value = raw
    return key.strip().split("."), value


def _apply_override(data: dict[str, Any], keys: list[str], value: Any, text: str) -> None:
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise EdgevidError(f"override {text!r}: {'.'.join(keys[: i + 1])} is not a section")
        node = child
    node[keys[-1]] = value


def parse_recipe(data: Any, source: str, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Validate a recipe mapping (plus ``key=value`` overrides) into a :class:`Recipe`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EdgevidError(f"{source}: a recipe must be a mapping with model/data/optim/train sections")
    data = _plain(data)
    origin: dict[str, str] = {}
    for text in overrides:
        keys, value = parse_override(text)
        _apply_override(data, keys, value, text)
        origin[".".join(keys)] = f"override {text!r}"
    try:
        recipe = _build(Recipe, data, "")
        _check_model(recipe)
        _check_sampling(recipe.data)
    except _Invalid as exc:
        where = next((src for key, src in origin.items() if exc.path == key or exc.path.startswith(key + ".")),
                     source)
        raise EdgevidError(f"{where}: {exc}") from None
    return recipe


def _check_model(recipe: Recipe) -> None:
    try:
        get_spec(recipe.model.name)
    except ValueError as exc:
        raise _Invalid("model.name", str(exc)) from None


def _check_sampling(data: DataConfig) -> None:
    """One definition of a dense clip's span (see :class:`DataConfig`); none for segments."""
    if data.clip_seconds is None:
        if data.reference_fps is not None and data.sampling == "segments":
            raise _Invalid("data.reference_fps", "applies to dense sampling only (data.sampling is 'segments', "
                           "which spreads the frames over the whole video)")
        return
    if data.sampling == "segments":
        raise _Invalid("data.clip_seconds", "applies to dense sampling only (data.sampling is 'segments', which "
                       "spreads the frames over the whole video)")
    for other in ("sampling_stride", "reference_fps"):
        if getattr(data, other) is not None:
            raise _Invalid("data.clip_seconds", f"conflicts with data.{other}: both define the clip's span; keep "
                           f"one (data.{other}=null samples by seconds, data.clip_seconds=null by frames)")


def load_recipe(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read and validate a YAML recipe file, applying dotted ``key=value`` overrides."""
    path = Path(path)
    data = load_yaml_file(path, "recipe file")  # bounded: size, aliases, depth (edgevid.utils.safeyaml)
    return parse_recipe(data, str(path), overrides)
