"""ONNX and OpenVINO export: dynamic axes, precision, metadata round-trip, atomic failure, bad input."""

import json

import numpy as np
import onnx
import pytest
import torch

from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.export import export, export_onnx_module, list_targets
from edgevid.export.base import ONNX_OPSET
from edgevid.meta import ArtifactMeta, read_meta
from edgevid.models import create_model
from edgevid.runtime import load

CLASSES = ["left", "right", "up"]


def _meta(**kw) -> ArtifactMeta:
    base = dict(model="tiny3d", classes=CLASSES, frames=4, size=32, sampling_stride=2, mean=(0.45, 0.45, 0.45),
                std=(0.225, 0.225, 0.225), arch={"width": 4}, fps=25.0, sampling="dense")
    base.update(kw)
    return ArtifactMeta(**base)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny3d checkpoint and its ONNX and OpenVINO FP32 exports (made once for the module)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    model = create_model("tiny3d", num_classes=3, width=4).eval()
    ckpt = save_checkpoint(root / "best.pt", model, _meta())
    return {"model": model, "ckpt": ckpt, "onnx": export(ckpt, "onnx"), "xml": export(ckpt, "openvino")}


def _dims(path):
    graph = onnx.load(str(path)).graph
    return [[d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim] for t in (*graph.input, *graph.output)]


def test_onnx_has_dynamic_batch_and_time_and_parity(tiny):
    result = tiny["onnx"]
    assert result.path.name == "best.onnx" and result.parity.passed
    assert result.parity.max_abs_diff < 1e-4 and result.parity.top1_agreement == 1.0
    assert _dims(result.path) == [["batch", 3, "time", 32, 32], ["batch", 3]]
    assert onnx.load(str(result.path)).opset_import[0].version >= 17


@pytest.mark.parametrize("kind", ["onnx", "xml"])
def test_dynamic_batch_and_time_match_pytorch(tiny, kind):
    predictor = load(tiny[kind].path)
    for batch, frames in ((1, 4), (3, 4), (2, 8)):
        clips = torch.randn(batch, 3, frames, 32, 32)
        with torch.no_grad():
            expected = tiny["model"](clips).numpy()
        np.testing.assert_allclose(predictor.predict(clips.numpy()), expected, atol=1e-4, rtol=0)


def test_metadata_roundtrip_through_onnx_ir_and_sidecar(tiny, tmp_path):
    expected = _meta()
    for kind in ("onnx", "xml"):
        meta = read_meta(tiny[kind].path)
        assert meta.replace(extra={}, input=expected.input) == expected.replace(extra={})
        assert meta.sampling == "dense" and meta.input.dynamic_time is True
        assert meta.accepts_frames(8) and not meta.accepts_frames(5)
        assert load(tiny[kind].path).meta == meta
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine bytes")
    (tmp_path / "m.engine.edgevid.json").write_text(expected.to_json())
    assert read_meta(engine) == expected


def test_fp16_exports_are_smaller_and_close(tiny):
    for target, fp32 in (("onnx", tiny["onnx"]), ("openvino", tiny["xml"])):
        result = export(tiny["ckpt"], target, "fp16")
        assert result.path.name.startswith("best.fp16.")
        assert read_meta(result.path).precision == "fp16"
        assert result.parity.passed and result.parity.max_abs_diff < 5e-2
        assert result.size_mb < 0.7 * fp32.size_mb


def test_export_onnx_module_low_level(tmp_path):
    module = create_model("tiny3d", num_classes=3, width=4)
    path = export_onnx_module(module, (torch.randn(2, 3, 4, 32, 32),), tmp_path / "raw.onnx", input_names=["clip"],
                              output_names=["logits"], dynamic_axes={"clip": {0: "batch"}}, meta=_meta())
    assert read_meta(path) == _meta(extra={"exporter": "torch.onnx/dynamo", "opset": ONNX_OPSET})
    assert _dims(path)[0] == ["batch", 3, 4, 32, 32]
    with pytest.raises(EdgevidError, match="opset"):
        export_onnx_module(module, (torch.randn(1, 3, 4, 32, 32),), tmp_path / "old.onnx", input_names=["clip"],
                           output_names=["logits"], dynamic_axes={}, meta=_meta(), opset=13)
    assert not (tmp_path / "old.onnx").exists()


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_failed_parity_writes_nothing(tiny, tmp_path, target):
    out = tmp_path / ("m.onnx" if target == "onnx" else "m.xml")
    with pytest.raises(EdgevidError, match=r"parity check failed.*nothing written"):
        export(tiny["ckpt"], target, "fp16", out=out, tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_int8_without_calibrated_source_is_refused(tiny, tmp_path):
    for target in list_targets():
        with pytest.raises(EdgevidError, match=r"calibration set.*edgevid quantize"):
            export(tiny["ckpt"], target, "int8", out=tmp_path / f"m{target}.x")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_clear_errors(tiny, tmp_path):
    with pytest.raises(EdgevidError, match="no such file"):
        export(tmp_path / "missing.pt", "onnx")
    with pytest.raises(EdgevidError, match="valid targets: onnx, openvino, trt"):
        export(tiny["ckpt"], "tflite")
    with pytest.raises(EdgevidError, match=r"must end in .xml"):
        export(tiny["ckpt"], "openvino", out=tmp_path / "m.onnx")
    with pytest.raises(EdgevidError, match="needs a checkpoint"):
        export(tiny["onnx"].path, "onnx", out=tmp_path / "again.onnx")
    with pytest.raises(EdgevidError, match="precision"):
        export(tiny["ckpt"], "onnx", "fp8")
    no_meta = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, no_meta)
    with pytest.raises(EdgevidError, match="not an edgevid checkpoint"):
        export(no_meta, "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.pt"]


def test_cli_export_table_and_wrong_target(tiny, tmp_path, capsys):
    assert main(["export", str(tiny["ckpt"]), "--target", "openvino", "--out", str(tmp_path / "cli.xml")]) == 0
    out = capsys.readouterr().out
    assert "openvino" in out and "100%" in out and (tmp_path / "cli.bin").exists()
    assert main(["export", str(tiny["ckpt"]), "--target", "coreml"]) == 1
    assert "valid targets: onnx, openvino, trt" in capsys.readouterr().err


def test_parity_on_real_video_clips(tiny, tmp_path):
    from edgevid.data.synth import write_video

    rng = np.random.default_rng(0)
    for name in ("a.mp4", "b.mp4"):
        write_video(tmp_path / "videos" / name, rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8), 25)
    result = export(tiny["ckpt"], "onnx", out=tmp_path / "v.onnx", data=tmp_path / "videos")
    assert result.parity.clip_source == str(tmp_path / "videos") and result.parity.clips == 2
    assert json.loads(json.dumps(result.row()))["top1_agreement"] == 1.0
