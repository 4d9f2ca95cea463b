"""Synthetic data styles: shapes unchanged, photo and wild deterministic, decodable at their recorded formats."""

import hashlib
import json

import av
import numpy as np
import pytest
from test_data_synth import _clockwise_flow

from edgevid.cli import main
from edgevid.data import build_dataset, probe, read_clip
from edgevid.data.synth import (
    CODECS,
    PHOTO_CLASSES,
    SynthConfig,
    VideoSpec,
    generate_synth,
    photo_track,
    render_photo_video,
    write_video,
)
from edgevid.errors import EdgevidError

TINY = {"classes": 3, "videos_per_class": 2, "val_per_class": 1, "frames": 12, "size": 32, "seed": 5}


def _frames(root, relative):
    return read_clip(root / relative, range(probe(root / relative).num_frames))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    out = tmp_path_factory.mktemp("photo") / "data"
    generate_synth(out, SynthConfig(**TINY, style="photo"), workers=2, show_progress=False)
    return out


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    out = tmp_path_factory.mktemp("wild") / "data"
    generate_synth(out, SynthConfig(**{**TINY, "classes": 11, "videos_per_class": 1}, style="wild"),
                   workers=2, show_progress=False)
    return out


def test_default_style_output_unchanged(tmp_path):
    """Decoded frames of a tiny shapes video hash to what the generator wrote before styles existed."""
    generate_synth(tmp_path, SynthConfig(classes=3, videos_per_class=1, val_per_class=1, frames=12, size=32, seed=5),
                   show_progress=False)
    digests = {name: hashlib.sha256(read_clip(tmp_path / name, range(12)).tobytes()).hexdigest()[:16]
               for name in ("train/move_left/move_left_0000.mp4", "val/move_right/move_right_0000.mp4")}
    assert digests == {"train/move_left/move_left_0000.mp4": "859a719373908236",
                       "val/move_right/move_right_0000.mp4": "8625ba1741478a8d"}
    meta = json.loads((tmp_path / "synth.json").read_text())
    assert meta["style"] == "shapes" and meta["choices"]["codec"] == {"h264": 6}


@pytest.mark.parametrize("style", ["photo", "wild"])
def test_same_seed_same_frames(style, photo, wild, tmp_path):
    """Serial generation reproduces the parallel fixture's frames; another seed does not."""
    first = photo if style == "photo" else wild
    meta = json.loads((first / "synth.json").read_text())
    config = SynthConfig(**{**meta["config"], "val_per_class": 0, "classes": 2})
    generate_synth(tmp_path / "again", config, show_progress=False)
    generate_synth(tmp_path / "other", SynthConfig(**{**config.__dict__, "seed": 6}), show_progress=False)
    again = json.loads((tmp_path / "again" / "synth.json").read_text())["videos"]
    assert again and all(meta["videos"][name] == spec for name, spec in again.items())
    for name in again:
        assert np.array_equal(_frames(first, name), _frames(tmp_path / "again", name)), name
    other = json.loads((tmp_path / "other" / "synth.json").read_text())["videos"]
    name = next(iter(other))
    assert name not in again or not np.array_equal(_frames(tmp_path / "other", name), _frames(first, name))


@pytest.mark.parametrize("style", ["photo", "wild"])
def test_videos_decode_at_the_recorded_format(style, photo, wild):
    root = photo if style == "photo" else wild
    meta = json.loads((root / "synth.json").read_text())
    assert meta["style"] == style and meta["photos"]["files"]
    assert sum(meta["counts"].values()) == len(meta["videos"])
    for name, spec in meta["videos"].items():
        info = probe(root / name)
        assert (info.num_frames, info.width, info.height) == (spec["frames"], spec["width"], spec["height"]), name
        # MP4 may shorten the last H.264 frame's duration by a few ticks: fps (frames / duration) is then 30.02
        assert info.fps == pytest.approx(spec["fps"], rel=2e-3)
        assert info.duration == pytest.approx(spec["frames"] / spec["fps"], rel=2e-3)
        start, end = spec["event_s"]
        assert 0 <= start < end <= info.duration + 1e-3, name
        with av.open(str(root / name)) as container:
            assert container.streams.video[0].codec_context.name == spec["codec"]
        assert name.endswith(CODECS[spec["codec"]].suffix)
        clip = read_clip(root / name, [0, spec["frames"] - 1])
        assert clip.shape == (2, spec["height"], spec["width"], 3) and clip.std() > 5
    data = build_dataset(root, "train", frames=4, size=32, sampling_stride=2, mean=(0.45,) * 3, std=(0.225,) * 3,
                         train=False)
    assert len(data) == meta["counts"]["train"] and data[0][0].shape == (3, 4, 32, 32)


