"""Calibration sets for post-training quantization: manifests of clips drawn from a training split.

A manifest (``edgevid calib build``) is a JSON file listing clips as video path, label, frame indices (with the
start frame and stride they came from) plus the preprocessing of the model it is for: frames, size, sampling
stride and mode, mean and std. It is

- deterministic: the same data, count, preprocessing and seed give the same file, byte for byte;
- class-stratified: clips are taken round-robin over the classes (in a seeded order), each class going through
  its videos in a seeded shuffle, so every class gets ``N // classes`` or one more clips (a video is revisited
  with a new random clip only when its class runs out of videos);
- sampled as in training: each clip is a training-style clip of its video (random start for dense clips,
  random offsets inside the segments for segment sampling), without augmentation.

Paths are stored relative to the data root, and the root relative to the manifest's folder, so a manifest moves
together with its data. :func:`load_calibration` checks a manifest against the model it is used for and decodes
its clips into the normalised [1, 3, T, S, S] batches every quantizer consumes.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.data import VideoDecodeError, VideoReader, build_dataset, eval_transform
from edgevid.data.datasets import distinct_skips
from edgevid.data.sampling import train_indices
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import get_spec
from edgevid.utils.atomic import write_json_atomic
from edgevid.utils.console import progress

MANIFEST_FORMAT = "edgevid-calibration"
MANIFEST_VERSION = 1
METHODS = ("minmax", "entropy", "percentile")


def check_method(method: str) -> str:
    """An activation range estimation method: ``minmax``, ``entropy`` (histogram fit) or ``percentile``."""
    if method not in METHODS:
        raise EdgevidError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    return method


@dataclass(frozen=True)
class Preprocessing:
    """The input a model expects: what a calibration clip must look like."""

    frames: int
    size: int
    sampling_stride: int
    sampling: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fit: str = "crop"

    @classmethod
    def from_meta(cls, meta: ArtifactMeta) -> Preprocessing:
        return cls(meta.frames, meta.size, meta.sampling_stride, meta.sampling,
                   tuple(meta.mean), tuple(meta.std), meta.fit)

    @classmethod
    def from_model(cls, name: str, sampling: str = "dense") -> Preprocessing:
        spec = get_spec(name)
        return cls(spec.frames, spec.size, spec.sampling_stride, sampling, tuple(spec.mean), tuple(spec.std))

    def describe(self) -> str:
        return (f"{self.frames}x{self.size}x{self.size} clips, stride {self.sampling_stride}, {self.sampling} "
                f"sampling, {self.fit} fit, mean {_fmt(self.mean)}, std {_fmt(self.std)}")

    def mismatches(self, other: Preprocessing) -> list[str]:
        """Names of the fields in which ``other`` differs (mean/std compared to 1e-6)."""
        names = [n for n in ("frames", "size", "sampling_stride", "sampling", "fit")
                 if getattr(self, n) != getattr(other, n)]
        names += [n for n in ("mean", "std") if not np.allclose(getattr(self, n), getattr(other, n), atol=1e-6)]
        return names


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


@dataclass(frozen=True)
class CalibrationClip:
    """One clip: video path (relative to the manifest's data root), label, and the frame indices to decode."""

    path: str
    label: int
    start: int
    stride: int | None
    frames: int
    indices: tuple[int, ...]


@dataclass
class CalibrationManifest:
    """A calibration set: where the videos are, how clips are preprocessed, and the clips."""

    root: Path
    split: str
    seed: int
    preprocessing: Preprocessing
    classes: list[str]
    clips: list[CalibrationClip]
    model: str | None = None
    source: Path | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return str(self.source) if self.source else "calibration manifest"

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for clip in self.clips:
            counts[self.classes[clip.label]] += 1
        return counts

    def to_dict(self, manifest_dir: Path) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "root": Path(os.path.relpath(self.root.resolve(), manifest_dir.resolve())).as_posix(),
            "split": self.split,
            "seed": self.seed,
            "model": self.model,
            "preprocessing": {**asdict(self.preprocessing), "mean": list(self.preprocessing.mean),
                              "std": list(self.preprocessing.std)},
            "classes": self.classes,
            "class_counts": self.class_counts(),
            "clips": [{**asdict(c), "indices": list(c.indices)} for c in self.clips],
        }

    def save(self, path: str | Path) -> Path:
        """Write the manifest atomically."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            raise EdgevidError(f"--out {path}: a calibration manifest is a .json file")
        return write_json_atomic(path, self.to_dict(path.parent))

    def check_videos(self) -> None:
        """Raise naming the first listed video that does not exist."""
        for clip in self.clips:
            video = self.root / clip.path
            if not video.is_file():
                raise EdgevidError(f"{self.name}: calibration video {video} does not exist (first missing of "
                                   f"{len(self.clips)} clips; is the data root {self.root} right?)")

    def check_model(self, meta: ArtifactMeta, artifact: str | Path) -> None:
        """Raise when the manifest was built for another input than ``meta`` describes, or other classes."""
        expected = Preprocessing.from_meta(meta)
        differ = self.preprocessing.mismatches(expected)
        if differ:
            raise EdgevidError(
                f"{self.name}: built for {self.preprocessing.describe()}, but {artifact} expects "
                f"{expected.describe()} ({', '.join(differ)} differ); rebuild it with "
                f"`edgevid calib build --artifact {artifact} ...`"
            )
        if self.classes != list(meta.classes):
            raise EdgevidError(f"{self.name}: its classes ({len(self.classes)}) are not the classes of {artifact} "
                               f"({meta.num_classes}); build the manifest from the data the model was trained on")

    def load_clips(self, show_progress: bool = True) -> list[np.ndarray]:
        """Decode and normalise every clip: a list of float32 [1, 3, T, S, S] arrays (manifest order)."""

        prep = self.preprocessing
        transform = eval_transform(prep.size, prep.mean, prep.std, prep.fit)
        clips = []
        with progress(transient=True) as bar:
            task = bar.add_task("calibration clips", total=len(self.clips), info=self.name, visible=show_progress)
            for clip in self.clips:
                with VideoReader(self.root / clip.path) as video:
                    frames = video.read(clip.indices)
                clips.append(transform(frames).numpy()[None])
                bar.advance(task)
        return clips


def load_manifest(path: str | Path) -> CalibrationManifest:
    """Read and validate a manifest file (structure only; see :meth:`CalibrationManifest.check_videos`)."""
    path = Path(path)
    if not path.is_file():
        raise EdgevidError(f"{path}: no such calibration manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgevidError(f"{path}: calibration manifest is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise EdgevidError(f"{path}: not an edgevid calibration manifest (no format '{MANIFEST_FORMAT}'); "
                           "build one with `edgevid calib build`")
    if data.get("version") != MANIFEST_VERSION:
        raise EdgevidError(f"{path}: calibration manifest version {data.get('version')} is not supported "
                           f"(expected {MANIFEST_VERSION})")
    try:
        prep = data["preprocessing"]
        preprocessing = Preprocessing(int(prep["frames"]), int(prep["size"]), int(prep["sampling_stride"]),
                                      str(prep["sampling"]), tuple(prep["mean"]), tuple(prep["std"]),
                                      str(prep.get("fit", "crop")))
        clips = [CalibrationClip(str(c["path"]), int(c["label"]), int(c["start"]),
                                 None if c["stride"] is None else int(c["stride"]), int(c["frames"]),
                                 tuple(int(i) for i in c["indices"])) for c in data["clips"]]
        classes = [str(c) for c in data["classes"]]
        root = Path(data["root"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgevidError(f"{path}: calibration manifest is malformed ({type(exc).__name__}: {exc})") from None
    if not clips:
        raise EdgevidError(f"{path}: calibration manifest lists no clips")
    bad = next((c for c in clips if not 0 <= c.label < len(classes) or len(c.indices) != preprocessing.frames), None)
    if bad is not None:
        raise EdgevidError(f"{path}: clip {bad.path} has label {bad.label} or {len(bad.indices)} frame indices, "
                           f"outside the manifest's {len(classes)} classes / {preprocessing.frames} frames")
    return CalibrationManifest(
        root=root if root.is_absolute() else (path.parent / root).resolve(),
        split=str(data.get("split", "train")), seed=int(data.get("seed", 0)), preprocessing=preprocessing,
        classes=classes, clips=clips, model=data.get("model"), source=path,
    )


def load_calibration(manifest: str | Path | CalibrationManifest, meta: ArtifactMeta, artifact: str | Path,
                     show_progress: bool = True) -> tuple[CalibrationManifest, list[np.ndarray]]:
    """A manifest checked against the model (input geometry, classes, videos present) and its decoded clips."""
    manifest = manifest if isinstance(manifest, CalibrationManifest) else load_manifest(manifest)
    manifest.check_model(meta, artifact)
    manifest.check_videos()
    return manifest, manifest.load_clips(show_progress)


# ------------------------------------------------------------------------------------------------ building
def build_manifest(data: str | Path, num: int, preprocessing: Preprocessing, *, seed: int = 0, split: str = "train",
                   model: str | None = None, classes: Sequence[str] | None = None,
                   show_progress: bool = True) -> tuple[CalibrationManifest, list[tuple[str, str]]]:
    """Draw ``num`` class-stratified clips from ``split`` of the dataset at ``data`` (rules: module docstring).

    Returns the manifest and the videos that could not be read (path, reason); those are left out.
    """

    if num < 1:
        raise EdgevidError(f"--num must be >= 1, got {num}")
    if seed < 0:
        raise EdgevidError(f"--seed must be >= 0, got {seed}")
    prep = preprocessing
    dataset = build_dataset(data, split, frames=prep.frames, size=prep.size, sampling_stride=prep.sampling_stride,
                            mean=prep.mean, std=prep.std, train=False, sampling=prep.sampling, classes=classes,
                            fit=prep.fit)
    if len(dataset) == 0:
        raise EdgevidError(f"{data}: split {split!r} has no videos to calibrate with")
    root = Path(data).resolve() if Path(data).is_dir() else Path(data).resolve().parent
    rng = np.random.default_rng(np.random.SeedSequence([seed, num]))
    labels = np.array([s.label for s in dataset.samples])
    queues = {int(c): deque(int(i) for i in rng.permutation(np.flatnonzero(labels == c)))
              for c in rng.permutation(dataset.num_classes) if np.any(labels == c)}
    segments: dict[int, tuple[int, int]] = {}
    skipped: list[tuple[str, str]] = []
    clips: list[CalibrationClip] = []
    with progress(transient=True) as bar:
        task = bar.add_task("calibration manifest", total=num, info=str(data), visible=show_progress)
        while len(clips) < num and any(queues.values()):
            for queue in queues.values():
                index = _next_readable(queue, dataset, segments, skipped)
                if index is None or len(clips) == num:
                    continue
                sample = dataset.samples[index]
                first, count = segments[index]
                indices = train_indices(count, prep.frames, prep.sampling_stride, prep.sampling, rng) + first
                clips.append(CalibrationClip(
                    _relative(sample.path, root), sample.label, int(indices[0]),
                    prep.sampling_stride if prep.sampling == "dense" else None, prep.frames,
                    tuple(int(i) for i in indices)))
                bar.advance(task)
    if not clips:
        raise EdgevidError(f"{data}: no readable video in split {split!r} ({skipped[0][0]}: {skipped[0][1]})")
    return (CalibrationManifest(root, split, seed, prep, list(dataset.classes), clips, model=model),
            distinct_skips(skipped))


def _next_readable(queue: deque, dataset, segments: dict[int, tuple[int, int]],
                   skipped: list[tuple[str, str]]) -> int | None:
    """The next video of a class queue (moved to the back: the queue cycles) whose frames can be read; videos
    that fail to open are dropped from the queue and recorded in ``skipped``. ``segments`` caches the first frame
    and frame count of each video's labelled segment."""

    while queue:
        index = queue.popleft()
        if index not in segments:
            sample = dataset.samples[index]
            try:
                with VideoReader(sample.path) as video:
                    segments[index] = dataset._segment(sample, video.info.fps, video.info.num_frames)
            except VideoDecodeError as exc:
                skipped.append((str(sample.path), str(exc).removeprefix(f"{sample.path}: ")))
                continue
        queue.append(index)
        return index
    return None


def _relative(path: Path, root: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return resolved.as_posix()
