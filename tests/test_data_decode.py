"""Decoding real H.264 files written here: frame counts, seeking, looping, variable frame rate, fallback, corrupt."""

import fractions

import numpy as np
import pytest

from edgevid.data import VideoDecodeError, VideoReader, probe, read_clip
from edgevid.data import decode as decode_module
from edgevid.data.decode import DecodedVideo, VideoCache
from edgevid.data.synth import write_video

BITS = 10
BAR = 8


def _bars(index: int, height: int = 16) -> np.ndarray:
    """A frame whose vertical bars spell ``index`` in binary (robust to H.264 compression)."""
    frame = np.zeros((height, BITS * BAR, 3), dtype=np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            frame[:, bit * BAR:(bit + 1) * BAR] = 255
    return frame


def _read_bars(frames: np.ndarray) -> list[int]:
    centres = frames[:, :, BAR // 2::BAR].mean(axis=(1, 3))  # [T, BITS]
    return [int(sum(1 << bit for bit in range(BITS) if row[bit] > 127)) for row in centres]


def _pattern_video(path, count: int, **kwargs):
    return write_video(path, (_bars(i) for i in range(count)), kwargs.pop("fps", 25), **kwargs)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return _pattern_video(tmp_path_factory.mktemp("decode") / "long.mp4", 300, gop=10)


def test_probe_and_exact_frames_in_requested_order(long_video):
    info = probe(long_video)
    assert (info.num_frames, info.width, info.height) == (300, BITS * BAR, 16)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(12.0)
    wanted = [150, 3, 299, 3, 0, 61]
    frames = read_clip(long_video, wanted)
    assert frames.shape == (6, 16, BITS * BAR, 3) and frames.dtype == np.uint8
    assert _read_bars(frames) == wanted


def test_every_frame_decodes_in_place(long_video):
    with VideoReader(long_video) as video:
        assert _read_bars(video.read(range(300))) == list(range(300))


def test_seeking_decodes_only_the_neighbourhood(long_video):
    with VideoReader(long_video) as video:
        assert _read_bars(video.read([280, 291])) == [280, 291]
        assert video.decoded_frames < 40  # a keyframe every 10 frames: one GOP or so, not 292 frames
    with VideoReader(long_video) as video:
        wanted = [5, 100, 200, 290]
        assert _read_bars(video.read(wanted)) == wanted
        assert video.decoded_frames < 100


def test_indices_past_the_end_loop(tmp_path):
    path = _pattern_video(tmp_path / "short.mp4", 10)
    assert _read_bars(read_clip(path, [8, 9, 10, 11, 25])) == [8, 9, 0, 1, 5]
    with pytest.raises(ValueError, match=">= 0"):
        read_clip(path, [-1])


def test_variable_frame_rate_samples_by_time(tmp_path):
    rng = np.random.default_rng(0)
    gaps = rng.choice([20, 40, 80], size=40)  # milliseconds between frames
    pts = np.concatenate([[0], np.cumsum(gaps[:-1])])
    path = _pattern_video(tmp_path / "vfr.mp4", 40, pts=pts.tolist(), time_base=fractions.Fraction(1, 1000))
    info = probe(path)
    assert info.num_frames == 40
    fps = info.fps
    times = np.arange(40) / fps * 1000  # the time each index asks for, in ms
    expected = [int(np.argmin(np.abs(pts - t))) for t in times]
    got = _read_bars(read_clip(path, range(40)))
    assert got == expected
    assert got != list(range(40))  # the irregular timing actually mattered


def test_opencv_fallback_reads_the_same_frames(long_video, monkeypatch):
    def refuse(self, path, threads):
        raise ValueError("simulated PyAV failure")

    monkeypatch.setattr(decode_module._PyAVSource, "__init__", refuse)
    with VideoReader(long_video) as video:
        assert video.backend == "opencv"
        assert video.info.num_frames == 300
        wanted = [0, 3, 150, 149, 299]
        assert _read_bars(video.read(wanted)) == wanted


def test_corrupt_and_missing_files_name_the_path(tmp_path, long_video):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(long_video.read_bytes()[: long_video.stat().st_size // 2])
    for bad in (garbage, truncated, tmp_path / "missing.mp4"):
        with pytest.raises(VideoDecodeError, match=bad.name):
            read_clip(bad, [0])


def test_video_cache_decodes_once_and_reads_like_the_file(tmp_path):
    path = _pattern_video(tmp_path / "cached.mp4", 30)
    vfr = _pattern_video(tmp_path / "vfr.mp4", 20, pts=[i * i for i in range(20)],
                         time_base=fractions.Fraction(1, 100))
    frame_bytes = 16 * BITS * BAR * 3
    cache = VideoCache(max_bytes=45 * frame_bytes)
    wanted = [29, 3, 30, 41, 0]
    with cache.open(path) as first:
        assert isinstance(first, DecodedVideo)
        assert _read_bars(first.read(wanted)) == [29, 3, 0, 11, 0]
    with cache.open(path) as again:
        assert again is first
    assert cache.nbytes == 30 * frame_bytes
    with cache.open(vfr) as reader:  # 20 more frames would pass the 45-frame budget
        assert isinstance(reader, VideoReader)
        assert _read_bars(reader.read(range(20))) == _read_bars(read_clip(vfr, range(20)))
    assert cache.nbytes == 30 * frame_bytes
    with VideoCache(max_bytes=100 * frame_bytes).open(vfr) as decoded:  # time-based indices survive caching
        assert isinstance(decoded, DecodedVideo)
        assert _read_bars(decoded.read(range(20))) == _read_bars(read_clip(vfr, range(20)))
    with VideoCache(max_bytes=0).open(path) as reader:
        assert isinstance(reader, VideoReader)