def test_photo_records_style_classes_and_mirror_pairs(photo):
    meta = json.loads((photo / "synth.json").read_text())
    assert meta["classes"] == ["move_left", "move_right", "move_up"]
    assert meta["mirror_classes"] == meta["reverse_classes"] == [["move_left", "move_right"]]
    assert meta["choices"] == {"fps": {"25": 9}, "size": {"32x32": 9}, "codec": {"h264": 9}}
    assert not list(photo.rglob(".*"))  # no temporary files left behind


def test_wild_varies_formats(wild):
    meta = json.loads((wild / "synth.json").read_text())
    specs = list(meta["videos"].values())
    assert {s["codec"] for s in specs} == set(CODECS)
    assert {p.suffix for p in wild.rglob("*_0000.*")} == {".mp4", ".avi", ".mkv"}
    assert len({s["fps"] for s in specs}) >= 3 and len({(s["width"], s["height"]) for s in specs}) >= 3
    assert any(s["width"] != s["height"] for s in specs)
    assert meta["classes"][-1] == "shake" and len(meta["classes"]) == 11
    seconds = [s["frames"] / s["fps"] for s in specs]
    assert min(seconds) >= 1.5 * 12 / 48 - 0.05 and max(seconds) <= 6 * 12 / 48 + 0.05


def test_wild_vary_keeps_the_motion_and_photo_format_for_the_other_factors(wild, tmp_path):
    """--vary size: wild's frame sizes, photo's 25 fps and H.264, and each video's motion at the same time."""
    out = tmp_path / "size"
    generate_synth(out, SynthConfig(**{**TINY, "classes": 11, "videos_per_class": 1}, style="wild", vary=("size",)),
                   workers=2, show_progress=False)
    full, sized = (json.loads((root / "synth.json").read_text())["videos"] for root in (wild, out))
    assert {s["fps"] for s in sized.values()} == {25} and {s["codec"] for s in sized.values()} == {"h264"}
    pairs = {path.rsplit(".", 1)[0]: spec for path, spec in sized.items()}
    for path, spec in full.items():
        same = pairs[path.rsplit(".", 1)[0]]
        assert (same["width"], same["height"]) == (spec["width"], spec["height"])
        assert abs(same["frames"] / 25 - spec["frames"] / spec["fps"]) <= 0.5 / 15 + 0.5 / 25
        assert np.allclose(same["event_s"], spec["event_s"], atol=0.05)


def test_motion_is_defined_in_seconds():
    """The same seed at 15 and 60 fps over 2 s gives the same motion at the shared moments."""
    for kind in (*PHOTO_CLASSES, "shake"):
        slow = photo_track(kind, np.random.default_rng(3), np.arange(30) / 15, 96, 64, wild=True)
        fast = photo_track(kind, np.random.default_rng(3), np.arange(120) / 60, 96, 64, wild=True)
        for field in ("x", "y", "radius", "angle", "alpha"):
            assert np.allclose(getattr(slow, field), getattr(fast, field)[::4]), (kind, field)


def test_track_records_when_the_class_changes():
    """Outside its recorded event window a wild video's patch does not move, turn, zoom or fade; inside it does."""
    t = np.arange(240) / 60  # 4 s: the 1.2-2.4 s motion leaves still frames around it
    changing = {"move_left": "x", "move_up": "y", "rotate_clockwise": "angle", "zoom_out": "radius", "fade_in": "alpha"}
    for kind, field in changing.items():
        for seed in range(3):
            track = photo_track(kind, np.random.default_rng(seed), t, 128, 96, wild=True)
            start, end = track.event
            values, inside = getattr(track, field), (t >= start) & (t <= end)
            assert 0 <= start < end <= 4.0 and end - start < 4.0, kind
            for outside in (t < start, t > end):
                assert outside.sum() < 2 or np.ptp(values[outside]) < 1e-9, kind
            assert np.ptp(values[inside]) > 0, kind


