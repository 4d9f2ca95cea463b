import _thread
import json
import signal
import threading

import cv2
import numpy as np
import pytest

from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.data.synth import SynthConfig, render_video, write_video
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.runtime.buffer import inference_frames
from edgevid.runtime.live import (
    NO_ACTION,
    EmaSmoother,
    LiveOptions,
    VoteSmoother,
    clip_probabilities,
    make_label,
    run_live,
)
from edgevid.runtime.metrics import LatencyStats
from edgevid.runtime.sources import Source

CLASSES = ["wave", "clap", "jump"]
REPORT_KEYS = {"frames_captured", "frames_processed", "frames_dropped", "predictions", "fps", "latency_ms",
               "memory_mb", "backend", "precision", "model", "source", "stop_reason"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("live") / "tiny.pt"
    meta = ArtifactMeta(model="tiny3d", classes=CLASSES, frames=4, size=32, sampling_stride=2, mean=(0.45,) * 3,
                        std=(0.225,) * 3, arch={"width": 4}, fps=30.0)
    return save_checkpoint(path, create_model("tiny3d", num_classes=3, width=4).eval(), meta)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    kind = SynthConfig().class_names[0]
    frames = render_video(kind, np.random.default_rng(0), 40, 48)
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames, fps=30)


def _check_report(data):
    assert set(data) >= REPORT_KEYS
    assert data["frames_processed"] + data["frames_dropped"] == data["frames_captured"]
    for kind in ("model", "end_to_end"):
        stats = data["latency_ms"][kind]
        assert set(stats) >= {"p50", "p95", "p99", "max"}
        assert stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert data["latency_ms"]["end_to_end"]["p50"] >= data["latency_ms"]["model"]["p50"]
    assert set(data["memory_mb"]) >= {"rss_start", "rss_peak", "rss_end", "accelerator_peak"}
    assert data["memory_mb"]["rss_peak"] >= data["memory_mb"]["rss_start"] > 0
    assert set(data["fps"]) >= {"capture", "inference"}


def test_headless_run_on_a_video_file_end_to_end(checkpoint, video, tmp_path, capsys):
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    code = main(["live", "--model", str(checkpoint), "--source", str(video), "--output", str(out),
                 "--report", str(report), "--every", "2", "--topk", "2", "--log-every", "0.01"])
    assert code == 0
    assert "proc" in capsys.readouterr().out  # the --log-every status line
    data = json.loads(report.read_text())
    _check_report(data)
    assert data["frames_captured"] == data["frames_processed"] == 40 and data["frames_dropped"] == 0
    # tiny3d: T=4, stride 2 at 30 fps -> first window at frame 6, then every 2nd frame
    assert data["predictions"] == len(inference_frames(40, 4, 2, 2))
    assert data["backend"] == "torch" and data["model"] == "tiny3d" and data["source"] == str(video)
    assert data["last_prediction"][0]["label"] in CLASSES and len(data["last_prediction"]) == 2
    written = cv2.VideoCapture(str(out))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    ok, frame = written.read()
    assert ok and frame.shape == (48, 48, 3)
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*tmp*"))


def test_realtime_source_faster_than_the_model_drops_frames(tmp_path):
    meta = ArtifactMeta(model="tiny3d", classes=CLASSES, frames=4, size=64, sampling_stride=2, mean=(0.45,) * 3,
                        std=(0.225,) * 3, arch={"width": 16}, fps=30.0)
    slower = save_checkpoint(tmp_path / "m.pt", create_model("tiny3d", num_classes=3, width=16).eval(), meta)
    frames = render_video(SynthConfig().class_names[1], np.random.default_rng(1), 320, 48)
    fast = write_video(tmp_path / "fast.mp4", frames, fps=1000)  # a 1000 fps "camera": 1 ms per frame
    out = tmp_path / "out.avi"
    report = run_live(slower, fast, LiveOptions(realtime=True, output=str(out)))
    data = report.to_dict()
    _check_report(data)
    assert data["frames_captured"] == 320
    assert data["options"]["source_stride"] == 67  # stride 2 at 30 fps
    assert data["frames_dropped"] > 0
    assert data["options"]["drop_frames"] is True
    written = int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert data["frames_processed"] < written <= 320  # dropped frames filled: the video keeps the source's timing


def test_image_folder_source_and_max_frames(checkpoint, tmp_path):
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((40, 56, 3), 10 * i, np.uint8))
    report = run_live(checkpoint, tmp_path, LiveOptions(max_frames=9, smooth="vote", votes=2))
    assert report.frames_captured == report.frames_processed == 9
    assert report.stop_reason == "max frames"
    assert report.predictions == len(inference_frames(9, 4, 2, 1))


class EndlessSource(Source):
    """A live source that never ends (a camera), delivering 2 ms frames."""

    live = True
    name = "endless"
    fps = 30.0

    def read(self):
        threading.Event().wait(0.002)
        return np.zeros((32, 32, 3), np.uint8)


