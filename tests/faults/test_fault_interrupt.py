"""Ctrl-C speaks: every command prints one line saying what was kept and how to continue, exits 130, and leaves
no traceback and no partial file; usage errors are one line in the project's format too."""

import shlex
from pathlib import Path

import pytest

from edgevid.cli import main
from edgevid.train import engine
from edgevid.train.engine import newest_checkpoint

TINY = Path(__file__).parents[2] / "recipes" / "tiny.yaml"


def _interrupt_epoch(monkeypatch, at: int) -> None:
    """Ctrl-C arrives during the training of epoch ``at`` (1-based)."""
    real = engine.Trainer._train_epoch

    def train_epoch(self, epoch):
        if epoch + 1 == at:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(engine.Trainer, "_train_epoch", train_epoch)


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_interrupted_train_says_what_was_kept_and_the_resume_command(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _interrupt_epoch(monkeypatch, at=2)
    code = main(["train", "-r", str(TINY), "-d", str(data), "-o", str(run), "train.batch_size=2"])
    line = _one_line(capsys.readouterr().err)
    assert code == 130
    assert line.startswith(f"interrupted: kept {run} at epoch 1") and "continue with: edgevid train --resume" in line
    assert newest_checkpoint(run).train_state["epoch"] == 1 and not list(run.glob(".*.tmp-*"))
    monkeypatch.undo()
    command = shlex.split(line.split("continue with: ")[1])
    assert command[:2] == ["edgevid", "train"]
    assert main(command[1:]) == 0
    assert newest_checkpoint(run).train_state["epoch"] == 2


def test_interrupt_before_the_first_epoch_ends(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _interrupt_epoch(monkeypatch, at=1)
    assert main(["train", "-r", str(TINY), "-d", str(data), "-o", str(run)]) == 130
    line = _one_line(capsys.readouterr().err)
    assert f"no epoch of {run} had finished, nothing to resume" in line
    assert not (run / "last.pt").exists() and not list(run.glob(".*.tmp-*"))


@pytest.mark.parametrize("module, name, argv", [
    ("edgevid.pipeline", "export", ["export", "run.pt", "--target", "onnx"]),
    ("edgevid.compress.quantize", "quantize", ["quantize", "run.pt", "-t", "onnx", "-c", "calib.json"]),
    ("edgevid.bench", "bench", ["bench", "run.pt", "--targets", "torch"]),
    ("edgevid.train", "evaluate", ["eval", "run.pt", "--data", "data"]),
    ("edgevid.data.datasets", "dataset_info", ["data", "info", "data"]),
])
def test_every_command_speaks_on_ctrl_c(monkeypatch, capsys, module, name, argv):
    import importlib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    assert main(argv) == 130
    line = _one_line(capsys.readouterr().err)
    command = " ".join(argv[:2]) if argv[0] == "data" else argv[0]
    assert line.startswith(f"interrupted: edgevid {command} stopped before it finished"), line


@pytest.mark.parametrize("argv, expected", [
    (["train", "--bogus"], "No such option: --bogus"),
    (["eval", "run"], "Missing option '--data'"),
    (["bench", "run", "--iters", "many"], "Invalid value for '--iters'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_usage_errors_are_one_line(capsys, argv, expected):
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and expected in line and "--help" in line, line
    assert "╭" not in line and "Usage:" not in line
