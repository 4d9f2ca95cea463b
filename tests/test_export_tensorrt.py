"""TensorRT export: build plans for TensorRT 10 and 11, profiles (clip and streaming ONNX), the trtexec line, the
streaming parity check, and the missing-package path. The engine build itself runs only where the real tensorrt
package and a CUDA GPU are present."""

import numpy as np
import onnx
import pytest
import torch

from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.export import TensorRTUnavailableError, export
from edgevid.export.base import ExportOptions, open_source
from edgevid.export.tensorrt import (
    ShapeRanges,
    build_plan,
    onnx_input_shapes,
    profile_shapes,
    shape_profiles,
    streaming_graph_parity,
)
from edgevid.meta import ArtifactMeta, read_meta
from edgevid.models import create_model
from edgevid.runtime import load
from edgevid.runtime.onnx_backend import OnnxRuntimePredictor
from edgevid.runtime.streaming import load_streaming
from edgevid.runtime.tensorrt_backend import TensorRTPredictor, tensorrt_module

TRT, _ = tensorrt_module()
needs_tensorrt = pytest.mark.skipif(TRT is None or not torch.cuda.is_available(),
                                    reason="needs the tensorrt package and a CUDA GPU")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    meta = ArtifactMeta(model="tiny3d", classes=["a", "b", "c"], frames=4, size=32, sampling_stride=2,
                        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), arch={"width": 4})
    return save_checkpoint(tmp_path_factory.mktemp("trt") / "best.pt", create_model("tiny3d", 3, width=4), meta)


@pytest.fixture(scope="module")
def stream_onnx(tmp_path_factory):
    """The streaming ONNX of a tiny online TSM (frame + 14 state inputs), through the real streaming export."""
    arch = {"shift_mode": "online", "width_mult": 0.25}
    meta = ArtifactMeta(model="tsm_mobilenetv2", classes=["a", "b", "c"], frames=3, size=32, sampling_stride=2,
                        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), arch=arch)
    root = tmp_path_factory.mktemp("trt-stream")
    ckpt = save_checkpoint(root / "tsm.pt", create_model("tsm_mobilenetv2", 3, **arch).eval(), meta)
    return export(ckpt, "onnx", out=root / "tsm.stream.onnx", streaming=True).path


def test_build_plans_for_tensorrt_10_and_11():
    assert build_plan("fp32", 10) == build_plan("fp32", 11)
    assert build_plan("fp32", 10).no_tf32
    fp16_10, fp16_11 = build_plan("fp16", 10), build_plan("fp16", 11)
    assert fp16_10.fp16_flag and fp16_10.onnx_precision == "fp32" and not fp16_10.strongly_typed
    assert not fp16_11.fp16_flag and fp16_11.onnx_precision == "fp16" and fp16_11.strongly_typed
    for major in (10, 11):
        int8 = build_plan("int8", major)
        assert int8.strongly_typed and int8.onnx_precision == "int8" and not int8.fp16_flag


