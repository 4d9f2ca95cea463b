"""Shared setup of the compression tests: a tiny synthetic dataset and a briefly trained tiny3d run."""

from __future__ import annotations

from pathlib import Path

import torch

from edgevid.checkpoint import save_checkpoint
from edgevid.data import build_dataset
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model

FRAMES, SIZE, STRIDE = 4, 32, 2
MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
TINY_RECIPE = """model:
  name: tiny3d
  overrides:
    width: 8
data:
  frames: 4
  size: 32
  sampling_stride: 2
  augment:
    flip: false
optim:
  name: adamw
  lr: 0.002
  base_batch: 4
  warmup_epochs: 0
train:
  epochs: 1
  batch_size: 4
  workers: 0
"""


def make_synth(root: Path, classes: int = 3, videos: int = 4, val: int = 3) -> Path:
    """``classes`` x ``videos`` train and x ``val`` val videos of 16 frames at 32x32."""
    generate_synth(root, SynthConfig(classes=classes, videos_per_class=videos, val_per_class=val, frames=16,
                                     size=32), show_progress=False)
    return root


def tiny_meta(classes: list[str], **extra) -> ArtifactMeta:
    return ArtifactMeta(model="tiny3d", classes=classes, frames=FRAMES, size=SIZE, sampling_stride=STRIDE,
                        mean=MEAN, std=STD, arch={"width": 8}, fps=25.0, sampling="dense", extra=extra)


def train_tiny_run(data: Path, run_dir: Path, steps: int = 30) -> Path:
    """A tiny3d run directory (best.pt + recipe.yaml) whose weights saw ``steps`` Adam steps on the train clips."""
    torch.manual_seed(0)
    train_set = build_dataset(data, "train", frames=FRAMES, size=SIZE, sampling_stride=STRIDE, mean=MEAN, std=STD,
                              train=False)
    clips = torch.stack([train_set[i][0] for i in range(len(train_set))])
    labels = torch.tensor([train_set[i][1] for i in range(len(train_set))])
    model = create_model("tiny3d", num_classes=train_set.num_classes, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(clips), labels).backward()
        optimizer.step()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(TINY_RECIPE, encoding="utf-8")
    save_checkpoint(run_dir / "best.pt", model.eval(), tiny_meta(train_set.classes, recipe="tiny"))
    return run_dir
