"""Fine-tuning from a checkpoint (new classes, head swap, freezing) and dataset-level mirror-image classes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from compress_fixtures import TINY_RECIPE, make_synth

from edgevid.checkpoint import load_checkpoint, save_checkpoint
from edgevid.data.datasets import dataset_class_pairs, suggest_mirror_classes
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.train import train
from edgevid.train.distributed import distributed_context
from edgevid.train.engine import Trainer, _prepare_run
from edgevid.train.finetune import apply_freeze, load_init_weights
from edgevid.train.optim import WarmupCosine, build_optimizer
from edgevid.train.recipe import OptimConfig

RECIPES = Path(__file__).parent.parent / "recipes"
SYNTH_NAMES = ("move_left", "move_right", "rotate_clockwise", "rotate_anticlockwise", "grow", "shrink")


def _checkpoint(path: Path, classes: list[str], model: str = "tiny3d", **arch) -> Path:
    torch.manual_seed(1)
    net = create_model(model, num_classes=len(classes), **arch)
    meta = ArtifactMeta(model, classes, 4, 32, 2, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3), arch=arch)
    return save_checkpoint(path, net, meta)


def test_head_swap_keeps_every_backbone_tensor(tmp_path):
    ckpt = load_checkpoint(_checkpoint(tmp_path / "k400.pt", [f"c{i}" for i in range(400)], "x3d_xs",
                                       same_width_shortcut_bn=False))
    model = create_model("x3d_xs", num_classes=3, same_width_shortcut_bn=False)
    fresh_head = model.head.fc.weight.clone()
    report = load_init_weights(model, ckpt, ["a", "b", "c"], "k400.pt")
    assert "new classifier for the dataset's 3 classes" in report
    for key, value in model.state_dict().items():
        if key.startswith("head.fc."):
            assert value.shape[0] == 3
        else:
            assert torch.equal(value, ckpt.state_dict[key]), key
    assert torch.equal(model.head.fc.weight, fresh_head)
    subset = create_model("x3d_xs", num_classes=2, same_width_shortcut_bn=False)
    assert "rows of 2 of its 400" in load_init_weights(subset, ckpt, ["c7", "c3"], "k400.pt")
    assert torch.equal(subset.head.fc.weight, ckpt.state_dict["head.fc.weight"][[7, 3]])
    with pytest.raises(EdgevidError, match="do not fit x3d_xs"):
        load_init_weights(create_model("x3d_xs", num_classes=3), ckpt, ["a", "b", "c"], "k400.pt")


def test_freeze_modes_and_lr_groups():
    model = create_model("tiny3d", num_classes=3, width=8)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    assert apply_freeze(model, "backbone") == head < total
    model = create_model("tiny3d", num_classes=3, width=8)
    bn = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             for p in m.parameters())
    assert apply_freeze(model, "bn") == total - bn
    optimizer = build_optimizer(model, OptimConfig(backbone_lr_mult=0.1, head_warmup_epochs=1), lr=1.0)
    sched = WarmupCosine(optimizer, 0.5, 100, 0, "constant", head_warmup_steps=10)
    lrs = {(g["backbone"], g["weight_decay"] > 0): g["lr"] for g in optimizer.param_groups}
    assert lrs[(False, True)] == pytest.approx(0.5) and lrs[(True, True)] == 0.0
    for _ in range(10):
        sched.step()
    assert {g["backbone"]: g["lr"] for g in optimizer.param_groups} == {False: pytest.approx(0.5),
                                                                        True: pytest.approx(0.05)}


def test_finetune_to_new_classes_end_to_end(tmp_path, capsys):
    source_data = make_synth(tmp_path / "a", classes=2, videos=3, val=2)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    first = train(recipe, source_data, out=tmp_path / "run_a")
    source = load_checkpoint(first / "last.pt")
    target_data = make_synth(tmp_path / "b", classes=4, videos=3, val=2)
    run = train(recipe, target_data, out=tmp_path / "run_b", init=first / "last.pt",
                overrides=["model.freeze=backbone", "optim.head_warmup_epochs=0.5", "data.mean=null"])
    out = " ".join(capsys.readouterr().out.split())
    assert "new classifier for the dataset's 4 classes (the checkpoint's 2 classes differ)" in out
    tuned = load_checkpoint(run / "last.pt")
    assert tuned.meta.classes[:2] == source.meta.classes and tuned.meta.num_classes == 4
    assert tuned.meta.extra["init"] == str(first / "last.pt") and tuned.meta.mean == source.meta.mean
    for key, value in tuned.state_dict.items():  # linear probing: the backbone (BN statistics too) is untouched
        if not key.startswith("head."):
            assert torch.equal(value, source.state_dict[key]), key


def test_recipes_name_no_dataset_classes():
    for path in RECIPES.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert not any(name in body for name in SYNTH_NAMES), path.name
    assert {"x3d_xs_finetune.yaml", "tsm_mobilenetv2_finetune.yaml", "r2plus1d_18_finetune.yaml"} <= \
        {p.name for p in RECIPES.glob("*.yaml")}


def test_mirror_and_reverse_classes_come_from_the_dataset(tmp_path):
    synth = make_synth(tmp_path / "synth", classes=2, videos=2, val=1)
    assert dataset_class_pairs(synth, "mirror") == [("move_left", "move_right")]
    assert dataset_class_pairs(synth, "reverse") == [("move_left", "move_right")]
    folder = tmp_path / "mine"
    for name, video in (("swipe left", "move_left"), ("swipe right", "move_right"), ("clap", "move_left")):
        (folder / name).mkdir(parents=True)
        for index, file in enumerate(sorted((synth / "train" / video).glob("*.mp4"))):
            shutil.copy(file, folder / name / f"{index}.mp4")
    assert dataset_class_pairs(folder, "mirror") is None and dataset_class_pairs(folder, "reverse") is None
    assert suggest_mirror_classes(["swipe left", "swipe right", "clap", "turn cw", "turn ccw"]) == [
        ("swipe left", "swipe right"), ("turn cw", "turn ccw")]
    # the shipped x3d_xs recipe builds on any folder-per-class data, with a suggestion for the mirror pair
    resolved, name, run_dir = _prepare_run(RECIPES / "x3d_xs.yaml", tmp_path / "run", None, False, [])
    with distributed_context("cpu") as ctx:
        trainer = Trainer(resolved, name, folder, run_dir, ctx, resume=False)
    assert trainer.class_pairs == {"mirror": [], "reverse": []}
    assert trainer.mirror_suggestions == [("swipe left", "swipe right")]
    (folder / "mirror_classes.txt").write_text("# flips\nswipe left, swipe right\n")
    (folder / "reverse_classes.txt").write_text("swipe right / swipe left\n")
    with distributed_context("cpu") as ctx:
        trainer = Trainer(resolved, name, folder, run_dir, ctx, resume=False)
    assert trainer.class_pairs == {"mirror": [("swipe left", "swipe right")],
                                   "reverse": [("swipe right", "swipe left")]}
    assert trainer.mirror_suggestions == [] and trainer.pair_sources["reverse"] == "the dataset"
    assert trainer.train_set._augment.mirror.tolist() == [0, 2, 1]
    assert trainer.train_set._augment.reverse.tolist() == [0, 2, 1]
    resolved, name, run_dir = _prepare_run(RECIPES / "x3d_xs.yaml", tmp_path / "run2", None, False,
                                           ["data.reverse_classes=[]"])  # the recipe turns the dataset's pairs off
    with distributed_context("cpu") as ctx:
        trainer = Trainer(resolved, name, folder, run_dir, ctx, resume=False)
    assert trainer.class_pairs["reverse"] == [] and trainer.train_set._augment.reverse.tolist() == [0, 1, 2]
    (folder / "mirror_classes.txt").write_text("swipe left\n")
    with pytest.raises(EdgevidError, match=r"mirror_classes\.txt:1: expected two class names"):
        dataset_class_pairs(folder, "mirror")
