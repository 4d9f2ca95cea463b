"""The classic 3D families: video ResNets (R3D/MC3/R(2+1)D), C3D, I3D (+ inflation), P3D, SlowFast."""

import pytest
import torch

from edgevid.models import HEAD_KINDS, count_macs, count_params, create_model
from edgevid.models.i3d import inflate_resnet2d
from edgevid.models.p3d import P3DResNet
from edgevid.models.resnet2d import resnet2d
from edgevid.models.video_resnet import conv2plus1d_mid


def _meta_model(name: str, **overrides):
    with torch.device("meta"):
        return create_model(name, num_classes=400, **overrides)


@pytest.mark.parametrize(("name", "params", "gmacs"), [
    ("r2plus1d_18", 31_505_325, 40.52),
    ("r3d_18", 33_371_472, 40.70),
    ("mc3_18", 11_695_440, 43.34),
])
def test_video_resnet_matches_torchvision(name, params, gmacs):
    model = _meta_model(name)
    assert count_params(model) == params
    assert count_macs(model, 16, 112) / 1e9 == pytest.approx(gmacs, rel=0.01)


@pytest.mark.parametrize(("name", "frames", "size", "params_m", "gmacs", "rel"), [
    # pytorchvideo's model zoo counts FLOPs at the 256 test crop with fvcore, which adds BN and pooling (~1-2%).
    ("i3d_r50", 8, 256, 28.04, 37.53, 0.02),
    ("slowfast_r50", 32, 256, 34.48, 36.69, 0.02),
    ("c3d", 16, 112, 79.63, 38.5, 0.01),
])
def test_other_families_match_references(name, frames, size, params_m, gmacs, rel):
    model = _meta_model(name)
    assert round(count_params(model) / 1e6, 2) == params_m
    assert count_macs(model, frames, size) / 1e9 == pytest.approx(gmacs, rel=rel)


def test_conv2plus1d_mid_channels():
    assert [conv2plus1d_mid(cin, cout) for cin, cout in ((64, 64), (64, 128), (128, 256), (256, 512))] == [
        144, 230, 460, 921]
    model = _meta_model("r2plus1d_18")
    first_convs = [getattr(model, f"layer{i}")[0].conv1[0][0] for i in range(1, 5)]
    assert [conv.out_channels for conv in first_convs] == [144, 230, 460, 921]


# (model, overrides, input T, input size, expected T', H')
_SMALL_RUNS = [
    ("r3d_18", {}, 16, 16, 2, 1),
    ("mc3_18", {}, 8, 16, 8, 1),
    ("r2plus1d_18", {"causal": True, "drop_path": 0.1}, 16, 16, 2, 1),
    ("c3d", {"fc_dim": 64, "fc6_grid": 2}, 8, 33, 1, 1),
    ("i3d_r50", {}, 4, 32, 2, 1),
    ("p3d_r50", {}, 16, 16, 1, 1),
    ("slowfast_r50", {}, 16, 16, 2, 1),
    ("slowfast_r18", {"fusion_kernel": 7}, 16, 32, 2, 1),
]


@pytest.mark.parametrize(("name", "overrides", "frames", "size", "out_t", "out_hw"), _SMALL_RUNS,
                         ids=[run[0] for run in _SMALL_RUNS])
