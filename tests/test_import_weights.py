"""Importing other projects' checkpoints: logits equal to the reference project's own network (random weights)."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from reference_models import (
    frames_forward,
    pytorchvideo_models,
    randomize_bn,
    scale_logits,
    shift_mobilenet_v2,
    shift_resnet,
    torchvision_models,
)
from torch import nn

from edgevid.checkpoint import load_checkpoint, load_model, save_checkpoint
from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.weights import detect_format, import_checkpoint, kinetics400_classes, outside_sources

TOLERANCE = 1e-5


def _clip(frames: int, size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


def _import_and_compare(tmp_path: Path, payload, reference_logits: torch.Tensor, clip: torch.Tensor, model: str,
                        name: str = "source.pyth", fmt: str | None = None) -> tuple[nn.Module, float]:
    source = tmp_path / name
    torch.save(payload, source)
    out = import_checkpoint(source, model, fmt=fmt, out=tmp_path / f"{model}.pt")
    imported, meta = load_model(out)
    with torch.no_grad():
        diff = (imported(clip) - reference_logits).abs().max().item()
    assert diff <= TOLERANCE, f"{model}: max |logit diff| {diff:.3g}"
    return imported, meta


# ------------------------------------------------------------------------------------------------ pytorchvideo
def test_pytorchvideo_x3d_parity(tmp_path):
    x3d = pytorchvideo_models("x3d")
    torch.manual_seed(0)
    reference = randomize_bn(x3d.create_x3d(input_clip_length=4, input_crop_size=64, depth_factor=2.2,
                                            model_num_class=400, head_activation=None))
    clip = _clip(4, 64)
    with torch.no_grad():
        expected = scale_logits(reference.blocks[5].proj, reference(clip))
    payload = {"model_state": reference.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
               "epoch": 300, "cfg": "TRAIN:\n  BATCH_SIZE: 64\n"}
    _, meta = _import_and_compare(tmp_path, payload, expected, clip, "x3d_xs")
    assert meta.classes == kinetics400_classes() and meta.classes[0] == "abseiling"
    assert (meta.frames, meta.size, meta.sampling_stride) == (4, 160, 12)
    assert meta.mean == (0.45, 0.45, 0.45) and meta.arch == {"same_width_shortcut_bn": False}
    assert meta.extra["imported_from"]["ignored"] == ["cfg", "epoch", "optimizer_state"]
    out_m = import_checkpoint(tmp_path / "source.pyth", "x3d_m", out=tmp_path / "m.pt")
    assert (load_checkpoint(out_m).meta.frames, load_checkpoint(out_m).meta.size) == (16, 224)


def test_pytorchvideo_resnets_parity(tmp_path):
    hub = pytorchvideo_models("hub.resnet")
    common = dict(head_activation=None, model_num_class=400)
    clip = _clip(8, 64, batch=1)
    resnet = pytorchvideo_models("resnet")
    slow = dict(stem_conv_kernel_size=(1, 7, 7), stage1_pool=None,  # as hub.resnet.slow_r50 builds it
                stage_conv_a_kernel_size=((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1)))
    builders = {"i3d_r50": lambda: hub.i3d_r50(head_pool_kernel_size=(4, 2, 2), **common),
                "c2d_r50": lambda: hub.c2d_r50(head_pool_kernel_size=(4, 2, 2), **common),
                "slow_r50": lambda: resnet.create_resnet(head_pool_kernel_size=(8, 2, 2), **slow, **common)}
    for name, build in builders.items():
        torch.manual_seed(0)
        reference = randomize_bn(build())
        with torch.no_grad():
            expected = scale_logits(reference.blocks[-1].proj, reference(clip))
        _, meta = _import_and_compare(tmp_path, {"model_state": reference.state_dict()}, expected, clip, name,
                                      name=f"{name}.pyth")
        assert meta.model == "i3d_r50"


def test_pytorchvideo_slowfast_parity(tmp_path):
    hub = pytorchvideo_models("hub.slowfast")
    torch.manual_seed(0)
    reference = randomize_bn(hub.slowfast_r50(head_pool_kernel_sizes=((8, 2, 2), (32, 2, 2)),
                                              head_activation=None, model_num_class=400))
    clip = _clip(32, 64, batch=1)
    with torch.no_grad():
        expected = scale_logits(reference.blocks[6].proj, reference([clip[:, :, ::4], clip]))
    _, meta = _import_and_compare(tmp_path, {"model_state": reference.state_dict()}, expected, clip,
                                  "slowfast_r50")
    assert meta.arch == {"alpha": 4, "fusion_kernel": 7} and meta.frames == 32


# ------------------------------------------------------------------------------------------------ torchvision
@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_video_parity(tmp_path, name):
    video = torchvision_models("video.resnet")
    torch.manual_seed(0)
    reference = randomize_bn(getattr(video, name)())
    clip = _clip(4, 32)
    with torch.no_grad():
        expected = scale_logits(reference.fc, reference(clip))
    _, meta = _import_and_compare(tmp_path, reference.state_dict(), expected, clip, name, name=f"{name}.pth")
    assert meta.mean == (0.43216, 0.394666, 0.37645) and meta.classes[-1] == "zumba"


def test_torchvision_2d_backbones_as_tsm(tmp_path):
    resnet = torchvision_models("resnet")
    mobilenet = torchvision_models("mobilenetv2")
    clip = _clip(4, 64, batch=1)
    for name, build, model, shift in (("resnet18", resnet.resnet18, "tsm_r18", shift_resnet),
                                      ("mobilenet_v2", mobilenet.mobilenet_v2, "tsm_mobilenetv2",
                                       shift_mobilenet_v2)):
        torch.manual_seed(0)
        reference = randomize_bn(build())
        state = {k: v.clone() for k, v in reference.state_dict().items()}
        with torch.no_grad():
            expected = frames_forward(shift(reference, 4), clip)
            head = reference.fc if name == "resnet18" else reference.classifier[1]
            expected = scale_logits(head, expected)
            state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
            state.update({k: v.clone() for k, v in reference.state_dict().items()
                          if k.startswith(("fc.", "classifier."))})
        _, meta = _import_and_compare(tmp_path, state, expected, clip, model, name=f"{name}.pth")
        assert meta.num_classes == 1000 and meta.sampling == "segments"


def test_torchvision_resnet50_inflated_into_i3d(tmp_path):
    resnet = torchvision_models("resnet")
    torch.manual_seed(0)
    reference = randomize_bn(resnet.resnet50())
    image = torch.randn(1, 3, 64, 64)
    static = image[:, :, None].expand(1, 3, 4, 64, 64).contiguous()
    with torch.no_grad():
        expected = reference(image)
    source = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), source)
    imported, meta = load_model(import_checkpoint(source, "i3d_r50"))
    with torch.no_grad():  # a different network (3D convs) fed a static clip: FP32 rounding relative to the logits
        assert (imported(static) - expected).abs().max().item() <= TOLERANCE * expected.abs().max().item()
    assert meta.num_classes == 1000 and (tmp_path / "resnet50.edgevid.pt").is_file()


# ------------------------------------------------------------------------------------------------ TSM authors
def _tsm_authors_mobilenet_keys(state: dict[str, torch.Tensor], shifted: set[int]) -> dict[str, torch.Tensor]:
    """torchvision MobileNetV2 keys -> the TSM authors' archs/mobilenet_v2.py layout (flat ``conv`` Sequential,
    ``classifier`` a Linear, ``conv.0.net`` where the shift wraps the first conv)."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"features\.(\d+)\.conv\.(\d)(?:\.(\d))?\.(\w+)", key)
        if m:
            block, first, second, param = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            if block == 1:
                index = {(0, "0"): 0, (0, "1"): 1, (1, None): 3, (2, None): 4}[first, second]
            else:
                index = {(0, "0"): 0, (0, "1"): 1, (1, "0"): 3, (1, "1"): 4, (2, None): 6, (3, None): 7}[first, second]
            net = ".net" if index == 0 and block in shifted else ""
            key = f"features.{block}.conv.{index}{net}.{param}"
        elif key.startswith("classifier.1."):
            key = "classifier." + key.split(".")[-1]
        out[key] = value
    return out


