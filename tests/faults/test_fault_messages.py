"""Errors that say the fix: pruning that --round-to holds back says so, a mirror-image pair names its key."""

from pathlib import Path

import pytest

from edgevid.cli import main
from edgevid.compress.pruning import prune_to_macs
from edgevid.errors import EdgevidError
from edgevid.models import create_model

TINY = Path(__file__).parents[2] / "recipes" / "tiny.yaml"


def test_prune_too_far_for_round_to_names_round_to():
    model = create_model("tiny3d", num_classes=2, width=8).eval()
    with pytest.raises(EdgevidError) as info:
        prune_to_macs(model, 4, 32, 0.5, round_to=8)
    message = str(info.value)
    assert "cannot remove 50% of the MACs" in message
    assert "--round-to 8 keeps channel counts multiples of 8" in message and "--round-to 1" in message, message
    assert prune_to_macs(model, 4, 32, 0.5, round_to=1).mac_reduction > 0.45  # the hint is true


def test_prune_too_far_anyway_does_not_blame_round_to():
    model = create_model("tiny3d", num_classes=2, width=8).eval()
    with pytest.raises(EdgevidError, match="choose a smaller --ratio") as info:
        prune_to_macs(model, 4, 32, 0.99, round_to=1)
    assert "--round-to" not in str(info.value)


def test_mirror_classes_error_names_the_key_and_the_fix(data, tmp_path, capsys):
    code = main(["train", "-r", str(TINY), "-d", str(data), "-o", str(tmp_path / "run"),
                 "data.augment.mirror_classes=[[swipe_left,swipe_right]]"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "Traceback" not in err
    assert "data.augment.mirror_classes: mirror-image pair names 'swipe_left', which is not a class" in err, err
    assert "data.augment.mirror_classes=[]" in err and "data.augment.flip=false" in err


def test_predict_with_swapped_arguments_says_so(data, tmp_path, capsys):
    video = next((data / "val").rglob("*.mp4"))
    for model in (tmp_path / "run", tmp_path / "best.pt"):
        (tmp_path / "run").mkdir(exist_ok=True)
        (tmp_path / "best.pt").write_bytes(b"x")
        assert main(["predict", str(video), str(model)]) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert "the arguments look swapped" in err and f"edgevid predict {model} {video}" in err, err


@pytest.mark.parametrize("argv", [
    ["train", "-r", str(TINY), "-d", "VIDEO", "-o", "OUT"],
    ["eval", "RUN", "--data", "VIDEO"],
    ["calib", "build", "--data", "VIDEO", "--model", "tiny3d", "--out", "OUT/calib.json"],
])
def test_a_video_passed_as_data_names_the_option(data, tmp_path, capsys, argv):
    video = next((data / "val").rglob("*.mp4"))
    run = tmp_path / "run"
    if "RUN" in argv:
        assert main(["train", "-r", str(TINY), "-d", str(data), "-o", str(run), "train.epochs=1"]) == 0
        capsys.readouterr()
    argv = [str(video) if a == "VIDEO" else str(run) if a == "RUN" else str(tmp_path / "out") if a == "OUT"
            else a.replace("OUT", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"--data {video}: is a video file; expected a dataset folder" in " ".join(lines[0].split())
