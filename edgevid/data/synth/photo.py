"""``--style photo`` and ``--style wild``: a patch of a real photograph moving over another photograph.

The photographs are scikit-image's bundled sample images (in the ``scikit-image`` wheel under ``skimage/data``,
read from there, never downloaded): astronaut (NASA, public domain), chelsea and coffee (CC0, Stefan van der
Walt and Rachel Michetti), rocket (SpaceX, public domain), hubble_deep_field (NASA, public domain), ihc
(immunohistochemistry, no known copyright restrictions), camera (CC0, Lav Varshney) and the grass, gravel and
brick textures (CC0). Each video draws a background photograph and a different one for the patch (not one of
the three textures), each mirrored at random; the patch is a square crop cut to a rectangle, an ellipse or a
polygon with a soft edge.

Classes (the patch's motion relative to the background): ``move_left`` / ``move_right`` / ``move_up`` /
``move_down`` at 0.15-0.22 of the frame's shorter side per second; ``rotate_clockwise`` /
``rotate_anticlockwise`` at 60-120 degrees per second; ``zoom_in`` / ``zoom_out`` (size x exp(+-0.3..0.45 per
second)); ``fade_in`` / ``fade_out`` over 0.2-0.5 s centred between 30 % and 70 % of the video; in ``wild`` also
``shake`` (side-to-side oscillation of 4-8 % of the shorter side at 1.5-3 Hz). A motion lasts 1.2-2.4 s
(the whole video when shorter) and its travel is capped at 45 % of the shorter side. Every video also has a
camera: a global pan of up to 5 % of the shorter side per second and per-frame jitter moving background and
patch together, a brightness ramp (gain 0.75-1.25 at each end) and per-frame pixel noise.

Motions are functions of time in seconds (frame ``i`` is shown at ``i / fps``), so a video at 60 fps shows the
same motion as one of the same duration at 15 fps. ``photo`` writes ``--frames`` frames of ``--size`` squared
at ``--fps`` as H.264 .mp4. ``wild`` draws per video a frame rate (15/24/30/60 fps), a duration (1.5-6 s), a
frame size (160x120, 192x108, 128x128, 120x160, scaled by ``--size``/128; durations by ``--frames``/48) and a
codec/container (H.264 .mp4, MPEG-4 .avi, MJPEG .mkv), and the motion's speed changes within it (three
segments of random relative speed, some paused).

As in ``shapes``, position, size and angle of the patch in a single frame have the same distribution in every
class (the properties that do not move are frozen at a random moment of a sweep), so one frame cannot tell the
translation, rotation and zoom classes apart (in ``wild`` only nearly: an uneven sweep spends longer at one
end). It can for the fades (a frame with no or a half-transparent patch is ``fade_in``/``fade_out``) and, in
``wild``, ``shake``'s x position spreads a little less than a translation's.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevid.data.synth.encode import CODECS
from edgevid.data.synth.shapes import _SHAPES
from edgevid.errors import EdgevidError

PHOTO_CLASSES = ("move_left", "move_right", "move_up", "move_down", "rotate_clockwise", "rotate_anticlockwise",
                 "zoom_in", "zoom_out", "fade_in", "fade_out")
WILD_CLASSES = (*PHOTO_CLASSES, "shake")
PHOTO_MIRROR_PAIRS = (("move_left", "move_right"), ("rotate_clockwise", "rotate_anticlockwise"))
PHOTO_REVERSE_PAIRS = (("move_left", "move_right"), ("move_up", "move_down"),
                       ("rotate_clockwise", "rotate_anticlockwise"), ("zoom_in", "zoom_out"), ("fade_in", "fade_out"))
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png",
          "camera.png", "grass.png", "gravel.png", "brick.png")
_PATCH_PHOTOS = 7  # the first seven are photographs of things; the last three, textures, are only backgrounds
PHOTO_SIDE = 256  # photographs are scaled once so their shorter side has this many pixels
WILD_FPS = (15, 24, 30, 60)
WILD_SIZES = ((160, 120), (192, 108), (128, 128), (120, 160))  # (width, height) at --size 128
WILD_SECONDS = (1.5, 6.0)  # at --frames 48
WILD_FACTORS = ("size", "fps", "codec")  # the format factors a wild video draws (SynthConfig.vary)
Progress = Callable[[np.ndarray], np.ndarray]
_MOVES = {"move_left": (0, -1), "move_right": (0, 1), "move_up": (1, -1), "move_down": (1, 1)}
_SPINS = {"rotate_clockwise": 1.0, "rotate_anticlockwise": -1.0}


@dataclass(frozen=True)
class VideoSpec:
    """Frame rate, size, length and codec of one video."""

    fps: int
    width: int
    height: int
    frames: int
    codec: str

    @property
    def suffix(self) -> str:
        return CODECS[self.codec].suffix


def photo_folder() -> Path:
    """scikit-image's bundled sample images (found without importing scikit-image)."""
    spec = importlib.util.find_spec("skimage")
    folder = Path(spec.origin).parent / "data" if spec is not None and spec.origin else None
    if folder is None or not folder.is_dir():
        raise EdgevidError("synth --style photo/wild needs the scikit-image package (pip install scikit-image)")
    return folder


