"""Training by clip duration (data.clip_seconds) end to end, and the end-of-training fit diagnosis."""

import json
from pathlib import Path

import pytest

from edgevid.checkpoint import load_checkpoint
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.train import predict_video, train
from edgevid.train.engine import FIT_THRESHOLDS, diagnose_fit, epochs_in_budget, fit_line, read_metrics
from edgevid.train.recipe import load_recipe

TINY = Path(__file__).parent.parent / "recipes" / "tiny.yaml"


def _rows(*pairs):
    """Metric rows from (train top-1, val top-1) pairs, one per epoch."""
    return [{"epoch": i + 1, "train_acc": t, "val_top1": v, "train_loss": 1.0} for i, (t, v) in enumerate(pairs)]


def test_fit_diagnosis_on_hand_made_rows():
    underfit = diagnose_fit(_rows((30.0, 28.0), (55.0, 52.0), (61.0, 60.0)))
    assert underfit["verdict"] == "underfit" and underfit["last"] == {"epoch": 3, "train_top1": 61.0, "val_top1": 60.0}
    assert "--epochs" in underfit["advice"] and "data.size" in underfit["advice"] and "optim.lr" in underfit["advice"]
    overfit = diagnose_fit(_rows((60.0, 50.0), (90.0, 62.0), (99.0, 70.0)))
    assert overfit["verdict"] == "overfit" and overfit["gap"] == pytest.approx(29.0)
    assert "augment" in overfit["advice"] and "weight_decay" in overfit["advice"]
    # a gap under overfit_gap, but val top-1 fell from its best while train kept rising
    falling = diagnose_fit(_rows((80.0, 82.0), (90.0, 86.0), (97.0, 84.0), (99.0, 86.0 - FIT_THRESHOLDS.val_drop)))
    assert falling["verdict"] == "overfit" and falling["best"]["epoch"] == 2 and falling["last"]["epoch"] == 4
    # val top-1 fell from its best, but train top-1 is far from fitting: the run underfits (X3D-XS on synth wild)
    low = diagnose_fit(_rows((15.0, 14.0), (21.9, 23.3), (19.2, 17.5)))
    assert low["verdict"] == "underfit"
    fine = diagnose_fit(_rows((70.0, 65.0), (92.0, 90.0), (95.0, 91.0)))
    assert fine["verdict"] == "fine"
    assert fine["thresholds"] == {"overfit_gap": 15.0, "val_drop": 5.0, "underfit_train": 85.0}
    line = fit_line(falling)
    assert line.startswith("fit: overfit: train top-1 99.0% vs val 81.0% at the last epoch (4), 90.0% vs 86.0% at "
                           "the best (2); ")
    assert "\n" not in fit_line(underfit)
    # epochs without validation (train.eval_every) are skipped; no validation at all: no diagnosis
    assert diagnose_fit([*_rows((40.0, 35.0)), {"epoch": 2, "train_acc": 99.0, "val_top1": None}])["last"]["epoch"] == 1
    assert diagnose_fit([{"epoch": 1, "train_acc": 50.0, "val_top1": None}]) is None


def test_training_by_seconds_records_clip_seconds_and_the_fit_line(tmp_path, capsys, one_thread):
    data = tmp_path / "synth"  # 25 fps videos: 0.64 s of 4 frames = every 4th frame
    generate_synth(data, SynthConfig(classes=3, videos_per_class=2, val_per_class=1, frames=16, size=32),
                   show_progress=False, overwrite=True)
    seconds = ["train.epochs=1", "data.sampling_stride=null", "data.clip_seconds=0.64"]
    run = train(TINY, data, tmp_path / "run", overrides=seconds)
    meta = json.loads((run / "summary.json").read_text())
    assert meta["fit"]["verdict"] in ("underfit", "overfit", "fine")
    out = capsys.readouterr().out
    assert "fit: " + meta["fit"]["verdict"] in out
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.meta.clip_seconds == pytest.approx(0.64)
    assert ckpt.meta.sampling_stride == 5 and ckpt.meta.fps == 30.0  # 0.64 s at data.fps 30, for frame-stride readers
    assert load_recipe(run / "recipe.yaml").data.clip_seconds == pytest.approx(0.64)  # resumable
    video = next((data / "val").rglob("*.mp4"))
    assert len(predict_video(run, video, topk=1)) == 1
    frames = train(TINY, data, tmp_path / "frames", overrides=["train.epochs=1"])
    assert load_checkpoint(frames / "last.pt").meta.clip_seconds is None  # the default stays a frame stride


def test_epochs_in_budget_fits_the_median_of_the_recent_epochs():
    # 10 minutes; the first epoch (decoding) took 60 s; the median of the other five is 25 s
    assert epochs_in_budget(600, 197, [60, 20, 30, 25, 40, 22], 6, 100) == 6 + 403 // 25
    assert epochs_in_budget(600, 60, [60], 1, 100) == 1 + 540 // 60  # only the first epoch to go by
    assert epochs_in_budget(600, 590, [60, 20], 2, 100) == 2  # nothing more fits: the run ends
    assert epochs_in_budget(600, 700, [60, 20], 2, 100) == 2
    assert epochs_in_budget(6000, 80, [60, 20], 2, 10) == 10  # epochs caps the plan
    assert epochs_in_budget(600, 0, [], 0, 40) == 40


def test_a_time_budget_ends_the_run_and_its_schedule(tmp_path, capsys, one_thread):
    data = tmp_path / "synth"
    generate_synth(data, SynthConfig(classes=3, videos_per_class=2, val_per_class=1, frames=16, size=32),
                   show_progress=False, overwrite=True)
    run = train(TINY, data, tmp_path / "run", overrides=["train.epochs=50", "train.minutes=0.0001"])
    rows = read_metrics(run)
    assert len(rows) == 1 and rows[0]["val_top1"] is not None  # the last planned epoch is validated
    assert rows[0]["elapsed_s"] > 0
    state = load_checkpoint(run / "last.pt").train_state
    assert state["scheduler"]["total_steps"] == state["scheduler"]["step_count"]  # annealed at the run's end
    assert "1 epochs fitted train.minutes=0.0001" in capsys.readouterr().out
    again = train(None, data, run, resume=True, overrides=["train.minutes=0.0001"])
    assert len(read_metrics(again)) == 1
    assert "resume with train.minutes=M" in capsys.readouterr().out
