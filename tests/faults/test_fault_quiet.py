"""Quiet libraries: decoding a slightly corrupt video prints no raw libav line to stderr (only edgevid's one
error line); ``--verbose`` shows the libraries' lines."""

import os
import subprocess
import sys

import pytest

from edgevid.checkpoint import save_checkpoint
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model


@pytest.fixture(scope="module")
def corrupt(data, tmp_path_factory):
    """A synthetic video with bytes flipped in its middle: libav complains about its H.264 stream."""
    video = next((data / "val").rglob("*.mp4"))
    raw = bytearray(video.read_bytes())
    for i in range(len(raw) // 3, len(raw) // 3 + 400, 7):
        raw[i] ^= 0xFF
    path = tmp_path_factory.mktemp("corrupt") / "corrupt.mp4"
    path.write_bytes(bytes(raw))
    return path


def _stderr(*args: str) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OPENCV_FFMPEG_LOGLEVEL", None)
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
    return proc.returncode, proc.stderr


def _raw_libav(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("[h264 @") or line.startswith("[mov,mp4")]


def test_decoding_a_corrupt_video_prints_no_raw_libav_line(corrupt):
    code, err = _stderr("-c", "import numpy as np\n"
                              "from edgevid.data.decode import VideoReader, VideoDecodeError\n"
                              f"reader = VideoReader({str(corrupt)!r})\n"
                              "try:\n    reader.read(np.arange(reader.info.num_frames))\n"
                              "except VideoDecodeError as exc:\n    print('decode error:', exc)\n")
    assert code == 0 and _raw_libav(err) == [], err


def test_cli_prints_one_line_without_verbose_and_the_library_lines_with_it(corrupt, tmp_path):
    meta = ArtifactMeta(model="tiny3d", classes=["a", "b"], frames=4, size=32, sampling_stride=2, mean=(0.45,) * 3,
                        std=(0.225,) * 3, arch={"width": 4})
    model = save_checkpoint(tmp_path / "m.pt", create_model("tiny3d", num_classes=2, width=4).eval(), meta)
    code, err = _stderr("-m", "edgevid", "predict", str(model), str(corrupt))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {corrupt}: unreadable video"), err
    code, err = _stderr("-m", "edgevid", "--verbose", "predict", str(model), str(corrupt))
    assert code == 1 and "Traceback" in err
    assert any(line.startswith(("libav.", "[h264 @")) for line in err.splitlines()), err