@functools.cache
def load_photos() -> tuple[np.ndarray, ...]:
    """The photographs of :data:`PHOTOS` as uint8 RGB, shorter side :data:`PHOTO_SIDE` pixels."""
    folder = photo_folder()
    images = []
    for name in PHOTOS:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is None:
            raise EdgevidError(f"{folder / name}: missing or unreadable scikit-image sample image")
        height, width = image.shape[:2]
        scale = PHOTO_SIDE / min(height, width)
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return tuple(images)


def draw_spec(rng: np.random.Generator, wild: bool, frames: int, size: int, fps: int,
              vary: tuple[str, ...] = WILD_FACTORS) -> VideoSpec:
    """The video's format: the settings for ``photo``, a random draw scaled by ``frames``/``size`` for ``wild``.

    ``vary`` (wild): the factors of :data:`WILD_FACTORS` taken from the draw; the others keep photo's (``size``
    squared, ``fps``, H.264). Every factor is drawn either way, so the rest of the video draws the same motion.
    """
    if not wild:
        return VideoSpec(fps, size, size, frames, "h264")
    rate = int(rng.choice(WILD_FPS))
    seconds = rng.uniform(*WILD_SECONDS) * frames / 48
    width, height = WILD_SIZES[int(rng.integers(0, len(WILD_SIZES)))]
    codec = list(CODECS)[int(rng.integers(0, len(CODECS)))]
    rate = rate if "fps" in vary else fps
    width, height = (width, height) if "size" in vary else (128, 128)

    def even(value: float) -> int:
        return max(16, 2 * round(value * size / 128 / 2))

    return VideoSpec(rate, even(width), even(height), max(8, round(seconds * rate)),
                     codec if "codec" in vary else "h264")


