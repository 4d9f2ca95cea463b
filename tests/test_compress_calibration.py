"""Calibration manifests: determinism, class stratification, validation against the model, loaders, CLI."""

import json

import numpy as np
import pytest
from compress_fixtures import FRAMES, MEAN, SIZE, STD, STRIDE, make_synth, tiny_meta

from edgevid.cli import main
from edgevid.compress.calibration import Preprocessing, build_manifest, load_calibration, load_manifest
from edgevid.errors import EdgevidError

PREP = Preprocessing(FRAMES, SIZE, STRIDE, "dense", MEAN, STD)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("synth"), classes=3, videos=4, val=1)


def test_manifest_is_deterministic_and_stratified(synth, tmp_path):
    first, skipped = build_manifest(synth, 8, PREP, seed=3, show_progress=False)
    again, _ = build_manifest(synth, 8, PREP, seed=3, show_progress=False)
    other, _ = build_manifest(synth, 8, PREP, seed=4, show_progress=False)
    assert skipped == []
    a, b = first.save(tmp_path / "a.json"), again.save(tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    assert [c.path for c in other.clips] != [c.path for c in first.clips]
    counts = first.class_counts()
    assert sum(counts.values()) == 8 and max(counts.values()) - min(counts.values()) <= 1
    assert all(c.path.startswith("train/") for c in first.clips)
    for clip in first.clips:
        assert np.array_equal(np.diff(clip.indices), [STRIDE] * (FRAMES - 1)) and clip.start == clip.indices[0]


def test_more_clips_than_videos_revisits_videos_evenly(synth):
    manifest, _ = build_manifest(synth, 20, PREP, show_progress=False)
    counts = manifest.class_counts()
    assert sum(counts.values()) == 20 and max(counts.values()) - min(counts.values()) <= 1
    per_video = {}
    for clip in manifest.clips:
        per_video[clip.path] = per_video.get(clip.path, 0) + 1
    assert len(per_video) == 12 and max(per_video.values()) - min(per_video.values()) <= 1


def test_segment_sampling_manifest(synth):
    manifest, _ = build_manifest(synth, 3, Preprocessing(8, SIZE, 1, "segments", MEAN, STD), show_progress=False)
    for clip in manifest.clips:
        assert clip.stride is None and len(clip.indices) == 8 and list(clip.indices) == sorted(clip.indices)


def test_loaded_clips_match_the_model_input(synth, tmp_path):
    path = build_manifest(synth, 4, PREP, show_progress=False)[0].save(tmp_path / "c.json")
    manifest, clips = load_calibration(path, tiny_meta(["move_left", "move_right", "move_up"]), "model.pt",
                                       show_progress=False)
    assert manifest.root == synth.resolve()
    assert len(clips) == 4 and all(c.shape == (1, 3, FRAMES, SIZE, SIZE) and c.dtype == np.float32 for c in clips)
    assert -3 < float(np.mean(clips[0])) < 3


def test_manifest_for_another_input_is_refused(synth, tmp_path):
    path = build_manifest(synth, 2, PREP, show_progress=False)[0].save(tmp_path / "c.json")
    meta = tiny_meta(["move_left", "move_right", "move_up"]).replace(size=64, frames=8)
    with pytest.raises(EdgevidError, match=r"c\.json: built for 4x32x32 .* expects 8x64x64 .*frames, size differ"):
        load_calibration(path, meta, "model.pt", show_progress=False)


def test_missing_video_is_named(synth, tmp_path):
    path = build_manifest(synth, 3, PREP, show_progress=False)[0].save(tmp_path / "c.json")
    data = json.loads(path.read_text())
    data["clips"][1]["path"] = "train/gone/nothing.mp4"
    path.write_text(json.dumps(data))
    with pytest.raises(EdgevidError, match=r"calibration video .*train/gone/nothing\.mp4 does not exist"):
        load_calibration(path, tiny_meta(["move_left", "move_right", "move_up"]), "model.pt", show_progress=False)


def test_bad_manifest_files(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(EdgevidError, match="not valid JSON"):
        load_manifest(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"clips": []}')
    with pytest.raises(EdgevidError, match="not an edgevid calibration manifest"):
        load_manifest(tmp_path / "y.json")
    with pytest.raises(EdgevidError, match="no such calibration manifest"):
        load_manifest(tmp_path / "missing.json")


def test_cli_builds_a_manifest_and_rejects_bad_input(synth, tmp_path, capsys):
    out = tmp_path / "calib" / "tiny.json"
    assert main(["calib", "build", "--data", str(synth), "--model", "tiny3d", "--frames", "4", "--size", "32",
                 "--num", "6", "--out", str(out)]) == 0
    manifest = load_manifest(out)
    assert manifest.model == "tiny3d" and manifest.preprocessing.size == 32 and len(manifest.clips) == 6
    bad = tmp_path / "bad.json"
    assert main(["calib", "build", "--data", str(synth), "--model", "tiny3d", "--num", "0", "--out", str(bad)]) == 1
    assert "--num must be >= 1" in capsys.readouterr().err and not bad.exists()
    assert main(["calib", "build", "--data", str(synth), "--num", "2", "--out", str(bad)]) == 1
    assert "exactly one of --artifact" in capsys.readouterr().err and not bad.exists()
