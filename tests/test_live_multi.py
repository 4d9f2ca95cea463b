"""Several sources in one run share one model: windows due together run as one batch, and each stream's results
are those it gets when run alone."""

import json

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
from edgevid.runtime.live import LiveOptions, run_live

CLASSES = ["wave", "clap", "jump", "sit"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    meta = ArtifactMeta(model="tiny3d", classes=CLASSES, frames=4, size=32, sampling_stride=2, mean=(0.45,) * 3,
                        std=(0.225,) * 3, arch={"width": 4}, fps=30.0)
    return save_checkpoint(tmp_path_factory.mktemp("multi") / "tiny.pt",
                           create_model("tiny3d", num_classes=len(CLASSES), width=4).eval(), meta)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    names = SynthConfig().class_names
    out = []
    for i, frames in enumerate((36, 30, 24)):
        rendered = render_video(names[i + 1], np.random.default_rng(i), frames, 48)
        out.append(write_video(folder / f"v{i}.mp4", rendered, fps=30))
    return out


def _record():
    seen: dict[int, list] = {}

    def on_label(stream, label, e2e_ms):
        seen.setdefault(stream, []).append([score for _, score in label.topk])

    return seen, on_label


def test_streams_batched_together_give_each_stream_its_own_results(checkpoint, videos):
    options = dict(smooth="none", topk=4, every=1)
    alone = []
    for video in videos:
        seen, hook = _record()
        report = run_live(checkpoint, video, LiveOptions(**options), on_label=hook)
        alone.append((report, seen[0]))
    seen, hook = _record()
    together = run_live(checkpoint, [str(v) for v in videos], LiveOptions(**options), on_label=hook)
    assert len(together.streams) == 3 and not together.failed
    assert together.stop_reason == "all sources ended"
    # several windows went through the model in one call
    assert sum(int(k) * v for k, v in together.batches.items()) == together.predictions
    assert max(int(k) for k in together.batches) >= 2
    for i, (report, scores) in enumerate(alone):
        section = together.streams[i]
        assert section["source"] == str(videos[i])
        assert section["frames_processed"] == report.frames_processed == report.frames_captured
        assert section["predictions"] == report.predictions == len(inference_frames(report.frames_captured, 4, 2, 1))
        np.testing.assert_allclose(seen[i], scores, rtol=0, atol=1e-5)
        assert [p["label"] for p in section["last_prediction"]] == [p["label"] for p in report.last_prediction]
    assert together.frames_captured == sum(r.frames_captured for r, _ in alone)
    assert together.predictions == sum(r.predictions for r, _ in alone)


def test_several_sources_from_the_cli_with_one_output_video_per_stream(checkpoint, videos, tmp_path, capsys):
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    code = main(["live", "--model", str(checkpoint), "--source", str(videos[0]), "--source", str(videos[2]),
                 "--output", str(out), "--report", str(report)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stream 0" in printed and "stream 1" in printed
    data = json.loads(report.read_text())
    assert [s["frames_captured"] for s in data["streams"]] == [36, 24]
    for i, frames in ((0, 36), (1, 24)):
        written = tmp_path / f"out.{i}.mp4"
        assert data["streams"][i]["output"] == str(written)
        assert int(cv2.VideoCapture(str(written)).get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    assert not out.exists()


def test_streaming_takes_one_source(checkpoint, videos):
    with pytest.raises(EdgevidError, match="--streaming runs one source"):
        run_live(checkpoint, [videos[0], videos[1]], LiveOptions(streaming=True))