@dataclass
class Track:
    """Patch state per frame: centre (x, y) in pixels, half-size, angle (radians, clockwise on screen), opacity;
    ``event``: when the class's change happens, (start, end) in seconds within the video (the motion's window, the
    fade's ramp, the whole video for ``shake``)."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray
    event: tuple[float, float]


def _progress(rng: np.random.Generator, duration: float, wild: bool) -> tuple[Progress, float, float]:
    """How far the motion has got (0..1) as a function of time, the motion's start and its length in seconds
    (1.2-2.4, at most the video's); the motion runs unevenly in ``wild``. The draws do not depend on the frame
    rate."""
    window = min(duration, rng.uniform(1.2, 2.4))
    start = rng.uniform(0, duration - window)
    knots_t = np.array([0.0, 1.0])
    knots_u = np.array([0.0, 1.0])
    if wild:
        cuts = np.sort(rng.uniform(0.15, 0.85, size=2))
        speeds = rng.uniform(0.2, 1.8, size=3) * (rng.random(3) > 0.2)
        if not speeds.any():
            speeds[int(rng.integers(0, 3))] = 1.0
        knots_t = np.concatenate([[0.0], cuts, [1.0]])
        knots_u = np.concatenate([[0.0], np.cumsum(speeds * np.diff(knots_t))])
        knots_u /= knots_u[-1]
    return lambda t: np.interp((t - start) / max(window, 1e-6), knots_t, knots_u), start, window


def photo_track(kind: str, rng: np.random.Generator, t: np.ndarray, width: int, height: int,
                wild: bool) -> Track:
    """The patch's motion at times ``t`` (seconds, frame ``i`` at ``i / fps``) for class ``kind`` in a ``width`` x
    ``height`` frame; the same seed gives the same motion at any frame rate."""
    duration = float(t[-1] + (t[1] - t[0] if len(t) > 1 else 0.0))
    side = min(width, height)
    progress, start, window = _progress(rng, duration, wild)
    u = progress(t)
    frozen = progress(rng.uniform(0, duration, size=4))  # a moment of the motion a still property freezes at
    small = rng.uniform(0.12, 0.17) * side
    zoom = rng.uniform(0.3, 0.45) * window
    scale = {"zoom_in": u, "zoom_out": 1 - u}.get(kind, np.full(len(t), frozen[2]))
    radius = small * np.exp(zoom * scale)
    travel = min(rng.uniform(0.15, 0.22) * window, 0.45) * side
    margin = small + travel / 2
    centre = np.array([rng.uniform(margin, max(margin, width - margin)),
                       rng.uniform(margin, max(margin, height - margin))])
    offset = np.repeat((frozen[None, :2] - 0.5) * travel, len(t), axis=0)
    if kind in _MOVES:
        axis, sign = _MOVES[kind]
        offset[:, axis] = sign * (u - 0.5) * travel
    elif kind == "shake":
        amplitude = rng.uniform(0.04, 0.08) * side
        offset[:, 0] = amplitude * np.sin(2 * math.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 2 * math.pi))
    spin = _SPINS.get(kind, 0.0)
    turn = np.deg2rad(rng.uniform(60, 120)) * window
    angle = rng.uniform(0, 2 * math.pi) + turn * (spin * u if spin else np.full(len(t), frozen[3]))
    fade_len = rng.uniform(0.2, 0.5)
    fade_mid = rng.uniform(0.3, 0.7) * duration
    fade = np.clip((t - fade_mid) / fade_len + 0.5, 0.0, 1.0)
    alpha = {"fade_in": fade, "fade_out": 1 - fade}.get(kind, np.ones(len(t)))
    fade_window = (fade_mid - fade_len / 2, fade_mid + fade_len / 2)
    event = {"fade_in": fade_window, "fade_out": fade_window, "shake": (0.0, duration)}.get(
        kind, (start, start + window))
    x, y = (centre + offset).T
    return Track(x, y, radius, angle, alpha, (max(0.0, float(event[0])), min(duration, float(event[1]))))


def _patch(rng: np.random.Generator, photo: np.ndarray, side: int) -> np.ndarray:
    """A ``side`` x ``side`` float32 RGBA patch (RGB premultiplied by a soft-edged mask) cut from ``photo``."""
    height, width = photo.shape[:2]
    crop = int(rng.uniform(0.25, 0.6) * min(height, width))
    y0, x0 = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    rgb = cv2.resize(photo[y0:y0 + crop, x0:x0 + crop], (side, side), interpolation=cv2.INTER_AREA)
    mask = np.zeros((side * 4, side * 4), np.uint8)
    half, aspect = side * 2, rng.uniform(0.55, 1.0)
    form = int(rng.integers(0, 3))
    if form == 0:
        cv2.rectangle(mask, (0, round(half * (1 - aspect))), (side * 4 - 1, round(half * (1 + aspect)) - 1), 255, -1)
    elif form == 1:
        cv2.ellipse(mask, (half, half), (half - 1, round((half - 1) * aspect)), 0, 0, 360, 255, -1)
    else:
        outline = _SHAPES[int(rng.integers(0, len(_SHAPES)))] * (half - 1) + half
        cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 255)
    soft = cv2.resize(mask, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    soft = cv2.GaussianBlur(soft, (3, 3), 0.7)
    return np.dstack([rgb.astype(np.float32) * soft[..., None], soft])


def render_photo_video(kind: str, rng: np.random.Generator, spec: VideoSpec,
                       wild: bool = False) -> tuple[np.ndarray, Track]:
    """uint8 RGB frames [frames, height, width, 3] of one ``photo`` (or ``wild``) video of class ``kind``, and the
    patch's track."""
    photos = load_photos()
    first = int(rng.integers(0, len(photos)))
    second = (first + int(rng.integers(1, _PATCH_PHOTOS))) % _PATCH_PHOTOS  # no texture patch on a texture
    background, source = (p[:, ::-1] if rng.random() < 0.5 else p for p in (photos[first], photos[second]))
    width, height, side = spec.width, spec.height, min(spec.width, spec.height)
    t = np.arange(spec.frames) / spec.fps
    track = photo_track(kind, rng, t, width, height, wild)
    patch_side = max(8, math.ceil(2 * float(track.radius.max())))
    patch = _patch(rng, source, patch_side)
    # Camera: background scale, start, pan (pixels per second) and per-frame jitter, shared by background and patch.
    bg_scale = rng.uniform(0.8, 1.3)
    pan = rng.normal(0, 1, size=2)
    pan *= rng.uniform(0, 0.05) * side / np.linalg.norm(pan)
    camera = t[:, None] * pan + rng.normal(0, rng.uniform(0, 1.2), size=(spec.frames, 2))
    bg_h, bg_w = background.shape[:2]
    origin = rng.uniform(0, np.maximum(0, [bg_w - width / bg_scale, bg_h - height / bg_scale]))
    gain = np.linspace(rng.uniform(0.75, 1.25), rng.uniform(0.75, 1.25), spec.frames)
    noise = rng.normal(0, rng.uniform(1.5, 6.0), size=(4, height, width, 3)).astype(np.float32)
    picks = rng.integers(0, len(noise), size=spec.frames)
    centre = (patch_side - 1) / 2
    video = np.empty((spec.frames, height, width, 3), dtype=np.uint8)
    for f in range(spec.frames):
        cam_x, cam_y = camera[f]
        to_photo = np.array([[1 / bg_scale, 0, origin[0] + cam_x / bg_scale],
                             [0, 1 / bg_scale, origin[1] + cam_y / bg_scale]])
        frame = cv2.warpAffine(background, to_photo, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
        if track.alpha[f] > 0:
            s = track.radius[f] / (patch_side / 2)
            cos, sin = math.cos(track.angle[f]) * s, math.sin(track.angle[f]) * s
            x, y = track.x[f] - cam_x, track.y[f] - cam_y
            to_frame = np.array([[cos, -sin, x - cos * centre + sin * centre],
                                 [sin, cos, y - sin * centre - cos * centre]])
            layer = cv2.warpAffine(patch, to_frame, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
            opacity = float(track.alpha[f])
            frame = frame * (1 - opacity * layer[..., 3:]) + opacity * layer[..., :3]
        frame = frame * gain[f] + noise[picks[f]]
        np.clip(frame, 0, 255, out=frame)
        video[f] = frame.astype(np.uint8)
    return video, track
