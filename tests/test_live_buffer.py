import numpy as np
import pytest

from edgevid.runtime.buffer import (
    EveryK,
    FrameRing,
    inference_frames,
    nearest_available,
    source_stride,
    window_span,
    window_targets,
)


@pytest.mark.parametrize(("stride", "train_fps", "source_fps", "expected"), [
    (4, 30, 30, 4),    # same rate
    (4, 30, 15, 2),    # half-rate source: half the stride
    (4, 30, 60, 8),    # double-rate source
    (12, 30, 25, 10),  # X3D-XS stride 12 on a 25 fps camera
    (1, 30, 10, 1),    # never below 1
    (5, 25, 30, 6),    # rounding 6.0
    (3, 30, 25, 2),    # rounding 2.5 -> 2 (banker's) stays >= 1
])
def test_source_stride_maps_training_fps_to_source_fps(stride, train_fps, source_fps, expected):
    assert source_stride(stride, train_fps, source_fps) == expected


def test_source_stride_rejects_bad_values():
    with pytest.raises(ValueError):
        source_stride(0, 30, 30)
    with pytest.raises(ValueError):
        source_stride(2, 30, 0)


def test_window_targets_and_span():
    assert window_span(4, 3) == 10
    assert window_targets(9, 4, 3) == [0, 3, 6, 9]
    assert window_targets(20, 1, 5) == [20]


def test_inference_frames_every_k():
    assert inference_frames(20, frames=4, stride=2, every=3) == [6, 9, 12, 15, 18]
    assert inference_frames(5, frames=4, stride=2, every=1) == []  # never a full window
    assert inference_frames(8, frames=2, stride=1, every=1) == list(range(1, 8))


def _simulate(indices, frames, stride, every, size=2):
    ring = FrameRing(frames, stride, (3, size, size))
    schedule = EveryK(every)
    runs = []
    for index in indices:
        ring.push(index, index / 30.0, np.full((3, 1, size, size), index, np.float32))
        if schedule.due(ring.ready):
            clip, used = ring.window()
            assert clip.shape == (1, 3, frames, size, size)
            np.testing.assert_array_equal(clip[0, 0, :, 0, 0], np.asarray(used, np.float32))
            runs.append((index, used))
    return ring, runs


@pytest.mark.parametrize(("frames", "stride", "every"), [(4, 2, 3), (3, 5, 1), (8, 1, 4), (1, 3, 2)])
def test_ring_windows_match_index_maths_when_every_frame_is_kept(frames, stride, every):
    ring, runs = _simulate(range(60), frames, stride, every)
    assert [i for i, _ in runs] == inference_frames(60, frames, stride, every)
    for newest, used in runs:
        assert used == window_targets(newest, frames, stride)
    assert ring.slots.shape[1] == window_span(frames, stride)  # preallocated, never grows


def test_ring_with_dropped_frames_uses_nearest_earlier_frames():
    kept = list(range(0, 40, 3))  # a slow model: two of three frames dropped
    _, runs = _simulate(kept, frames=4, stride=2, every=1)
    newest, used = runs[-1]
    assert newest == 39
    # targets 33, 35, 37, 39 -> latest kept at or before each: 33, 33, 36, 39
    assert used == [33, 33, 36, 39]
    assert runs[0][0] - kept[0] >= window_span(4, 2) - 1  # first run only once a whole span was seen


def test_nearest_available_falls_back_to_the_earliest_after():
    available = np.array([5, 8, 12])
    assert nearest_available(available, [4, 5, 7, 12, 20]) == [5, 5, 5, 12, 12]


def test_ring_rejects_non_increasing_indices():
    ring = FrameRing(2, 1, (3, 2, 2))
    ring.push(3, 0.0, np.zeros((3, 2, 2), np.float32))
    with pytest.raises(ValueError):
        ring.push(3, 0.1, np.zeros((3, 2, 2), np.float32))


def test_every_k_counts_only_ready_frames():
    schedule = EveryK(2)
    pattern = [schedule.due(ready) for ready in (False, False, True, True, True, True, True)]
    assert pattern == [False, False, True, False, True, False, True]
    with pytest.raises(ValueError):
        EveryK(0)
