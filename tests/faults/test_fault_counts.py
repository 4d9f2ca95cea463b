"""Counts agree and nothing is silent: a skipped video is one skip wherever it is counted, and clips of videos
shorter than the model's input are padded by the documented rule, said once per run."""

import shutil
from pathlib import Path

import pytest

from edgevid.cli import main
from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.data.datasets import ClipBatch, build_dataset, build_loader, distinct_skips, find_split
from edgevid.meta import ArtifactMeta
from edgevid.train.engine import read_metrics

TINY = Path(__file__).parents[2] / "recipes" / "tiny.yaml"


@pytest.fixture()
def broken_twice(data, tmp_path):
    """The shared dataset with one broken video listed twice in train and once in val."""
    root = tmp_path / "data"
    shutil.copytree(data, root)
    (root / "train" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    label = find_split(root, "train").classes[0]
    for split, times in (("train", 2), ("val", 1)):
        with (root / f"{split}.csv").open("a") as f:
            f.write(f"train/broken.mp4,{label}\n" * times)
    return root


def test_a_video_skipped_several_times_is_one_skip(broken_twice, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "-r", str(TINY), "-d", str(broken_twice), "-o", str(run), "train.epochs=1",
                 "train.batch_size=2"]) == 0
    out = capsys.readouterr().out
    assert read_metrics(run)[0]["skipped"] == 1
    assert "skipped 1 unreadable video(s)" in " ".join(out.split())
    assert out.count("broken.mp4:") == 1


def test_distinct_skips_keeps_each_path_once():
    records = [("b.mp4", "truncated"), ("a.mp4", "no video stream"), ("b.mp4", "truncated again")]
    assert distinct_skips(records) == [("a.mp4", "no video stream"), ("b.mp4", "truncated")]


def test_short_videos_are_said_once_per_run(data, tmp_path, capsys):
    # 4 frames at stride 4 span 13 source frames; the synthetic videos have 8
    run = tmp_path / "run"
    assert main(["train", "-r", str(TINY), "-d", str(data), "-o", str(run), "train.epochs=2",
                 "data.sampling_stride=4"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    videos = len(find_split(data, "train").entries) + len(find_split(data, "val").entries)
    assert out.count("shorter than the clip span") == 1, out
    assert f"note: {videos} video(s) shorter than the clip span (4 frames = 13 source frames); the clip loops" in out
    assert main(["train", "-r", str(TINY), "-d", str(data), "-o", str(tmp_path / "ok"), "train.epochs=1"]) == 0
    assert "shorter than" not in capsys.readouterr().out


def test_loader_batches_name_their_short_videos(data):
    short = build_dataset(data, "val", frames=4, size=32, sampling_stride=4, mean=(0.5,) * 3, std=(0.5,) * 3,
                          train=False)
    batches = list(build_loader(short, 8, shuffle=False, workers=1))
    assert all(isinstance(b, ClipBatch) for b in batches)
    assert sorted(p for b in batches for p in b.short) == sorted(str(s.path) for s in short.samples)
    full = build_dataset(data, "val", frames=4, size=32, sampling_stride=1, mean=(0.5,) * 3, std=(0.5,) * 3,
                         train=False)
    assert [p for b in build_loader(full, 8, shuffle=False, workers=0) for p in b.short] == []


def test_calibration_counts_a_video_listed_twice_once(broken_twice):
    meta = ArtifactMeta(model="tiny3d", classes=find_split(broken_twice, "train").classes, frames=4, size=32,
                        sampling_stride=2, mean=(0.45,) * 3, std=(0.225,) * 3)
    _, skipped = build_manifest(broken_twice, 8, Preprocessing.from_meta(meta), split="train", show_progress=False)
    assert [Path(path).name for path, _ in skipped] == ["broken.mp4"]
