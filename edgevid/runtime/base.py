"""The Predictor interface every backend implements, and :func:`load` which picks the backend for an artifact.

One contract for clip and streaming models: every artifact loads as a :class:`Predictor` (``predict(clips)``,
``preprocess``, ``warmup``); a streaming one (:attr:`Predictor.streaming`, :mod:`edgevid.runtime.streaming`) also
takes one frame at a time with ``step(frame)`` and starts a new stream with ``reset()``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgevid.data.transforms import eval_transform
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta


class Predictor(ABC):
    """Runs one artifact. Input: normalised float32 clips [B, 3, T, H, W]; output: the head's scores as numpy.

    ``preprocess`` turns raw uint8 RGB frames [T, H, W, 3] into one normalised clip [3, T, size, size] using
    the artifact's metadata, so every backend sees the same input. ``streaming`` says whether ``step``/``reset``
    run (one frame at a time, states kept between calls); a clip model's ``step`` is an error.
    """

    backend: str = ""
    streaming: bool = False

    def __init__(self, meta: ArtifactMeta, path: Path, device: str, precision: str | None = None) -> None:
        self.meta = meta
        self.path = path
        self.device = device
        self.precision = precision or meta.precision
        self._transform = None

    @property
    def execution(self) -> str:
        """The precision the backend computes in, as it reports it (OpenVINO: read back from the compiled model)."""
        return self.precision

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(3, T, H, W) of one clip."""
        return (3, self.meta.frames, self.meta.size, self.meta.size)

    def preprocess(self, frames) -> np.ndarray:
        """uint8 RGB frames [T, H, W, 3] -> normalised float32 [3, T, S, S]."""
        if self._transform is None:
            self._transform = eval_transform(self.meta.size, self.meta.mean, self.meta.std, self.meta.fit)
        clip = self._transform(frames)
        return np.ascontiguousarray(clip.numpy() if hasattr(clip, "numpy") else clip, dtype=np.float32)

    def check_batch(self, clips) -> np.ndarray:
        clips = np.asarray(clips.numpy() if hasattr(clips, "numpy") else clips, dtype=np.float32)
        if clips.ndim == 4:
            clips = clips[None]
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise EdgevidError(f"{self.path}: expected clips [B, 3, T, H, W], got shape {list(clips.shape)}")
        if tuple(clips.shape[3:]) != (self.meta.size, self.meta.size) or not self._accepts_frames(clips.shape[2]):
            raise EdgevidError(
                f"{self.path}: input {list(clips.shape[1:])} does not fit this artifact "
                f"(expects [3, {self.meta.frames}, {self.meta.size}, {self.meta.size}])"
            )
        return np.ascontiguousarray(clips)

    def _accepts_frames(self, frames: int) -> bool:
        return frames == self.meta.frames

    def predict(self, clips) -> np.ndarray:
        """Scores for a batch of clips (or one clip [3, T, H, W])."""
        return self._run(self.check_batch(clips))

    @abstractmethod
    def _run(self, clips: np.ndarray) -> np.ndarray:
        """Backend inference on a checked, contiguous float32 batch."""

    def step(self, frame) -> np.ndarray:
        """One frame of a stream (streaming predictors only)."""
        raise EdgevidError(f"{self.path}: {self.meta.model} is a clip model and has no step(); stream a causal "
                           "checkpoint (--streaming) or a streaming export (`edgevid export CHECKPOINT --streaming`)")

    def reset(self) -> None:
        """Start a new stream (a clip model keeps no state between calls: nothing to do)."""
        return None

    def warmup(self, iterations: int = 3, batch: int = 1) -> float:
        """Run a few zero batches; returns the mean seconds per run."""
        dummy = np.zeros((batch, *self.input_shape), dtype=np.float32)
        start = time.perf_counter()
        for _ in range(iterations):
            self._run(dummy)
        return (time.perf_counter() - start) / max(iterations, 1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path}, model={self.meta.model}, device={self.device}, "
                f"precision={self.precision})")


_BACKENDS: dict[str, type[Predictor]] = {}
_STREAMING: dict[str, Callable[[Predictor], Predictor]] = {}


def register_backend(*suffixes: str):
    """Class decorator mapping artifact suffixes (``.pt``, ``.onnx`` ...) to a Predictor class."""

    def decorate(cls: type[Predictor]) -> type[Predictor]:
        for suffix in suffixes:
            _BACKENDS[suffix] = cls
        return cls

    return decorate


def register_streaming(backend: str, wrap: Callable[[Predictor], Predictor]) -> None:
    """How ``backend`` runs a streaming export: ``wrap(graph_predictor) -> streaming predictor``."""
    _STREAMING[backend] = wrap


def backend_for(path: Path) -> type[Predictor]:
    suffix = ".pt" if path.is_dir() else path.suffix.lower()
    if suffix not in _BACKENDS:
        raise EdgevidError(
            f"{path}: unknown artifact type {suffix or '(no suffix)'}; expected one of {', '.join(sorted(_BACKENDS))} "
            "or a run directory"
        )
    return _BACKENDS[suffix]


def load(artifact: str | Path, device: str = "cpu", threads: int | None = None,
         precision: str | None = None) -> Predictor:
    """Load any edgevid artifact (checkpoint/run dir, .onnx, OpenVINO .xml, TensorRT .engine) as a Predictor; a
    streaming export loads as its backend's streaming predictor (``predictor.streaming``, ``step``).

    ``precision`` (``fp32``, ``bf16``, ...) runs it in another precision than its own where the backend can (an
    FP32 checkpoint or IR in BF16); a combination it cannot run is an error, never a silent run in another one.
    """
    path = Path(artifact)
    if not path.exists():
        raise EdgevidError(f"{path}: no such artifact")
    predictor = backend_for(path).open(path, device=device, threads=threads, precision=precision)
    if predictor.meta.stream is None:
        return predictor
    if predictor.backend not in _STREAMING:
        raise EdgevidError(f"{path}: the {predictor.backend} backend cannot run a streaming export")
    return _STREAMING[predictor.backend](predictor)
