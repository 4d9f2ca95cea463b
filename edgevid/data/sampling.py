"""Temporal and spatial sampling as pure index maths (no decoding here).

- Dense clips: ``frames`` indices ``stride`` apart, spanning ``(frames - 1) * stride + 1`` frames; the start is
  uniform at random in training and centred in evaluation. Videos shorter than the span loop: indices wrap
  around (``i % num_frames``), so the clip replays the video from its start rather than repeating a frame.
- Clips defined in seconds (PyTorchVideo's convention ``clip_seconds = frames * stride / fps``): each video's stride
  is ``clip_seconds * video_fps / frames`` frames (:func:`seconds_stride`; fractional, indices are rounded), so
  clips span the same time on 15, 25, 30 or 60 fps videos. A video shorter than ``clip_seconds`` gives a clip
  spread over the whole video (the stride shrinks to fit, as PyTorchVideo's clips end at the video's end) rather
  than one that loops. Without ``clip_seconds`` the stride is in frames.
- Stride jitter (frame-rate jitter, training only, dense clips): the stride is multiplied by ``U(1-j, 1+j)``
  and indices are rounded, which simulates faster and slower footage.
- Uniform segments (TSN/TSM): the video is cut into ``frames`` equal segments and one frame is taken from each,
  at a random offset in training and at the segment centre in evaluation. Videos with fewer frames than segments
  repeat frames (index ``floor(k * num_frames / frames)``).
- Test views: ``num_clips`` dense clips with starts spaced uniformly from the first to the last possible start
  (one clip: centred), or for segments ``num_clips`` offsets ``(k + 0.5) / num_clips`` inside every segment;
  ``num_crops`` square crops along the long side of the frame (1: centre; 3: left/centre/right or
  top/centre/bottom) on frames whose short side is resized to the crop size.
- Frame fit: ``crop`` (the papers' way: short side to the input size, a square crop) or ``squash`` (the whole
  frame resized to the square input, aspect ratio not kept: an action near the edge of a wide frame stays in
  view). Training crops of a squashed frame are drawn on the square it becomes.
"""

from __future__ import annotations

import numpy as np

SAMPLING_MODES = ("dense", "segments")
FRAME_FITS = ("crop", "squash")


def clip_span(frames: int, stride: float) -> int:
    """Number of source frames a dense clip covers."""
    return round((frames - 1) * stride) + 1


def seconds_stride(clip_seconds: float, frames: int, fps: float) -> float:
    """The stride in frames of a ``fps`` video that makes ``frames`` frames span ``clip_seconds`` seconds."""
    if clip_seconds <= 0 or frames < 1 or fps <= 0:
        raise ValueError(f"need clip_seconds > 0, frames >= 1 and fps > 0, got {clip_seconds}, {frames}, {fps}")
    return clip_seconds * fps / frames


def video_stride(stride: float, frames: int, fps: float, clip_seconds: float | None = None,
                 num_frames: int | None = None) -> float:
    """The stride of one video: ``stride`` frames, or the stride of ``clip_seconds`` at the video's ``fps``, shrunk
    so the clip fits in the video's ``num_frames`` when it is shorter (never below one frame)."""
    if clip_seconds is None:
        return stride
    seconds = seconds_stride(clip_seconds, frames, fps)
    if num_frames is not None and frames > 1 and clip_span(frames, seconds) > num_frames:
        return max(1.0, (num_frames - 1) / (frames - 1))
    return seconds


