"""Video datasets on disk: layout detection, class lists, and the clip dataset/loader used for training and eval.

Layout rules, tried in this order for ``find_split(root, split)`` (split aliases: ``val`` = ``validate`` =
``validation``; ``test``; ``train``):

1. ``root`` is a file: a list file (below).
2. A list file for the split: ``root/<split>.{csv,tsv,txt}`` or ``root/annotations/<split>.{csv,tsv,txt}``.
   - Plain list (CSV, TSV, or whitespace-separated .txt): ``path,label[,start,end]``, optional header row
     (``path``/``video``/``file`` and ``label``/``class`` columns, ``start``/``end`` optional). Relative paths are
     relative to the list file. ``start``/``end`` are seconds: the clip is sampled inside that segment.
     Classes: ``classes.txt`` (one name a line) beside the list file, else the sorted labels of the list.
   - Kinetics CSV (header ``label,youtube_id,time_start,time_end[,split[,is_cc]]``): each row is the video
     ``<root>/<split>/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` as the Kinetics downloaders
     write it; ``<label>`` with spaces replaced by ``_`` and the flat ``<root>/<split>/<file>`` (the CVDF
     release) are tried too. ``<split>`` is the row's ``split`` column, else the split name. Files are already
     trimmed, so time_start/time_end only name the file. Classes: ``classes.txt`` beside the CSV, else sorted.
3. UCF101 split files: ``classInd.txt`` in ``root`` or one folder below (e.g. ``ucfTrainTestlist/``) with
   ``trainlist0N.txt`` / ``testlist0N.txt`` beside it (split ``train``/``val``/``test`` use list 01;
   ``train2`` or ``trainlist02`` pick another). Videos are looked up under ``root``, ``root/UCF-101``,
   ``root/UCF101``, ``root/videos`` or the folder holding the split files. Classes in ``classInd.txt`` order.
4. Folder per class inside a split folder: ``root/<split>/<class>/<video>``.
5. Folder per class with no split folders: ``root/<class>/<video>``. Each class is split deterministically:
   its videos sorted by CRC32 of the file name, the first ``round(HOLDOUT_FRACTION * n)`` (at least 1 when
   the class has 2+ videos) form ``val``/``test``, the rest ``train``; split ``all`` takes every video.

Folder layouts take every file with a video extension below each class folder; classes are the sorted folder
names. An empty class folder, a label outside the class list, or a list file naming nothing, is an
:class:`EdgevidError` that names it. A missing or corrupt video is found when it is loaded: skipped and reported
(path, reason) by :func:`build_loader`, or an error with ``strict=True``.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edgevid.data.decode import VIDEO_EXTENSIONS, VideoCache, VideoDecodeError
from edgevid.data.sampling import (
    check_fit,
    check_mode,
    clip_span,
    crop_boxes,
    train_indices,
    video_stride,
    view_indices,
)
from edgevid.data.transforms import AugmentConfig, ClipAugment, normalize, opencv_single_thread, resize_crop
from edgevid.errors import EdgevidError
from edgevid.utils.textfiles import MAX_LABEL_BYTES, MAX_LIST_BYTES, read_user_text

HOLDOUT_FRACTION = 0.2
SPLIT_ALIASES = {"val": ("val", "validate", "validation"), "validate": ("validate", "val", "validation"),
                 "validation": ("validation", "val", "validate")}
LIST_SUFFIXES = (".csv", ".tsv", ".txt")
_PATH_COLUMNS = ("path", "video", "file", "filename", "video_path")
_LABEL_COLUMNS = ("label", "class", "class_name", "category", "action")
_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class VideoSample:
    """One video of a split: path, class index, optional segment [start, end] in seconds."""

    path: Path
    label: int
    start: float | None = None
    end: float | None = None


@dataclass
class DataSplit:
    """What :func:`find_split` found: layout name, where it came from, class names and entries with label names."""

    layout: str
    source: Path
    classes: list[str]
    entries: list[tuple[Path, str, float | None, float | None]] = field(default_factory=list)

    def samples(self, classes: Sequence[str]) -> list[VideoSample]:
        """Entries with labels as indices into ``classes``; an unknown label is an error naming it."""
        position = {name: i for i, name in enumerate(classes)}
        samples = []
        for path, label, start, end in self.entries:
            if label not in position:
                raise EdgevidError(f"{self.source}: unknown label {label!r} ({path.name}); "
                                   f"known classes: {_preview(classes)}")
            samples.append(VideoSample(path, position[label], start, end))
        return samples


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _split_names(split: str) -> tuple[str, ...]:
    return SPLIT_ALIASES.get(split, (split,))


# --------------------------------------------------------------------------------------------------- list files
def _read_rows(path: Path) -> list[list[str]]:
    text = read_user_text(path, "list file", MAX_LIST_BYTES,
                          hint="; --data expects a dataset folder or a list file of 'video,label' lines")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise EdgevidError(f"{path}: list file is empty")
    if path.suffix.lower() == ".tsv" or "\t" in lines[0]:
        delimiter = "\t"
    elif "," in lines[0] or path.suffix.lower() == ".csv":
        delimiter = ","
    else:
        return [line.split() for line in lines]
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        return [[cell.strip() for cell in row] for row in reader]
    except csv.Error as exc:  # a field past csv's size limit, a NUL byte
        raise EdgevidError(f"{path}: line {reader.line_num}: not a list file line ({exc})") from None


def _seconds(value: str, path: Path, line: int) -> float | None:
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise EdgevidError(f"{path}: line {line}: start/end {value!r} is not a number of seconds") from None


def _classes_file(folder: Path) -> list[str] | None:
    path = folder / "classes.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in read_user_text(path, "class list", MAX_LABEL_BYTES).splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise EdgevidError(f"{path}: class names repeat")
    return names


def _column(header: list[str], names: Sequence[str]) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


def read_list_file(path: Path, split: str | None = None) -> DataSplit:
    """A plain or Kinetics-style list file as a :class:`DataSplit` (see the module docstring)."""
    rows = _read_rows(path)
    header = [cell.lower() for cell in rows[0]]
    if all(name in header for name in _KINETICS_COLUMNS):
        return _kinetics_split(path, header, rows[1:], split)
    has_header = _column(header, _LABEL_COLUMNS) is not None and _column(header, _PATH_COLUMNS) is not None
    if has_header:
        cols = (_column(header, _PATH_COLUMNS), _column(header, _LABEL_COLUMNS),
                _column(header, ("start", "time_start", "start_s")), _column(header, ("end", "time_end", "end_s")))
        rows = rows[1:]
    else:
        cols = (0, 1, 2, 3)
    entries = []
    first_line = 2 if has_header else 1
    for line, row in enumerate(rows, start=first_line):
        if len(row) < 2 or max(c for c in cols[:2]) >= len(row):
            raise EdgevidError(f"{path}: line {line}: expected path,label[,start,end], got {row!r}")
        start = _seconds(row[cols[2]], path, line) if cols[2] is not None and cols[2] < len(row) else None
        end = _seconds(row[cols[3]], path, line) if cols[3] is not None and cols[3] < len(row) else None
        if start is not None and end is not None and end <= start:
            raise EdgevidError(f"{path}: line {line}: end {end} is not after start {start}")
        video = Path(row[cols[0]])
        entries.append((video if video.is_absolute() else path.parent / video, row[cols[1]], start, end))
    if not entries:
        raise EdgevidError(f"{path}: list file names no videos")
    classes = _classes_file(path.parent) or sorted({label for _, label, _, _ in entries})
    return DataSplit("list", path, classes, entries)


def _kinetics_split(path: Path, header: list[str], rows: list[list[str]], split: str | None) -> DataSplit:
    col = {name: header.index(name) for name in (*_KINETICS_COLUMNS, "split") if name in header}
    root = path.parent.parent if path.parent.name == "annotations" else path.parent
    entries = []
    for line, row in enumerate(rows, start=2):
        try:
            label, youtube_id = row[col["label"]], row[col["youtube_id"]]
            start, end = int(float(row[col["time_start"]])), int(float(row[col["time_end"]]))
        except (IndexError, ValueError, OverflowError):
            raise EdgevidError(f"{path}: line {line}: expected label,youtube_id,time_start,time_end,...") from None
        row_split = row[col["split"]] if "split" in col and col["split"] < len(row) else None
        name = f"{youtube_id}_{start:06d}_{end:06d}.mp4"
        folders = list(dict.fromkeys(
            [s for s in (row_split, *(_split_names(split) if split else ())) if s]
        )) or [""]
        candidates = [root / folder / sub / name for folder in folders
                      for sub in (label, label.replace(" ", "_"), "")]
        video = next((c for c in candidates if c.is_file()), candidates[0])
        entries.append((video, label, None, None))
    if not entries:
        raise EdgevidError(f"{path}: Kinetics CSV names no videos")
    classes = _classes_file(path.parent) or sorted({label for _, label, _, _ in entries})
    return DataSplit("kinetics", path, classes, entries)


def _find_list_file(root: Path, split: str) -> Path | None:
    for folder in (root, root / "annotations"):
        for name in _split_names(split):
            for suffix in LIST_SUFFIXES:
                if (folder / f"{name}{suffix}").is_file():
                    return folder / f"{name}{suffix}"
    return None


def _list_files(root: Path) -> list[Path]:
    """The split list files of ``root`` (``<split>.csv/.tsv/.txt`` in it or in ``annotations/``)."""
    not_splits = {"classes", *(Path(pair_file(kind)).stem for kind in PAIR_KINDS), "classind", "readme", "license"}
    return [path for folder in (root, root / "annotations") if folder.is_dir()
            for path in sorted(folder.iterdir())
            if path.suffix.lower() in LIST_SUFFIXES and path.is_file() and path.stem.lower() not in not_splits]


# --------------------------------------------------------------------------------------------------- UCF101
def _find_class_ind(root: Path) -> Path | None:
    if (root / "classInd.txt").is_file():
        return root / "classInd.txt"
    return next(iter(sorted(root.glob("*/classInd.txt"))), None)


def _ucf_split_file(folder: Path, split: str) -> Path:
    name = split.lower()
    for prefix, kinds in (("trainlist", ("train",)), ("testlist", ("test", "val", "validate", "validation"))):
        for kind in (prefix, *kinds):
            if name.startswith(kind):
                number = name[len(kind):] or "1"
                if number.isdigit():
                    path = folder / f"{prefix}{int(number):02d}.txt"
                    if not path.is_file():
                        raise EdgevidError(f"{path}: UCF101 split file not found")
                    return path
    raise EdgevidError(f"{folder}: UCF101 layout has no split {split!r} (use train, test/val, train2, test3, ...)")


def _ucf_split(root: Path, class_ind: Path, split: str) -> DataSplit:
    classes: list[str] = []
    for line in read_user_text(class_ind, "UCF101 class index", MAX_LABEL_BYTES).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            classes.append(parts[1])
        elif parts:
            raise EdgevidError(f"{class_ind}: expected 'index ClassName' lines, got {line!r}")
    split_file = _ucf_split_file(class_ind.parent, split)
    relative = []
    for number, line in enumerate(read_user_text(split_file, "UCF101 split file", MAX_LIST_BYTES).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        video = Path(parts[0])
        if len(parts) > 1:
            if not parts[1].isdecimal():
                raise EdgevidError(f"{split_file}:{number}: expected 'video [class index]', got {line!r}")
            index = int(parts[1])
            if not 1 <= index <= len(classes):
                raise EdgevidError(f"{split_file}: class index {index} is outside classInd.txt (1..{len(classes)})")
            label = classes[index - 1]
        else:
            label = video.parent.name
        relative.append((video, label))
    if not relative:
        raise EdgevidError(f"{split_file}: split file names no videos")
    bases = [root, root / "UCF-101", root / "UCF101", root / "videos", class_ind.parent]
    probes = relative[:5]
    base = next((b for b in bases if any((b / video).is_file() for video, _ in probes)), None)
    if base is None:
        raise EdgevidError(f"{split_file}: videos such as {probes[0][0]} are not under "
                           f"{', '.join(str(b) for b in bases)}")
    return DataSplit("ucf101", split_file, classes, [(base / video, label, None, None) for video, label in relative])


# --------------------------------------------------------------------------------------------------- folders
def _videos_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file() and not p.name.startswith("."))


def _class_folders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))


def _folder_split(folder: Path, layout: str, holdout: str | None = None) -> DataSplit:
    classes = _class_folders(folder)
    if not classes:
        raise EdgevidError(f"{folder}: no class folders (expected {folder}/<class>/<video>)")
    entries = []
    for class_dir in classes:
        videos = _videos_below(class_dir)
        if not videos:
            raise EdgevidError(f"{class_dir}: class folder {class_dir.name!r} has no video files "
                               f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
        if holdout is not None:
            videos = _holdout(videos, class_dir, holdout)
        entries.extend((video, class_dir.name, None, None) for video in videos)
    return DataSplit(layout, folder, [d.name for d in classes], entries)


def _holdout(videos: list[Path], class_dir: Path, split: str) -> list[Path]:
    if split == "all":
        return videos
    ranked = sorted(videos, key=lambda p: (zlib.crc32(p.relative_to(class_dir).as_posix().encode()), p.name))
    count = round(HOLDOUT_FRACTION * len(ranked))
    count = max(count, 1) if len(ranked) > 1 else 0
    held = set(ranked[:count])
    keep = [v for v in videos if (v in held) != (split == "train")]
    return keep


def find_split(root: str | Path, split: str) -> DataSplit:
    """Detect the layout of ``root`` and list the videos and class names of ``split`` (rules: module docstring)."""
    root = Path(root)
    if not root.exists():
        raise EdgevidError(f"{root}: data directory not found")
    if root.is_file():
        if root.suffix.lower() in VIDEO_EXTENSIONS:
            raise EdgevidError(f"--data {root}: is a video file; expected a dataset folder (a folder per class, "
                               "train/val list files or UCF101 splits) or a list file")
        return read_list_file(root, split)
    list_file = _find_list_file(root, split)
    if list_file is not None:
        return read_list_file(list_file, split)
    class_ind = _find_class_ind(root)
    if class_ind is not None:
        return _ucf_split(root, class_ind, split)
    for name in _split_names(split):
        if (root / name).is_dir():
            return _folder_split(root / name, "folder-split")
    lists = _list_files(root)
    if lists:
        raise EdgevidError(f"{root}: no split {split!r}; this dataset's splits are "
                           f"{', '.join(dict.fromkeys(p.stem for p in lists))} (list files "
                           f"{', '.join(str(p.relative_to(root)) for p in lists)})")
    split_dirs = [d.name for d in _class_folders(root) if d.name in ("train", "val", "validate", "validation", "test")]
    if split_dirs:
        raise EdgevidError(f"{root}: has split folders {', '.join(split_dirs)} but none for split {split!r}")
    if split not in ("train", "val", "validate", "validation", "test", "all"):
        raise EdgevidError(f"{root}: folder-per-class data has splits train, val/test (held out) and all, "
                           f"not {split!r}")
    return _folder_split(root, "folder", holdout=split)


def dataset_info(root: str | Path, splits: Sequence[str] = ("train", "val", "test")) -> dict:
    """Layout, classes and videos per class of each split of ``root`` that exists (``edgevid data info``).

    A split that is the same videos as an earlier one (``val`` and ``test`` of folder-per-class data are one
    held-out set) is not counted again: ``same_as`` maps it to that split. ``absent`` gives why each split that
    does not exist is absent.
    """
    found: dict[str, DataSplit] = {}
    same_as: dict[str, str] = {}
    absent: dict[str, str] = {}
    for split in splits:
        try:
            data = find_split(root, split)
        except EdgevidError as exc:
            absent[split] = str(exc)
            continue
        twin = next((name for name, other in found.items() if other.entries == data.entries), None)
        if twin is not None:
            same_as[split] = twin
        else:
            found[split] = data
    if not found:
        raise EdgevidError(next(iter(absent.values())) if absent else f"{root}: no splits asked for")
    classes = next(iter(found.values())).classes
    counts = {name: {} for name in classes}
    for split, data in found.items():
        per_class = {name: 0 for name in data.classes}
        for _, label, _, _ in data.entries:
            per_class[label] = per_class.get(label, 0) + 1
        for name, count in per_class.items():
            counts.setdefault(name, {})[split] = count
    return {
        "root": str(root),
        "classes": classes,
        "splits": {split: {"layout": d.layout, "source": str(d.source), "videos": len(d.entries)}
                   for split, d in found.items()},
        "counts": counts,
        "same_as": same_as,
        "absent": absent,
    }


# --------------------------------------------------------------------------------------------------- dataset
class SkippedVideo(NamedTuple):
    """A video that could not be loaded: its path and why."""

    path: str
    reason: str


class ShortClip(NamedTuple):
    """A clip of a video shorter than the clip (frames looped or repeated by the rule of edgevid.data.sampling)."""

    clip: torch.Tensor
    label: int
    path: str


def distinct_skips(skipped: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each skipped video once (first reason kept), sorted by path: the one count every report of skips uses.

    A video is skipped again when a list names it twice, when it is in more than one split or pass, or when a
    distributed sampler pads a shard with it; counting raw records would count it each time.
    """
    first: dict[str, str] = {}
    for path, reason in skipped:
        first.setdefault(str(path), reason)
    return sorted(first.items())


