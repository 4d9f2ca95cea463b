"""Crash-consistent epochs: an interruption at any write of a training run (before it, while its temporary file
is complete but not renamed, after it; a SIGKILL-like stop that leaves the temporary file) leaves a run whose
best.pt is the best epoch recorded, and resuming it ends exactly where the uninterrupted run ends.

Faults are injected at the k-th call of the atomic writer (every file the run writes goes through it), not by
timing. Validation is scripted (top-1 50, 25, 75 over three epochs) so both commit paths (an epoch that improves
on the best and one that does not) are hit; training itself is real (Tiny3D, 4 clips, 2 steps an epoch)."""

import contextlib
import shutil
from pathlib import Path

import pytest
import torch

import edgevid.meta
import edgevid.utils.atomic
import edgevid.utils.plotting
from edgevid.checkpoint import load_checkpoint
from edgevid.train import engine, train
from edgevid.train.engine import newest_checkpoint, read_metrics

TINY = Path(__file__).parents[2] / "recipes" / "tiny.yaml"
OVERRIDES = ["train.epochs=3", "train.batch_size=2", "optim.warmup_epochs=0"]
SCRIPTED_TOP1 = {1: 50.0, 2: 25.0, 3: 75.0}
STEPS_PER_EPOCH = 2
DETERMINISTIC = ("epoch", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr", "skipped")
_REAL_ATOMIC = edgevid.utils.atomic.atomic_path


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, not even the writer's own cleanup of its temporary file."""


def _validate(self):
    epoch = self.global_step // STEPS_PER_EPOCH
    return {"val_loss": 1.0 / epoch, "val_top1": SCRIPTED_TOP1[epoch], "val_top5": 100.0, "eval_time_s": 0.0}, []


@pytest.fixture(autouse=True)
def _scripted_validation(monkeypatch):
    monkeypatch.setattr(engine.Trainer, "_validate", _validate)


class _Fault:
    """Replaces the atomic writer; at call ``k`` raises (KeyboardInterrupt or _Killed) at ``when``."""

    def __init__(self, k: int | None, when: str) -> None:
        self.k, self.when, self.calls = k, when, []

    @contextlib.contextmanager
    def __call__(self, final, suffix=None):
        index = len(self.calls)
        self.calls.append(Path(final).name)
        hit = index == self.k
        if hit and self.when == "before":
            raise KeyboardInterrupt
        with _REAL_ATOMIC(final, suffix) as tmp:
            yield tmp
            if hit and self.when == "renaming":  # the temporary file is complete, the rename not done
                raise KeyboardInterrupt
            if hit and self.when == "killed":  # SIGKILL at the same point: the temporary file stays behind
                shutil.copy(tmp, tmp.with_name(tmp.name + "x"))
                raise _Killed
        if hit and self.when == "after":
            raise KeyboardInterrupt


def _install(monkeypatch, fault: _Fault) -> None:
    for module in (edgevid.utils.atomic, edgevid.meta, edgevid.utils.plotting):
        monkeypatch.setattr(module, "atomic_path", fault)


def _run(run_dir: Path, data: Path, resume: bool) -> None:
    if resume:
        train(None, data, out=run_dir, resume=True)
    else:
        train(TINY, data, out=run_dir, overrides=OVERRIDES)


def _check_invariants(run_dir: Path) -> int:
    """The run as an interruption left it; returns the number of committed epochs."""
    temporaries = [p.name for p in run_dir.glob(".*.tmp-*")] if run_dir.exists() else []
    assert not temporaries or all(p.endswith("x") for p in temporaries), temporaries  # only the 'killed' copies
    if not run_dir.exists() or not any((run_dir / n).is_file() for n in ("last.pt", "best.pt")):
        return 0
    newest = newest_checkpoint(run_dir)
    rows = newest.train_state["rows"]
    committed = newest.train_state["epoch"]
    assert [r["epoch"] for r in rows] == list(range(1, committed + 1))
    assert [r["val_top1"] for r in rows] == [SCRIPTED_TOP1[e] for e in range(1, committed + 1)]
    best_row = max(rows, key=lambda r: r["val_top1"])  # the first of equal maxima
    best = load_checkpoint(run_dir / "best.pt")
    assert best.meta.extra["epoch"] == best_row["epoch"], "best.pt is not the best recorded epoch"
    assert best.meta.extra["val_top1"] == best_row["val_top1"]
    assert newest.train_state["best_epoch"] == best_row["epoch"]
    if (run_dir / "last.pt").is_file():  # last.pt lags best.pt by at most the epoch best.pt committed
        assert load_checkpoint(run_dir / "last.pt").train_state["epoch"] >= committed - 1
    on_disk = read_metrics(run_dir)
    assert len(on_disk) in (committed, committed - 1) and on_disk == rows[: len(on_disk)]
    return committed


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run, and the list of writes it makes."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    fault = _Fault(None, "before")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine.Trainer, "_validate", _validate)
        _install(mp, fault)
        train(TINY, data, out=run_dir, overrides=OVERRIDES)
    return run_dir, fault.calls


def _points(calls: list[str]) -> list[tuple[int, str]]:
    points = [(k, "before") for k in range(len(calls))]
    points += [(k, mode) for k, name in enumerate(calls) if name.endswith(".pt") for mode in ("renaming", "killed")]
    return [*points, (len(calls) - 1, "after")]


def test_interrupt_at_every_write_keeps_best_and_resumes_exactly(reference, data, tmp_path, monkeypatch):
    ref_dir, calls = reference
    assert calls.count("best.pt") == 2 and calls.count("last.pt") == 3  # epochs 1 and 3 improve, 2 does not
    ref_last, ref_rows = load_checkpoint(ref_dir / "last.pt"), read_metrics(ref_dir)
    tried = []
    for k, when in _points(calls):
        run_dir = tmp_path / f"run_{k}_{when}"
        fault = _Fault(k, when)
        _install(monkeypatch, fault)
        with pytest.raises((KeyboardInterrupt, _Killed)):
            _run(run_dir, data, resume=False)
        committed = _check_invariants(run_dir)
        _install(monkeypatch, _Fault(None, "before"))
        _run(run_dir, data, resume=committed > 0)
        assert _check_invariants(run_dir) == 3
        assert not list(run_dir.glob(".*.tmp-*")), "the resumed run cleans what a killed one left"
        last = load_checkpoint(run_dir / "last.pt")
        assert last.train_state["global_step"] == ref_last.train_state["global_step"]
        for name, value in ref_last.state_dict.items():
            # AdamW turns float noise in near-zero gradients into updates of up to lr; a resume that went
            # wrong (epoch, optimiser or schedule state) moves every weight by ~lr
            torch.testing.assert_close(last.state_dict[name], value, rtol=1e-3, atol=1e-4, msg=name)
        rows = read_metrics(run_dir)
        assert len(rows) == len(ref_rows)
        for row, ref in zip(rows, ref_rows, strict=True):
            assert [row[c] for c in DETERMINISTIC] == pytest.approx([ref[c] for c in DETERMINISTIC], rel=1e-4)
        assert load_checkpoint(run_dir / "best.pt").meta.extra["epoch"] == 3
        tried.append((k, calls[k], when, committed))
    assert len(tried) == len(calls) + 2 * 5 + 1


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(reference, data, capsys):
    ref_dir, _ = reference
    before = (ref_dir / "last.pt").stat().st_mtime_ns
    train(None, data, out=ref_dir, resume=True)
    out = " ".join(capsys.readouterr().out.split())
    assert "nothing to do" in out and "epochs 4-3" not in out, out
    assert (ref_dir / "last.pt").stat().st_mtime_ns == before
