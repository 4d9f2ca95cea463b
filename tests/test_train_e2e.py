"""Tiny end-to-end runs on real .mp4 files: train -> resume -> eval -> predict, checkpoints and errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import edgevid.train.engine as engine
from edgevid.checkpoint import load_checkpoint, save_checkpoint
from edgevid.cli import main
from edgevid.data import eval_transform
from edgevid.errors import EdgevidError
from edgevid.runtime import load
from edgevid.train import evaluate, predict_video, train
from edgevid.train.engine import read_metrics

TINY = Path(__file__).parent.parent / "recipes" / "tiny.yaml"
CLASSES = ["move_left", "move_right", "move_up"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one intra-op thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def dataset(tiny_synth):
    """The tiny synthetic set (tests/conftest.py) plus one corrupt video listed in val."""
    root = tiny_synth
    (root / "val" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with (root / "val.csv").open("a") as f:
        f.write("val/broken.mp4,move_up\n")
    return root


class _Interrupt(Exception):
    pass


def _stop_after_first_epoch(row):
    if row["epoch"] == 1:
        raise _Interrupt


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """A 2-epoch run, and the same run interrupted after epoch 1 then resumed."""
    base = tmp_path_factory.mktemp("runs")
    full = train(TINY, dataset, base / "full", overrides=["train.epochs=2"])
    with pytest.raises(_Interrupt):
        train(TINY, dataset, base / "split", overrides=["train.epochs=2"], on_epoch_end=_stop_after_first_epoch)
    interrupted = load_checkpoint(base / "split" / "last.pt")
    resumed = train(None, dataset, base / "split", resume=True)
    return full, resumed, interrupted


def test_resume_reproduces_the_uninterrupted_run(runs):
    full, resumed, interrupted = runs
    assert interrupted.train_state["epoch"] == 1
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a.train_state["epoch"] == b.train_state["epoch"] == 2
    assert a.train_state["global_step"] == b.train_state["global_step"] == 6  # 12 clips / batch 4 x 2 epochs
    assert not torch.equal(interrupted.state_dict["head.fc.weight"], a.state_dict["head.fc.weight"])
    for name, value in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[name], value, rtol=1e-5, atol=1e-6, msg=name)
    rows_full, rows_resumed = read_metrics(full), read_metrics(resumed)
    assert [r["epoch"] for r in rows_resumed] == [1, 2]
    for key in ("train_loss", "train_acc", "val_loss", "val_top1", "lr"):
        assert rows_resumed[1][key] == pytest.approx(rows_full[1][key], rel=1e-5), key


def test_run_directory_and_checkpoint_metadata(runs, dataset):
    run = runs[0]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "curves.png", "last.pt", "metrics.csv",
                                                   "metrics.jsonl", "recipe.yaml", "summary.json"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fit"]["verdict"] in ("underfit", "overfit", "fine") and summary["epochs"] == 2
    assert summary["fit"]["last"]["train_top1"] == read_metrics(run)[-1]["train_acc"]
    ckpt = load_checkpoint(run / "last.pt")  # weights_only=True: the training state is tensors and plain data
    meta = ckpt.meta
    assert (meta.model, meta.classes, meta.frames, meta.size, meta.sampling_stride) == ("tiny3d", CLASSES, 4, 32, 2)
    assert meta.head == "clip" and meta.arch == {"width": 8} and meta.fps == 30.0
    assert meta.mean == (0.45, 0.45, 0.45) and meta.std == (0.225, 0.225, 0.225)
    assert meta.sampling == "dense" and meta.extra["recipe"] == "tiny" and meta.extra["epoch"] == 2
    state = ckpt.train_state
    assert {"optimizer", "scheduler", "scaler", "rng", "epoch", "global_step", "best_top1", "recipe"} <= set(state)
    assert state["scheduler"] == {"step_count": 6, "total_steps": 6}
    assert isinstance(state["rng"][0]["numpy"][1], list) and len(state["rng"][0]["numpy"][1]) == 624
    best = load_checkpoint(run / "best.pt")
    assert best.meta.extra["val_top1"] == state["best_top1"]
    rows = read_metrics(run)
    assert len(rows) == 2 and all(r["skipped"] == 1 for r in rows)  # the corrupt val video, reported each epoch
    assert all(0 <= r["val_top1"] <= 100 and r["clips_per_s"] > 0 for r in rows)
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,train_loss,train_acc,val_loss,val_top1,val_top5,lr,clips_per_s")
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "name: tiny3d" in (run / "recipe.yaml").read_text()


def test_eval_metrics_views_and_files(runs, dataset, tmp_path):
    run = runs[0]
    results = evaluate(run, dataset, views=(2, 2), workers=0, out=tmp_path)
    assert results["clips"] == 6 and results["views"] == "2x2" and results["classes"] == CLASSES
    assert 0 <= results["top1"] <= results["top5"] <= 100
    assert np.asarray(results["confusion"]).sum() == 6
    assert set(results["per_class_acc"]) == set(CLASSES)
    assert results["mean_class_acc"] == pytest.approx(np.mean(list(results["per_class_acc"].values())))
    assert [Path(p).name for p, _ in results["skipped"]] == ["broken.mp4"]
    assert json.loads((tmp_path / "eval.json").read_text())["top1"] == pytest.approx(results["top1"])
    assert (tmp_path / "confusion.png").is_file()
    # one view through eval agrees with the validation that training ran on the same checkpoint (best.pt)
    single = evaluate(run / "best.pt", dataset, workers=0)
    assert single["top1"] == pytest.approx(load_checkpoint(run / "best.pt").meta.extra["val_top1"])
    with pytest.raises(EdgevidError, match="unreadable video"):
        evaluate(run, dataset, workers=0, strict=True)


def test_frame_and_dense_heads_give_map_and_miou(runs, dataset, tmp_path):
    ckpt = load_checkpoint(runs[0] / "best.pt")
    for head, key in (("frame", "frame_map"), ("dense", "miou")):
        path = save_checkpoint(tmp_path / f"{head}.pt", ckpt.state_dict, ckpt.meta.replace(head=head))
        results = evaluate(path, dataset, workers=0)
        assert 0 <= results[key] <= 100 and results["head"] == head
        assert set(results["frame_ap" if head == "frame" else "iou"]) == set(CLASSES)


def test_eval_and_predict_cli_json(runs, dataset, capsys):
    run = runs[0]
    assert main(["eval", str(run), "--data", str(dataset), "--workers", "0", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "mean_class_acc", "per_class_acc", "confusion", "clips", "skipped"} <= set(results)
    video = dataset / "val" / "move_up" / "move_up_0000.mp4"
    assert main(["predict", str(run), str(video), "--topk", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["rank"] for p in out["predictions"]] == [1, 2]
    ranked = predict_video(run, video, topk=5, views=(2, 1))
    assert len(ranked) == 3 and {label for label, _ in ranked} == set(CLASSES)  # topk capped at the classes
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0)


def test_user_errors(runs, dataset, tmp_path, capsys):
    run = runs[0]
    with pytest.raises(EdgevidError, match="already holds a run"):
        train(TINY, dataset, run)
    with pytest.raises(EdgevidError, match="nothing to resume"):
        train(TINY, dataset, tmp_path / "new", resume=True)
    assert main(["eval", str(run), "--data", str(dataset), "--views", "3by3"]) == 1
    assert "--views" in capsys.readouterr().err
    assert main(["predict", str(run), str(tmp_path / "missing.mp4")]) == 1
    assert main(["train", "--recipe", str(TINY), "--data", str(dataset), "--out", str(tmp_path / "r"),
                 "optim.lr=fast"]) == 1
    assert "optim.lr: expected float, got 'fast'" in capsys.readouterr().err
    with pytest.raises(EdgevidError, match="no such data directory"):
        train(TINY, tmp_path / "nowhere", tmp_path / "r2")
    with pytest.raises(EdgevidError, match=r"model\.overrides: .*bogus"):
        train(TINY, dataset, tmp_path / "r3", overrides=["model.overrides.bogus=1"])


def test_a_squash_fit_model_prepares_frames_the_same_way_everywhere(dataset, tmp_path):
    """data.fit=squash goes into the checkpoint, and every predictor (and so live, eval, export) squashes frames."""
    run = train(TINY, dataset, tmp_path / "r", overrides=["train.epochs=1", "data.fit=squash"])
    meta = load_checkpoint(run / "best.pt").meta
    assert meta.fit == "squash"
    frames = np.random.default_rng(0).integers(0, 256, size=(meta.frames, 36, 80, 3), dtype=np.uint8)
    predictor = load(run)
    expected = eval_transform(meta.size, meta.mean, meta.std, "squash")(frames).numpy()
    np.testing.assert_allclose(predictor.preprocess(frames), expected)
    assert not np.allclose(expected, eval_transform(meta.size, meta.mean, meta.std)(frames).numpy())
    with pytest.raises(EdgevidError, match=r"fit squash\) takes one spatial crop, e.g. 2x1"):
        evaluate(run, dataset, views=(2, 3), workers=0)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_cpu_amp_trains_in_bf16_only_where_the_cpu_has_it(dataset, tmp_path, monkeypatch, capsys, has_bf16):
    """``train.cpu_amp``: convolutions compute in BF16 under autocast on a BF16 CPU; elsewhere FP32, said at the start.
    The CPU's answer is patched, so both branches run on any CPU (autocast emulates BF16 where it is missing)."""
    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: has_bf16)
    dtypes: set[torch.dtype] = set()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Conv3d) and module.training:
            dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        run = train(TINY, dataset, tmp_path / "r", overrides=["train.epochs=1", "train.cpu_amp=true"])
    finally:
        handle.remove()
    out = capsys.readouterr().out
    assert dtypes == ({torch.bfloat16} if has_bf16 else {torch.float32})
    assert ("(bf16 autocast)" in out) == has_bf16
    assert ("train.cpu_amp needs a CPU with AVX512_BF16 or AMX" in out) != has_bf16
    weights = load_checkpoint(run / "last.pt").state_dict
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())