def test_tsm_authors_parity(tmp_path):
    resnet = torchvision_models("resnet")
    mobilenet = torchvision_models("mobilenetv2")
    clip = _clip(4, 64, batch=1)
    torch.manual_seed(0)
    net = randomize_bn(resnet.resnet50(num_classes=400))
    net = shift_resnet(net, 4)
    new_fc = net.fc
    net.fc = nn.Identity()
    with torch.no_grad():
        expected = scale_logits(new_fc, frames_forward(nn.Sequential(net, new_fc), clip))
    state = {f"module.base_model.{k}": v for k, v in net.state_dict().items()}
    state.update({f"module.new_fc.{k}": v for k, v in new_fc.state_dict().items()})
    payload = {"epoch": 50, "arch": "resnet50", "state_dict": state, "best_prec1": 74.1}
    _, meta = _import_and_compare(tmp_path, payload, expected, clip, "tsm_r50", name="tsm_r50.pth")
    assert meta.extra["imported_from"]["format"] == "tsm"

    torch.manual_seed(0)
    mb = randomize_bn(mobilenet.mobilenet_v2(num_classes=400))
    plain = {k: v.clone() for k, v in mb.state_dict().items()}
    shifted = {i for i, block in enumerate(mb.features) if getattr(block, "use_res_connect", False)}
    with torch.no_grad():
        expected = scale_logits(mb.classifier[1], frames_forward(shift_mobilenet_v2(mb, 4), clip))
        plain.update({k: v.clone() for k, v in mb.state_dict().items() if k.startswith("classifier.")})
    state = {("module.new_fc." + k.split(".")[-1]) if k.startswith("classifier.") else f"module.base_model.{k}": v
             for k, v in _tsm_authors_mobilenet_keys(plain, shifted).items()}
    _import_and_compare(tmp_path, {"state_dict": state}, expected, clip, "tsm_mobilenetv2", name="tsm_mbv2.pth")


