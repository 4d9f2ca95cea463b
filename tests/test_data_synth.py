"""Synthetic benchmark data: output structure, decodability, determinism, class semantics, CLI."""

import itertools
import json

import cv2
import numpy as np
import pytest

from edgevid.cli import main
from edgevid.data import build_dataset, probe, read_clip
from edgevid.data.synth import CLASS_NAMES, SynthConfig, _trajectory, generate_synth, render_video
from edgevid.errors import EdgevidError

TINY = SynthConfig(classes=3, videos_per_class=2, val_per_class=1, frames=12, size=32, seed=5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    generate_synth(out, TINY, show_progress=False)
    return out


def test_output_structure_and_lists(tiny):
    meta = json.loads((tiny / "synth.json").read_text())
    assert meta["classes"] == ["move_left", "move_right", "move_up"]
    assert meta["mirror_classes"] == [["move_left", "move_right"]]
    assert meta["counts"] == {"train": 6, "val": 3} and meta["config"]["seed"] == 5
    assert (tiny / "classes.txt").read_text().split() == meta["classes"]
    rows = (tiny / "train.csv").read_text().splitlines()
    assert rows[0] == "path,label" and len(rows) == 7
    assert rows[1] == "train/move_left/move_left_0000.mp4,move_left"
    assert sorted(p.name for p in (tiny / "val" / "move_up").iterdir()) == ["move_up_0000.mp4"]
    assert not list(tiny.rglob(".*"))  # no temporary files left behind


def test_videos_decode_and_load_as_a_dataset(tiny):
    info = probe(tiny / "train" / "move_up" / "move_up_0001.mp4")
    assert (info.num_frames, info.width, info.height, info.fps) == (12, 32, 32, 25.0)
    data = build_dataset(tiny, "train", frames=4, size=32, sampling_stride=3, mean=(0.45,) * 3,
                         std=(0.225,) * 3, train=True)
    assert data.layout == "list" and len(data) == 6 and data.class_counts() == [2, 2, 2]
    clip, label = data[3]
    assert clip.shape == (3, 4, 32, 32) and label == 1


def test_same_seed_same_videos(tiny, tmp_path):
    config = SynthConfig(classes=2, videos_per_class=1, val_per_class=0, frames=12, size=32, seed=5)
    generate_synth(tmp_path / "again", config, show_progress=False)
    generate_synth(tmp_path / "other", SynthConfig(**{**config.__dict__, "seed": 6}), show_progress=False)
    name = "train/move_right/move_right_0000.mp4"
    first = read_clip(tiny / name, range(12))
    assert np.array_equal(first, read_clip(tmp_path / "again" / name, range(12)))
    assert not np.array_equal(first, read_clip(tmp_path / "other" / name, range(12)))


def test_refuses_to_overwrite_without_permission(tiny, tmp_path):
    with pytest.raises(EdgevidError, match="--overwrite"):
        generate_synth(tiny, TINY, show_progress=False)
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(EdgevidError, match="not empty"):
        generate_synth(tmp_path, TINY, show_progress=False)
    with pytest.raises(EdgevidError, match="--classes"):
        SynthConfig(classes=11)
    with pytest.raises(EdgevidError, match="even"):
        SynthConfig(size=33)


def test_motion_defines_the_class():
    rng = np.random.default_rng(0)
    frames, size = 24, 128
    track = {name: _trajectory(name, rng, frames, size) for name in CLASS_NAMES}
    assert np.all(np.diff(track["move_left"].x) < 0) and np.all(np.diff(track["move_right"].x) > 0)
    assert np.all(np.diff(track["move_up"].y) < 0) and np.all(np.diff(track["move_down"].y) > 0)
    assert np.all(np.diff(track["rotate_clockwise"].angle) > 0)  # y points down: growing angle turns clockwise
    assert np.all(np.diff(track["rotate_anticlockwise"].angle) < 0)
    assert np.all(np.diff(track["grow"].radius) > 0) and np.all(np.diff(track["shrink"].radius) < 0)
    assert track["appear"].alpha[0] == 0 and track["appear"].alpha[-1] == 1
    assert track["disappear"].alpha[0] == 1 and track["disappear"].alpha[-1] == 0
    for name in CLASS_NAMES[:6]:
        assert np.all(np.diff(track[name].radius) == 0) and np.all(track[name].alpha == 1)


def _clockwise_flow(video: np.ndarray, step: int = 4) -> float:
    """Curl of the optical flow around the fastest-moving pixels, summed over frame pairs (> 0: clockwise on
    screen)."""
    total = 0.0
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in video[::step]]
    for a, b in itertools.pairwise(gray):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        magnitude = np.linalg.norm(flow, axis=2)
        ys, xs = np.nonzero(magnitude > np.percentile(magnitude, 97))
        dx, dy = xs - xs.mean(), ys - ys.mean()
        total += float(np.sum(dx * flow[ys, xs, 1] - dy * flow[ys, xs, 0]))
    return total


def test_rendered_rotations_turn_the_named_way():
    """The pixels, not just the trajectory: optical flow of every rendered rotation turns the way its class says."""
    rng = np.random.default_rng(0)
    clockwise = [_clockwise_flow(render_video("rotate_clockwise", rng, 16, 96)) for _ in range(10)]
    anticlockwise = [_clockwise_flow(render_video("rotate_anticlockwise", rng, 16, 96)) for _ in range(10)]
    assert min(clockwise) > 0 > max(anticlockwise)


def test_single_frames_look_alike_across_classes():
    """Position and size of the object in a random frame have the same distribution in every default class."""
    rng = np.random.default_rng(1)
    stats = {}
    for name in CLASS_NAMES[:8]:
        tracks = [_trajectory(name, rng, 8, 128) for _ in range(800)]
        x = np.concatenate([t.x for t in tracks])
        y = np.concatenate([t.y for t in tracks])
        r = np.concatenate([t.radius for t in tracks])
        stats[name] = np.array([x.mean(), y.mean(), x.std(), y.std(), r.mean(), r.std()])
    reference = np.mean(list(stats.values()), axis=0)
    for name, values in stats.items():
        assert np.allclose(values, reference, rtol=0.07), name


def test_cli_synth_and_info(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synth", str(out), "--classes", "2", "--videos-per-class", "1", "--val-per-class", "1",
            "--frames", "8", "--size", "32", "--workers", "1"]
    assert main(args) == 0
    assert "mirror-image class pairs" in capsys.readouterr().out
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"] == {"move_left": {"train": 1, "val": 1}, "move_right": {"train": 1, "val": 1}}
    assert main(["data", "info", str(out)]) == 0
    assert "move_right" in capsys.readouterr().out
    assert main(["data", "synth", str(tmp_path / "x"), "--classes", "12"]) == 1