def short_clip_note(count: int, frames: int, span: int, mode: str) -> str:
    """The one line that says how many videos were shorter than the clip and what was done with them."""
    if mode == "segments":
        rule = f"fewer frames than the {frames} segments; frames repeat (index floor(k * num_frames / {frames}))"
    else:
        rule = (f"shorter than the clip span ({frames} frames = {span} source frames); the clip loops "
                "(indices wrap to the start)")
    return f"{count} video(s) {rule}, as edgevid/data/sampling.py documents"


class ClipBatch(tuple):
    """``(clips, labels, skipped)`` of a loader, plus ``short``: paths of videos shorter than the clip."""

    short: list[str]

    def __new__(cls, clips: torch.Tensor, labels: torch.Tensor, skipped: list[tuple[str, str]],
                short: list[str] | None = None) -> ClipBatch:
        batch = super().__new__(cls, (clips, labels, skipped))
        batch.short = list(short or [])
        return batch

    def __reduce__(self):
        return ClipBatch, (*self, self.short)

    def pin_memory(self) -> ClipBatch:
        clips, labels, skipped = self
        return ClipBatch(clips.pin_memory(), labels.pin_memory(), skipped, self.short)


class ClipDataset(Dataset):
    """Clips of a video split: ``dataset[i]`` -> (float32 clip, label) or ``None`` for an unreadable video.

    Clips are [3, T, S, S], or [V, 3, T, S, S] with V = clips x crops test views (clip-major order).
    :meth:`load` returns a :class:`SkippedVideo` (path, reason) instead of ``None``; :func:`build_loader` uses it.
    ``cache_gb`` > 0 keeps decoded videos in memory up to that size (:class:`~edgevid.data.decode.VideoCache`).
    ``clip_seconds`` (dense sampling) replaces ``sampling_stride`` by each video's stride for that span at its own
    fps (:func:`~edgevid.data.sampling.seconds_stride`), so videos at different frame rates give clips of equal time;
    a video shorter than ``clip_seconds`` gives a clip spread over all of it.
    """

    def __init__(self, samples: list[VideoSample], classes: list[str], *, layout: str, source: Path, frames: int,
                 size: int, sampling_stride: float, mean: Sequence[float], std: Sequence[float], train: bool,
                 augment: AugmentConfig | None = None, sampling: str = "dense", views: tuple[int, int] = (1, 1),
                 strict: bool = False, cache_gb: float = 0.0, clip_seconds: float | None = None,
                 fit: str = "crop") -> None:
        check_mode(sampling)
        check_fit(fit)
        if cache_gb < 0:
            raise EdgevidError(f"cache_gb must be >= 0, got {cache_gb}")
        if frames < 1 or size < 1 or sampling_stride <= 0:
            raise EdgevidError(f"frames, size and sampling_stride must be positive, got {frames}, {size}, "
                               f"{sampling_stride}")
        if clip_seconds is not None and clip_seconds <= 0:
            raise EdgevidError(f"clip_seconds must be positive, got {clip_seconds}")
        views = (int(views[0]), int(views[1]))
        if min(views) < 1:
            raise EdgevidError(f"views must be positive (clips, crops), got {views}")
        if train and views != (1, 1):
            raise EdgevidError(f"test views {views[0]}x{views[1]} are for evaluation; training uses one clip")
        if fit == "squash" and views[1] != 1:
            raise EdgevidError(f"test views {views[0]}x{views[1]}: a model that squashes whole frames (fit squash) "
                               f"takes one spatial crop, e.g. {views[0]}x1")
        self.samples = samples
        self.classes = list(classes)
        self.layout = layout
        self.source = source
        self.frames = frames
        self.size = size
        self.sampling_stride = sampling_stride
        self.clip_seconds = clip_seconds
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.train = train
        self.sampling = sampling
        self.views = views
        self.strict = strict
        self.augment = augment if augment is not None else AugmentConfig()
        self.fit = fit
        self._augment = ClipAugment(size, self.mean, self.std, self.augment, self.classes, fit) if train else None
        self._videos = VideoCache(int(cache_gb * 2**30))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        counts = np.bincount([s.label for s in self.samples], minlength=len(self.classes))
        return [int(c) for c in counts]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        item = self.load(index)
        return None if isinstance(item, SkippedVideo) else item

    def load(self, index: int, seed: Sequence[int] | None = None) -> tuple[torch.Tensor, int] | SkippedVideo:
        """One clip and label; an unreadable video gives :class:`SkippedVideo` (or raises when ``strict``).

        ``seed`` (non-negative ints) fixes the clip's random sampling and augmentation; without it they are drawn
        from torch's global generator.
        """
        item = self.load_reporting(index, seed)
        return item[:2] if isinstance(item, ShortClip) else item

    def load_reporting(self, index: int, seed: Sequence[int] | None = None
                       ) -> tuple[torch.Tensor, int] | ShortClip | SkippedVideo:
        """:meth:`load`, with a clip of a video shorter than the clip given as :class:`ShortClip`."""
        sample = self.samples[index]
        try:
            with self._videos.open(sample.path) as video:
                first, count = self._segment(sample, video.info.fps, video.info.num_frames)
                stride = video_stride(self.sampling_stride, self.frames, video.info.fps, self.clip_seconds, count)
                if self.train:
                    rng = np.random.default_rng(seed if seed is not None
                                                else int(torch.randint(0, 2**62, (1,)).item()))
                    idx = train_indices(count, self.frames, stride, self.sampling, rng,
                                        self.augment.stride_jitter)
                    item = self._augment(video.read(idx + first), sample.label, rng)
                else:
                    clips = view_indices(count, self.frames, stride, self.sampling, self.views[0])
                    item = self._eval_views(video.read(np.concatenate(clips) + first)), sample.label
        except VideoDecodeError as exc:
            if self.strict:
                raise
            return SkippedVideo(str(sample.path), str(exc).removeprefix(f"{sample.path}: "))
        if count < self.clip_frames(stride):
            return ShortClip(item[0], item[1], str(sample.path))
        return item

    def clip_frames(self, stride: float | None = None) -> int:
        """Source frames one clip needs: its span (dense) or one frame per segment (segments)."""
        if self.sampling == "segments":
            return self.frames
        return clip_span(self.frames, self.sampling_stride if stride is None else stride)

    def short_note(self, count: int) -> str:
        """:func:`short_clip_note` for this dataset's clips."""
        return short_clip_note(count, self.frames, self.clip_frames(), self.sampling)

    def _segment(self, sample: VideoSample, fps: float, num_frames: int) -> tuple[int, int]:
        """First frame and frame count of the sample's [start, end] segment (whole video when unset)."""
        first = min(round((sample.start or 0.0) * fps), num_frames - 1)
        last = num_frames if sample.end is None else min(round(sample.end * fps), num_frames)
        return first, max(last - first, 1)

    def _eval_views(self, frames: np.ndarray) -> torch.Tensor:
        boxes = crop_boxes(frames.shape[1], frames.shape[2], self.views[1], self.fit)
        views = [normalize(resize_crop(clip, box, self.size), self.mean, self.std)
                 for clip in np.split(frames, self.views[0]) for box in boxes]
        return views[0] if len(views) == 1 else torch.stack(views)

    def __repr__(self) -> str:
        span = f"clip {self.clip_seconds:g} s" if self.clip_seconds is not None else f"stride {self.sampling_stride}"
        return (f"ClipDataset({self.layout}: {self.source}, {len(self)} videos, {self.num_classes} classes, "
                f"{self.frames}x{self.size} {span}, {'train' if self.train else 'eval'})")