# ------------------------------------------------------------------------------------------------ MMAction2
def _mmaction2_resnet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ResNet (+ shift wrapper) keys -> MMAction2's ResNetTSM / TSMHead (ConvModule: conv + bn)."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^conv1\.", "conv1.conv.", key)
        key = re.sub(r"^bn1\.", "conv1.bn.", key)
        key = re.sub(r"\.conv([1-3])\.", r".conv\1.conv.", key)
        key = re.sub(r"\.bn([1-3])\.", r".conv\1.bn.", key)
        key = key.replace("downsample.0.", "downsample.conv.").replace("downsample.1.", "downsample.bn.")
        out["cls_head.fc_cls." + key[3:] if key.startswith("fc.") else f"backbone.{key}"] = value
    return out


def _mmaction2_x3d_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorchvideo X3D keys -> MMAction2's X3D backbone and X3DHead."""
    out = {}
    parts = {"branch2.conv_a": "conv1.conv", "branch2.norm_a": "conv1.bn", "branch2.conv_b": "conv2.conv",
             "branch2.norm_b.0": "conv2.bn", "branch2.norm_b": "conv2.bn", "branch2.norm_b.1.block.0": "se_module.fc1",
             "branch2.norm_b.1.block.2": "se_module.fc2", "branch2.conv_c": "conv3.conv",
             "branch2.norm_c": "conv3.bn", "branch1_conv": "downsample.conv", "branch1_norm": "downsample.bn"}
    fixed = {"blocks.0.conv.conv_t.weight": "backbone.conv1_s.conv.weight",
             "blocks.0.conv.conv_xy.weight": "backbone.conv1_t.conv.weight",
             "blocks.5.pool.pre_conv.weight": "backbone.conv5.conv.weight",
             "blocks.5.proj.weight": "cls_head.fc2.weight", "blocks.5.proj.bias": "cls_head.fc2.bias"}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
        elif key == "blocks.5.pool.post_conv.weight":
            out["cls_head.fc1.weight"] = value.flatten(1)
        elif key.startswith("blocks.0.norm."):
            out["backbone.conv1_t.bn." + key.split(".")[-1]] = value
        elif key.startswith("blocks.5.pool.pre_norm."):
            out["backbone.conv5.bn." + key.split(".")[-1]] = value
        else:
            m = re.fullmatch(r"blocks\.(\d)\.res_blocks\.(\d+)\.(.+)\.(\w+)", key)
            out[f"backbone.layer{m.group(1)}.{m.group(2)}.{parts[m.group(3)]}.{m.group(4)}"] = value
    return out


