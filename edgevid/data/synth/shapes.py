"""``--style shapes`` (the default): a coloured polygon on a synthetic texture, classes that differ only over time.

Every video shows one primary object (a random polygon with an outline, random colour) on a textured
background (smooth colour noise plus a random grating, with a slight camera shake), two to four smaller
distractor discs and squares drifting slowly in random directions, and fresh pixel noise in every frame.
The class is what the primary object does over the video:

- ``move_left`` / ``move_right`` / ``move_up`` / ``move_down``: it travels 30-50 % of the frame width.
- ``rotate_clockwise`` / ``rotate_anticlockwise``: it turns 3-6 degrees per frame on the spot.
- ``grow`` / ``shrink``: its size changes by a factor 1.6-2.2.
- ``appear`` / ``disappear`` (classes 9 and 10): it fades in / out over 3 frames between 30 % and 70 % of the
  video.

Motions are defined over the whole video in frames (so ``--frames`` changes the per-frame speed, and ``--fps``
only the rate written to the file) except rotation, which is per frame; this style's output is kept
byte-identical for the same seed and settings. Position, size and angle are drawn so that any single frame has
the same distribution in every class: the object's x and y are each a random centre plus an offset within
+-travel/2, the offset sweeping that range along the axis of motion and frozen at a random moment of such a
sweep otherwise; likewise size and angle. A single frame therefore cannot tell the eight default classes apart
(a single-frame model should score near chance, 1/8); with ``appear``/``disappear`` an empty frame does reveal
that it is one of those two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASS_NAMES = ("move_left", "move_right", "move_up", "move_down", "rotate_clockwise", "rotate_anticlockwise",
               "grow", "shrink", "appear", "disappear")
MIRROR_PAIRS = (("move_left", "move_right"), ("rotate_clockwise", "rotate_anticlockwise"))
REVERSE_PAIRS = (("move_left", "move_right"), ("move_up", "move_down"), ("rotate_clockwise", "rotate_anticlockwise"),
                 ("grow", "shrink"), ("appear", "disappear"))  # each is the other played backwards

# Primary object outlines (scaled to unit radius below); none is symmetric under rotation by less than 180 degrees.
_OUTLINES = (
    np.array([[0.0, -1.0], [0.55, 0.8], [-0.55, 0.8]]),  # tall triangle
    np.array([[-1.0, -0.45], [1.0, -0.45], [1.0, 0.45], [-1.0, 0.45]]),  # bar
    np.array([[-0.8, -1.0], [-0.2, -1.0], [-0.2, 0.4], [0.8, 0.4], [0.8, 1.0], [-0.8, 1.0]]),  # L
    np.array([[0.0, -1.0], [0.7, -0.2], [0.25, -0.2], [0.25, 1.0], [-0.25, 1.0], [-0.25, -0.2], [-0.7, -0.2]]),
    np.array([[-1.0, -0.6], [0.4, -0.6], [1.0, 0.6], [-1.0, 0.6]]),  # right trapezoid
)
_SHAPES = tuple(outline / np.linalg.norm(outline, axis=1).max() for outline in _OUTLINES)


# ------------------------------------------------------------------------------------------------ rendering
def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Static background: muted smooth colour noise, a faint random grating, fine grain."""
    cells = int(rng.integers(3, 12))
    coarse = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
    coarse = coarse.mean(axis=2, keepdims=True) + rng.uniform(0.2, 0.6) * (coarse - coarse.mean(axis=2, keepdims=True))
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6, 30)
    grating = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    background = (rng.uniform(90, 160) + rng.uniform(30, 70) * smooth
                  + rng.uniform(5, 25) * grating[..., None] * rng.uniform(0.5, 1.0, size=3).astype(np.float32))
    background += rng.normal(0, 4, size=background.shape).astype(np.float32)
    return np.clip(background, 0, 255).astype(np.uint8)


def _bright_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(170, 256)]]], dtype=np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


