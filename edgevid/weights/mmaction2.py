"""MMAction2 checkpoints: ``{"state_dict": {"backbone.*", "cls_head.*"}, "meta": ...}``.

Imported: TSM-R50 (``ResNetTSM`` depth 50, "blockres" shift with 8 segments and shift_div 8, ``TSMHead``) ->
``tsm_r50``, and X3D-S / X3D-M (``X3D`` gamma_w 1, gamma_b 2.25, gamma_d 2.2, ``X3DHead``) -> ``x3d_s`` / ``x3d_m``
(``x3d_xs`` takes the same weights at its own input). MMAction2 wraps each conv in a ``ConvModule``
(``conv1.conv`` + ``conv1.bn``) and, unlike pytorchvideo, keeps a BN on the first shortcut of X3D's stage 1, as
edgevid does. Other MMAction2 backbones (TSN, I3D, SlowFast, TIN, TANet, MobileNetV2-TSM...) are not imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from edgevid.errors import EdgevidError
from edgevid.weights import pytorchvideo
from edgevid.weights.common import IMAGENET_SEGMENTS, Conversion, rename

NAME = "mmaction2"
WHERE = ("MMAction2 model zoo (mmaction2.readthedocs.io, configs/recognition/{tsm,x3d}/README.md): "
         "download.openmmlab.com")
TARGETS = {"tsm_r50": "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb",
           "x3d_s": "x3d_s_13x6x1_facebook-kinetics400-rgb", "x3d_m": "x3d_m_16x5x1_facebook-kinetics400-rgb",
           "x3d_xs": "x3d_s_13x6x1_facebook-kinetics400-rgb (the X3D-S weights at X3D-XS input)"}

_X3D_PART = {"conv1.conv": "conv_a", "conv1.bn": "bn_a", "conv2.conv": "conv_b", "conv2.bn": "bn_b",
             "conv3.conv": "conv_c", "conv3.bn": "bn_c", "se_module.fc1": "se.fc1", "se_module.fc2": "se.fc2",
             "downsample.conv": "shortcut.0", "downsample.bn": "shortcut.1"}


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("backbone.") for k in state) and any(k.startswith("cls_head.") for k in state)


def convert(state: Mapping[str, torch.Tensor], model: str, source: Path) -> Conversion:
    if model not in TARGETS:
        raise EdgevidError(f"MMAction2 checkpoints import as {', '.join(TARGETS)}; got --model {model!r}")
    if model == "tsm_r50":
        rules = [
            (r"backbone\.conv1\.conv\.weight", "backbone.conv1.weight"),
            (r"backbone\.conv1\.bn\.(\w+)", r"backbone.bn1.\1"),
            (r"backbone\.(layer[1-4]\.\d+)\.conv([1-3])\.conv(?:\.net)?\.weight", r"backbone.\1.conv\2.weight"),
            (r"backbone\.(layer[1-4]\.\d+)\.conv([1-3])\.bn\.(\w+)", r"backbone.\1.bn\2.\3"),
            (r"backbone\.(layer[1-4]\.\d+)\.downsample\.conv\.weight", r"backbone.\1.downsample.0.weight"),
            (r"backbone\.(layer[1-4]\.\d+)\.downsample\.bn\.(\w+)", r"backbone.\1.downsample.1.\2"),
            (r"cls_head\.fc_cls\.(weight|bias)", r"head.fc.\1"),
        ]
        return Conversion(model, rename(state, rules, source, "MMAction2"), IMAGENET_SEGMENTS)
    parts = "|".join(re.escape(k) for k in _X3D_PART)
    rules = [
        (r"backbone\.conv1_s\.conv\.weight", "stem.conv_xy.weight"),
        (r"backbone\.conv1_t\.conv\.weight", "stem.conv_t.weight"),
        (r"backbone\.conv1_t\.bn\.(\w+)", r"stem.bn.\1"),
        (rf"backbone\.layer([1-4])\.(\d+)\.({parts})\.(\w+)",
         lambda m: f"stages.{int(m.group(1)) - 1}.{m.group(2)}.{_X3D_PART[m.group(3)]}.{m.group(4)}"),
        (r"backbone\.conv5\.conv\.weight", "conv5.0.weight"),
        (r"backbone\.conv5\.bn\.(\w+)", r"conv5.1.\1"),
        (r"cls_head\.fc1\.weight", "head.hidden.0.weight"),
        (r"cls_head\.fc2\.(weight|bias)", r"head.fc.\1"),
    ]
    return Conversion(model, rename(state, rules, source, "MMAction2"), pytorchvideo.PREPROCESS[model])
