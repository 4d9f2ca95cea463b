"""Reading frames from video files: PyAV with keyframe seeking, OpenCV as the fallback.

Frame indices are times. Index ``i`` means the frame shown at ``start + i / fps`` where ``fps`` is the stream's
average frame rate (frames / duration), and "shown" means the frame whose presentation timestamp (pts) is
nearest to that time (ties go to the earlier frame). For constant-frame-rate video this is exactly the i-th
frame; for variable-frame-rate video it samples the video uniformly in time, so a clip at stride ``s`` always
spans the same duration.

Reading seeks to the keyframe before a wanted frame and decodes forward from there; it seeks again only when
the next wanted frame lies more than :data:`SEEK_GAP_S` seconds ahead and a keyframe may lie in between, so
taking 8 frames from a long video decodes a few GOPs rather than the whole file. Only the wanted frames are
converted to RGB.

Indices at or past the end wrap around (``i % num_frames``): short videos loop. When PyAV cannot open or
decode a file, OpenCV's ``VideoCapture`` tries it (indices are then decode-order frame numbers). If both
fail, :class:`VideoDecodeError` names the file and both reasons.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging
import cv2
import numpy as np

from edgevid.errors import EdgevidError
from edgevid.utils.logs import quiet_libraries

quiet_libraries()

SEEK_GAP_S = 1.0
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv", ".ts"}
)


class VideoDecodeError(EdgevidError):
    """A video file that cannot be opened or decoded (message starts with its path)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a sampler needs to know about a video."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _as_index_array(indices: Sequence[int], num_frames: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("read() needs at least one frame index")
    if idx.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(idx.min())}")
    return idx % num_frames


class _PyAVSource:
    """One open PyAV container and its first video stream."""

    name = "pyav"

    def __init__(self, path: Path, threads: int) -> None:
        self.container = av.open(str(path), metadata_errors="ignore")
        try:
            if not self.container.streams.video:
                raise ValueError("no video stream")
            self.stream = stream = self.container.streams.video[0]
            if threads > 1:
                stream.codec_context.thread_count = threads
                stream.thread_type = "AUTO"
            self.time_base = float(stream.time_base) if stream.time_base else 1.0 / av.time_base
            self.start_pts = stream.start_time or 0
            duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                        else (self.container.duration or 0) / av.time_base)
            count = stream.frames
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = count / duration if count > 0 and duration > 0 else float(rate or 0)
            if count <= 0:
                count = round(duration * fps)
            if count <= 0 or fps <= 0:
                raise ValueError("cannot tell the frame count or frame rate")
            width, height = stream.codec_context.width, stream.codec_context.height
            if not width or not height:
                raise ValueError("video stream has no frame size")
            self.info = VideoInfo(int(count), float(fps), int(width), int(height), float(count / fps))
        except BaseException:
            self.container.close()
            raise
        self.frame_pts = 1.0 / (fps * self.time_base)
        self.decoded_frames = 0

    def close(self) -> None:
        self.container.close()

    def read(self, idx: np.ndarray) -> np.ndarray:
        wanted = np.unique(idx)
        targets = [(int(i), self.start_pts + i * self.frame_pts) for i in wanted]
        chosen = self._decode_nearest(targets)
        rgb = {i: self._to_rgb(f) for i, f in chosen.items()}
        return np.stack([rgb[int(i)] for i in idx])

    def _to_rgb(self, frame) -> np.ndarray:
        """RGB array of the stream's size; OpenCV converts plain yuv420p (several times faster than swscale)."""
        width, height = self.info.width, self.info.height
        if frame.format.name == "yuv420p" and (frame.width, frame.height) == (width, height) and width % 2 == 0 \
                and height % 2 == 0:
            return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
        if (frame.width, frame.height) == (width, height):
            return frame.to_ndarray(format="rgb24")
        return frame.to_ndarray(format="rgb24", width=width, height=height)

    def _decode_nearest(self, targets: list[tuple[int, float]]) -> dict:
        """Map each (index, target pts) to the decoded frame with the nearest pts, seeking between far targets."""
        chosen: dict = {}
        pending = list(reversed(targets))
        keyless_until = -np.inf  # a seek showed no keyframe lies in (landing, keyless_until]
        position = -np.inf
        seek_gap = SEEK_GAP_S / self.time_base
        need_seek = pending[-1][1] - self.start_pts > seek_gap
        while pending:
            seeked = need_seek
            if seeked:
                self.container.seek(int(pending[-1][1]), stream=self.stream, backward=True)
            need_seek = False
            prev, prev_pts = None, None
            for frame in self.container.decode(self.stream):
                self.decoded_frames += 1
                pts = frame.pts if frame.pts is not None else (prev_pts + self.frame_pts if prev_pts is not None
                                                               else self.start_pts)
                if seeked and prev is None and pts <= position:
                    keyless_until = max(keyless_until, pending[-1][1])
                while pending and pending[-1][1] <= pts:
                    index, target = pending.pop()
                    near_prev = prev is not None and target - prev_pts <= pts - target
                    chosen[index] = prev if near_prev else frame
                prev, prev_pts, position = frame, pts, pts
                if not pending:
                    break
                if pending[-1][1] - pts > seek_gap and pending[-1][1] > keyless_until:
                    need_seek = True
                    break
            else:
                self._finish_at_end(pending, prev, prev_pts, chosen)
        return chosen

    def _finish_at_end(self, pending: list, last, last_pts: float | None, chosen: dict) -> None:
        """At end of stream the remaining targets take the last frame, unless the stream ended early."""
        if last is None:
            raise ValueError("no frame could be decoded")
        if pending[-1][1] - last_pts > 1.5 * self.frame_pts:
            raise ValueError(
                f"stream ends at frame ~{round((last_pts - self.start_pts) / self.frame_pts)} "
                f"of {self.info.num_frames} (truncated?)"
            )
        for index, _ in pending:
            chosen[index] = last
        pending.clear()