@pytest.mark.skipif(TRT is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_writes_onnx_and_gives_the_trtexec_line(ckpt):
    with pytest.raises(TensorRTUnavailableError, match=r"tensorrt cannot be imported.*wrote") as info:
        export(ckpt, "trt", "fp16", batch_max=4)
    result = info.value.result
    assert result.path.name == "best.fp16.trt.onnx" and result.parity.passed
    assert not ckpt.with_name("best.fp16.engine").exists()
    assert read_meta(result.path).precision == "fp32" and result.meta.precision == "fp16"  # TRT 10: --fp16
    assert load(result.path).predict(torch.randn(2, 3, 4, 32, 32).numpy()).shape == (2, 3)
    command = result.command
    for flag in (f"--onnx={result.path}", f"--saveEngine={ckpt.with_name('best.fp16.engine')}", "--fp16",
                 "--minShapes=clip:1x3x2x32x32", "--optShapes=clip:1x3x4x32x32", "--maxShapes=clip:4x3x8x32x32",
                 "--memPoolSize=workspace:1024M", f"--timingCacheFile={ckpt.parent / 'timing.cache'}",
                 "--useCudaGraph", "--avgRuns=100", "--percentile=50,95,99", "--warmUp=500", "--duration=10",
                 "--noDataTransfers"):
        assert flag in command.split(), flag


def test_onnx_only_for_tensorrt_11_fp16(ckpt, tmp_path):
    result = export(ckpt, "trt", "fp16", out=tmp_path / "m.engine", onnx_only=True, trt_version=11)
    graph = onnx.load(str(result.path)).graph
    assert result.path == tmp_path / "m.trt.onnx"
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    assert "--stronglyTyped" in result.command and "--fp16" not in result.command
    assert not (tmp_path / "m.engine").exists()


def test_cli_trt_exit_codes(ckpt, tmp_path, capsys):
    code = main(["export", str(ckpt), "--target", "trt", "--out", str(tmp_path / "cli.engine")])
    captured = capsys.readouterr()
    if TRT is None:
        assert code == 1 and "tensorrt cannot be imported" in captured.err
        assert "trtexec --onnx=" in captured.out and (tmp_path / "cli.trt.onnx").exists()
    assert main(["export", str(ckpt), "--target", "trt", "--onnx-only", "--out", str(tmp_path / "o.engine")]) == 0
    assert "--noTF32" in capsys.readouterr().out


def test_shape_profiles_follow_the_time_axis(ckpt, tmp_path):
    dynamic = export(ckpt, "trt", out=tmp_path / "d.engine", onnx_only=True, batch_max=2)
    static = export(ckpt, "trt", out=tmp_path / "s.engine", onnx_only=True, batch_max=2, dynamic_time=False)
    assert shape_profiles(dynamic.path, dynamic.meta, 2) == {"clip": ((1, 3, 2, 32, 32), (1, 3, 4, 32, 32),
                                                                      (2, 3, 8, 32, 32))}
    assert shape_profiles(static.path, static.meta, 2) == {"clip": ((1, 3, 4, 32, 32), (1, 3, 4, 32, 32),
                                                                     (2, 3, 4, 32, 32))}


def test_engine_errors_without_tensorrt_or_metadata(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x00" * 64)
    with pytest.raises(EdgevidError, match="cannot read edgevid metadata"):
        load(engine)
    (tmp_path / "m.engine.edgevid.json").write_text(ArtifactMeta(
        model="tiny3d", classes=["a"], frames=4, size=32, sampling_stride=1, mean=(0, 0, 0), std=(1, 1, 1)).to_json())
    if TRT is None:
        with pytest.raises(EdgevidError, match="needs TensorRT"):
            TensorRTPredictor.open(engine)
    else:
        with pytest.raises(EdgevidError, match=r"not a TensorRT engine|CUDA"):
            TensorRTPredictor.open(engine, device="cuda")


@needs_tensorrt
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_build_and_parity(ckpt, tmp_path, precision):
    result = export(ckpt, "trt", precision, out=tmp_path / f"m.{precision}.engine", batch_max=4)
    assert result.path.exists() and (tmp_path / f"m.{precision}.engine.edgevid.json").exists()
    assert result.parity.passed and (tmp_path / "timing.cache").exists()
    predictor = load(result.path, device="cuda")
    assert predictor.predict(torch.randn(3, 3, 4, 32, 32).numpy()).shape == (3, 3)
    with pytest.raises(EdgevidError, match="outside the engine's profile"):
        predictor.predict(torch.randn(5, 3, 4, 32, 32).numpy())


def test_profiles_cover_every_input_of_a_streaming_onnx(stream_onnx):
    inputs = onnx_input_shapes(stream_onnx)
    states = read_meta(stream_onnx).stream.states
    assert list(inputs) == ["frame", *(s.name for s in states)]
    assert inputs["frame"] == (-1, 3, 1, 32, 32) and inputs["step"] == (1,)
    profiles = profile_shapes(inputs, ShapeRanges(batch=(1, 2, 4)))
    assert set(profiles) == {name for name, shape in inputs.items() if -1 in shape} == set(inputs) - {"step"}
    for name, (low, opt, high) in profiles.items():
        static = inputs[name][1:]
        assert (low, opt, high) == ((1, *static), (2, *static), (4, *static)), name
    assert profiles["sum.pool"] == ((1, 1280, 1, 1, 1), (2, 1280, 1, 1, 1), (4, 1280, 1, 1, 1))
    meta = read_meta(stream_onnx)
    assert shape_profiles(stream_onnx, meta, 4) == profile_shapes(inputs, ShapeRanges(batch=(1, 1, 4)))


def test_profile_shapes_time_axis_and_bad_dynamic_axes():
    ranges = ShapeRanges(batch=(1, 1, 8), time=(2, 4, 8), time_input="clip")
    assert profile_shapes({"clip": (-1, 3, -1, 32, 32), "fixed": (1, 4)}, ranges) == {
        "clip": ((1, 3, 2, 32, 32), (1, 3, 4, 32, 32), (8, 3, 8, 32, 32))}
    with pytest.raises(ValueError, match="input other axis 2 is dynamic"):
        profile_shapes({"other": (-1, 3, -1, 32, 32)}, ranges)
    with pytest.raises(ValueError, match="input clip axis 3 is dynamic"):
        profile_shapes({"clip": (-1, 3, 4, -1, 32)}, ranges)


def test_streaming_onnx_gives_a_trtexec_line_with_every_state(stream_onnx, tmp_path):
    result = export(stream_onnx, "trt", out=tmp_path / "s.engine", onnx_only=True, batch_max=4)
    assert result.path == stream_onnx and result.meta.streaming
    flags = {flag.split("=", 1)[0]: flag.split("=", 1)[1] for flag in result.command.split() if "Shapes=" in flag}
    names = [name for name, shape in onnx_input_shapes(stream_onnx).items() if -1 in shape]
    for flag, batch in (("--minShapes", 1), ("--optShapes", 1), ("--maxShapes", 4)):
        shapes = dict(item.rsplit(":", 1) for item in flags[flag].split(","))
        assert list(shapes) == names and shapes["frame"] == f"{batch}x3x1x32x32"
        assert shapes["buffer.backbone.features.1.temporal"] == f"{batch}x16x16x1"


def test_streaming_graph_parity_steps_both_graphs_and_catches_a_difference(stream_onnx, tmp_path):
    options = ExportOptions(parity_clips=2)
    source = open_source(stream_onnx)
    parity = streaming_graph_parity(source, OnnxRuntimePredictor.open(stream_onnx), options, "same")
    assert parity.passed and parity.max_abs_diff < 1e-5 and parity.clips == 2
    graph = onnx.load(str(stream_onnx))
    classifier = next(n for n in graph.graph.node if "logits" in n.output)  # logits += [0.5, 0, 0] after it
    classifier.output[list(classifier.output).index("logits")] = "logits_before"
    graph.graph.initializer.append(onnx.numpy_helper.from_array(np.array([0.5, 0, 0], np.float32), "shift"))
    graph.graph.node.append(onnx.helper.make_node("Add", ["logits_before", "shift"], ["logits"]))
    onnx.save(graph, str(tmp_path / "changed.onnx"))
    with pytest.raises(EdgevidError, match="changed: streaming parity check failed"):
        streaming_graph_parity(source, OnnxRuntimePredictor.open(tmp_path / "changed.onnx"), options, "changed")


@needs_tensorrt
@pytest.mark.tensorrt
def test_streaming_engine_build_and_steps(stream_onnx, tmp_path):
    result = export(stream_onnx, "trt", out=tmp_path / "s.engine", batch_max=2)
    assert result.parity.passed and result.meta.streaming
    predictor = load_streaming(result.path, device="cuda")
    assert predictor.step(torch.randn(2, 3, 1, 32, 32).numpy()).shape == (2, 3)
    with pytest.raises(EdgevidError, match="the engine takes inputs frame"):
        load(result.path, device="cuda").predict(torch.randn(1, 3, 3, 32, 32).numpy())
