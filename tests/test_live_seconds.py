"""Live windows by time: a model trained on clips of N seconds sees N seconds of any stream, whatever its fps."""

from pathlib import Path

import numpy as np
import pytest

from edgevid.meta import ArtifactMeta
from edgevid.runtime.base import Predictor
from edgevid.runtime.buffer import FrameRing, window_span, window_stride, window_targets
from edgevid.runtime.live import LiveOptions, run_live
from edgevid.runtime.sources import Source


class IndexModel(Predictor):
    """A stand-in model that records the source frame indices of every window it is given."""

    backend = "stub"

    def __init__(self, clip_seconds: float | None, sampling_stride: int = 2) -> None:
        meta = ArtifactMeta(model="index", classes=["a", "b"], frames=4, size=8, sampling_stride=sampling_stride,
                            mean=(0.0,) * 3, std=(1.0,) * 3, fps=30.0, clip_seconds=clip_seconds)
        super().__init__(meta, Path("index"), "cpu")
        self.windows: list[list[int]] = []

    def _run(self, clips):
        for clip in clips:
            self.windows.append([round(v) for v in (clip.mean(axis=(0, 2, 3)) * 255).tolist()])
        return np.zeros((len(clips), 2), np.float32)


class Counting(Source):
    """A file-like source at ``fps`` whose frame i is flat grey i (the index survives preprocessing)."""

    def __init__(self, fps: float, total: int, reported: bool = True) -> None:
        self.fps, self.total, self.fps_reported, self.count = fps, total, reported, 0
        self.name = f"counting@{fps:g}"

    def read(self):
        if self.count >= self.total:
            return None
        self.count += 1
        return np.full((16, 16, 3), self.count - 1, np.uint8)


def test_fractional_window_matches_training_indices():
    # 1 s of 4 frames at 15 fps: stride 3.75, offsets rounded as a training clip's (0, 4, 8, 11)
    assert window_span(4, 3.75) == 12 and window_targets(20, 4, 3.75) == [9, 13, 17, 20]
    ring = FrameRing(4, 3.75, (3, 1, 1))
    for i in range(12):
        ring.push(i, float(i), np.full((3, 1, 1), i, np.float32))
    clip, used = ring.window()
    assert used == [0, 4, 8, 11] and clip[0, 0, :, 0, 0].tolist() == [0, 4, 8, 11]
    assert window_stride(4, 2, 30.0, 60.0) == 4  # frame-stride metadata: stride 2 at 30 fps, in whole frames
    assert window_stride(4, 2, 30.0, 60.0, clip_seconds=1.0) == 15.0


@pytest.mark.parametrize(("fps", "stride"), [(60.0, 15.0), (15.0, 3.75)])
def test_windows_span_the_training_seconds_on_a_60_and_a_15_fps_source(fps, stride):
    model = IndexModel(clip_seconds=1.0)
    report = run_live(model, Counting(fps, total=int(2 * fps)), LiveOptions(smooth="none", warmup=0))
    assert report.options["source_stride"] == stride and report.options["window_seconds"] == 1.0
    assert report.options["window_fps"] == fps and report.streams[0]["source_stride"] == stride
    assert model.windows and report.predictions == len(model.windows)
    expected = np.arange(4) * 0.25  # 0, 0.25, 0.5, 0.75 s into the window
    for window in model.windows:
        seconds = (np.asarray(window) - window[0]) / fps
        assert np.abs(seconds - expected).max() <= 0.5 / fps + 1e-9
    assert model.windows[0][0] == 0 and model.windows[-1][-1] == int(2 * fps) - 1


def test_a_source_without_a_frame_rate_falls_back_to_the_models_with_one_warning(capsys):
    model = IndexModel(clip_seconds=1.0)
    report = run_live(model, Counting(25.0, total=40, reported=False), LiveOptions(smooth="none", warmup=0))
    err = capsys.readouterr().err
    assert err.count("does not report its frame rate") == 1 and "30 fps" in err
    assert report.options["window_fps"] == 30.0 and report.options["fps_reported"] is False
    assert report.options["source_stride"] == 7.5  # 1 s of 4 frames at the model's 30 fps
    assert np.diff(model.windows[0]).tolist() == [8, 7, 7]  # offsets 0, 7.5, 15, 22.5 rounded as in training


def test_frame_stride_models_keep_mapping_the_stride_by_fps():
    model = IndexModel(clip_seconds=None, sampling_stride=2)  # stride 2 at 30 fps = 4 at 60 fps
    report = run_live(model, Counting(60.0, total=30), LiveOptions(smooth="none", warmup=0))
    assert report.options["source_stride"] == 4 and np.diff(model.windows[0]).tolist() == [4, 4, 4]
    assert report.options["window_seconds"] == pytest.approx(4 * 4 / 60, abs=1e-4)