def build_dataset(root: str | Path, split: str, *, frames: int, size: int, sampling_stride: float,
                  mean: Sequence[float], std: Sequence[float], train: bool, augment: AugmentConfig | None = None,
                  sampling: str = "dense", views: tuple[int, int] = (1, 1), strict: bool = False,
                  classes: Sequence[str] | None = None, cache_gb: float = 0.0,
                  clip_seconds: float | None = None, fit: str = "crop") -> ClipDataset:
    """The clips of ``split`` under ``root`` (any supported layout); ``classes`` forces a trained model's classes.

    ``clip_seconds`` samples dense clips by duration instead of by ``sampling_stride`` frames (see ClipDataset);
    ``fit`` says how a frame becomes the square input (crop or squash, :mod:`edgevid.data.sampling`)."""
    found = find_split(root, split)
    class_names = list(classes) if classes is not None else found.classes
    if len(set(class_names)) != len(class_names):
        raise EdgevidError("class names repeat in the given class list")
    return ClipDataset(found.samples(class_names), class_names, layout=found.layout, source=found.source,
                       frames=frames, size=size, sampling_stride=sampling_stride, mean=mean, std=std, train=train,
                       augment=augment, sampling=sampling, views=views, strict=strict, cache_gb=cache_gb,
                       clip_seconds=clip_seconds, fit=fit)