class InterruptingSource(EndlessSource):
    """A camera during which the user presses Ctrl-C (a SIGINT in the main thread) after 30 frames."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self):
        self.reads += 1
        if self.reads == 30:
            _thread.interrupt_main()
        return super().read()


def test_ctrl_c_stops_cleanly_and_still_writes_the_report(checkpoint, tmp_path):
    # a shell's background job starts with SIGINT ignored, and then interrupt_main() does nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    report = tmp_path / "r.json"
    try:
        result = run_live(checkpoint, InterruptingSource(), LiveOptions(report=str(report)))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.stop_reason == "interrupted"
    _check_report(json.loads(report.read_text()))


def test_duration_limit_and_stalled_source(checkpoint):
    assert run_live(checkpoint, EndlessSource(), LiveOptions(duration=0.5)).stop_reason == "duration"

    class Stalled(Source):
        live = True
        name = "stalled"

        def read(self):
            threading.Event().wait(0.8)
            return None

    result = run_live(checkpoint, Stalled(), LiveOptions(stall_timeout=0.3))
    assert result.stop_reason.startswith("source stalled") and result.frames_captured == 0


def test_unopenable_camera_and_url_exit_non_zero(checkpoint, capsys):
    assert main(["live", "--model", str(checkpoint), "--camera", "9"]) == 1
    assert "camera 9: cannot be opened" in capsys.readouterr().err
    assert main(["live", "--model", str(checkpoint), "--source", "rtsp://127.0.0.1:1/cam"]) == 1
    assert "cannot open the stream" in capsys.readouterr().err
    assert main(["live", "--model", str(checkpoint)]) == 1
    assert "exactly one of --camera" in capsys.readouterr().err


def test_show_without_gui_opencv_explains_how_to_install(checkpoint, video):
    if "NONE" not in cv2.getBuildInformation().split("GUI:", 1)[1].splitlines()[0]:
        pytest.skip("this OpenCV has a GUI backend")
    with pytest.raises(EdgevidError, match="pip install opencv-python"):
        run_live(checkpoint, video, LiveOptions(show=True))


def test_bad_options_are_clear_errors(checkpoint, video):
    for options, message in ((LiveOptions(every=0), "--every"), (LiveOptions(smooth="median"), "--smooth"),
                             (LiveOptions(threshold=2.0), "--threshold"), (LiveOptions(output="x.gif"), "--output")):
        with pytest.raises(EdgevidError, match=message):
            run_live(checkpoint, video, options)


def test_smoothing_threshold_and_heads():
    vote = VoteSmoother(3)
    a, b = np.array([0.9, 0.1]), np.array([0.2, 0.8])
    labels = [vote.update(p)[1] for p in (a, b, b, a, b, b, b, b)]
    assert labels == [0, 0, 0, 0, 0, 0, 1, 1]  # switches only after 3 wins in a row
    ema = EmaSmoother(0.5)
    ema.update(np.array([1.0, 0.0]))
    probs, _ = ema.update(np.array([0.0, 1.0]))
    np.testing.assert_allclose(probs, [0.5, 0.5])
    label = make_label(np.array([0.3, 0.7]), 1, ["x", "y"], topk=2, threshold=0.8)
    assert label.label == NO_ACTION and label.topk[0] == ("y", 0.7)
    np.testing.assert_allclose(clip_probabilities(np.array([[0.0, np.log(3.0)]]), "clip"), [0.25, 0.75])
    frame_out = np.zeros((1, 2, 5))
    frame_out[0, 1, -1] = np.log(3.0)
    np.testing.assert_allclose(clip_probabilities(frame_out, "frame"), [0.25, 0.75])
    with pytest.raises(EdgevidError, match="classifier head"):
        clip_probabilities(np.zeros((1, 8)), "features")


def test_latency_stats_percentiles_and_bounded_memory():
    values = np.random.default_rng(0).exponential(10.0, 5000)
    exact = LatencyStats(capacity=10_000)
    bounded = LatencyStats(capacity=500)
    for v in values:
        exact.add(v)
        bounded.add(v)
    summary = exact.summary()
    np.testing.assert_allclose([summary["p50"], summary["p95"], summary["p99"]],
                               np.percentile(values, [50, 95, 99]))
    assert summary["max"] == values.max()
    assert bounded.samples.shape == (500,) and bounded.count == 5000
    assert bounded.summary()["p50"] == pytest.approx(np.percentile(values, 50), rel=0.2)
    assert LatencyStats().summary()["p95"] is None


def test_jetson_shared_gpu_memory_is_read_from_meminfo(tmp_path):
    from edgevid.runtime.metrics import _meminfo_kb

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        7620000 kB\nNvMapMemUsed:     524288 kB\n")
    assert _meminfo_kb("NvMapMemUsed", meminfo) == 524288
    assert _meminfo_kb("Missing", meminfo) is None


def test_a_source_too_short_for_one_window_fails_with_the_reason(checkpoint, tmp_path, capsys):
    """A PNG renamed to .mp4 decodes as one frame: no window, no prediction, so the run fails instead of exit 0."""
    fake = tmp_path / "fake.mp4"
    cv2.imwrite(str(tmp_path / "frame.png"), np.full((48, 48, 3), 128, np.uint8))
    fake.write_bytes((tmp_path / "frame.png").read_bytes())
    report = tmp_path / "report.json"
    code = main(["live", "--model", str(checkpoint), "--source", str(fake), "--report", str(report)])
    assert code == 1
    assert "ended after 1 frame(s) without a single prediction" in capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["failed"] and data["predictions"] == 0 and data["frames_captured"] == 1
