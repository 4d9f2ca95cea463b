"""Reference networks built by their own projects' code, for the import parity tests (tests only).

- pytorchvideo (installed with ``--no-deps`` by ``make test``): its ``models/head.py`` imports
  ``torchvision.ops.RoIAlign``, and torchvision's compiled package does not load with this CPU-only torch.
- torchvision's model code (``models/video/resnet.py``, ``models/resnet.py``, ``models/mobilenetv2.py``): read from
  the torchvision wheel that ``make test`` downloads (``--no-deps``) into ``<venv>/refs``; only the pure-Python
  model files are imported, under stub parent packages so that ``torchvision/__init__.py`` and its C extension
  never load. ``transforms._presets`` (only used to describe pretrained weights) is stubbed.

The stubs live in ``sys.modules`` of the test process only; edgevid never imports torchvision or pytorchvideo.
"""

from __future__ import annotations

import importlib
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

TORCHVISION_VERSION = "0.29.1"
REFS = Path(sys.prefix) / "refs"


def _stub(name: str, path: Path | None = None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path else []
    sys.modules[name] = module
    return module


def _torchvision_source() -> Path | None:
    """The folder holding torchvision's Python sources, extracted from the downloaded wheel on first use."""
    target = REFS / f"torchvision-{TORCHVISION_VERSION}-src"
    if (target / "torchvision" / "models" / "resnet.py").is_file():
        return target / "torchvision"
    wheels = sorted(REFS.glob(f"torchvision-{TORCHVISION_VERSION}-*.whl"))
    if not wheels:
        return None
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [n for n in wheel.namelist() if n.startswith("torchvision/") and n.endswith(".py")]
        wheel.extractall(target, members)
    return target / "torchvision"


def install_torchvision_stubs() -> bool:
    """Make ``torchvision.models.*`` (pure Python) importable without torchvision's compiled core."""
    existing = sys.modules.get("torchvision")
    if existing is not None:  # a real torchvision (where one loads), or the stubs installed earlier
        return not getattr(existing, "_edgevid_test_stub", False) or existing.__path__ != []
    source = _torchvision_source()
    root = _stub("torchvision", source)
    root._edgevid_test_stub = True
    if source is not None:
        _stub("torchvision.models", source / "models")
        _stub("torchvision.models.video", source / "models" / "video")
    ops = _stub("torchvision.ops", source / "ops" if source else None)

    class RoIAlign(nn.Module):  # pytorchvideo imports the name; no tested model uses it
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("RoIAlign is not available in the test stub")

    ops.RoIAlign = RoIAlign
    transforms = _stub("torchvision.transforms")
    presets = types.ModuleType("torchvision.transforms._presets")
    for name in ("ImageClassification", "VideoClassification"):
        setattr(presets, name, type(name, (), {"__init__": lambda self, *a, **k: None}))
    sys.modules["torchvision.transforms._presets"] = presets
    transforms._presets = presets
    return source is not None


def torchvision_models(name: str) -> types.ModuleType:
    """``torchvision.models.<name>`` (e.g. ``resnet``, ``video.resnet``, ``mobilenetv2``), or skip the test."""
    if not install_torchvision_stubs():
        pytest.skip(f"torchvision {TORCHVISION_VERSION} sources not in {REFS} (run `make test` to fetch them)")
    return importlib.import_module(f"torchvision.models.{name}")


def pytorchvideo_models(name: str) -> types.ModuleType:
    """``pytorchvideo.models.<name>``, or skip the test when pytorchvideo is not installed."""
    install_torchvision_stubs()
    pytest.importorskip("pytorchvideo", reason="pytorchvideo not installed (run `make test`)")
    return importlib.import_module(f"pytorchvideo.models.{name}")


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters (fresh models have identity BNs, which would hide mapping
    errors of BN tensors), and random everything else that is zero-initialised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(shape, generator=generator) * 0.5 + 0.75)
                module.weight.copy_(torch.rand(shape, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(shape, generator=generator) * 0.1)
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.005)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.01)
    return model.eval()


class ReferenceShift(nn.Module):
    """The TSM authors' residual-branch shift written from their paper's description, as their module is laid
    out: it wraps the first conv of the branch (``net``) and shifts [N*T, C, H, W] before it. Channels [0, C/8)
    come from the next frame, [C/8, 2C/8) from the previous one; clip ends are zero."""

    def __init__(self, net: nn.Module, segments: int, fold_div: int = 8) -> None:
        super().__init__()
        self.net = net
        self.segments = segments
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        clip = x.view(nt // self.segments, self.segments, c, h, w)
        fold = c // self.fold_div
        out = torch.zeros_like(clip)
        out[:, :-1, :fold] = clip[:, 1:, :fold]
        out[:, 1:, fold:2 * fold] = clip[:, :-1, fold:2 * fold]
        out[:, :, 2 * fold:] = clip[:, :, 2 * fold:]
        return self.net(out.view(nt, c, h, w))


def shift_resnet(resnet: nn.Module, segments: int) -> nn.Module:
    """Wrap ``conv1`` of every block of a torchvision ResNet ("blockres" placement)."""
    for stage in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        for block in stage:
            block.conv1 = ReferenceShift(block.conv1, segments)
    return resnet


def shift_mobilenet_v2(mobilenet: nn.Module, segments: int) -> nn.Module:
    """Wrap the expanding 1x1 conv of every inverted residual block with a skip connection."""
    for block in mobilenet.features:
        if getattr(block, "use_res_connect", False):
            block.conv[0] = ReferenceShift(block.conv[0], segments)
    return mobilenet


def frames_forward(net2d: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """TSN consensus: the 2D network on every frame of [B, 3, T, H, W], logits averaged over T."""
    b, c, t, h, w = clip.shape
    frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
    return net2d(frames).view(b, t, -1).mean(dim=1)


def scale_logits(head: nn.Linear, logits: torch.Tensor, target: float = 5.0) -> torch.Tensor:
    """Rescale the classifier so that the largest |logit| on the test clip is ``target`` (a comparable scale
    across families for the absolute 1e-5 tolerance: random weights give anything from 0.1 to 50); returns the
    rescaled logits."""
    factor = target / logits.abs().max().item()
    with torch.no_grad():
        head.weight.mul_(factor)
        if head.bias is not None:
            head.bias.mul_(factor)
    return logits * factor
