"""`edgevid tune`: real trials of the tiny recipe on tiny synthetic videos; resume, two processes, pruning, budgets."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from edgevid.cli import main
from edgevid.train.engine import read_metrics
from edgevid.train.recipe import load_recipe
from edgevid.train.tune import (
    _StudyClock,
    base_params,
    default_space,
    load_space,
    make_pruner,
    parse_duration,
    space_overrides,
    startup_trials,
    tune,
)

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one intra-op thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def dataset(tiny_synth):
    return tiny_synth


def _study(out: Path, name: str = "tiny", db: Path | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db or out / 'study.db'}")


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgevid", "tune", "--recipe", str(TINY), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def test_durations():
    assert parse_duration("90s", "--budget") == 90
    assert parse_duration("15m", "--budget") == 900
    assert parse_duration("1.5h", "--budget") == 5400
    for bad in ("soon", "60", "-5m", "0s", "5 min"):
        with pytest.raises(Exception, match="--budget"):
            parse_duration(bad, "--budget")


def test_bad_budget_is_one_line_naming_the_option(dataset, tmp_path, capsys):
    code = main(["tune", "--recipe", str(TINY), "--data", str(dataset), "--budget", "soon", "--out",
                 str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and code != 130
    assert len(err.splitlines()) == 1 and "--budget" in err and "'soon'" in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("extra, names", [
    (["--trial-budget", "5x"], "--trial-budget"),
    (["--storage", "nosuch://db"], "--storage nosuch://db"),
    (["--space", "SPACE", "--budget", "1m"], "space.yaml: override 'optim.lrr=0.1'"),
])
def test_bad_options_are_one_line_errors(dataset, tmp_path, capsys, extra, names):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lrr: [0.1]\n")
    extra = [str(space) if arg == "SPACE" else arg for arg in extra]
    code = main(["tune", "--recipe", str(TINY), "--data", str(dataset), "--budget", "1m", "--out",
                 str(tmp_path / "t"), *extra])
    err = capsys.readouterr().err.strip()
    assert code not in (0, 130) and len(err.splitlines()) == 1 and names in err, err
    assert not (tmp_path / "t").exists()


def test_default_space_follows_the_recipe_and_builds_valid_overrides():
    base = load_recipe(TINY)
    space = default_space(base.resolved())
    assert space["data.size"].choices == (24, 32, 40)
    assert space["train.batch_size"].choices == (2, 4, 8)
    assert space["optim.lr"].log and space["optim.lr"].low == pytest.approx(0.0004)
    seconds = space["data.clip_seconds"]  # 4 frames every 2nd at 30 fps: 0.267 s; half to twice that
    assert (seconds.low, seconds.high) == pytest.approx((4 * 2 / 30 / 2, 4 * 2 / 30 * 2), abs=1e-3)
    overrides = space_overrides({"data.clip_seconds": 0.5, "data.augment.scale[0]": 0.3, "optim.lr": 1e-05}, base)
    # the clip's span is defined once: the recipe's stride is cleared when seconds are searched
    assert overrides == ["data.clip_seconds=0.5", "optim.lr=1.0e-05", "data.augment.scale=[0.3, 1.0]",
                         "data.sampling_stride=null"]
    recipe = load_recipe(TINY, overrides)
    assert recipe.data.clip_seconds == 0.5 and recipe.data.sampling_stride is None
    assert recipe.optim.lr == 1e-05 and recipe.data.augment.scale == (0.3, 1.0)
    assert "train.epochs" in space  # a recipe that trains for a time leaves its epochs to the budget
    assert "train.epochs" not in default_space(load_recipe(TINY, ["train.minutes=5"]).resolved())


def test_short_studies_leave_the_random_phase_early():
    assert startup_trials(3600, 600) == 3  # 6 trials fit: base + 2 random, then TPE
    assert startup_trials(7200, 900) == 4
    assert startup_trials(4 * 3600, 600) == 10  # Optuna's default for long studies
    assert startup_trials(600, 600) == 3


def test_study_clock_counts_overlapping_sessions_once():
    class FakeStudy:
        def __init__(self):
            self.user_attrs = {}

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

    study = FakeStudy()
    study.user_attrs = {"session:a": [0.0, 100.0], "session:b": [50.0, 120.0], "session:c": [500.0, 530.0],
                        "tune": {"recipe": "x"}}
    clock = _StudyClock(study, budget_s=600)
    study.user_attrs[clock.key] = [1000.0, 1010.0]
    assert clock.spent() == pytest.approx(120 + 30 + 10)
    assert clock.left() == pytest.approx(600 - 160)
    assert clock.index() == 3


def test_a_trial_starts_only_while_its_whole_budget_is_left(dataset, tmp_path, monkeypatch, capsys):
    # a shorter last trial would not compare with the others (it trains for less time): the study ends instead
    kwargs = {"budget_s": 300, "trial_budget_s": 120, "space": {"train.epochs": None},
              "overrides": ["train.epochs=1"]}
    monkeypatch.setattr(_StudyClock, "left", lambda self: 100.0)
    result = tune(TINY, dataset, tmp_path / "tune", **kwargs)
    out = capsys.readouterr().out
    assert [r["state"] for r in result.rows] == ["waiting"] and result.best is None  # the base trial, queued
    assert "100s of its 5m budget left, less than a trial's 2m" in out and not (tmp_path / "tune" / "trials").exists()
    monkeypatch.setattr(_StudyClock, "left", lambda self: 130.0)
    result = tune(TINY, dataset, tmp_path / "tune", n_trials=1, **kwargs)
    (trial,) = _study(tmp_path / "tune").get_trials()
    assert [r["state"] for r in result.rows] == ["complete"] and trial.user_attrs["budget_s"] == 120


@pytest.mark.slow
def test_tiny_study_writes_a_best_recipe_matching_the_best_trial(dataset, tmp_path):
    out = tmp_path / "tune"
    base_recipe = load_recipe(TINY).resolved()
    result = tune(TINY, dataset, out, budget_s=300, n_trials=3, seed=1)
    study = _study(out)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3 and len(result.rows) == 3
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert result.best["trial"] == best.number and result.best["value"] == best.value
    recipe = load_recipe(out / "best.yaml")  # a complete recipe that loads as one
    assert recipe.optim.lr == best.params["optim.lr"]
    assert recipe.optim.weight_decay == best.params["optim.weight_decay"]
    assert recipe.train.batch_size == best.params["train.batch_size"]
    assert recipe.train.epochs == best.params["train.epochs"]
    assert recipe.data.size == best.params["data.size"]
    assert recipe.data.clip_seconds == best.params["data.clip_seconds"]
    assert recipe.data.augment.scale[0] == best.params["data.augment.scale[0]"]
    assert recipe.data.augment.stride_jitter == best.params["data.augment.stride_jitter"]
    header = (out / "best.yaml").read_text().splitlines()[:6]
    assert any(f"best trial: {best.number}, val top-1 {best.value:.1f}%" in line for line in header)
    assert any(str(dataset) in line for line in header)
    # each trial is a real run of its own, whose val top-1 is the trial's value
    for trial in trials:
        run = out / "trials" / f"{trial.number:04d}"
        metrics = read_metrics(run)
        assert max(r["val_top1"] for r in metrics) == trial.value
        assert load_recipe(run / "recipe.yaml").optim.lr == trial.params["optim.lr"]
    rows = _rows(out)
    assert [int(r["trial"]) for r in rows] == [0, 1, 2] and {r["state"] for r in rows} == {"complete"}
    # the first trial is the base recipe itself, the others are sampled
    first = study.trials[0]
    assert first.user_attrs["base"] and first.params == base_params(load_space(None, base_recipe), base_recipe)
    assert first.params["optim.lr"] == base_recipe.optim.lr and first.params["train.epochs"] == base_recipe.train.epochs
    assert all(t.params != first.params for t in study.trials[1:])
    assert (out / "tune.png").stat().st_size > 1000
    assert not list(out.glob(".*.tmp-*"))


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return bool(trial.intermediate_values)


@pytest.mark.slow
def test_a_pruned_trial_stops_after_its_epoch_and_leaves_a_consistent_run(dataset, tmp_path):
    out = tmp_path / "tune"
    result = tune(TINY, dataset, out, budget_s=300, n_trials=1, space={"train.epochs": None},
                  overrides=["train.epochs=4"], pruner=_AlwaysPrune())
    (trial,) = _study(out).get_trials()
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    run = out / "trials" / "0000"
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    assert torch.load(run / "last.pt", weights_only=True)["train_state"]["epoch"] == 1
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    assert result.rows[0]["state"] == "pruned" and result.rows[0]["epochs"] == 1
    assert result.best is None and not (out / "best.yaml").exists()


def test_median_pruner_prunes_a_clearly_worse_trial():
    study = optuna.create_study(direction="maximize", pruner=make_pruner(epochs=8))
    for top1 in (60.0, 70.0, 80.0):
        trial = study.ask()
        for epoch in (1, 2, 3):
            trial.report(top1 + epoch, epoch)
        study.tell(trial, top1 + 3)
    worse = study.ask()
    worse.report(10.0, 1)
    assert not worse.should_prune()  # epoch 1 is a warm-up epoch
    worse.report(12.0, 2)
    assert worse.should_prune()
    fair = study.ask()
    fair.report(75.0, 1)
    fair.report(76.0, 2)
    assert not fair.should_prune()


def test_pruning_waits_for_a_quarter_of_a_long_recipe():
    study = optuna.create_study(direction="maximize", pruner=make_pruner(epochs=45))
    for top1 in (30.0, 35.0, 40.0):
        trial = study.ask()
        for epoch in range(1, 13):
            trial.report(top1, epoch)
        study.tell(trial, top1)
    late = study.ask()
    for epoch in range(1, 11):
        late.report(12.5, epoch)  # near chance on its first epochs, as from-scratch video models often are
    assert not late.should_prune()
    late.report(12.5, 11)
    assert late.should_prune()


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


@pytest.mark.slow
def test_ctrl_c_then_the_same_command_continues_the_study(dataset, tmp_path):
    out = tmp_path / "tune"
    # every trial stops at its 5 s budget (far from its 100+ epochs): trial 1 is stopped by Ctrl-C well before that
    args = _cli("--data", str(dataset), "--budget", "5m", "--trial-budget", "5s", "--out", str(out), "--trials", "3",
                "train.epochs=200")
    # the child gets Ctrl-C's default action even when this runner ignores SIGINT (a shell's background job does)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(out / "trials" / "0001" / "metrics.jsonl", proc)  # trial 0 is done, trial 1 has run one epoch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: kept 1 finished trial(s)") and "trial 1 was stopped" in line, line
    assert f"--out {out}" in line and "continue with: edgevid tune" in line
    first = _study(out).get_trials()
    assert [t.state for t in first] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert [int(r["trial"]) for r in _rows(out)] == [0, 1, 2]  # written on the way out
    run = out / "trials" / "0001"  # the stopped run is consistent: whole files, its metrics match last.pt
    epochs = torch.load(run / "last.pt", weights_only=True)["train_state"]["epoch"]
    assert [r["epoch"] for r in read_metrics(run)] == list(range(1, epochs + 1))
    assert not list(run.glob(".*.tmp-*"))

    assert main(args[3:]) == 0  # the same command again, in this process
    trials = _study(out).get_trials()
    numbers = [t.number for t in trials]
    assert len(trials) > len(first) and len(set(numbers)) == len(numbers)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    retry = trials[2]  # the stopped trial ran again first, with the same parameters
    assert retry.system_attrs.get("failed_trial") == 1 and retry.params == first[1].params
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["stopped"] == "budget"
    sessions = [k for k in _study(out).user_attrs if k.startswith("session:")]
    assert len(sessions) == 2

    # another recipe under the same study is refused, naming the study
    code = main([*args[3:], "optim.name=sgd"])
    assert code not in (0, 130) and not (out / "trials" / f"{len(trials):04d}").exists()
    assert [int(r["trial"]) for r in _rows(out)] == sorted(numbers)


@pytest.mark.slow
def test_two_processes_share_one_study(dataset, tmp_path):
    db = tmp_path / "shared.db"
    space = tmp_path / "space.yaml"
    space.write_text("train.epochs: null\noptim.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n")
    # trials of a second or two each (the trial budget), so that neither process can finish the study alone before the
    # other one has started
    procs = [subprocess.Popen(_cli("--data", str(dataset), "--budget", "3m", "--trials", "4", "--out",
                                   str(tmp_path / name), "--storage", f"sqlite:///{db}", "--study", "shared",
                                   "--space", str(space), "--trial-budget", "1s", "train.epochs=40"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for name in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    trials = _study(tmp_path, "shared", db).get_trials()
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers) >= 4
    assert all(1e-3 <= t.params["optim.lr"] <= 1e-2 and "train.epochs" not in t.params for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # both processes ran trials
    own = {}
    for name in ("a", "b"):  # each process's outputs describe the whole study, its trial folders its own trials
        rows = _rows(tmp_path / name)
        assert {int(r["trial"]) for r in rows} <= set(numbers) and len(rows) >= 4
        own[name] = {int(p.name) for p in (tmp_path / name / "trials").iterdir()}
        assert own[name]
    assert not own["a"] & own["b"] and own["a"] | own["b"] == set(numbers)


def test_a_trial_another_worker_told_first_does_not_stop_this_worker(dataset, tmp_path, monkeypatch, capsys):
    """Optuna's SQLite race (two workers pop one queued trial): the refused tell is skipped, other errors are not."""
    real = optuna.Study.optimize
    raised: list[str] = []

    def racing(self, *args, **kwargs):
        if not raised:
            raised.append("tell")
            raise ValueError("Cannot tell a COMPLETE trial.")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "optimize", racing)
    result = tune(TINY, dataset, tmp_path / "tune", budget_s=300, n_trials=1, space={"train.epochs": None},
                  overrides=["train.epochs=1"])
    assert raised == ["tell"] and len(result.rows) == 1 and result.rows[0]["state"] == "complete"
    assert "finished by another worker" in capsys.readouterr().out
    monkeypatch.setattr(optuna.Study, "optimize", lambda self, *a, **k: (_ for _ in ()).throw(ValueError("other")))
    with pytest.raises(ValueError, match="other"):
        tune(TINY, dataset, tmp_path / "tune2", budget_s=300, n_trials=1, space={"train.epochs": None},
             overrides=["train.epochs=1"])