def _check(num_frames: int, frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    if frames < 1:
        raise ValueError(f"clips need at least one frame, got frames={frames}")


def dense_indices(num_frames: int, frames: int, stride: float, start: int) -> np.ndarray:
    """``frames`` indices from ``start`` at ``stride`` (rounded), wrapped into ``[0, num_frames)``."""
    _check(num_frames, frames)
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return (start + np.round(np.arange(frames) * stride).astype(np.int64)) % num_frames


def dense_start(num_frames: int, span: int, rng: np.random.Generator | None = None) -> int:
    """Random start (``rng`` given) or centred start of a clip of ``span`` frames; 0 when the video is shorter."""
    slack = max(num_frames - span, 0)
    return int(rng.integers(0, slack + 1)) if rng is not None else slack // 2


def jittered_stride(stride: float, jitter: float, rng: np.random.Generator) -> float:
    """``stride * U(1 - jitter, 1 + jitter)``, never below 1 frame when ``stride >= 1``."""
    if not 0 <= jitter < 1:
        raise ValueError(f"stride jitter must be in [0, 1), got {jitter}")
    if jitter == 0:
        return float(stride)
    return max(float(stride) * rng.uniform(1 - jitter, 1 + jitter), min(float(stride), 1.0))


def clip_starts(num_frames: int, span: int, num_clips: int) -> list[int]:
    """Starts of ``num_clips`` test clips spread uniformly over the video (a single clip is centred)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    slack = max(num_frames - span, 0)
    if num_clips == 1:
        return [slack // 2]
    return [round(k * slack / (num_clips - 1)) for k in range(num_clips)]


def segment_indices(num_frames: int, frames: int, rng: np.random.Generator | None = None,
                    offset: float = 0.5) -> np.ndarray:
    """One index per uniform segment: random position (``rng`` given) or at ``offset`` (0..1) in each segment."""
    _check(num_frames, frames)
    if not 0 <= offset < 1:
        raise ValueError(f"segment offset must be in [0, 1), got {offset}")
    length = num_frames / frames
    position = rng.uniform(0, 1, size=frames) if rng is not None else np.full(frames, offset)
    idx = np.floor((np.arange(frames) + position) * length).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def train_indices(num_frames: int, frames: int, stride: float, mode: str, rng: np.random.Generator,
                  stride_jitter: float = 0.0) -> np.ndarray:
    """Indices of one training clip (random start / random segment offsets, optional stride jitter)."""
    if mode == "segments":
        return segment_indices(num_frames, frames, rng)
    check_mode(mode)
    stride = jittered_stride(stride, stride_jitter, rng)
    return dense_indices(num_frames, frames, stride, dense_start(num_frames, clip_span(frames, stride), rng))


def view_indices(num_frames: int, frames: int, stride: float, mode: str, num_clips: int = 1) -> list[np.ndarray]:
    """Indices of the ``num_clips`` temporal test views (deterministic)."""
    check_mode(mode)
    if mode == "segments":
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        return [segment_indices(num_frames, frames, offset=(k + 0.5) / num_clips) for k in range(num_clips)]
    span = clip_span(frames, stride)
    return [dense_indices(num_frames, frames, stride, start) for start in clip_starts(num_frames, span, num_clips)]


def check_mode(mode: str) -> None:
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {mode!r}")


def check_fit(fit: str) -> None:
    if fit not in FRAME_FITS:
        raise ValueError(f"fit must be one of {', '.join(FRAME_FITS)}, got {fit!r}")


def crop_boxes(height: int, width: int, num_crops: int, fit: str = "crop") -> list[tuple[int, int, int, int]]:
    """``(y, x, h, w)`` source boxes of the test crops, each resized to the square input.

    ``crop``: squares of side ``min(height, width)`` spread along the long side; resizing one to ``size`` equals
    resizing the short side to ``size`` and cropping ``size x size`` there (1 crop: centre; 3: left/centre/right
    for landscape, top/centre/bottom for portrait). ``squash``: the whole frame, one crop.
    """
    check_fit(fit)
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    if fit == "squash":
        if num_crops != 1:
            raise ValueError(f"a squashed frame has one crop, not {num_crops}")
        return [(0, 0, height, width)]
    side = min(height, width)
    slack = max(height, width) - side
    offsets = [slack // 2] if num_crops == 1 else [round(k * slack / (num_crops - 1)) for k in range(num_crops)]
    if width >= height:
        return [(0, x, side, side) for x in offsets]
    return [(y, 0, side, side) for y in offsets]


def squash_box(box: tuple[int, int, int, int], side: int, height: int, width: int) -> tuple[int, int, int, int]:
    """A box drawn on a ``side`` square mapped onto the ``height x width`` frame squashed into that square."""
    y, x, h, w = box
    sy, sx = height / side, width / side
    top, left = min(round(y * sy), height - 1), min(round(x * sx), width - 1)
    return top, left, max(1, min(round(h * sy), height - top)), max(1, min(round(w * sx), width - left))