# -------------------------------------------------------------------------------------------- class pairs
PAIR_KINDS = {"mirror": "mirror-image", "reverse": "time-reversed"}
_MIRROR_WORDS = (("left", "right"), ("clockwise", "anticlockwise"), ("clockwise", "counterclockwise"),
                 ("cw", "ccw"))


def pair_file(kind: str) -> str:
    """The file beside a dataset that declares its ``kind`` pairs: ``mirror_classes.txt``, ``reverse_classes.txt``."""
    return f"{kind}_classes.txt"


def dataset_class_pairs(root: str | Path, kind: str) -> list[tuple[str, str]] | None:
    """Class pairs that a dataset declares, or None: ``mirror`` pairs swap labels under a horizontal flip
    (move_left / move_right), ``reverse`` pairs are each other played backwards (zoom_in / zoom_out, open / close).

    Read from ``mirror_classes.txt`` / ``reverse_classes.txt`` beside the data (one pair a line: two names separated
    by a comma, a tab or `` / ``; ``#`` comments) or from ``synth.json`` (``edgevid data synth`` writes its pairs).
    """
    root = Path(root)
    folder = root.parent if root.is_file() else root
    text_file, synth_file = folder / pair_file(kind), folder / "synth.json"
    what = PAIR_KINDS[kind]
    if text_file.is_file():
        pairs = []
        for number, line in enumerate(read_user_text(text_file, f"{what} class list", MAX_LABEL_BYTES).splitlines(),
                                      1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [p.strip() for p in re.split(r",|\t| / ", line) if p.strip()]
            if len(parts) != 2:
                raise EdgevidError(f"{text_file}:{number}: expected two class names (a {what} pair), got {line!r}")
            pairs.append((parts[0], parts[1]))
        return pairs
    if synth_file.is_file():
        key = f"{kind}_classes"
        try:
            meta = json.loads(read_user_text(synth_file, "synth metadata", MAX_LABEL_BYTES))
            return [(str(a), str(b)) for a, b in meta[key]] if key in meta else None
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError, RecursionError):
            raise EdgevidError(f"{synth_file}: not valid synth metadata (a JSON object whose {key} are pairs of "
                               "class names)") from None
    return None


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def suggest_mirror_classes(classes: Sequence[str]) -> list[tuple[str, str]]:
    """Class pairs whose names differ only by left/right, clockwise/anticlockwise (counterclockwise) or cw/ccw:
    likely mirror images of each other (a suggestion to print; never applied by itself)."""
    index = {tuple(_words(c)): c for c in classes}
    pairs = []
    for name in classes:
        words = _words(name)
        for a, b in _MIRROR_WORDS:
            if a in words:
                other = index.get(tuple(b if w == a else w for w in words))
                if other is not None and other != name and (name, other) not in pairs:
                    pairs.append((name, other))
    return pairs