def test_mmaction2_parity(tmp_path):
    resnet = torchvision_models("resnet")
    clip = _clip(4, 64, batch=1)
    torch.manual_seed(0)
    net = shift_resnet(randomize_bn(resnet.resnet50(num_classes=400)), 4)
    with torch.no_grad():
        expected = scale_logits(net.fc, frames_forward(net, clip))
    payload = {"meta": {"epoch": 50, "mmengine_version": "0.10.3"},
               "state_dict": _mmaction2_resnet_keys(net.state_dict())}
    _import_and_compare(tmp_path, payload, expected, clip, "tsm_r50", name="tsm_mm.pth")

    # MMAction2's X3D is pytorchvideo's network plus a BN on stage 1's first shortcut: add it to the reference.
    x3d = pytorchvideo_models("x3d")
    torch.manual_seed(0)
    reference = x3d.create_x3d(input_clip_length=4, input_crop_size=64, model_num_class=400, head_activation=None)
    reference.blocks[1].res_blocks[0].branch1_norm = nn.BatchNorm3d(24)
    randomize_bn(reference)
    clip = _clip(4, 64)
    with torch.no_grad():
        expected = scale_logits(reference.blocks[5].proj, reference(clip))
    payload = {"meta": {"epoch": 1}, "state_dict": _mmaction2_x3d_keys(reference.state_dict())}
    _, meta = _import_and_compare(tmp_path, payload, expected, clip, "x3d_s", name="x3d_mm.pth")
    assert meta.arch == {} and meta.frames == 13


