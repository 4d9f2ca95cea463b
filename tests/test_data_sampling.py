"""Temporal and spatial sampling index maths."""

import numpy as np
import pytest

from edgevid.data.sampling import (
    clip_span,
    clip_starts,
    crop_boxes,
    dense_indices,
    dense_start,
    jittered_stride,
    seconds_stride,
    segment_indices,
    squash_box,
    train_indices,
    video_stride,
    view_indices,
)


def test_dense_eval_clip_is_centred():
    assert clip_span(4, 12) == 37
    start = dense_start(100, 37)
    assert start == 31
    assert dense_indices(100, 4, 12, start).tolist() == [31, 43, 55, 67]


def test_dense_train_start_covers_every_valid_start():
    rng = np.random.default_rng(0)
    starts = {dense_start(100, 37, rng) for _ in range(2000)}
    assert starts == set(range(64))


def test_short_video_loops_from_the_start():
    assert dense_indices(10, 4, 5, dense_start(10, clip_span(4, 5))).tolist() == [0, 5, 0, 5]
    assert dense_indices(6, 8, 1, 0).tolist() == [0, 1, 2, 3, 4, 5, 0, 1]


def test_stride_jitter_stays_in_range_and_varies():
    rng = np.random.default_rng(0)
    strides = [jittered_stride(10, 0.2, rng) for _ in range(500)]
    assert min(strides) >= 8 and max(strides) <= 12
    assert max(strides) - min(strides) > 3
    assert jittered_stride(1, 0.5, rng) >= 1.0
    idx = train_indices(1000, 8, 10, "dense", rng, stride_jitter=0.2)
    steps = np.diff(idx)
    assert np.all(steps >= 8) and np.all(steps <= 12)
    with pytest.raises(ValueError):
        jittered_stride(4, 1.5, rng)


def test_segments_eval_centres_and_train_within_segments():
    assert segment_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    rng = np.random.default_rng(1)
    for _ in range(200):
        idx = segment_indices(80, 8, rng)
        assert np.all(idx // 10 == np.arange(8))
    short = segment_indices(3, 8)
    assert short.min() >= 0 and short.max() <= 2 and np.all(np.diff(short) >= 0)


def test_test_views_spread_clips_uniformly():
    assert clip_starts(100, 37, 3) == [0, 32, 63]
    assert clip_starts(100, 37, 1) == [31]
    assert clip_starts(20, 37, 3) == [0, 0, 0]
    views = view_indices(100, 4, 12, "dense", 3)
    assert [v.tolist() for v in views] == [[0, 12, 24, 36], [32, 44, 56, 68], [63, 75, 87, 99]]
    halves = view_indices(80, 4, 1, "segments", 2)
    assert [v.tolist() for v in halves] == [[5, 25, 45, 65], [15, 35, 55, 75]]
    with pytest.raises(ValueError, match="sampling"):
        view_indices(80, 4, 1, "random")


def test_crop_boxes_along_the_long_side():
    assert crop_boxes(120, 160, 3) == [(0, 0, 120, 120), (0, 20, 120, 120), (0, 40, 120, 120)]
    assert crop_boxes(160, 120, 3) == [(0, 0, 120, 120), (20, 0, 120, 120), (40, 0, 120, 120)]
    assert crop_boxes(120, 160, 1) == [(0, 20, 120, 120)]
    assert crop_boxes(64, 64, 3) == [(0, 0, 64, 64)] * 3


def test_squash_fit_takes_the_whole_frame_and_maps_square_boxes_onto_it():
    assert crop_boxes(108, 192, 1, "squash") == [(0, 0, 108, 192)]
    with pytest.raises(ValueError, match="one crop, not 3"):
        crop_boxes(108, 192, 3, "squash")
    assert squash_box((0, 0, 108, 108), 108, 108, 192) == (0, 0, 108, 192)
    assert squash_box((27, 54, 54, 54), 108, 108, 192) == (27, 96, 54, 96)
    y, x, h, w = squash_box((107, 107, 5, 5), 108, 108, 192)  # a box at the far corner stays inside the frame
    assert y + h <= 108 and x + w <= 192 and h >= 1 and w >= 1


def test_clip_seconds_equals_the_frame_stride_it_describes():
    # PyTorchVideo's convention: clip_seconds = frames * stride / fps; 1.28 s of 25 fps video = 4 frames every 8th
    stride = seconds_stride(1.28, 4, 25.0)
    assert stride == pytest.approx(8.0)
    for num_frames in (20, 25, 48, 200):
        assert [v.tolist() for v in view_indices(num_frames, 4, stride, "dense", 3)] == \
            [v.tolist() for v in view_indices(num_frames, 4, 8, "dense", 3)]
        rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
        for _ in range(20):
            assert train_indices(num_frames, 4, stride, "dense", rng_a, 0.15).tolist() == \
                train_indices(num_frames, 4, 8, "dense", rng_b, 0.15).tolist()
    assert video_stride(8, 4, 60.0) == 8  # no clip_seconds: the stride stays in frames
    assert video_stride(8, 4, 60.0, num_frames=10) == 8  # ... and a frame stride longer than the video loops
    assert video_stride(8, 4, 25.0, 1.28, num_frames=100) == pytest.approx(8.0)
    assert video_stride(8, 4, 25.0, 1.28, num_frames=19) == pytest.approx(6.0)  # 1.28 s > 19 frames: fit to 19
    assert video_stride(8, 4, 25.0, 1.28, num_frames=3) == 1.0
    with pytest.raises(ValueError, match="clip_seconds"):
        seconds_stride(0.0, 4, 25.0)


@pytest.mark.parametrize("fps", [15.0, 25.0, 30.0, 60.0])
def test_clip_seconds_span_the_same_time_at_any_fps(fps):
    clip_seconds, frames = 1.28, 4
    num_frames = 10 * int(fps)
    indices = view_indices(num_frames, frames, video_stride(2, frames, fps, clip_seconds), "dense")[0]
    times = (indices - indices[0]) / fps
    expected = np.arange(frames) * clip_seconds / frames  # 0, 0.32, 0.64, 0.96 s
    assert np.abs(times - expected).max() <= 0.5 / fps + 1e-9  # rounding to whole frames only
    centre = (indices[0] + indices[-1]) / 2 / fps
    assert centre == pytest.approx((num_frames - 1) / 2 / fps, abs=1.0 / fps)  # centred in the 10 s video