# --------------------------------------------------------------------------------------------------- loader
class ClipSampler(DistributedSampler):
    """Order of a loader's clips and the seed of each clip's augmentation, both functions of (seed, epoch, index).

    A :class:`DistributedSampler` (one replica unless distributed) that yields ``(index, epoch)``: the dataset seeds
    the clip's sampling and augmentation with ``(seed, epoch, index)``, so they do not depend on the number of
    workers and a resumed run that calls ``set_epoch(epoch)`` sees the same clips as an uninterrupted one. Each
    pass advances the epoch by one, so callers that never call ``set_epoch`` still get fresh epochs.
    """

    def __init__(self, dataset: Dataset, *, shuffle: bool, seed: int, distributed: bool, drop_last: bool) -> None:
        replicas = {} if distributed else {"num_replicas": 1, "rank": 0}
        super().__init__(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, **replicas)

    def __iter__(self):
        indices = list(super().__iter__())
        epoch = self.epoch
        self.epoch += 1
        return iter([(index, epoch) for index in indices])


class _ReportingView(Dataset):
    """The dataset as the loader sees it: items are clips or :class:`SkippedVideo` records."""

    def __init__(self, dataset: ClipDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int] | ShortClip | SkippedVideo:
        index, epoch = item
        return self.dataset.load_reporting(index, seed=(self.seed, epoch, index))

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def collate_clips(items: list) -> ClipBatch:
    """Stack loaded clips; skipped videos leave the batch and are listed as (path, reason).

    A batch whose videos were all skipped yields an empty clips tensor and labels of length 0. Paths of videos
    shorter than the clip (:class:`ShortClip`) are the batch's ``short``.
    """
    skipped = [(item.path, item.reason) for item in items if isinstance(item, SkippedVideo)]
    short = [item.path for item in items if isinstance(item, ShortClip)]
    loaded = [item[:2] for item in items if not isinstance(item, SkippedVideo)]
    if not loaded:
        return ClipBatch(torch.empty(0), torch.empty(0, dtype=torch.int64), skipped, short)
    clips = torch.stack([clip for clip, _ in loaded])
    labels = torch.tensor([label for _, label in loaded], dtype=torch.int64)
    return ClipBatch(clips, labels, skipped, short)


