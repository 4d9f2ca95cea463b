"""Checkpoints of the TSM authors (mit-han-lab/temporal-shift-module): ``{"state_dict": ..., "epoch", ...}``.

Their ``TSN`` wraps a torchvision ResNet or their own MobileNetV2 as ``base_model`` (``module.`` prefixed when
saved from DataParallel); the temporal shift wraps the first conv of each residual branch (``conv1.net`` in a
ResNet block, ``conv.0.net`` in an inverted residual block) and the classifier is ``new_fc`` (or the backbone's own
``fc`` / ``classifier`` when trained without dropout). Frame logits are averaged over the segments, which equals
edgevid's head (pool, then the linear layer). Imported: TSM-R50 and TSM-MobileNetV2 ("blockres" shift, 1/8 of the
channels each way, no temporal pooling); other backbones and the "block" / temporal-pool variants are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from edgevid.errors import EdgevidError
from edgevid.weights.common import IMAGENET_SEGMENTS, Conversion, rename, strip_prefix

NAME = "tsm"
WHERE = "TSM authors' model zoo (github.com/mit-han-lab/temporal-shift-module, README 'Kinetics-400' table)"
TARGETS = {"tsm_r50": "TSM_kinetics_RGB_resnet50_shift8_blockres", "tsm_mobilenetv2":
           "TSM_kinetics_RGB_mobilenetv2_shift8_blockres"}

# Their MobileNetV2 keeps each inverted residual's layers in one flat Sequential; torchvision (and edgevid) nest
# conv+BN+ReLU6 in Conv2dNormActivation: index in theirs -> key suffix in edgevid.
_MBV2_EXPAND = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_MBV2_NO_EXPAND = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("module.base_model.", "base_model.", "module.new_fc.", "new_fc.")) for k in state)


def _mbv2_block(m: re.Match) -> str:
    index, layer, param = m.group(1), m.group(2), m.group(3)
    table = _MBV2_NO_EXPAND if index == "1" else _MBV2_EXPAND
    if layer not in table:
        return f"unmapped.features.{index}.conv.{layer}.{param}"
    return f"backbone.features.{index}.conv.{table[layer]}.{param}"


def convert(state: Mapping[str, torch.Tensor], model: str, source: Path) -> Conversion:
    if model not in TARGETS:
        raise EdgevidError(f"TSM authors' checkpoints import as {', '.join(TARGETS)}; got --model {model!r}")
    state = strip_prefix(state, ("module.",))
    if model == "tsm_r50":
        rules = [
            (r"base_model\.(layer[1-4]\.\d+)\.conv1\.net\.(\w+)", r"backbone.\1.conv1.\2"),
            (r"base_model\.(conv1|bn1|layer[1-4])\.(.+)", r"backbone.\1.\2"),
            (r"(?:new_fc|base_model\.fc)\.(weight|bias)", r"head.fc.\1"),
        ]
    else:
        rules = [
            (r"base_model\.features\.(\d+)\.conv\.(\d+)(?:\.net)?\.(\w+)", _mbv2_block),
            (r"base_model\.features\.(0|18)\.([01])\.(\w+)", r"backbone.features.\1.\2.\3"),
            (r"(?:new_fc|base_model\.classifier)\.(weight|bias)", r"head.fc.\1"),
        ]
    return Conversion(model, rename(state, rules, source, "TSM"), IMAGENET_SEGMENTS)
