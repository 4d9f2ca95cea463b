import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevid.errors import EdgevidError
from edgevid.train.metrics import (
    average_precision,
    confusion_matrix,
    mean_average_precision,
    mean_class_accuracy,
    mean_iou,
    topk_correct,
)
from edgevid.train.optim import ModelEma, WarmupCosine, build_optimizer, scaled_lr
from edgevid.train.recipe import OptimConfig, load_recipe, parse_recipe

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def _write(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate_and_resolve(path):
    recipe = load_recipe(path).resolved()
    assert recipe.data.frames >= 1 and recipe.data.size >= 8 and recipe.data.frame_stride() >= 1
    if recipe.data.sampling == "dense" and recipe.data.frames > 1 and path.stem != "tiny":  # in seconds, not frames
        assert recipe.data.sampling_stride is None and recipe.data.span_seconds() > 0
    assert len(recipe.data.mean) == 3 and len(recipe.data.std) == 3
    assert parse_recipe(recipe.to_dict(), "again") == recipe  # the resolved YAML is itself a valid recipe


def test_shipped_recipes_include_the_required_models():
    names = {load_recipe(p).model.name for p in RECIPES}
    assert {"x3d_xs", "x3d_s", "tsm_r18", "tsm_mobilenetv2", "r2plus1d_18", "tiny3d"} <= names
    assert any(load_recipe(p).resolved().data.frames == 1 for p in RECIPES)  # the single-frame baseline


def test_unknown_key_names_file_and_path(tmp_path):
    path = _write(tmp_path, "model: {name: tiny3d}\noptim: {lrr: 0.1}\n")
    with pytest.raises(EdgevidError, match=r"x\.yaml: optim\.lrr: unknown key"):
        load_recipe(path)
    with pytest.raises(EdgevidError, match=r"x\.yaml: data\.augment\.flipp: unknown key"):
        load_recipe(_write(tmp_path, "model: {name: tiny3d}\ndata: {augment: {flipp: true}}\n"))


def test_wrong_type_message(tmp_path):
    path = _write(tmp_path, "model: {name: tiny3d}\noptim: {lr: fast}\n")
    with pytest.raises(EdgevidError) as info:
        load_recipe(path)
    assert str(info.value) == f"{path}: optim.lr: expected float, got 'fast'"
    with pytest.raises(EdgevidError, match=r"train\.epochs: expected int, got 2\.5"):
        load_recipe(_write(tmp_path, "model: {name: tiny3d}\ntrain: {epochs: 2.5}\n"))
    with pytest.raises(EdgevidError, match=r"train\.amp: expected bool, got 'yes please'"):
        load_recipe(_write(tmp_path, "model: {name: tiny3d}\ntrain: {amp: yes please}\n"))
    with pytest.raises(EdgevidError, match=r"optim\.name: expected one of 'adamw', 'sgd', got 'adam'"):
        load_recipe(_write(tmp_path, "model: {name: tiny3d}\noptim: {name: adam}\n"))
    with pytest.raises(EdgevidError, match=r"data\.augment\.scale: expected a list of 2 floats, got 1 values"):
        load_recipe(_write(tmp_path, "model: {name: tiny3d}\ndata: {augment: {scale: [0.5]}}\n"))


def test_missing_model_and_unknown_model(tmp_path):
    with pytest.raises(EdgevidError, match=r"model: missing required key"):
        load_recipe(_write(tmp_path, "train: {epochs: 1}\n"))
    with pytest.raises(EdgevidError, match=r"model\.name: unknown model 'x9d'"):
        load_recipe(_write(tmp_path, "model: {name: x9d}\n"))
    with pytest.raises(EdgevidError, match=r"not valid YAML \(line 2\)"):
        load_recipe(_write(tmp_path, "model: {name: tiny3d}\n  bad: [\n"))


def test_range_checks(tmp_path):
    base = {"model": {"name": "tiny3d"}}
    with pytest.raises(EdgevidError, match=r"train\.epochs: must be >= 1, got 0"):
        parse_recipe(base, "r", ["train.epochs=0"])
    with pytest.raises(EdgevidError, match=r"train\.ema: must be < 1, got 1\.5"):
        parse_recipe(base, "r", ["train.ema=1.5"])
    with pytest.raises(EdgevidError, match=r"data\.augment: augment mixup_alpha"):
        parse_recipe(base, "r", ["data.augment.mixup_alpha=-1"])


def test_overrides_are_typed_and_attributed(tmp_path):
    path = _write(tmp_path, "model: {name: tiny3d}\noptim: {lr: 0.1}\n")
    recipe = load_recipe(path, ["optim.lr=0.01", "train.epochs=3", "optim.name=sgd", "train.ema=null",
                                "model.overrides.width=4", "data.augment.scale=[0.3, 0.9]", "optim.lr=1"])
    assert recipe.optim.lr == 1.0 and isinstance(recipe.optim.lr, float)  # int accepted for float; last one wins
    assert recipe.train.epochs == 3 and recipe.optim.name == "sgd" and recipe.train.ema is None
    assert recipe.model.overrides == {"width": 4}
    assert recipe.data.augment.scale == (0.3, 0.9)
    with pytest.raises(EdgevidError) as info:
        load_recipe(path, ["optim.lr=fast"])
    assert str(info.value) == "override 'optim.lr=fast': optim.lr: expected float, got 'fast'"
    with pytest.raises(EdgevidError, match=r"override 'train\.epoch=3': train\.epoch: unknown key"):
        load_recipe(path, ["train.epoch=3"])
    with pytest.raises(EdgevidError, match=r"expected key=value"):
        load_recipe(path, ["train.epochs"])
    with pytest.raises(EdgevidError, match=r"optim\.lr is not a section"):
        load_recipe(path, ["optim.lr.x=1"])
    with pytest.raises(EdgevidError, match=r"train\.workers: expected int, got True"):
        load_recipe(path, ["train.workers=true"])


def test_resolved_fills_model_spec_defaults():
    recipe = parse_recipe({"model": {"name": "x3d_xs"}, "data": {"size": 96}}, "r").resolved()
    assert (recipe.data.frames, recipe.data.size, recipe.data.sampling_stride) == (4, 96, 12)
    assert recipe.data.mean == (0.45, 0.45, 0.45)


def test_clip_span_in_seconds_or_in_frames(tmp_path):
    shipped = Path(__file__).parent.parent / "recipes" / "x3d_xs.yaml"  # clip_seconds: 1.28, frames: 4
    seconds = load_recipe(shipped).resolved()
    assert seconds.data.sampling_stride is None and seconds.data.span_seconds() == 1.28
    assert seconds.data.frame_stride() == 10  # the stride recorded for a 30 fps (data.fps) consumer
    assert parse_recipe(seconds.to_dict(), "resolved").data.clip_seconds == 1.28  # a run's recipe.yaml reloads
    by_frames = ["data.clip_seconds=null", "data.sampling_stride=8"]
    frames = load_recipe(shipped, by_frames).resolved()
    assert frames.data.span_seconds() is None and frames.data.frame_stride() == 8
    at_25 = load_recipe(shipped, [*by_frames, "data.reference_fps=25"]).resolved()
    assert at_25.data.span_seconds() == pytest.approx(1.28) and at_25.data.model_fps() == 25
    with pytest.raises(EdgevidError) as info:
        load_recipe(shipped, ["data.sampling_stride=8"])
    assert str(info.value).endswith("x3d_xs.yaml: data.clip_seconds: conflicts with data.sampling_stride: both "
                                    "define the clip's span; keep one (data.sampling_stride=null samples by "
                                    "seconds, data.clip_seconds=null by frames)")
    path = _write(tmp_path, "model: {name: tiny3d}\ndata: {clip_seconds: 1.0, reference_fps: 25}\n")
    with pytest.raises(EdgevidError, match=r"x\.yaml: data\.clip_seconds: conflicts with data\.reference_fps"):
        load_recipe(path)
    with pytest.raises(EdgevidError, match=r"data\.clip_seconds: must be > 0, got 0"):
        load_recipe(path, ["data.reference_fps=null", "data.clip_seconds=0"])
    with pytest.raises(EdgevidError, match=r"data\.clip_seconds: applies to dense sampling only"):
        load_recipe(path, ["data.reference_fps=null", "data.sampling=segments"])
    with pytest.raises(EdgevidError, match=r"data\.reference_fps: applies to dense sampling only"):
        load_recipe(path, ["data.clip_seconds=null", "data.sampling=segments"])


# ------------------------------------------------------------------------------------------ LR schedule maths
def test_lr_scaling_rule():
    assert scaled_lr(0.1, 64, 16) == pytest.approx(0.4)
    assert scaled_lr(0.1, 8, 16) == pytest.approx(0.05)


def _schedule(total=100, warmup=10, schedule="cosine", min_ratio=0.0):
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, OptimConfig(), lr=1.0)
    return WarmupCosine(optimizer, peak_lr=0.4, total_steps=total, warmup_steps=warmup, schedule=schedule,
                        min_lr_ratio=min_ratio)