def build_loader(dataset: ClipDataset, batch_size: int, *, shuffle: bool, workers: int = 2, seed: int = 0,
                 distributed: bool = False, drop_last: bool = False) -> DataLoader:
    """A DataLoader yielding (clips [B, ...] float32, labels [B] int64, skipped [(path, reason)]) as a
    :class:`ClipBatch` (``batch.short``: videos shorter than the clip).

    ``loader.sampler`` is a :class:`ClipSampler` (a :class:`DistributedSampler`, sharding across processes when
    ``distributed``): call ``loader.sampler.set_epoch(epoch)`` before each epoch for resumable runs. Order and
    augmentation depend only on (seed, epoch), not on ``workers``.
    """
    if batch_size < 1:
        raise EdgevidError(f"batch size must be >= 1, got {batch_size}")
    if workers < 0:
        raise EdgevidError(f"workers must be >= 0, got {workers}")
    if seed < 0:
        raise EdgevidError(f"loader seed must be >= 0, got {seed}")
    view = _ReportingView(dataset, seed)
    if workers > 0:
        opencv_single_thread()
    sampler = ClipSampler(view, shuffle=shuffle, seed=seed, distributed=distributed, drop_last=drop_last)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(view, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_clips,
                      generator=generator, drop_last=drop_last,
                      persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
