"""The sliding temporal buffer of the live loop: which source frames form a clip, and when to run the model.

A model trained on T frames taken every ``sampling_stride`` frames of ``train_fps`` video sees the same time span
on a ``source_fps`` stream when frames are taken every ``source_stride`` source frames. A model trained on clips of
``clip_seconds`` (:attr:`ArtifactMeta.clip_seconds`) is fed windows of the same seconds: every
``clip_seconds * source_fps / T`` source frames, a fractional stride whose offsets are rounded as in training
(:mod:`edgevid.data.sampling`). The ring keeps the last ``span = round((T - 1) * stride) + 1`` preprocessed frames in
a preallocated array (memory stays flat), each frame preprocessed once when it arrives, and assembles the newest
window from them.
"""

from __future__ import annotations

import numpy as np

from edgevid.data.sampling import clip_span, seconds_stride


def source_stride(sampling_stride: int, train_fps: float, source_fps: float) -> int:
    """The model's sampling stride in source frames: ``round(stride * source_fps / train_fps)``, at least 1."""
    if sampling_stride < 1 or train_fps <= 0 or source_fps <= 0:
        raise ValueError(f"need sampling_stride >= 1 and positive fps, got {sampling_stride}, {train_fps}, "
                         f"{source_fps}")
    return max(1, round(sampling_stride * source_fps / train_fps))


def window_stride(frames: int, sampling_stride: int, train_fps: float, source_fps: float,
                  clip_seconds: float | None = None) -> float:
    """The window's stride in source frames: ``clip_seconds`` at ``source_fps`` (fractional) when the model was
    trained by duration, else :func:`source_stride` (whole frames)."""
    if clip_seconds is None:
        return source_stride(sampling_stride, train_fps, source_fps)
    return seconds_stride(clip_seconds, frames, source_fps)


def window_span(frames: int, stride: float) -> int:
    """Source frames covered by a window of ``frames`` frames ``stride`` apart (offsets rounded)."""
    return clip_span(frames, stride)


def window_targets(newest: int, frames: int, stride: float) -> list[int]:
    """Source indices of the window ending at ``newest``, oldest first (a training clip's indices, shifted)."""
    first = newest - window_span(frames, stride) + 1
    return [first + round(k * stride) for k in range(frames)]


def nearest_available(available: np.ndarray, targets: list[int]) -> list[int]:
    """For each target, the latest available index at or before it, else the earliest after it.

    ``available`` is sorted ascending. With every frame kept this is the identity; when frames were dropped it
    picks the closest earlier frame, as a camera shows the last frame it has.
    """
    pos = np.searchsorted(available, np.asarray(targets), side="right") - 1
    return [int(available[max(p, 0)]) for p in pos]


def inference_frames(total: int, frames: int, stride: float, every: int) -> list[int]:
    """Indices (0..total-1, every frame kept) at which the loop runs the model: first when the window is full,
    then every ``every`` frames."""
    first = window_span(frames, stride) - 1
    return list(range(first, total, every))


class FrameRing:
    """Preprocessed frames [3, S, S] of the last ``span`` source indices, and the clip of the newest window.

    ``push`` stores a frame at slot ``index % span`` (newer frames overwrite older ones, nothing is allocated);
    ``window`` returns ``([1, 3, T, S, S] clip, indices)`` once enough history was seen, else ``None``.
    """

    def __init__(self, frames: int, stride: float, frame_shape: tuple[int, int, int]) -> None:
        if frames < 1 or stride <= 0:
            raise ValueError(f"need frames >= 1 and stride > 0, got {frames}, {stride}")
        self.frames = frames
        self.stride = stride
        self.span = window_span(frames, stride)
        channels, height, width = frame_shape
        self.slots = np.zeros((channels, self.span, height, width), dtype=np.float32)
        self.slot_index = np.full(self.span, -1, dtype=np.int64)
        self.slot_time = np.zeros(self.span, dtype=np.float64)
        self.clip = np.zeros((1, channels, frames, height, width), dtype=np.float32)
        self.first: int | None = None
        self.newest = -1

    def push(self, index: int, timestamp: float, frame: np.ndarray) -> None:
        """Store one preprocessed frame [3, S, S] (or [3, 1, S, S]) with its source index and capture time."""
        if index <= self.newest:
            raise ValueError(f"frame indices must increase, got {index} after {self.newest}")
        slot = index % self.span
        self.slots[:, slot] = frame.reshape(self.slots.shape[0], *self.slots.shape[2:])
        self.slot_index[slot] = index
        self.slot_time[slot] = timestamp
        self.newest = index
        if self.first is None:
            self.first = index

    @property
    def ready(self) -> bool:
        """Whether the history reaches back a whole span from the newest frame."""
        return self.first is not None and self.newest - self.first >= self.span - 1

    def window(self) -> tuple[np.ndarray, list[int]] | None:
        """The clip of the window ending at the newest frame and the source indices it used."""
        if not self.ready:
            return None
        live = self.slot_index > self.newest - self.span
        available = np.sort(self.slot_index[live])
        chosen = nearest_available(available, window_targets(self.newest, self.frames, self.stride))
        np.take(self.slots, [i % self.span for i in chosen], axis=1, out=self.clip[0])
        return self.clip, chosen

    def timestamp(self, index: int) -> float:
        """Capture time of a stored index."""
        return float(self.slot_time[index % self.span])


class EveryK:
    """Run the model on the first ready frame, then on every ``every``-th frame that reaches the loop."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self._since: int | None = None

    def due(self, ready: bool) -> bool:
        """Call once per processed frame; true when the model should run on this frame."""
        if not ready:
            return False
        if self._since is None or self._since + 1 >= self.every:
            self._since = 0
            return True
        self._since += 1
        return False
