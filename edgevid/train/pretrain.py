"""Synthetic motion pretraining (a recipe's ``pretrain`` section): the cache of pretrained checkpoints.

Where a model has no pretrained weights for the recipe's input (X3D-XS at 4x64, a pruned or causal variant), a
few minutes on ``edgevid data synth`` motion give it what training from scratch spends its first minutes
finding: filters that follow a moving object. :func:`plan_pretraining` names the stage: the recipe that trains it
(the run's own recipe on the synth set, for ``pretrain.minutes``, from scratch), the synth set and the cache path
of its checkpoint, keyed by a hash of that recipe and set, so a changed recipe gets its own pretraining and an
unchanged one reuses it. The engine (:func:`edgevid.train.engine.train`) trains the stage when its checkpoint is
missing and starts the run from it.

The cache is ``$EDGEVID_CACHE`` or ``$XDG_CACHE_HOME/edgevid`` (``~/.cache/edgevid``): ``synth/<style>-<hash>``
for the generated videos, ``pretrain/<model>-<style>-<hash>.pt`` for the checkpoints and ``.run`` folders beside
them for the stage's run (kept, so an interrupted pretraining resumes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.train.recipe import PretrainConfig, Recipe
from edgevid.utils.atomic import atomic_dir

CACHE_VERSION = 1  # bump when the synth generator or the stage's recipe changes meaning


def cache_root() -> Path:
    """``$EDGEVID_CACHE``, else ``$XDG_CACHE_HOME/edgevid``, else ``~/.cache/edgevid``."""
    if os.environ.get("EDGEVID_CACHE"):
        return Path(os.environ["EDGEVID_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "edgevid"


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PretrainPlan:
    """The pretraining stage of a recipe: what it trains on, how, and where its checkpoint lives."""

    recipe: Recipe
    synth: SynthConfig
    synth_dir: Path
    checkpoint: Path

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.with_suffix(".run")

    def describe(self) -> str:
        return (f"{self.recipe.train.minutes:g} minutes on edgevid data synth --style {self.synth.style} "
                f"({self.synth.classes} classes, {self.synth.videos_per_class} videos each)")


def plan_pretraining(recipe: Recipe) -> PretrainPlan | None:
    """The stage ``recipe.pretrain`` asks for, or None (no style, or ``model.init`` gives the weights)."""
    settings: PretrainConfig = recipe.pretrain
    if settings.style is None or recipe.model.init:
        return None
    recipe = recipe.resolved()
    data = recipe.data
    synth = SynthConfig(style=settings.style, videos_per_class=settings.videos_per_class,
                        val_per_class=max(1, settings.videos_per_class // 4), size=max(32, 2 * data.size))
    stage = dataclasses.replace(
        recipe,
        model=dataclasses.replace(recipe.model, init=None, freeze="none"),
        data=dataclasses.replace(data, mirror_classes=None, reverse_classes=[], train_split="train", val_split="val",
                                 augment=dataclasses.replace(data.augment, mirror_classes=[], reverse_classes=[])),
        optim=dataclasses.replace(recipe.optim, backbone_lr_mult=1.0, head_warmup_epochs=0.0),
        train=dataclasses.replace(recipe.train, minutes=settings.minutes),
        pretrain=PretrainConfig(),
    )
    synth_key = _digest({"version": CACHE_VERSION, "synth": dataclasses.asdict(synth)})
    key = _digest({"version": CACHE_VERSION, "recipe": stage.to_dict(), "synth": synth_key})
    root = cache_root()
    return PretrainPlan(recipe=stage, synth=synth, synth_dir=root / "synth" / f"{synth.style}-{synth_key}",
                        checkpoint=root / "pretrain" / f"{recipe.model.name}-{synth.style}-{key}.pt")


def ensure_synth(plan: PretrainPlan, workers: int = 2) -> Path:
    """The stage's synth set, generated into the cache (atomically) unless it is there."""
    if not (plan.synth_dir / "synth.json").is_file():
        with atomic_dir(plan.synth_dir) as work:
            generate_synth(work, plan.synth, workers=workers)
    return plan.synth_dir
