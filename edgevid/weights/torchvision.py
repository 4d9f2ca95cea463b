"""torchvision checkpoints (a bare state_dict, as ``torch.hub`` / ``weights.get_state_dict()`` save them).

- Video models ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: edgevid's video ResNets use torchvision's module names,
  so only ``fc.*`` becomes ``head.fc.*`` (Kinetics-400, 16 frames x 112, torchvision's video mean/std).
- ImageNet 2D ``resnet18`` / ``resnet50`` / ``mobilenet_v2`` as TSM backbones (``tsm_r18``, ``tsm_r50``,
  ``tsm_mobilenetv2``): the backbone keys gain a ``backbone.`` prefix; the 1000-way ImageNet classifier becomes the
  head (replace it by fine-tuning on your classes).
- ImageNet ``resnet50`` inflated into ``i3d_r50`` (:func:`edgevid.models.i3d.inflate_resnet2d`, "center" mode:
  a clip of identical frames gives the 2D network's logits).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from edgevid.errors import EdgevidError
from edgevid.models import create_model
from edgevid.models.base import IMAGENET_MEAN, IMAGENET_STD
from edgevid.models.i3d import inflate_resnet2d
from edgevid.models.video_resnet import TORCHVISION_VIDEO_MEAN, TORCHVISION_VIDEO_STD
from edgevid.weights.common import IMAGENET_SEGMENTS, Conversion, Preprocess, num_classes_of, rename

NAME = "torchvision"
WHERE = "torchvision model weights (pytorch.org/vision/stable/models.html): download.pytorch.org/models/"

_VIDEO = Preprocess(16, 112, 2, TORCHVISION_VIDEO_MEAN, TORCHVISION_VIDEO_STD)
TARGETS = {  # edgevid model -> torchvision architecture
    "r3d_18": "r3d_18", "mc3_18": "mc3_18", "r2plus1d_18": "r2plus1d_18",
    "tsm_r18": "resnet18", "tsm_r50": "resnet50", "tsm_mobilenetv2": "mobilenet_v2", "i3d_r50": "resnet50",
}


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    return "stem.0.weight" in state or "conv1.weight" in state or "features.0.0.weight" in state


def convert(state: Mapping[str, torch.Tensor], model: str, source: Path) -> Conversion:
    if model not in TARGETS:
        raise EdgevidError(f"torchvision checkpoints import as {', '.join(TARGETS)}; got --model {model!r}")
    if model in ("r3d_18", "mc3_18", "r2plus1d_18"):
        rules = [(r"fc\.(weight|bias)", r"head.fc.\1"), (r"(stem|layer[1-4])\.(.+)", r"\1.\2")]
        return Conversion(model, rename(state, rules, source, "torchvision"), _VIDEO)
    if model == "tsm_mobilenetv2":
        rules = [(r"classifier\.1\.(weight|bias)", r"head.fc.\1"), (r"features\.(.+)", r"backbone.features.\1")]
        return Conversion(model, rename(state, rules, source, "torchvision"), IMAGENET_SEGMENTS)
    if model in ("tsm_r18", "tsm_r50"):
        rules = [(r"fc\.(weight|bias)", r"head.fc.\1"), (r"(conv1|bn1|layer[1-4])\.(.+)", r"backbone.\1.\2")]
        return Conversion(model, rename(state, rules, source, "torchvision"), IMAGENET_SEGMENTS)
    # i3d_r50: inflate the 2D ResNet-50
    classes = num_classes_of(state, "fc.weight", source)
    try:
        inflated = inflate_resnet2d(state, create_model("i3d_r50", num_classes=classes), mode="center")
    except ValueError as exc:
        raise EdgevidError(f"{source}: cannot inflate into i3d_r50: {exc}") from None
    return Conversion(model, inflated, Preprocess(8, 224, 8, IMAGENET_MEAN, IMAGENET_STD),
                      notes=["2D kernels inflated into the centre time slice (a static clip gives the 2D logits)"])