def test_photo_motion_defines_the_class():
    t = np.arange(48) / 25
    track = {kind: photo_track(kind, np.random.default_rng(0), t, 128, 128, wild=False) for kind in PHOTO_CLASSES}
    assert np.all(np.diff(track["move_left"].x) <= 0) and track["move_left"].x[0] > track["move_left"].x[-1] + 20
    assert np.all(np.diff(track["move_right"].x) >= 0) and track["move_right"].x[-1] > track["move_right"].x[0] + 20
    assert track["move_up"].y[-1] < track["move_up"].y[0] - 20 and track["move_down"].y[-1] > track["move_down"].y[0]
    assert track["rotate_clockwise"].angle[-1] - track["rotate_clockwise"].angle[0] > 1.0
    assert track["rotate_anticlockwise"].angle[-1] - track["rotate_anticlockwise"].angle[0] < -1.0
    assert track["zoom_in"].radius[-1] > 1.4 * track["zoom_in"].radius[0]
    assert track["zoom_out"].radius[0] > 1.4 * track["zoom_out"].radius[-1]
    assert track["fade_in"].alpha[0] == 0 and track["fade_in"].alpha[-1] == 1
    assert track["fade_out"].alpha[0] == 1 and track["fade_out"].alpha[-1] == 0
    for kind in PHOTO_CLASSES[:8]:
        still = {"x", "y", "radius", "angle"} - {"move_left": {"x"}, "move_right": {"x"}, "move_up": {"y"},
                                                 "move_down": {"y"}, "zoom_in": {"radius"}, "zoom_out": {"radius"},
                                                 "rotate_clockwise": {"angle"},
                                                 "rotate_anticlockwise": {"angle"}}[kind]
        assert all(np.ptp(getattr(track[kind], field)) == 0 for field in still), kind


def test_photo_single_frames_look_alike_across_classes():
    """Position and size of the patch in a random frame have the same distribution in every non-fade class."""
    rng = np.random.default_rng(1)
    t = np.arange(12) / 25 * 4  # 1.92 s
    stats = {}
    for kind in PHOTO_CLASSES[:8]:
        tracks = [photo_track(kind, rng, t, 128, 96, wild=False) for _ in range(600)]
        x, y, r = (np.concatenate([getattr(track, f) for track in tracks]) for f in ("x", "y", "radius"))
        stats[kind] = np.array([x.mean(), y.mean(), x.std(), y.std(), r.mean(), r.std()])
    reference = np.mean(list(stats.values()), axis=0)
    for kind, values in stats.items():
        assert np.allclose(values, reference, rtol=0.08), kind


def test_rendered_photo_rotations_turn_the_named_way():
    rng = np.random.default_rng(0)
    spec = VideoSpec(25, 96, 96, 16, "h264")
    clockwise = [_clockwise_flow(render_photo_video("rotate_clockwise", rng, spec)[0]) for _ in range(6)]
    anticlockwise = [_clockwise_flow(render_photo_video("rotate_anticlockwise", rng, spec)[0]) for _ in range(6)]
    assert min(clockwise) > 0 > max(anticlockwise)


def test_bad_style_and_settings(tmp_path, capsys):
    with pytest.raises(EdgevidError, match="--style must be one of shapes, photo, wild"):
        SynthConfig(style="cartoon")
    with pytest.raises(EdgevidError, match="--fps does not apply"):
        SynthConfig(style="wild", fps=30)
    with pytest.raises(EdgevidError, match=r"2\.\.11 for --style wild"):
        SynthConfig(style="wild", classes=12)
    with pytest.raises(EdgevidError, match="--vary applies to --style wild only"):
        SynthConfig(style="photo", vary=("fps",))
    SynthConfig(style="wild", fps=30, vary=("size", "codec"))  # photo's frame rate is --fps when fps is not drawn
    assert main(["data", "synth", str(tmp_path / "v"), "--style", "wild", "--vary", "size,colour"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--vary" in err and "colour" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["data", "synth", str(tmp_path / "x"), "--style", "cartoon"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--style" in err and "cartoon" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_cli_photo(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synth", str(out), "--style", "photo", "--classes", "10", "--videos-per-class", "1",
            "--val-per-class", "0", "--frames", "8", "--size", "32", "--workers", "1"]
    assert main(args) == 0
    assert "photo videos of 10 classes" in capsys.readouterr().out
    meta = json.loads((out / "synth.json").read_text())
    assert meta["style"] == "photo" and meta["classes"] == list(PHOTO_CLASSES)
    assert meta["mirror_classes"] == [["move_left", "move_right"], ["rotate_clockwise", "rotate_anticlockwise"]]
    assert len((out / "train.csv").read_text().splitlines()) == 11


def test_quantiser_sets_mpeg4_and_mjpeg_quality(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
    for codec in ("mpeg4", "mjpeg"):
        spec = CODECS[codec]
        fine = write_video(tmp_path / f"fine{spec.suffix}", frames, 30, codec=codec, qscale=2)
        coarse = write_video(tmp_path / f"coarse{spec.suffix}", frames, 30, codec=codec, qscale=20)
        assert fine.stat().st_size > 1.5 * coarse.stat().st_size, codec
