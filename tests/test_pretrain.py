"""Synthetic motion pretraining (a recipe's ``pretrain`` section): trained once, cached, and the run starts from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from compress_fixtures import make_synth

from edgevid.checkpoint import load_checkpoint
from edgevid.data.synth import SynthConfig
from edgevid.errors import EdgevidError
from edgevid.train import train
from edgevid.train.distributed import DistContext
from edgevid.train.engine import _pretrained_start
from edgevid.train.pretrain import cache_root, plan_pretraining
from edgevid.train.recipe import load_recipe
from edgevid.train.tune import tune

TINY = Path(__file__).parent.parent / "recipes" / "tiny.yaml"
PRETRAIN = ["pretrain.style=shapes", "pretrain.videos_per_class=2", "train.epochs=1"]


def _cached(root: Path) -> list[Path]:
    return sorted((root / "pretrain").glob("tiny3d-shapes-*.pt"))


def test_pretraining_is_cached_counted_in_the_budget_and_started_from(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVID_CACHE", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    data = make_synth(tmp_path / "data", classes=3, videos=2, val=1)
    run = train(TINY, data, out=tmp_path / "a", overrides=[*PRETRAIN, "train.minutes=5"])
    [checkpoint] = _cached(tmp_path / "cache")
    pretrained = load_checkpoint(checkpoint)
    assert pretrained.meta.classes == SynthConfig().class_names  # trained on the synth set, not the user's data
    assert (pretrained.meta.frames, pretrained.meta.size) == (4, 32)
    synth = next((tmp_path / "cache" / "synth").glob("shapes-*"))
    assert (synth / "synth.json").is_file() and len((synth / "train.csv").read_text().splitlines()) == 1 + 8 * 2
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["model"]["init"] == str(checkpoint)
    assert 0 < saved["train"]["minutes"] < 5  # the pretraining's minutes came off the run's budget
    final = load_checkpoint(run / "last.pt")
    assert final.meta.extra["init"] == str(checkpoint) and final.meta.classes == ["move_left", "move_right", "move_up"]
    stamp = checkpoint.stat().st_mtime_ns

    again = train(TINY, data, out=tmp_path / "b", overrides=[*PRETRAIN, "train.minutes=5"])
    assert _cached(tmp_path / "cache") == [checkpoint] and checkpoint.stat().st_mtime_ns == stamp
    assert yaml.safe_load((again / "recipe.yaml").read_text())["train"]["minutes"] == 5  # cached: nothing spent

    train(TINY, data, out=tmp_path / "c", overrides=[*PRETRAIN, "optim.lr=0.001"])
    assert len(_cached(tmp_path / "cache")) == 2  # another recipe, another pretraining


def test_the_stage_is_the_recipe_on_synth_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVID_CACHE", str(tmp_path))
    recipe = load_recipe(TINY, [*PRETRAIN, "model.freeze=bn", "optim.head_warmup_epochs=1",
                                "data.mirror_classes=[[a, b]]"]).resolved()
    plan = plan_pretraining(recipe)
    assert plan.recipe.pretrain.style is None and plan.recipe.model.init is None
    assert plan.recipe.model.freeze == "none" and plan.recipe.optim.head_warmup_epochs == 0
    assert plan.recipe.data.mirror_classes is None  # the synth set's own pairs
    assert (plan.synth.style, plan.synth.size, plan.synth.videos_per_class) == ("shapes", 64, 2)
    assert plan_pretraining(load_recipe(TINY, [*PRETRAIN, f"model.init={tmp_path / 'k400.pt'}"])) is None
    assert plan_pretraining(load_recipe(TINY)) is None


def test_pretraining_errors(tmp_path, monkeypatch):
    with pytest.raises(EdgevidError, match="pretrain: style must be null or one of shapes, photo, wild, got 'cubes'"):
        load_recipe(TINY, ["pretrain.style=cubes"])
    monkeypatch.setenv("EDGEVID_CACHE", str(tmp_path))
    recipe = load_recipe(TINY, PRETRAIN).resolved()
    ranks = DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(EdgevidError, match=r"not cached yet .* without torchrun .* pretrain\.style=null"):
        _pretrained_start(recipe, ranks, "cpu")


def test_tune_pretrains_once_and_starts_every_trial_from_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVID_CACHE", str(tmp_path / "cache"))
    data = make_synth(tmp_path / "data", classes=3, videos=2, val=1)
    result = tune(TINY, data, tmp_path / "tune", budget_s=300, n_trials=2, seed=1,
                  space={"optim.lr": {"low": 0.001, "high": 0.01, "log": True}}, overrides=PRETRAIN)
    [checkpoint] = _cached(tmp_path / "cache")  # trials with other learning rates share the study's pretraining
    for row in result.rows:
        saved = yaml.safe_load((Path(row["run_dir"]) / "recipe.yaml").read_text())
        assert saved["model"]["init"] == str(checkpoint)
    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    assert best["pretrain"]["style"] == "shapes" and best["model"]["init"] is None