# ------------------------------------------------------------------------------------------------ errors
def test_unmapped_keys_and_shapes_are_listed(tmp_path):
    video = torchvision_models("video.resnet")
    state = video.r3d_18().state_dict()
    extra = {**state, "layer5.0.conv1.weight": torch.zeros(1), "aux_head.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(EdgevidError, match=r"extra\.pth: 2 torchvision key\(s\) map to no edgevid layer: "
                                           r"layer5\.0\.conv1\.weight, aux_head\.weight"):
        import_checkpoint(tmp_path / "extra.pth", "r3d_18")
    bad = dict(state)
    bad["layer1.0.conv1.0.weight"] = torch.zeros(64, 64, 1, 3, 3)
    del bad["layer4.1.conv2.1.running_var"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(EdgevidError) as err:
        import_checkpoint(tmp_path / "bad.pth", "r3d_18")
    text = str(err.value)
    assert "bad.pth: does not fit r3d_18" in text and "layer4.1.conv2.1.running_var" in text
    assert "layer1.0.conv1.0.weight [64, 64, 1, 3, 3] (edgevid [64, 64, 3, 3, 3])" in text
    with pytest.raises(EdgevidError, match="torchvision checkpoints import as"):
        import_checkpoint(tmp_path / "extra.pth", "x3d_xs")
    assert not list(tmp_path.glob("*.edgevid.pt"))


class _Payload:
    """Unpickling this calls os.system: a checkpoint that runs code when loaded carelessly."""

    def __reduce__(self):
        return os.system, ("touch pwned",)


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "evil.pyth"
    torch.save({"model_state": {"w": torch.zeros(1)}, "cfg": _Payload()}, source)
    with pytest.raises(EdgevidError, match=r"evil\.pyth: refused to load: the pickle holds '(posix|os)\.system'"):
        import_checkpoint(source, "x3d_xs")
    assert not (tmp_path / "pwned").exists()
    source.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(EdgevidError, match=r"evil\.pyth: not a readable PyTorch checkpoint"):
        import_checkpoint(source, "x3d_xs")


def test_detection_and_other_errors(tmp_path):
    assert detect_format({"blocks.0.conv.weight": 0, "blocks.1.x": 0}, {"model_state": {}}) == "pytorchvideo"
    assert detect_format({"backbone.conv1.conv.weight": 0, "cls_head.fc_cls.weight": 0}) == "mmaction2"
    assert detect_format({"module.base_model.conv1.weight": 0}) == "tsm"
    assert detect_format({"stem.0.weight": 0}) == "torchvision"
    with pytest.raises(EdgevidError, match="PySlowFast checkpoint"):
        detect_format({"s1.pathway0_stem.conv.weight": 0})
    with pytest.raises(EdgevidError, match="pass --from"):
        detect_format({"encoder.weight": 0})
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(EdgevidError, match=r"empty\.pth: holds no model weights"):
        import_checkpoint(tmp_path / "empty.pth", "x3d_xs")
    meta = ArtifactMeta("tiny3d", ["a", "b"], 4, 32, 2, (0.5,) * 3, (0.5,) * 3)
    save_checkpoint(tmp_path / "own.pt", create_model("tiny3d", num_classes=2), meta)
    with pytest.raises(EdgevidError, match="already an edgevid checkpoint"):
        import_checkpoint(tmp_path / "own.pt", "tiny3d")


def test_outside_sources_cover_the_families():
    table = outside_sources()
    assert {"x3d", "video_resnet", "tsm", "i3d", "slowfast"} <= set(table)
    assert any(row["format"] == "mmaction2" for row in table["x3d"])


def test_imported_model_exports_with_parity(tmp_path):
    x3d = pytorchvideo_models("x3d")
    torch.manual_seed(0)
    reference = randomize_bn(x3d.create_x3d(input_clip_length=4, input_crop_size=160, model_num_class=400,
                                            head_activation=None))
    torch.save({"model_state": reference.state_dict()}, tmp_path / "X3D_XS.pyth")
    path = import_checkpoint(tmp_path / "X3D_XS.pyth", "x3d_xs")
    for target in ("onnx", "openvino"):
        result = export(path, target, "fp32", tmp_path / f"x3d.{'onnx' if target == 'onnx' else 'xml'}")
        assert result.parity.max_abs_diff <= result.parity.limit and result.parity.top1_agreement == 1.0
        assert result.meta.arch == {"same_width_shortcut_bn": False} and result.meta.classes[0] == "abseiling"


def test_cli_import_and_models(tmp_path, capsys):
    video = torchvision_models("video.resnet")
    torch.save(video.r2plus1d_18().state_dict(), tmp_path / "r2plus1d_18.pth")
    out = tmp_path / "r2p1d_k400.pt"
    assert main(["import", str(tmp_path / "r2plus1d_18.pth"), "--model", "r2plus1d_18", "--out", str(out)]) == 0
    text = "".join(capsys.readouterr().out.split())  # rich may break the long path anywhere
    assert "".join(f"wrote {out}: r2plus1d_18 from a torchvision checkpoint, 400 classes (abseiling".split()) in text
    assert load_checkpoint(out).meta.extra["imported_from"]["format"] == "torchvision"
    assert main(["import", str(tmp_path / "r2plus1d_18.pth"), "--model", "x3d_xs"]) == 1
    assert "torchvision checkpoints import as" in capsys.readouterr().err
    assert main(["models", "r2plus1d_18"]) == 0
    assert "torchvision:r2plus1d_18" in capsys.readouterr().out
