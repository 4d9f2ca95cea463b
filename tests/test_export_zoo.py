"""Every zoo family exports to ONNX through torch.onnx's dynamo exporter (checked against PyTorch) and OpenVINO
(checked against ONNX Runtime and PyTorch), at small inputs and reduced depths/widths through create_model
overrides; the streaming graphs too; the TorchScript fallback says so."""

import numpy as np
import onnx
import pytest
import torch

from edgevid.checkpoint import save_checkpoint
from edgevid.errors import EdgevidError
from edgevid.export import ExportOptions, export
from edgevid.export.base import ONNX_OPSET
from edgevid.meta import ArtifactMeta, read_meta
from edgevid.models import create_model, get_spec, list_models
from edgevid.runtime import load

# family -> (model, overrides, frames, size, time axis expected dynamic (None: whatever the probe decides))
FAMILIES = {
    "tiny3d": ("tiny3d", {"width": 4}, 4, 32, True),
    "x3d": ("x3d_xs", {}, 4, 32, True),
    "video_resnet": ("r2plus1d_18", {"layers": (1, 1, 1, 1)}, 8, 32, True),
    "c3d": ("c3d", {"fc_dim": 32, "fc6_grid": 1}, 16, 32, None),
    "i3d": ("i3d_r50", {"layers": (1, 1, 1, 1)}, 8, 32, None),
    "p3d": ("p3d_r50", {"layers": (1, 1, 1, 1)}, 16, 32, None),
    "slowfast": ("slowfast_r18", {"layers": (1, 1, 1, 1)}, 8, 32, None),
    "tsm": ("tsm_mobilenetv2", {"width_mult": 0.25}, 4, 32, None),
}


def test_every_registered_family_is_covered():
    families = {get_spec(name).family for name in list_models()}
    assert families <= set(FAMILIES), f"add export test configs for {sorted(families - set(FAMILIES))}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_exports_to_onnx_and_openvino(family, tmp_path):
    name, overrides, frames, size, dynamic_time = FAMILIES[family]
    if name not in list_models():
        pytest.skip(f"{name} is not registered")
    spec = get_spec(name)
    model = create_model(name, num_classes=5, **overrides)
    meta = ArtifactMeta(model=name, classes=list("abcde"), frames=frames, size=size, sampling_stride=2,
                        mean=spec.mean, std=spec.std, arch=overrides)
    ckpt = save_checkpoint(tmp_path / "m.pt", model, meta)

    onnx_result = export(ckpt, "onnx", parity_clips=2)
    assert onnx_result.parity.passed and onnx_result.parity.top1_agreement == 1.0
    onnx_meta = read_meta(onnx_result.path)
    assert onnx_meta.input.dynamic_batch is True
    assert onnx_meta.extra["exporter"] == "torch.onnx/dynamo"  # the default, with no fallback for any zoo family
    if dynamic_time is not None:
        assert onnx_meta.input.dynamic_time is dynamic_time

    xml_result = export(onnx_result.path, "openvino", parity_clips=2)
    assert xml_result.parity.passed and xml_result.parity.reference == "onnxruntime"

    # the exporters ran both artifacts at batch 2 and batch 1 against their source; a dynamic time axis must also
    # take 2T in OpenVINO (ONNX Runtime at 2T was checked against PyTorch when the axis was made dynamic)
    if onnx_meta.input.dynamic_time:
        clip = np.random.default_rng(1).standard_normal((1, 3, 2 * frames, size, size)).astype(np.float32)
        expected = load(onnx_result.path).predict(clip)
        np.testing.assert_allclose(load(xml_result.path).predict(clip), expected,
                                   atol=1e-3 * max(1.0, np.abs(expected).max()), rtol=0)


def _checkpoint(tmp_path, name, overrides, frames, size=32):
    spec = get_spec(name)
    model = create_model(name, num_classes=5, **overrides)
    meta = ArtifactMeta(model=name, classes=list("abcde"), frames=frames, size=size, sampling_stride=2,
                        mean=spec.mean, std=spec.std, arch=overrides)
    return save_checkpoint(tmp_path / f"{name}.pt", model, meta)


def test_streaming_graph_exports_through_dynamo(tmp_path, capsys):
    """The streaming (state in / state out) graph of TSM's online shift: dynamo, checked frame by frame against the
    causal clip model, with a dynamic batch shared by the frame and every state (causal X3D and R(2+1)D streaming
    graphs: tests/test_streaming_equivalence.py)."""
    overrides = {"width_mult": 0.25, "shift_mode": "online"}
    result = export(_checkpoint(tmp_path, "tsm_mobilenetv2", overrides, frames=4), "onnx", streaming=True)
    assert result.parity.passed and result.meta.extra["exporter"] == "torch.onnx/dynamo"
    assert "warning" not in capsys.readouterr().err
    states = read_meta(result.path).stream.states
    batched = {result.meta.input.name, *(s.name for s in states if s.kind != "step")}
    graph = onnx.load(str(result.path)).graph
    batch_dims = [v.type.tensor_type.shape.dim[0] for v in graph.input if v.name in batched]
    assert len(batch_dims) == len(batched) > 1 and all(d.dim_param == "batch" for d in batch_dims)


def test_fallback_to_torchscript_when_dynamo_raises(tmp_path, monkeypatch, capsys):
    real_export = torch.onnx.export

    def dynamo_breaks(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("no ONNX function found for aten::made_up")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_breaks)
    result = export(_checkpoint(tmp_path, "tiny3d", {"width": 4}, frames=4), "onnx", parity_clips=2)
    assert result.parity.passed and result.meta.extra["exporter"] == "torch.onnx/torchscript"
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "dynamo ONNX exporter failed" in warning[0] and "aten::made_up" in warning[0]
    assert "TorchScript exporter instead" in warning[0]
    # asked for explicitly: no dynamo attempt, no warning
    explicit = export(tmp_path / "tiny3d.pt", "onnx", out=tmp_path / "ts.onnx", parity_clips=2,
                      onnx_exporter="torchscript")
    assert explicit.meta.extra["exporter"] == "torch.onnx/torchscript" and "warning" not in capsys.readouterr().err


def test_both_exporters_give_parity(tmp_path):
    """Each exporter: same input/output names and dynamic axes, both within the fp32 tolerance of PyTorch and of
    each other; the metadata survives both."""
    ckpt = _checkpoint(tmp_path, "tiny3d", {"width": 4}, frames=4)
    results = {name: export(ckpt, "onnx", out=tmp_path / f"{name}.onnx", parity_clips=2, onnx_exporter=name)
               for name in ("dynamo", "torchscript")}
    clip = np.random.default_rng(3).standard_normal((2, 3, 4, 32, 32)).astype(np.float32)
    outputs = {}
    for name, result in results.items():
        assert result.parity.passed and result.meta.extra["exporter"] == f"torch.onnx/{name}"
        meta = read_meta(result.path)
        assert meta.classes == list("abcde") and meta.extra["opset"] == ONNX_OPSET
        graph = onnx.load(str(result.path)).graph
        assert [v.name for v in graph.input] == ["clip"] and [v.name for v in graph.output] == ["logits"]
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        outputs[name] = load(result.path).predict(clip)
    np.testing.assert_allclose(outputs["dynamo"], outputs["torchscript"], atol=1e-4, rtol=0)


def test_exporter_option_is_checked():
    with pytest.raises(EdgevidError, match="--onnx-exporter"):
        ExportOptions(onnx_exporter="jit")
    with pytest.raises(EdgevidError, match="opset must be >= 17"):
        ExportOptions(opset=16)
