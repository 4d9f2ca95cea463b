"""Stale temporaries and the quantize report: the next export or quantize into a folder removes what a killed
process left there (never what a running one is writing), and an interrupted quantize never leaves an artifact
without its report."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from compress_fixtures import make_synth, train_tiny_run

from edgevid.cli import main
from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.compress.quantize import quantize
from edgevid.meta import read_meta
from edgevid.utils.atomic import atomic_path

QUANTIZE = importlib.import_module("edgevid.compress.quantize")  # the package exports a function of that name


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture()
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("temps")
    data = make_synth(root / "data", classes=2, videos=2, val=1)
    run = train_tiny_run(data, root / "run", steps=2)
    calib = build_manifest(data, 4, Preprocessing.from_meta(read_meta(run)), show_progress=False)[0].save(
        root / "c.json")
    return {"data": data, "run": run, "calib": calib}


def _leave_temporaries(folder: Path, live: int) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    dead = _dead_pid()
    made = {"dead_file": folder / f".m.onnx.tmp-{dead}-abc.onnx", "dead_dir": folder / f".m.xml.tmp-{dead}-def",
            "old_style": folder / ".m.onnx.tmp-k2j4h1", "live": folder / f".m.onnx.tmp-{live}-ghi.onnx",
            "user_file": folder / ".hidden-notes.txt"}
    for name, path in made.items():
        if name == "dead_dir":
            path.mkdir()
            (path / "m.xml").write_text("partial")
        else:
            path.write_bytes(b"partial")
    return made


def test_temporaries_are_named_with_their_process():
    with atomic_path(Path(os.environ.get("TMPDIR", "/tmp")) / "edgevid-name-check.txt") as tmp:
        assert tmp.name.startswith(f".edgevid-name-check.txt.tmp-{os.getpid()}-")


def test_export_removes_temporaries_of_dead_processes_only(setup, tmp_path, live_pid, capsys):
    made = _leave_temporaries(tmp_path / "out", live_pid)
    assert main(["export", str(setup["run"]), "--target", "onnx", "--out", str(tmp_path / "out" / "m.onnx")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "removed 3 temporary file(s) a killed process left in" in err, err
    assert not made["dead_file"].exists() and not made["dead_dir"].exists() and not made["old_style"].exists()
    assert made["live"].exists() and made["user_file"].exists()
    assert (tmp_path / "out" / "m.onnx").is_file()


def test_quantize_removes_temporaries_of_dead_processes(setup, tmp_path, live_pid, capsys):
    made = _leave_temporaries(tmp_path / "q", live_pid)
    quantize(setup["run"], "onnx", setup["calib"], out=tmp_path / "q" / "m.int8.onnx", bench_iters=1,
             show_progress=False)
    assert "removed 3 temporary file(s)" in " ".join(capsys.readouterr().err.split())
    assert made["live"].exists() and not made["dead_file"].exists()
    assert (tmp_path / "q" / "m.int8.onnx").is_file() and (tmp_path / "q" / "m.int8.onnx.report.json").is_file()
    assert sorted(p.name for p in (tmp_path / "q").iterdir() if p.name.startswith(".m.int8")) == []


@pytest.mark.parametrize("stop", ["benchmark", "report", "first_move", "second_move"])
def test_interrupted_quantize_never_leaves_an_artifact_without_its_report(setup, tmp_path, monkeypatch, stop):
    out = tmp_path / "m.int8.onnx"
    report = out.with_name(out.name + ".report.json")
    real_replace, moves = os.replace, []

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    def replace(src, dst):  # os.replace everywhere: count the moves onto the final names only
        if Path(dst) in (out, report):
            moves.append(Path(dst).name)
            if (stop == "first_move" and len(moves) == 1) or (stop == "second_move" and len(moves) == 2):
                raise KeyboardInterrupt
        return real_replace(src, dst)

    if stop == "benchmark":
        monkeypatch.setattr(QUANTIZE, "benchmark_artifacts", interrupt)
    elif stop == "report":
        monkeypatch.setattr(QUANTIZE, "write_report", interrupt)
    else:
        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        quantize(setup["run"], "onnx", setup["calib"], out=out, bench_iters=1, show_progress=False)
    assert not out.exists() or report.is_file(), "an artifact without its report"
    if stop == "first_move":
        assert moves == [report.name] and not out.exists() and not report.exists()
    if stop == "second_move":
        assert moves == [report.name, out.name] and report.is_file() and not out.exists()
    # the next run writes both, and the report describes the artifact it sits beside
    monkeypatch.undo()
    quantize(setup["run"], "onnx", setup["calib"], out=out, bench_iters=1, show_progress=False)
    rows = json.loads(report.read_text())["rows"]
    assert out.is_file() and rows[1]["artifact"] == str(out) and rows[1]["precision"] == "int8"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
