"""Errors name the user's thing: the file a data-loading worker failed on, an empty model file, a folder where
a video goes, a video where a dataset goes."""

from pathlib import Path

import pytest

from edgevid.cli import main
from edgevid.data.datasets import find_split
from edgevid.errors import EdgevidError
from edgevid.meta import read_meta

TINY = Path(__file__).parents[2] / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def data(data):
    """The shared dataset plus a broken video listed in train."""
    root = data
    (root / "train" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    label = find_split(root, "train").classes[0]
    with (root / "train.csv").open("a") as f:
        f.write(f"train/broken.mp4,{label}\n")
    return root


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return " ".join(lines[0].split())


def test_strict_with_loader_workers_names_the_file(data, tmp_path, capsys):
    code = main(["train", "-r", str(TINY), "-d", str(data), "-o", str(tmp_path / "run"), "data.strict=true",
                 "train.workers=1", "train.batch_size=5", "train.epochs=1"])
    line = _error_line(capsys)
    assert code == 1
    assert "broken.mp4" in line and "worker process 0" not in line and "Caught" not in line, line


def test_empty_model_files_say_so(tmp_path, data, capsys):
    for name, kind in (("model.onnx", "an ONNX model"), ("model.xml", "an OpenVINO IR")):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(EdgevidError, match=rf"{name}: empty file \(0 bytes\), not {kind}"):
            read_meta(tmp_path / name)
    video = next((data / "val").rglob("*.mp4"))
    assert main(["predict", str(tmp_path / "model.onnx"), str(video)]) == 1
    assert "model.onnx: empty file (0 bytes), not an ONNX model" in _error_line(capsys)


def test_a_folder_where_a_video_goes(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["predict", str(tmp_path / "model.onnx"), str(tmp_path / "run")]) == 1
    assert f"{tmp_path / 'run'}: is a folder, expected a video file" in _error_line(capsys)
    from edgevid.data.decode import VideoDecodeError, VideoReader

    with pytest.raises(VideoDecodeError, match="is a folder, expected a video file"):
        VideoReader(tmp_path)


def test_a_video_passed_as_data(data, tmp_path, capsys):
    video = next((data / "val").rglob("*.mp4"))
    assert main(["data", "info", str(video)]) == 1
    assert f"--data {video}: is a video file; expected a dataset folder" in _error_line(capsys)
    binary = tmp_path / "list.txt"
    binary.write_bytes(b"\x00\xb5\xff" * 20)
    with pytest.raises(EdgevidError, match=r"list\.txt: not a text list file .*--data expects a dataset folder"):
        find_split(binary, "train")
