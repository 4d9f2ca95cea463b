"""Writing a synthetic dataset of one style: videos in parallel, lists and ``synth.json``."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgevid.data.synth.encode import write_video
from edgevid.data.synth.photo import (
    PHOTO_CLASSES,
    PHOTO_MIRROR_PAIRS,
    PHOTO_REVERSE_PAIRS,
    PHOTOS,
    WILD_CLASSES,
    WILD_FACTORS,
    VideoSpec,
    draw_spec,
    load_photos,
    render_photo_video,
)
from edgevid.data.synth.shapes import CLASS_NAMES, MIRROR_PAIRS, REVERSE_PAIRS, render_video
from edgevid.data.transforms import opencv_single_thread
from edgevid.errors import EdgevidError
from edgevid.utils.atomic import write_json_atomic, write_text_atomic
from edgevid.utils.console import progress

SPLITS = ("train", "val")
SYNTH_FORMAT = 1


@dataclass(frozen=True)
class Style:
    """A style's classes and its class pairs by kind (``mirror``: mirror images, ``reverse``: played backwards)."""

    classes: tuple[str, ...]
    pairs: dict[str, tuple[tuple[str, str], ...]]


STYLES = {"shapes": Style(CLASS_NAMES, {"mirror": MIRROR_PAIRS, "reverse": REVERSE_PAIRS}),
          "photo": Style(PHOTO_CLASSES, {"mirror": PHOTO_MIRROR_PAIRS, "reverse": PHOTO_REVERSE_PAIRS}),
          "wild": Style(WILD_CLASSES, {"mirror": PHOTO_MIRROR_PAIRS, "reverse": PHOTO_REVERSE_PAIRS})}
_DEFAULT_FPS = 25


@dataclass(frozen=True)
class SynthConfig:
    """Settings of a synthetic dataset (defaults sized for the X3D-XS CPU benchmark)."""

    classes: int = 8
    videos_per_class: int = 60
    val_per_class: int = 15
    frames: int = 48
    size: int = 128
    fps: int = _DEFAULT_FPS
    seed: int = 0
    style: str = "shapes"
    vary: tuple[str, ...] = WILD_FACTORS

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise EdgevidError(f"synth --style must be one of {', '.join(STYLES)}, got {self.style!r}")
        names = STYLES[self.style].classes
        if not 2 <= self.classes <= len(names):
            raise EdgevidError(f"synth --classes must be 2..{len(names)} for --style {self.style}, got {self.classes}")
        if self.videos_per_class < 1 or self.val_per_class < 0:
            raise EdgevidError("synth --videos-per-class must be >= 1 and --val-per-class >= 0")
        if self.frames < 8:
            raise EdgevidError(f"synth --frames must be >= 8, got {self.frames}")
        if self.size < 32 or self.size % 2:
            raise EdgevidError(f"synth --size must be an even number >= 32 (H.264 yuv420p), got {self.size}")
        if not 1 <= self.fps <= 240:
            raise EdgevidError(f"synth --fps must be 1..240, got {self.fps}")
        object.__setattr__(self, "vary", tuple(self.vary))  # a list when read back from synth.json
        if self.style == "wild" and "fps" in self.vary and self.fps != _DEFAULT_FPS:
            raise EdgevidError("synth --fps does not apply to --style wild unless --vary leaves out fps (each video "
                               "draws 15, 24, 30 or 60 fps)")
        unknown = [factor for factor in self.vary if factor not in WILD_FACTORS]
        if unknown:
            raise EdgevidError(f"synth --vary takes factors among {', '.join(WILD_FACTORS)}, got {', '.join(unknown)}")
        if self.style != "wild" and set(self.vary) != set(WILD_FACTORS):
            raise EdgevidError(f"synth --vary applies to --style wild only, not {self.style}")

    @property
    def class_names(self) -> list[str]:
        return list(STYLES[self.style].classes[: self.classes])

    def class_pairs(self, kind: str) -> list[tuple[str, str]]:
        """The style's ``mirror`` (mirror-image) or ``reverse`` (time-reversed) class pairs among its classes."""
        names = set(self.class_names)
        return [pair for pair in STYLES[self.style].pairs[kind] if set(pair) <= names]


def parse_vary(text: str) -> tuple[str, ...]:
    """``--vary``'s text: comma-separated factors, or ``none`` (checked by :class:`SynthConfig`)."""
    return () if text.strip() == "none" else tuple(part.strip() for part in text.split(",") if part.strip())


