"""Exit codes as documented: 0 ok, 1 a user error (one line naming the thing), 2 a usage error (bad option
syntax), 130 interrupted."""

from pathlib import Path

import pytest

from edgevid.cli import main


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["predict", "model.onnx", "nowhere.mp4"], "no such"),
    (["models", "no_such_model*"], "no_such_model"),
    (["data", "synth", "x", "--classes", "12"], "--classes"),
])
def test_user_errors_exit_1(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert expected in _one_error_line(capsys.readouterr().err)
    assert not Path("x").exists()


@pytest.mark.parametrize("argv", [["predict"], ["models", "--bogus"], ["data", "synth", "x", "--classes", "many"]])
def test_usage_errors_exit_2(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "--help" in _one_error_line(capsys.readouterr().err)