@dataclass
class _Trajectory:
    """Primary object state per frame: centre (x, y), radius, angle (radians), opacity."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray


def _trajectory(kind: str, rng: np.random.Generator, frames: int, size: int) -> _Trajectory:
    t = np.linspace(0.0, 1.0, frames)
    small = rng.uniform(0.07, 0.1) * size
    ratio = rng.uniform(1.6, 2.2)
    still_t = t[rng.integers(0, frames, size=3)]  # a moment of the motion a still property freezes at
    radius = small * ratio ** (t if kind == "grow" else 1 - t if kind == "shrink" else np.full(frames, still_t[2]))
    reach = float(radius.max()) if kind in ("grow", "shrink") else small * ratio
    travel = rng.uniform(0.3, 0.5) * size
    centre = rng.uniform(reach + travel / 2, size - reach - travel / 2, size=2)
    offset = np.repeat((still_t[None, :2] - 0.5) * travel, frames, axis=0)
    moves = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (1, -1), "move_down": (1, 1)}
    if kind in moves:
        axis, sign = moves[kind]
        offset[:, axis] = sign * (t - 0.5) * travel
    x, y = (centre + offset).T
    spin = {"rotate_clockwise": 1.0, "rotate_anticlockwise": -1.0}.get(kind, 0.0)
    step = np.deg2rad(rng.uniform(3.0, 6.0)) * spin
    angle = rng.uniform(0, 2 * math.pi) + step * np.arange(frames)
    switch = rng.uniform(0.3, 0.7) * (frames - 1)
    fade = np.clip((np.arange(frames) - switch) / 3.0 + 0.5, 0.0, 1.0)
    alpha = fade if kind == "appear" else 1 - fade if kind == "disappear" else np.ones(frames)
    return _Trajectory(x, y, radius, angle, alpha)


def _polygon(shape: np.ndarray, x: float, y: float, radius: float, angle: float) -> np.ndarray:
    """Shape points rotated by ``angle`` (clockwise on screen, y points down), in 1/16 pixel fixed point."""
    cos, sin = math.cos(angle), math.sin(angle)
    rotated = shape @ np.array([[cos, sin], [-sin, cos]]) * radius + (x, y)
    return np.round(rotated * 16).astype(np.int32)


def render_video(kind: str, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """uint8 RGB frames [frames, size, size, 3] of one synthetic video of class ``kind``."""
    shake = 3
    background = _texture(rng, size + 2 * shake, size + 2 * shake)
    track = _trajectory(kind, rng, frames, size)
    shape = _SHAPES[int(rng.integers(0, len(_SHAPES)))]
    colour = _bright_colour(rng)
    outline = tuple(int(c * 0.3) for c in colour)
    count = int(rng.integers(2, 5))
    d_pos = rng.uniform(0.1, 0.9, size=(count, 2)) * size
    d_vel = rng.normal(0, 1, size=(count, 2))
    d_vel *= (rng.uniform(0.0, 0.12, size=(count, 1)) * size / frames) / np.linalg.norm(d_vel, axis=1, keepdims=True)
    d_size = rng.uniform(0.03, 0.06, size=count) * size
    d_colour = [_bright_colour(rng) for _ in range(count)]
    d_square = rng.random(count) < 0.5
    noise_level = rng.uniform(2.0, 8.0)
    noise = rng.normal(0, noise_level, size=(4, size, size, 3))
    noise_up = np.clip(noise, 0, 255).astype(np.uint8)
    noise_down = np.clip(-noise, 0, 255).astype(np.uint8)
    offsets = rng.integers(0, 2 * shake + 1, size=(frames, 2))
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for f in range(frames):
        oy, ox = offsets[f]
        frame = background[oy:oy + size, ox:ox + size].copy()
        for k in range(count):
            cx, cy = d_pos[k] + d_vel[k] * f
            r = d_size[k]
            if d_square[k]:
                cv2.rectangle(frame, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), d_colour[k], -1)
            else:
                cv2.circle(frame, (int(cx * 16), int(cy * 16)), int(r * 16), d_colour[k], -1, cv2.LINE_AA, 4)
        if track.alpha[f] > 0:
            points = _polygon(shape, track.x[f], track.y[f], track.radius[f], track.angle[f])
            drawn = frame.copy() if track.alpha[f] < 1 else frame
            cv2.fillPoly(drawn, [points], colour, cv2.LINE_AA, 4)
            cv2.polylines(drawn, [points], True, outline, 2, cv2.LINE_AA, 4)
            if drawn is not frame:
                frame = cv2.addWeighted(drawn, float(track.alpha[f]), frame, 1 - float(track.alpha[f]), 0)
        pick = int(rng.integers(0, len(noise)))
        cv2.subtract(cv2.add(frame, noise_up[pick]), noise_down[pick], dst=video[f])
    return video
