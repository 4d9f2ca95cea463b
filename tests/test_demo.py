"""``edgevid demo --quick`` end to end, and how the demo handles its output folder and failing steps."""

import json
from pathlib import Path

import pytest

from edgevid.cli import main
from edgevid.demo import QUICK, BudgetReached, Demo, TrainingBudget, run_demo
from edgevid.errors import EdgevidError

STEPS = ["data", "train", "eval", "calib", "quantize", "export", "bench", "live"]


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "edgevid demo summary" in printed and "where everything is" in printed
    summary = json.loads((out / "demo.json").read_text())
    assert [step["step"] for step in summary["steps"]] == STEPS
    for relative in ("data/synth.json", "run/best.pt", "eval/eval.json", "eval/confusion.png", "calibration.json",
                     "artifacts/model.onnx", "artifacts/model.xml", "bench/bench.json", "bench/bench.png",
                     "live/input.mp4", "live/annotated.mp4", "live/report.json"):
        assert (out / relative).is_file(), relative
    assert all(Path(path).exists() for step in summary["steps"] for path in step["outputs"].values())
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    statuses = {(r["target"], r["precision"]): r["status"] for r in rows}
    assert statuses["openvino", "fp32"] == "ok" and statuses["openvino", "int8"] == "ok"
    assert statuses["trt", "fp32"] == "unavailable"
    report = json.loads((out / "live" / "report.json").read_text())
    assert report["frames_processed"] + report["frames_dropped"] == report["frames_captured"] > 0
    assert report["precision"] == "int8"


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EdgevidError, match="not an earlier demo output"):
        run_demo(tmp_path, quick=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failing_step_is_named(tmp_path):
    demo = Demo(tmp_path, QUICK, quick=True)
    with pytest.raises(EdgevidError, match=r"demo step 'train' failed: boom"), demo.step("train", "training"):
        raise RuntimeError("boom\nsecond line")
    assert demo.summary.steps == []


def test_training_budget_stops_before_an_epoch_that_would_not_fit():
    unlimited = TrainingBudget(None)
    unlimited({"epoch": 1, "val_top1": 40.0})
    unlimited({"epoch": 2, "val_top1": None})
    assert unlimited.epochs == 2 and unlimited.best_top1 == 40.0
    tight = TrainingBudget(1.0)
    tight.start -= 31.0
    with pytest.raises(BudgetReached):
        tight({"epoch": 1, "val_top1": 10.0})
    assert tight.epochs == 1 and tight.best_top1 == 10.0