def test_forward_every_head_kind(name, overrides, frames, size, out_t, out_hw):
    classes = 5
    model = create_model(name, num_classes=classes, head="features", **overrides).eval()
    with torch.no_grad():
        feats = model(torch.randn(2, 3, frames, size, size))
        outputs = {kind: model.forward_head(feats, kind) for kind in HEAD_KINDS}
    expected = {
        "clip": (2, classes),
        "frame": (2, classes, out_t),
        "dense": (2, classes, out_t, out_hw, out_hw),
        "features": (2, model.num_features, out_t, out_hw, out_hw),
    }
    assert {kind: tuple(out.shape) for kind, out in outputs.items()} == expected
    torch.testing.assert_close(outputs["features"], feats)
    torch.testing.assert_close(outputs["frame"].mean(-1), outputs["clip"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outputs["dense"].mean((-3, -2, -1)), outputs["clip"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("temporal_strides", "frames", "cut"), [((1, 2, 2, 2), 16, 8), ((1, 1, 1, 1), 8, 5)])
def test_causal_r2plus1d_frame_outputs_ignore_later_frames(temporal_strides, frames, cut):
    model = create_model("r2plus1d_18", num_classes=4, head="frame", causal=True,
                         temporal_strides=temporal_strides).eval()
    x = torch.randn(1, 3, frames, 16, 16)
    changed = x.clone()
    changed[:, :, cut:] = torch.randn_like(changed[:, :, cut:])
    with torch.no_grad():
        before, after = model(x), model(changed)
    kept = cut // (frames // before.shape[-1])  # output j has seen input frames <= stride * j
    torch.testing.assert_close(after[..., :kept], before[..., :kept])
    assert not torch.allclose(after[..., kept], before[..., kept])


def test_non_causal_r2plus1d_looks_ahead():
    model = create_model("r2plus1d_18", num_classes=4, head="frame").eval()
    x = torch.randn(1, 3, 16, 16, 16)
    changed = x.clone()
    changed[:, :, 12:] = 0
    with torch.no_grad():
        assert not torch.allclose(model(x)[..., 0], model(changed)[..., 0])


@pytest.fixture(scope="module")
def net2d() -> torch.nn.Module:
    """A 2D ResNet-50 (400 classes) with non-trivial BN statistics."""
    torch.manual_seed(1)
    net = resnet2d("resnet50", num_classes=400)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _meta_state_dict(name: str, classes: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return resnet2d(name, num_classes=classes).state_dict()


@pytest.mark.parametrize(("mode", "time_padding", "exact"), [
    ("repeat", "replicate", True),
    ("center", "zeros", True),
    ("repeat", "zeros", False),  # zero padding at the clip ends breaks the repeat property (documented)
])
def test_inflated_i3d_reproduces_2d_network_on_static_clip(net2d, mode, time_padding, exact):
    i3d = create_model("i3d_r50", num_classes=400, time_padding=time_padding)
    i3d.load_state_dict(inflate_resnet2d(net2d.state_dict(), i3d, mode=mode))
    i3d.eval()
    frame = torch.randn(1, 3, 32, 32)
    clip = frame.unsqueeze(2).expand(-1, -1, 4, -1, -1)
    with torch.no_grad():
        feats_3d, logits_3d = i3d.forward_features(clip), i3d(clip)
        feats_2d, logits_2d = net2d.forward_features(frame), net2d(frame)
    errors = [_relative_error(feats_3d, feats_2d.unsqueeze(2)), _relative_error(logits_3d, logits_2d)]
    if exact:
        assert max(errors) < 1e-5
    else:
        assert min(errors) > 1e-3


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def test_inflation_kernels(net2d):
    i3d = _meta_model("i3d_r50").to_empty(device="cpu")
    w2d = net2d.state_dict()["conv1.weight"]
    repeat = inflate_resnet2d(net2d.state_dict(), i3d, mode="repeat")["conv1.weight"]
    center = inflate_resnet2d(net2d.state_dict(), i3d, mode="center")["conv1.weight"]
    assert repeat.shape == center.shape == (64, 3, 5, 7, 7)
    torch.testing.assert_close(repeat.sum(2), w2d)
    torch.testing.assert_close(center[:, :, 2], w2d)
    assert not center[:, :, [0, 1, 3, 4]].any()


def test_inflation_errors_name_the_key():
    i3d = _meta_model("i3d_r50")
    state = _meta_state_dict("resnet50", 400)
    missing = {k: v for k, v in state.items() if k != "layer2.1.conv2.weight"}
    with pytest.raises(ValueError, match=r"layer2\.1\.conv2\.weight"):
        inflate_resnet2d(missing, i3d)
    with pytest.raises(ValueError, match=r"extra\.weight"):
        inflate_resnet2d({**state, "extra.weight": torch.zeros(1)}, i3d)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight"):
        inflate_resnet2d(_meta_state_dict("resnet18", 400), i3d)
    imagenet = _meta_state_dict("resnet50", 1000)
    with pytest.raises(ValueError, match=r"fc\.weight"):
        inflate_resnet2d(imagenet, i3d)
    assert set(inflate_resnet2d(imagenet, i3d, copy_head=False)) == set(i3d.state_dict())
    with pytest.raises(ValueError, match="inflation mode"):
        inflate_resnet2d(state, i3d, mode="mean")


def test_p3d_variants_share_weights_but_differ():
    cycled = _meta_model("p3d_r50")
    kinds = [block.kind for stage in (cycled.layer1, cycled.layer2, cycled.layer3, cycled.layer4) for block in stage]
    assert kinds == list("ABCABCABCABCA") + ["2D"] * 3
    reference = P3DResNet((1, 1, 1, 1), num_classes=5, variant="A").eval()
    x = torch.randn(1, 3, 16, 16, 16)
    outputs = {}
    for variant in ("A", "B", "C", "ABC"):
        model = P3DResNet((1, 1, 1, 1), num_classes=5, variant=variant).eval()
        model.load_state_dict(reference.state_dict())
        with torch.no_grad():
            outputs[variant] = model.forward_features(x)
    variants = list(outputs)
    for i, first in enumerate(variants):
        for second in variants[i + 1:]:
            assert not torch.allclose(outputs[first], outputs[second]), (first, second)


@pytest.mark.parametrize(("name", "overrides", "shape", "message"), [
    ("slowfast_r18", {}, (1, 3, 12, 32, 32), "multiple of 8"),
    ("slowfast_r18", {"alpha": 4}, (1, 3, 2, 32, 32), "at least 4"),
    ("p3d_r50", {}, (1, 3, 8, 32, 32), "multiple of 16"),
    ("i3d_r50", {}, (1, 3, 3, 32, 32), "multiple of 2"),
    ("c3d", {"fc_dim": 8}, (1, 3, 16, 64, 64), "H and W >= 97"),
    ("r3d_18", {}, (1, 1, 8, 32, 32), "3 input channels"),
    ("r3d_18", {}, (3, 8, 32, 32), "expects input"),
])
def test_invalid_inputs(name, overrides, shape, message):
    model = _meta_model(name, **overrides)
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape, device="meta"))


@pytest.mark.parametrize(("name", "overrides", "message"), [
    ("p3d_r50", {"variant": "D"}, "variant"),
    ("r2plus1d_18", {"temporal_strides": (1, 2, 2)}, "temporal_strides"),
    ("i3d_r50", {"time_padding": "reflect"}, "time_padding"),
    ("i3d_r50", {"temporal_kernels": ((3,), (2,), (1,), (1,))}, "odd"),
    ("slowfast_r50", {"fusion_kernel": 4}, "fusion_kernel"),
])
def test_invalid_options(name, overrides, message):
    with pytest.raises(ValueError, match=message), torch.device("meta"):
        create_model(name, **overrides)
