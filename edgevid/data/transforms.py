"""Clip transforms: every frame of a clip gets the same crop, flip, colour change and RandAugment ops.

Clips stay uint8 [T, H, W, 3] RGB through cropping and augmentation (OpenCV does the resizes and lookup tables
on the whole clip at once) and become float32 [3, T, S, S] only at normalisation, ``(x / 255 - mean) / std``.

Training (:class:`ClipAugment`): random resized crop (area fraction ``scale``, aspect ratio ``aspect``
log-uniform, as in Inception/torchvision) or, when ``short_side`` is set, short-side scale jitter (resize the
short side to ``U(short_side)``, then a random ``size x size`` crop, as in SlowFast/X3D); horizontal flip with
probability 0.5 that swaps the labels of ``mirror_classes`` pairs; time reversal of ``reverse_classes`` pairs;
colour jitter; RandAugment; normalisation.
Mixup and cutmix act on whole batches (:func:`mix_batch`). Evaluation (:func:`eval_transform`): short-side
resize to ``size``, centre crop, normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from edgevid.data.sampling import check_fit, crop_boxes, squash_box
from edgevid.errors import EdgevidError


@dataclass
class AugmentConfig:
    """Training augmentation; every random choice is drawn once per clip and applied to all its frames.

    ``scale``/``aspect``: random-resized-crop area (a fraction of the short side's square) and aspect-ratio
    ranges. ``short_side``: (min, max) pixels for short-side scale jitter instead of the random resized crop.
    ``flip``: random horizontal flip;
    ``mirror_classes``: class-name pairs whose labels swap when a clip is flipped (e.g. move_left/move_right).
    ``reverse``: time reversal of ``reverse_classes``, class-name pairs each of which is the other played backwards
    (e.g. zoom_in/zoom_out, open/close): a clip of either is reversed in time with probability 0.5 and takes the
    other's label. Clips of other classes are never reversed.
    ``color_jitter``: strength c; brightness, contrast and saturation factors ~ U(1-c, 1+c), hue shift
    ~ U(-c/4, c/4) of a full turn, in random order; 0 disables. ``randaugment``: (ops per clip, magnitude 0-10).
    ``stride_jitter``: sampling stride scaled by U(1-j, 1+j). ``mixup_alpha``/``cutmix_alpha``: Beta(alpha, alpha)
    mixing in :func:`mix_batch` (both > 0: one of the two per batch, chosen 50/50).
    """

    scale: tuple[float, float] = (0.25, 1.0)
    aspect: tuple[float, float] = (0.75, 1.333)
    flip: bool = True
    mirror_classes: list[tuple[str, str]] = field(default_factory=list)
    reverse: bool = False
    reverse_classes: list[tuple[str, str]] = field(default_factory=list)
    color_jitter: float = 0.0
    randaugment: tuple[int, int] | None = None
    stride_jitter: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    short_side: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.scale = _pair(self.scale, "scale", float)
        self.aspect = _pair(self.aspect, "aspect", float)
        self.mirror_classes = [_pair(p, "mirror_classes entry", str) for p in self.mirror_classes]
        self.reverse_classes = [_pair(p, "reverse_classes entry", str) for p in self.reverse_classes]
        if self.randaugment is not None:
            self.randaugment = _pair(self.randaugment, "randaugment", int)
            if self.randaugment[0] < 0 or not 0 <= self.randaugment[1] <= 10:
                raise EdgevidError(f"augment randaugment must be (ops >= 0, magnitude 0-10), got {self.randaugment}")
        if self.short_side is not None:
            self.short_side = _pair(self.short_side, "short_side", int)
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise EdgevidError(f"augment scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise EdgevidError(f"augment aspect must satisfy 0 < min <= max, got {self.aspect}")
        if not 0 <= self.color_jitter <= 1:
            raise EdgevidError(f"augment color_jitter must be in [0, 1], got {self.color_jitter}")
        if not 0 <= self.stride_jitter < 1:
            raise EdgevidError(f"augment stride_jitter must be in [0, 1), got {self.stride_jitter}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise EdgevidError("augment mixup_alpha and cutmix_alpha must be >= 0")
        if self.short_side is not None and not 0 < self.short_side[0] <= self.short_side[1]:
            raise EdgevidError(f"augment short_side must satisfy 0 < min <= max, got {self.short_side}")

    def mirror_map(self, classes: Sequence[str]) -> np.ndarray:
        """Label permutation applied on a horizontal flip (identity except for ``mirror_classes`` pairs)."""
        return _swap_map(self.mirror_classes, classes, "mirror_classes")

    def reverse_map(self, classes: Sequence[str]) -> np.ndarray:
        """Label permutation applied on a time reversal (identity except for ``reverse_classes`` pairs)."""
        return _swap_map(self.reverse_classes, classes, "reverse_classes")


def _swap_map(pairs: Sequence[tuple[str, str]], classes: Sequence[str], name: str) -> np.ndarray:
    mapping = np.arange(len(classes))
    position = {label: i for i, label in enumerate(classes)}
    for a, b in pairs:
        for label in (a, b):
            if label not in position:
                raise EdgevidError(f"augment {name} names {label!r}, which is not one of the classes")
        mapping[position[a]], mapping[position[b]] = position[b], position[a]
    return mapping


def _pair(value, name: str, kind: type) -> tuple:
    try:
        a, b = value
        return kind(a), kind(b)
    except (TypeError, ValueError):
        raise EdgevidError(f"augment {name} must be a pair of {kind.__name__}, got {value!r}") from None


def opencv_single_thread() -> None:
    """Stop OpenCV's thread pool in this process before forking workers.

    The pool's threads do not survive ``fork()``: a forked child that touches the copied pool (or calls
    ``cv2.setNumThreads``) can wait forever on a thread that is not there. Data-loader and synth workers get
    their parallelism from processes, so OpenCV runs single-threaded in the parent and the children.
    """
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


# ----------------------------------------------------------------------------------------------- normalisation
def normalize(clip: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [3, T, H, W] with ``(x / 255 - mean) / std`` per channel."""
    scale = 1.0 / (255.0 * np.asarray(std, dtype=np.float32))
    shift = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    out = np.ascontiguousarray(clip.transpose(3, 0, 1, 2), dtype=np.float32)
    out *= scale[:, None, None, None]
    out -= shift[:, None, None, None]
    return torch.from_numpy(out)