class _OpenCVSource:
    """cv2.VideoCapture reader; indices count frames in decode order."""

    name = "opencv"

    def __init__(self, path: Path, threads: int) -> None:
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise ValueError("cv2.VideoCapture cannot open it")
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self.capture.get(cv2.CAP_PROP_FPS))
        width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if count <= 0 or fps <= 0 or width <= 0 or height <= 0:
            self.capture.release()
            raise ValueError("cv2.VideoCapture reports no frames")
        self.info = VideoInfo(count, fps, width, height, count / fps)
        self.position = 0

    def close(self) -> None:
        self.capture.release()

    def read(self, idx: np.ndarray) -> np.ndarray:
        seek_gap = max(int(SEEK_GAP_S * self.info.fps), 1)
        frames: dict[int, np.ndarray] = {}
        for index in np.unique(idx).tolist():
            if index < self.position or index - self.position > seek_gap:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                self.position = index
            while self.position < index:
                if not self.capture.grab():
                    raise ValueError(f"cannot grab frame {self.position} of {self.info.num_frames}")
                self.position += 1
            ok, bgr = self.capture.read()
            if not ok:
                raise ValueError(f"cannot read frame {index} of {self.info.num_frames}")
            self.position += 1
            frames[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return np.stack([frames[int(i)] for i in idx])


_SOURCES = (_PyAVSource, _OpenCVSource)


class VideoReader:
    """An open video: ``info`` and ``read(indices)``; PyAV first, OpenCV when PyAV fails. Use as a context manager.

    ``threads`` > 1 lets FFmpeg decode with frame/slice threads (worth it for large frames; data-loader workers
    decoding small videos are faster single-threaded).
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads
        if self.path.is_dir():
            raise VideoDecodeError(f"{self.path}: is a folder, expected a video file")
        if not self.path.is_file():
            raise VideoDecodeError(f"{self.path}: no such video file")
        self._errors: list[str] = []
        self._source = self._open(_SOURCES)

    def _open(self, sources: Sequence[type]) -> _PyAVSource | _OpenCVSource:
        for source in sources:
            try:
                return source(self.path, self.threads)
            except Exception as exc:  # PyAV and OpenCV raise many types for bad files
                self._errors.append(f"{source.name}: {_reason(exc)}")
        raise VideoDecodeError(f"{self.path}: unreadable video ({'; '.join(self._errors)})")

    @property
    def info(self) -> VideoInfo:
        return self._source.info

    @property
    def backend(self) -> str:
        return self._source.name

    @property
    def decoded_frames(self) -> int:
        """Frames PyAV has decoded so far (0 for OpenCV): shows how much seeking saved."""
        return getattr(self._source, "decoded_frames", 0)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 RGB [len(indices), H, W, 3]."""
        idx = _as_index_array(indices, self.info.num_frames)
        while True:
            try:
                return self._source.read(idx)
            except Exception as exc:
                self._errors.append(f"{self._source.name}: {_reason(exc)}")
                later = _SOURCES[_SOURCES.index(type(self._source)) + 1:]
                self._source.close()
                if not later:
                    raise VideoDecodeError(f"{self.path}: unreadable video ({'; '.join(self._errors)})") from None
                self._source = self._open(later)
                idx = _as_index_array(idx, self.info.num_frames)

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DecodedVideo:
    """A whole video decoded into memory; :meth:`read` gives what :meth:`VideoReader.read` gives for the file."""

    def __init__(self, info: VideoInfo, frames: np.ndarray) -> None:
        self.info = info
        self.frames = frames

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self.frames[_as_index_array(indices, self.info.num_frames)]


class VideoCache:
    """Decoded videos kept in memory up to ``max_bytes`` (first come, first kept; the others decode per read).

    Decoding is most of a data loader's work on small videos; a training set that fits in memory is decoded once.
    Each process holds its own cache, so N loader workers may hold N copies. ``max_bytes=0`` keeps nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._videos: dict[str, DecodedVideo] = {}

    @contextmanager
    def open(self, path: str | Path) -> Iterator[VideoReader | DecodedVideo]:
        """The cached video, else a :class:`VideoReader` (decoding the whole video first when it fits)."""
        key = str(path)
        if key in self._videos:
            yield self._videos[key]
            return
        with VideoReader(path) as reader:
            info = reader.info
            if self.nbytes + info.num_frames * info.height * info.width * 3 > self.max_bytes:
                yield reader
                return
            video = DecodedVideo(info, reader.read(np.arange(info.num_frames)))
        self._videos[key] = video
        self.nbytes += video.frames.nbytes
        yield video


def read_clip(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Decode the frames at ``indices`` of ``path`` as uint8 RGB [len(indices), H, W, 3] (see module notes)."""
    with VideoReader(path) as video:
        return video.read(indices)


def probe(path: str | Path) -> VideoInfo:
    """Frame count, average fps, frame size and duration of ``path`` (from the container; nothing decoded)."""
    with VideoReader(path) as video:
        return video.info
