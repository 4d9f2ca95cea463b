"""Synthetic action videos whose classes differ over time: ``edgevid data synth OUT --style STYLE``.

Styles (each its own module): ``shapes`` (the default; a polygon on a synthetic texture, :mod:`.shapes`),
``photo`` (a patch of a real photograph moving over another photograph, with camera pan/jitter, brightness
change and noise, :mod:`.photo`) and ``wild`` (``photo`` plus a ``shake`` class, speed changes, and per-video
frame rates, durations, non-square frame sizes and codecs/containers; ``vary`` / ``--vary`` picks which of those
format factors a wild video draws, the others keeping photo's, to measure what each costs). Recipes can be chosen
on one style and checked on another.

Output (each file written atomically): ``OUT/{train,val}/<class>/<class>_NNNN.<ext>`` (H.264 .mp4; in ``wild``
also MPEG-4 .avi and MJPEG .mkv), ``train.csv`` and ``val.csv`` (``path,label``, paths relative to OUT),
``classes.txt`` and ``synth.json`` (written last: style, settings, classes, the mirror-image and time-reversed class
pairs for a recipe's flip and reversal augmentations, counts, the frame rates/sizes/codecs used and, for
``photo``/``wild``, each video's format, when its class's change happens (``event_s``: start and end in seconds) and
the photographs' source). Every video is a pure function of (seed, style, class, split, number), so the same seed
gives the same frames; ``shapes`` output is byte-identical to the generator before styles existed.
"""

from edgevid.data.synth.encode import CODECS, write_video
from edgevid.data.synth.generate import SPLITS, STYLES, SYNTH_FORMAT, SynthConfig, generate_synth, parse_vary
from edgevid.data.synth.photo import (
    PHOTO_CLASSES,
    PHOTOS,
    WILD_CLASSES,
    WILD_FACTORS,
    VideoSpec,
    photo_track,
    render_photo_video,
)
from edgevid.data.synth.shapes import CLASS_NAMES, MIRROR_PAIRS, _trajectory, render_video

__all__ = [
    "CLASS_NAMES",
    "CODECS",
    "MIRROR_PAIRS",
    "PHOTOS",
    "PHOTO_CLASSES",
    "SPLITS",
    "STYLES",
    "SYNTH_FORMAT",
    "WILD_CLASSES",
    "WILD_FACTORS",
    "SynthConfig",
    "VideoSpec",
    "_trajectory",
    "generate_synth",
    "parse_vary",
    "photo_track",
    "render_photo_video",
    "render_video",
    "write_video",
]