def test_warmup_then_cosine():
    sched = _schedule()
    assert sched.lr == pytest.approx(0.04)  # the first step already trains at 1/warmup of the peak
    lrs = [sched.lr_at(s) for s in range(100)]
    np.testing.assert_allclose(lrs[:10], 0.4 * np.arange(1, 11) / 10)
    assert lrs[10] == pytest.approx(0.4)
    assert sched.lr_at(55) == pytest.approx(0.2)  # half-way through the cosine part
    for step in (20, 37, 80):
        assert sched.lr_at(step) == pytest.approx(0.2 * (1 + math.cos(math.pi * (step - 10) / 90)))
    assert sched.lr_at(100) == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    floor = _schedule(min_ratio=0.1)
    assert floor.lr_at(100) == pytest.approx(0.04)
    assert _schedule(schedule="constant").lr_at(90) == pytest.approx(0.4)


def test_schedule_state_roundtrip_sets_optimizer_lr():
    sched = _schedule()
    for _ in range(30):
        sched.step()
    other = _schedule()
    other.load_state_dict(sched.state_dict())
    assert other.lr == pytest.approx(sched.lr_at(30))
    assert all(g["lr"] == pytest.approx(sched.lr_at(30)) for g in other.optimizer.param_groups)


def test_replan_moves_the_end_of_the_schedule_and_travels_in_its_state():
    sched = _schedule()  # 10 warmup + 90 cosine steps
    for _ in range(30):
        sched.step()
    sched.replan(50)
    assert sched.lr == pytest.approx(0.2 * (1 + math.cos(math.pi * 20 / 40)))
    assert sched.lr_at(50) == pytest.approx(0.0, abs=1e-12)
    assert sched.lr_at(5) == pytest.approx(0.4 * 6 / 10)  # the warmup is unchanged
    other = _schedule()
    other.load_state_dict(sched.state_dict())
    assert other.total_steps == 50 and other.lr == pytest.approx(sched.lr)
    sched.replan(3)  # never inside the warmup
    assert sched.total_steps == 10


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.BatchNorm3d(4))
    optimizer = build_optimizer(model, OptimConfig(name="sgd", weight_decay=0.1), lr=0.1)
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [torch.Size([4, 3, 3, 3, 3])]
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0 and len(plain["params"]) == 3
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]