def _as_frames(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


def resize_crop(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop ``(y, x, h, w)`` from every frame and resize it to ``size x size``: uint8 [T, size, size, 3]."""
    y, x, h, w = box
    interp = cv2.INTER_AREA if h > size and w > size else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for t, frame in enumerate(frames):
        cv2.resize(frame[y:y + h, x:x + w], (size, size), dst=out[t], interpolation=interp)
    return out


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float],
                   fit: str = "crop") -> Callable[..., torch.Tensor]:
    """uint8 RGB frames [T, H, W, 3] -> float32 [3, T, size, size]: short-side resize and centre crop (``fit``
    crop) or the whole frame resized (squash), then normalise."""
    check_fit(fit)

    def transform(frames) -> torch.Tensor:
        frames = _as_frames(frames)
        box, = crop_boxes(frames.shape[1], frames.shape[2], 1, fit)
        return normalize(resize_crop(frames, box, size), mean, std)

    return transform


# ---------------------------------------------------------------------------------------------- training crops
def random_resized_box(height: int, width: int, scale: tuple[float, float], aspect: tuple[float, float],
                       rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Inception-style random crop ``(y, x, h, w)``: log-uniform aspect ratio in ``aspect``, area a ``scale``
    fraction of the short side's square (what evaluation's centre crop sees: the whole frame when it is square),
    anywhere in the frame; after 10 draws that do not fit, that centre square.

    Measured against the whole frame's area instead, a 16:9 frame's draws at ``scale`` (0.7, 1) rarely fit, and
    training saw one fixed centre crop squeezed by ``aspect[1]`` while evaluation saw it unsqueezed.
    """
    area = min(height, width) ** 2
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(*log_aspect))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return crop_boxes(height, width, 1)[0]


def short_side_jitter_box(height: int, width: int, size: int, short_side: tuple[int, int],
                          rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Source box equal to resizing the short side to ``U(short_side)`` and taking a random ``size`` crop."""
    factor = min(height, width) / rng.integers(short_side[0], short_side[1] + 1)
    side = max(1, min(round(size * factor), height, width))
    return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side, side


# ------------------------------------------------------------------------------------------------ colour ops
def _lut_apply(clip: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Apply a uint8 lookup table (256 or 256x3 per channel) to the whole clip at once."""
    flat = clip.reshape(-1, clip.shape[2], 3)
    table = np.clip(lut, 0, 255).astype(np.uint8).reshape(256, 1, -1)
    if table.shape[2] == 1:
        table = np.repeat(table, 3, axis=2)
    return cv2.LUT(flat, table).reshape(clip.shape)


def _gray(clip: np.ndarray) -> np.ndarray:
    flat = clip.reshape(-1, clip.shape[2], 3)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY).reshape(clip.shape[:3])


def _blend(clip: np.ndarray, other: np.ndarray, factor: float) -> np.ndarray:
    """``other + factor * (clip - other)``, saturated to uint8 (factor 1 = unchanged)."""
    return cv2.addWeighted(clip, factor, other, 1.0 - factor, 0.0)


def adjust_brightness(clip: np.ndarray, factor: float) -> np.ndarray:
    return _lut_apply(clip, np.arange(256) * factor)


def adjust_contrast(clip: np.ndarray, factor: float) -> np.ndarray:
    mean = float(_gray(clip).mean())
    return _lut_apply(clip, mean + (np.arange(256) - mean) * factor)


def adjust_saturation(clip: np.ndarray, factor: float) -> np.ndarray:
    gray = np.repeat(_gray(clip)[..., None], 3, axis=3)
    return _blend(clip, gray, factor)


def adjust_hue(clip: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by ``shift`` of a full turn (OpenCV's 8-bit hue runs 0..179)."""
    flat = clip.reshape(-1, clip.shape[2], 3)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + round(shift * 180)) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(clip.shape)


def adjust_sharpness(clip: np.ndarray, factor: float) -> np.ndarray:
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13
    smooth = np.stack([cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REPLICATE) for frame in clip])
    return _blend(clip, smooth, factor)


def autocontrast(clip: np.ndarray) -> np.ndarray:
    """Stretch each channel's range over the whole clip to 0..255."""
    low = clip.min(axis=(0, 1, 2)).astype(np.float32)
    high = clip.max(axis=(0, 1, 2)).astype(np.float32)
    span = np.where(high > low, high - low, 1.0)
    lut = (np.arange(256, dtype=np.float32)[:, None] - low) * (255.0 / span)
    return _lut_apply(clip, np.where(high > low, lut, np.arange(256)[:, None]))


def equalize(clip: np.ndarray) -> np.ndarray:
    """Histogram equalisation per channel, one histogram over the whole clip."""
    luts = []
    for c in range(3):
        hist = np.bincount(clip[..., c].ravel(), minlength=256).astype(np.float64)
        cdf = hist.cumsum()
        first = cdf[np.nonzero(hist)[0][0]]
        denom = cdf[-1] - first
        luts.append(np.arange(256) if denom <= 0 else np.round((cdf - first) / denom * 255))
    return _lut_apply(clip, np.stack(luts, axis=1))


def _affine(clip: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = clip.shape[1:3]
    return np.stack([cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
                     for frame in clip])


def _rotate(clip: np.ndarray, degrees: float) -> np.ndarray:
    h, w = clip.shape[1:3]
    return _affine(clip, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0))


def _shear(clip: np.ndarray, amount: float, axis: int) -> np.ndarray:
    h, w = clip.shape[1:3]
    if axis == 1:
        matrix = np.array([[1, amount, -amount * h / 2], [0, 1, 0]], dtype=np.float32)
    else:
        matrix = np.array([[1, 0, 0], [amount, 1, -amount * w / 2]], dtype=np.float32)
    return _affine(clip, matrix)


def _translate(clip: np.ndarray, fraction: float, axis: int) -> np.ndarray:
    h, w = clip.shape[1:3]
    shift = (fraction * w, 0.0) if axis == 1 else (0.0, fraction * h)
    return _affine(clip, np.array([[1, 0, shift[0]], [0, 1, shift[1]]], dtype=np.float32))


def _solarize(clip: np.ndarray, threshold: float) -> np.ndarray:
    values = np.arange(256)
    return _lut_apply(clip, np.where(values >= threshold, 255 - values, values))


def _posterize(clip: np.ndarray, bits: int) -> np.ndarray:
    return _lut_apply(clip, np.arange(256) & (0xFF << (8 - bits) & 0xFF))


# RandAugment op set (as in Cubuk et al. 2020 / timm), each a function of (clip, level in [0, 1], sign).
RANDAUGMENT_OPS: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "identity": lambda c, level, sign: c,
    "autocontrast": lambda c, level, sign: autocontrast(c),
    "equalize": lambda c, level, sign: equalize(c),
    "rotate": lambda c, level, sign: _rotate(c, sign * 30.0 * level),
    "solarize": lambda c, level, sign: _solarize(c, 256 - 256 * level),
    "posterize": lambda c, level, sign: _posterize(c, 8 - round(4 * level)),
    "color": lambda c, level, sign: adjust_saturation(c, 1 + sign * 0.9 * level),
    "contrast": lambda c, level, sign: adjust_contrast(c, 1 + sign * 0.9 * level),
    "brightness": lambda c, level, sign: adjust_brightness(c, 1 + sign * 0.9 * level),
    "sharpness": lambda c, level, sign: adjust_sharpness(c, 1 + sign * 0.9 * level),
    "shear_x": lambda c, level, sign: _shear(c, sign * 0.3 * level, axis=1),
    "shear_y": lambda c, level, sign: _shear(c, sign * 0.3 * level, axis=0),
    "translate_x": lambda c, level, sign: _translate(c, sign * 0.45 * level, axis=1),
    "translate_y": lambda c, level, sign: _translate(c, sign * 0.45 * level, axis=0),
}


