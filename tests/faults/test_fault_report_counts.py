"""Reports that agree with themselves: `data info` does not count one held-out set twice, a `--realtime` live
report never gives a processed rate above the captured rate of the same frames, and a split that does not exist
names the splits that do."""

from types import SimpleNamespace

import numpy as np
import pytest

from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.data.datasets import dataset_info, find_split
from edgevid.data.synth import SynthConfig, render_video, write_video
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.runtime.live import LiveOptions, StreamState, run_live


@pytest.fixture()
def flat(data, tmp_path):
    """Folder-per-class data without split folders: val and test are the one held-out set."""
    root = tmp_path / "flat"
    for i, video in enumerate(sorted((data / "train").rglob("*.mp4")) + sorted((data / "val").rglob("*.mp4"))):
        target = root / video.parent.name / f"{i}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(video.read_bytes())
    return root


def test_data_info_does_not_count_the_held_out_set_twice(flat, capsys):
    info = dataset_info(flat)
    total = sum(len(list(d.iterdir())) for d in flat.iterdir())
    assert set(info["splits"]) == {"train", "val"} and info["same_as"] == {"test": "val"}
    assert sum(s["videos"] for s in info["splits"].values()) == total
    assert main(["data", "info", str(flat)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"test: the same {info['splits']['val']['videos']} videos as val" in out
    assert "┃ test" not in out and "test ┃" not in out


def test_data_info_says_why_a_split_is_absent(data, capsys):
    assert main(["data", "info", str(data)]) == 0
    assert "test: absent (" in capsys.readouterr().out


def test_unknown_split_of_a_list_file_dataset_names_its_splits(data, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train.csv", "val.csv"):
        lines = (data / name).read_text().splitlines()
        (lists / name).write_text("\n".join([lines[0]] + [f"{data}/{line}" for line in lines[1:]]) + "\n")
    (lists / "classes.txt").write_text((data / "classes.txt").read_text())
    assert len(find_split(lists, "val").entries) > 0
    with pytest.raises(EdgevidError, match=r"no split 'bogus'; this dataset's splits are train, val \(list files "
                                           r"train\.csv, val\.csv\)"):
        find_split(lists, "bogus")
    with pytest.raises(EdgevidError, match=r"no split 'bogus'; this dataset's splits are train, val"):
        find_split(data, "bogus")  # list files and split folders: the list files are the splits


def _stream(captured, first, last, processed, last_taken):
    grabber = SimpleNamespace(captured=captured, first_capture=first, last_capture=last)
    return SimpleNamespace(grabber=grabber, processed=processed, last_taken=last_taken, predictions=3)


def test_processed_rate_counts_like_the_captured_rate():
    # 31 frames captured at 30 fps from t=10 s; every frame taken right after its capture; the run's clock started
    # after the first capture (model warm-up), so frames / elapsed read 34 fps
    rates = StreamState.rates(_stream(31, 10.0, 11.0, 31, 11.001), elapsed=0.9)
    assert rates["capture"] == pytest.approx(30.0)
    assert rates["processed"] <= rates["capture"]
    assert rates["processed"] == pytest.approx(30 / 1.001)


def test_realtime_live_report_processed_not_above_captured(tmp_path):
    meta = ArtifactMeta(model="tiny3d", classes=["a", "b"], frames=4, size=32, sampling_stride=2, mean=(0.45,) * 3,
                        std=(0.225,) * 3, arch={"width": 4}, fps=30.0)
    model = save_checkpoint(tmp_path / "m.pt", create_model("tiny3d", num_classes=2, width=4).eval(), meta)
    frames = render_video(SynthConfig().class_names[0], np.random.default_rng(0), 30, 32)
    video = write_video(tmp_path / "v.mp4", frames, fps=60)
    fps = run_live(model, video, LiveOptions(realtime=True)).to_dict()["fps"]
    assert fps["capture"] and fps["processed"] and fps["processed"] <= fps["capture"] * (1 + 1e-9), fps
