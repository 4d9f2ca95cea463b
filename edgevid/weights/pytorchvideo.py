"""PyTorchVideo model-zoo checkpoints (``.pyth``: ``{"model_state": state_dict, ...}``, or a bare state_dict).

Which PyTorchVideo architectures are the same network as an edgevid model (logits equal to FP32 rounding):

- ``x3d_xs`` / ``x3d_s`` / ``x3d_m`` -> edgevid X3D (one network; they differ in input). PyTorchVideo names the
  stem's spatial conv ``conv_t`` and its temporal conv ``conv_xy``, keeps SE inside ``norm_b``, puts ``conv5`` and
  the 432->2048 layer in the head's ``pool``, and has no BN on the 24->24 shortcut of stage 1, block 0 (imported
  with ``same_width_shortcut_bn: false``).
- ``i3d_r50`` -> ``i3d_r50``; ``slow_r50`` and ``c2d_r50`` -> ``i3d_r50`` with their temporal kernels (arch
  overrides: stem 1x7x7; Slow: no temporal pool, 3x1x1 only in res4/res5; C2D: no temporal kernel at all).
- ``slowfast_r50`` (8x8: alpha 4, lateral kernel 7) -> ``slowfast_r50`` with ``alpha: 4, fusion_kernel: 7``.
  PyTorchVideo's transform picks the Slow frames with ``linspace(0, T-1, T/alpha)``; edgevid takes every
  alpha-th frame of the clip (frames 0, 4, ..., 28 instead of 0, 4, 8, 13, ...).

Not the same network (no import): ``x3d_l`` (depth factor 5), ``r2plus1d_r50`` (bottleneck (2+1)D, edgevid has
the 18-layer basic-block R(2+1)D), ``csn_r101``, ``slowfast_r101`` / ``slowfast_16x8_r101_50_50``, ``slow_r50``
variants with non-local blocks, MViT, and the audio-visual and self-supervised models.

PySlowFast's own checkpoints (``s1.pathway0_stem...`` keys) are a different layout: import the PyTorchVideo
checkpoint of the same model (the zoos publish the same weights in both).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from edgevid.errors import EdgevidError
from edgevid.weights.common import Conversion, Preprocess, rename

NAME = "pytorchvideo"
WHERE = "PyTorchVideo model zoo (docs/source/model_zoo.md): dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"

PREPROCESS = {
    "x3d_xs": Preprocess(4, 160, 12),
    "x3d_s": Preprocess(13, 160, 6),
    "x3d_m": Preprocess(16, 224, 5),
    "i3d_r50": Preprocess(8, 224, 8),
    "slow_r50": Preprocess(8, 224, 8),
    "c2d_r50": Preprocess(8, 224, 8),
    "slowfast_r50": Preprocess(32, 224, 2),
}
TARGETS = {  # source name -> (edgevid model, arch overrides)
    "x3d_xs": ("x3d_xs", {"same_width_shortcut_bn": False}),
    "x3d_s": ("x3d_s", {"same_width_shortcut_bn": False}),
    "x3d_m": ("x3d_m", {"same_width_shortcut_bn": False}),
    "i3d_r50": ("i3d_r50", {}),
    "slow_r50": ("i3d_r50", {"stem_temporal_kernel": 1, "temporal_kernels": [[1], [1], [3], [3]],
                             "temporal_pool": False}),
    "c2d_r50": ("i3d_r50", {"stem_temporal_kernel": 1, "temporal_kernels": [[1], [1], [1], [1]]}),
    "slowfast_r50": ("slowfast_r50", {"alpha": 4, "fusion_kernel": 7}),
}
_RES_BLOCK = {"branch1_conv": "downsample.0", "branch1_norm": "downsample.1", "branch2.conv_a": "conv1",
              "branch2.norm_a": "bn1", "branch2.conv_b": "conv2", "branch2.norm_b": "bn2",
              "branch2.conv_c": "conv3", "branch2.norm_c": "bn3"}
_RES_PART = "|".join(re.escape(k) for k in _RES_BLOCK)


def detect(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("blocks.0.") for k in state) and any(k.startswith("blocks.1.") for k in state)


def _x3d_rules() -> list:
    def stage(m: re.Match) -> str:
        part = {"conv_a": "conv_a", "norm_a": "bn_a", "conv_b": "conv_b", "norm_b": "bn_b", "norm_b.0": "bn_b",
                "norm_b.1.block.0": "se.fc1", "norm_b.1.block.2": "se.fc2", "conv_c": "conv_c",
                "norm_c": "bn_c"}[m.group(3)]
        return f"stages.{int(m.group(1)) - 1}.{m.group(2)}.{part}.{m.group(4)}"

    return [
        (r"blocks\.0\.conv\.conv_t\.weight", "stem.conv_xy.weight"),
        (r"blocks\.0\.conv\.conv_xy\.weight", "stem.conv_t.weight"),
        (r"blocks\.0\.norm\.(\w+)", r"stem.bn.\1"),
        (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch1_conv\.weight",
         lambda m: f"stages.{int(m.group(1)) - 1}.{m.group(2)}.shortcut.0.weight"),
        (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch1_norm\.(\w+)",
         lambda m: f"stages.{int(m.group(1)) - 1}.{m.group(2)}.shortcut.1.{m.group(3)}"),
        (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.(conv_a|norm_a|conv_b|norm_b\.1\.block\.[02]|norm_b\.0|"
         r"norm_b|conv_c|norm_c)\.(\w+)", stage),
        (r"blocks\.5\.pool\.pre_conv\.weight", "conv5.0.weight"),
        (r"blocks\.5\.pool\.pre_norm\.(\w+)", r"conv5.1.\1"),
        (r"blocks\.5\.pool\.post_conv\.weight", "head.hidden.0.weight"),
        (r"blocks\.5\.proj\.(weight|bias)", r"head.fc.\1"),
    ]


def _resnet_rules(stage_blocks: dict[int, int], head_block: int) -> list:
    """create_resnet layouts: ``blocks.0`` stem, ``blocks.N.res_blocks.B.*`` stages, ``blocks.H.proj`` head."""
    indices = "|".join(str(i) for i in stage_blocks)
    return [
        (r"blocks\.0\.conv\.weight", "conv1.weight"),
        (r"blocks\.0\.norm\.(\w+)", r"bn1.\1"),
        (rf"blocks\.({indices})\.res_blocks\.(\d+)\.({_RES_PART})\.(\w+)",
         lambda m: f"layer{stage_blocks[int(m.group(1))]}.{m.group(2)}.{_RES_BLOCK[m.group(3)]}.{m.group(4)}"),
        (rf"blocks\.{head_block}\.proj\.(weight|bias)", r"head.fc.\1"),
    ]


def _slowfast_rules() -> list:
    paths = ("slow", "fast")
    return [
        (r"blocks\.0\.multipathway_blocks\.([01])\.conv\.weight", lambda m: f"{paths[int(m.group(1))]}_stem.0.weight"),
        (r"blocks\.0\.multipathway_blocks\.([01])\.norm\.(\w+)",
         lambda m: f"{paths[int(m.group(1))]}_stem.1.{m.group(2)}"),
        (r"blocks\.([0-3])\.multipathway_fusion\.conv_fast_to_slow\.weight", r"fusions.\1.conv.weight"),
        (r"blocks\.([0-3])\.multipathway_fusion\.norm\.(\w+)", r"fusions.\1.bn.\2"),
        (rf"blocks\.([1-4])\.multipathway_blocks\.([01])\.res_blocks\.(\d+)\.({_RES_PART})\.(\w+)",
         lambda m: f"{paths[int(m.group(2))]}_layers.{int(m.group(1)) - 1}.{m.group(3)}."
                   f"{_RES_BLOCK[m.group(4)]}.{m.group(5)}"),
        (r"blocks\.6\.proj\.(weight|bias)", r"head.fc.\1"),
    ]


def source_name(model: str) -> str:
    """The PyTorchVideo architecture that ``model`` (a source or edgevid name) refers to."""
    if model in TARGETS:
        return model
    raise EdgevidError(f"PyTorchVideo checkpoints import as {', '.join(TARGETS)}; got --model {model!r}")


def convert(state: Mapping[str, torch.Tensor], model: str, source: Path) -> Conversion:
    name = source_name(model)
    target, arch = TARGETS[name]
    if name.startswith("x3d"):
        rules = _x3d_rules()
    elif name == "slowfast_r50":
        rules = _slowfast_rules()
    elif name == "slow_r50":
        rules = _resnet_rules({1: 1, 2: 2, 3: 3, 4: 4}, 5)
    else:  # i3d_r50, c2d_r50: blocks.2 is the temporal max pool after res2
        rules = _resnet_rules({1: 1, 3: 2, 4: 3, 5: 4}, 6)
    converted = rename(state, rules, source, "PyTorchVideo")
    hidden = converted.get("head.hidden.0.weight")
    if hidden is not None and hidden.dim() == 5:  # the 1x1x1 post_conv is a linear layer in edgevid
        converted["head.hidden.0.weight"] = hidden.flatten(1)
    notes = []
    if name == "slowfast_r50":
        notes.append("the Slow pathway takes every 4th frame of the 32 (PyTorchVideo's transform: linspace)")
    return Conversion(target, converted, PREPROCESS[name], dict(arch), notes)