def test_ema_update_rule():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 1.0)
    ema = ModelEma(model, decay=0.9)
    torch.nn.init.constant_(model.weight, 3.0)
    ema.update(model)  # decay ramps: min(0.9, 2/11)
    expected = 1.0 + (3.0 - 1.0) * (1 - 2 / 11)
    assert ema.module.weight.item() == pytest.approx(expected)
    for _ in range(100):
        ema.update(model)
    assert ema.module.weight.item() == pytest.approx(3.0, abs=1e-3)


# ------------------------------------------------------------------------------------------ metrics
def test_topk_and_confusion():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([1, 1, 2, 2])
    assert topk_correct(scores, labels, 1) == 2
    assert topk_correct(scores, labels, 2) == 3
    assert topk_correct(scores, labels, 5) == 4  # k capped at the class count
    cm = confusion_matrix(labels, scores.argmax(1), 3)
    assert cm.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert mean_class_accuracy(cm) == pytest.approx(0.5)  # class 0 has no samples and is left out


def test_average_precision_matches_hand_computation():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positives = np.array([True, False, True, False, True])
    assert average_precision(scores, positives) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    mean_ap, per_class = mean_average_precision(probs, np.array([1, 0, 1]))
    assert per_class[0] == pytest.approx(1 / 3) and per_class[1] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mean_ap == pytest.approx(per_class.mean())


def test_mean_iou():
    cm = np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    miou, iou = mean_iou(cm)
    assert iou[0] == pytest.approx(3 / 4) and iou[1] == pytest.approx(2 / 5) and iou[2] == pytest.approx(0.0)
    assert miou == pytest.approx((3 / 4 + 2 / 5 + 0) / 3)