def randaugment(clip: np.ndarray, num_ops: int, magnitude: int, rng: np.random.Generator) -> np.ndarray:
    """Apply ``num_ops`` ops drawn uniformly (with replacement) at ``magnitude``/10, each with a random sign."""
    names = list(RANDAUGMENT_OPS)
    for pick in rng.integers(0, len(names), size=num_ops):
        sign = 1.0 if rng.random() < 0.5 else -1.0
        clip = RANDAUGMENT_OPS[names[pick]](clip, magnitude / 10.0, sign)
    return clip


def color_jitter(clip: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter in random order, one draw for the whole clip."""
    low = max(0.0, 1 - strength)
    ops = [
        lambda c: adjust_brightness(c, rng.uniform(low, 1 + strength)),
        lambda c: adjust_contrast(c, rng.uniform(low, 1 + strength)),
        lambda c: adjust_saturation(c, rng.uniform(low, 1 + strength)),
        lambda c: adjust_hue(c, rng.uniform(-strength / 4, strength / 4)),
    ]
    for k in rng.permutation(len(ops)):
        clip = ops[k](clip)
    return clip


class ClipAugment:
    """Training transform: (uint8 frames [T, H, W, 3], label, rng) -> (float32 [3, T, size, size], label)."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], augment: AugmentConfig,
                 classes: Sequence[str], fit: str = "crop") -> None:
        check_fit(fit)
        self.size = size
        self.fit = fit
        self.mean = mean
        self.std = std
        self.augment = augment
        self.mirror = augment.mirror_map(classes)
        self.reverse = augment.reverse_map(classes)

    def __call__(self, frames: np.ndarray, label: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        aug = self.augment
        height, width = frames.shape[1:3]
        side = min(height, width)
        drawn_on = (side, side) if self.fit == "squash" else (height, width)
        if aug.short_side is not None:
            box = short_side_jitter_box(*drawn_on, self.size, aug.short_side, rng)
        else:
            box = random_resized_box(*drawn_on, aug.scale, aug.aspect, rng)
        if self.fit == "squash":
            box = squash_box(box, side, height, width)
        clip = resize_crop(frames, box, self.size)
        if aug.flip and rng.random() < 0.5:
            clip = np.ascontiguousarray(clip[:, :, ::-1])
            label = int(self.mirror[label])
        if aug.reverse and self.reverse[label] != label and rng.random() < 0.5:
            clip = np.ascontiguousarray(clip[::-1])
            label = int(self.reverse[label])
        if aug.color_jitter > 0:
            clip = color_jitter(clip, aug.color_jitter, rng)
        if aug.randaugment is not None:
            clip = randaugment(clip, *aug.randaugment, rng)
        return normalize(clip, self.mean, self.std), label


# --------------------------------------------------------------------------------------------- batch mixing
def _beta(alpha: float, generator: torch.Generator | None) -> float:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix_batch(clips: torch.Tensor, labels: torch.Tensor, num_classes: int, augment: AugmentConfig,
              label_smoothing: float = 0.0, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix with the batch reversed, the same for every frame; returns (clips, soft targets [B, K]).

    Targets are one-hot with label smoothing ``eps`` (``(1 - eps) * onehot + eps / K``) mixed with weight
    ``lam``; for cutmix ``lam`` is the kept area after clipping the box to the frame. With both alphas 0 only
    the smoothed targets are returned.
    """
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    labels = labels.long()
    targets = torch.full((labels.shape[0], num_classes), label_smoothing / num_classes, device=labels.device)
    targets.scatter_(1, labels[:, None], 1.0 - label_smoothing + label_smoothing / num_classes)
    modes = [m for m, alpha in (("mixup", augment.mixup_alpha), ("cutmix", augment.cutmix_alpha)) if alpha > 0]
    if not modes or labels.shape[0] < 2:
        return clips, targets
    pick = int(torch.randint(0, len(modes), (1,), generator=generator).item())
    mode = modes[pick]
    lam = _beta(augment.mixup_alpha if mode == "mixup" else augment.cutmix_alpha, generator)
    if mode == "mixup":
        mixed = clips * lam + clips.flip(0) * (1 - lam)
    else:
        height, width = clips.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(height * cut), int(width * cut)
        cy = int(torch.randint(0, height, (1,), generator=generator).item())
        cx = int(torch.randint(0, width, (1,), generator=generator).item())
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, height)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, width)
        mixed = clips.clone()
        mixed[..., y0:y1, x0:x1] = clips.flip(0)[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (height * width)
    return mixed, targets * lam + targets.flip(0) * (1 - lam)