def _video_rng(seed: int, class_index: int, split: str, number: int, style: str = "shapes") -> np.random.Generator:
    key = [seed, class_index, SPLITS.index(split), number]
    if style != "shapes":  # shapes keeps its original streams (same seed, same bytes as before styles existed)
        key.append(list(STYLES).index(style))
    return np.random.default_rng(np.random.SeedSequence(key))


def _make_video(job: tuple[SynthConfig, Path, int, str, int]) -> tuple[str, VideoSpec, dict]:
    """Render and write one video; returns its path, format and (photo/wild) when its class's change happens."""
    config, out, class_index, split, number = job
    name = config.class_names[class_index]
    rng = _video_rng(config.seed, class_index, split, number, config.style)
    if config.style == "shapes":
        spec = VideoSpec(config.fps, config.size, config.size, config.frames, "h264")
        frames, info = render_video(name, rng, config.frames, config.size), {}
    else:
        spec = draw_spec(rng, config.style == "wild", config.frames, config.size, config.fps, config.vary)
        frames, track = render_photo_video(name, rng, spec, wild=config.style == "wild")
        info = {"event_s": [round(track.event[0], 4), round(track.event[1], 4)]}
    relative = Path(split) / name / f"{name}_{number:04d}{spec.suffix}"
    write_video(out / relative, frames, spec.fps, codec=spec.codec)
    return relative.as_posix(), spec, info


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.is_file():
        raise EdgevidError(f"{out}: is a file, expected an output directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "synth.json").is_file():
            raise EdgevidError(f"{out}: directory is not empty and holds no edgevid synth dataset; choose another")
        if not overwrite:
            raise EdgevidError(f"{out}: a synth dataset is already there (pass --overwrite to replace it)")
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        (out / "synth.json").unlink()


def _choices(specs: list[VideoSpec]) -> dict:
    """How many videos have each frame rate, frame size and codec."""
    def tally(values) -> dict:
        return {str(key): count for key, count in sorted(Counter(values).items())}

    return {"fps": tally(s.fps for s in specs), "size": tally(f"{s.width}x{s.height}" for s in specs),
            "codec": tally(s.codec for s in specs)}


def generate_synth(out: str | Path, config: SynthConfig | None = None, *, workers: int = 1,
                   overwrite: bool = False, show_progress: bool = True) -> dict:
    """Write a synthetic dataset to ``out`` (layout in :mod:`edgevid.data.synth`); returns the synth.json content."""
    config = config or SynthConfig()
    out = Path(out)
    if config.style != "shapes":
        load_photos()  # fail here, once, with the reason when scikit-image's images are missing
    _prepare_out(out, overwrite)
    counts = {"train": config.videos_per_class, "val": config.val_per_class}
    jobs = [(config, out, c, split, n) for split in SPLITS for c in range(config.classes) for n in range(counts[split])]
    start = time.perf_counter()
    written: list[tuple[str, VideoSpec, dict]] = []
    with progress(transient=not show_progress) as bar:
        task = bar.add_task("synth videos", total=len(jobs), info=str(out), visible=show_progress)
        if workers > 1:
            opencv_single_thread()
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(_make_video, jobs, chunksize=4):
                    written.append(result)
                    bar.advance(task)
        else:
            for job in jobs:
                written.append(_make_video(job))
                bar.advance(task)
    for split in SPLITS:
        rows = [f"{path},{path.split('/')[1]}" for path, _, _ in written if path.startswith(f"{split}/")]
        write_text_atomic(out / f"{split}.csv", "path,label\n" + "".join(f"{row}\n" for row in rows))
    write_text_atomic(out / "classes.txt", "".join(f"{name}\n" for name in config.class_names))
    summary = {
        "format": SYNTH_FORMAT,
        "generator": "edgevid data synth",
        "style": config.style,
        "config": asdict(config),
        "classes": config.class_names,
        **{f"{kind}_classes": [list(pair) for pair in config.class_pairs(kind)] for kind in STYLES[config.style].pairs},
        "counts": {split: config.classes * counts[split] for split in SPLITS},
        "choices": _choices([spec for _, spec, _ in written]),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if config.style != "shapes":
        summary["photos"] = {"source": "scikit-image sample images (skimage/data in its wheel)",
                             "licences": "public domain or CC0 (see edgevid/data/synth/photo.py)",
                             "files": list(PHOTOS)}
        summary["videos"] = {path: {**asdict(spec), **info} for path, spec, info in written}
    write_json_atomic(out / "synth.json", summary)
    return summary