@pytest.mark.slow
def test_torchrun_two_cpu_processes(dataset, tmp_path):
    """``torchrun --nproc_per_node 2 -m edgevid train``: gloo DDP, sharded data, one run directory from rank 0;
    with gradient accumulation (DDP's no_sync on the first micro-batch) and an EMA of the weights."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "edgevid", "train", "--recipe", str(TINY), "--data", str(dataset), "--out", str(out),
               "train.epochs=1", "train.accum_steps=2", "train.ema=0.9"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("on cpu x2") == 1 and "effective batch 16" in proc.stdout  # logged by rank 0 only
    ckpt = load_checkpoint(out / "last.pt")
    state = ckpt.train_state
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["global_step"] == 1  # 6 clips per process = 2 micro-batches of 4 = 1 accumulated step
    assert state["ema"]["updates"] == 1 and set(state["model"]) == set(ckpt.state_dict)
    assert not torch.equal(state["model"]["head.fc.weight"], ckpt.state_dict["head.fc.weight"])  # EMA != live
    rows = read_metrics(out)
    assert len(rows) == 1 and rows[0]["skipped"] == 1
    # validation ran on the EMA weights that the checkpoint holds, sharded over the two processes and
    # all-reduced: it equals a single-process evaluation of the checkpoint
    assert rows[0]["val_top1"] == pytest.approx(evaluate(out / "last.pt", dataset, workers=0)["top1"])
