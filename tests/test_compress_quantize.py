"""INT8: TensorRT Q/DQ scheme, ONNX Runtime QDQ, OpenVINO NNCF IR, the accuracy guard, the export hook and every
bad-input case (nothing written under the final name)."""

import json
import sys

import numpy as np
import onnx
import pytest
from compress_fixtures import make_synth, train_tiny_run
from onnx import numpy_helper

from edgevid.cli import main
from edgevid.compress.accuracy import AccuracyGuardError, ValidationSet, onnx_accuracy_guard, ort_predict
from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.compress.quant_onnx import OnnxQuantizer, OnnxQuantScheme
from edgevid.compress.quantize import quantize
from edgevid.errors import EdgevidError
from edgevid.meta import read_meta
from edgevid.pipeline import export
from edgevid.runtime import load


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic data, a briefly trained tiny3d run, its calibration manifest, val set and FP32 ONNX export."""
    root = tmp_path_factory.mktemp("quant")
    data = make_synth(root / "data", classes=3, videos=4, val=3)
    run = train_tiny_run(data, root / "run")
    meta = read_meta(run)
    # 20 clips: more than a 16-clip chunk of ORT's CalibMaxIntermediateOutputs, which drops whole chunks (unused)
    manifest = build_manifest(data, 20, Preprocessing.from_meta(meta), show_progress=False)[0].save(root / "c.json")
    valset = ValidationSet.load(data, meta, show_progress=False)
    return {"data": data, "run": run, "calib": manifest, "valset": valset, "onnx": export(run, "onnx").path,
            "root": root}


def _initializers(path):
    graph = onnx.load(str(path)).graph
    return graph, {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def test_trt_qdq_is_symmetric_per_channel_and_runs_close_to_fp32(setup, tmp_path):
    result = quantize(setup["run"], "trt", setup["calib"], out=tmp_path / "m.int8.trt.onnx", bench_iters=0,
                      show_progress=False)
    graph, init = _initializers(result.path)
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert {n.op_type for n in qdq} == {"QuantizeLinear", "DequantizeLinear"}
    for node in qdq:
        zero_point = init[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    producers = {out: n for n in graph.node for out in n.output}
    weighted = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(weighted) == 11
    for node in weighted:
        weight_dq = producers[node.input[1]]
        scale = init[weight_dq.input[1]]
        out_channels = init[weight_dq.input[0]].shape[0]
        assert weight_dq.op_type == "DequantizeLinear" and scale.shape == (out_channels,)
        assert next(a.i for a in weight_dq.attribute if a.name == "axis") == 0
        activation_dq = producers[node.input[0]]
        assert activation_dq.op_type == "DequantizeLinear" and init[activation_dq.input[1]].ndim == 0
        if len(node.input) > 2:
            assert node.input[2] in init and init[node.input[2]].dtype == np.float32  # float bias for TensorRT
    valset = setup["valset"]
    fp32 = valset.scores(ort_predict(setup["onnx"]))
    int8 = valset.scores(load(result.path).predict)
    assert np.mean(fp32.argmax(1) == int8.argmax(1)) >= 0.75
    assert np.abs(fp32 - int8).mean() < 0.2 * np.abs(fp32).mean()
    assert read_meta(result.path).precision == "int8" and result.float_layers == []


def test_onnx_runtime_qdq_from_onnx_with_guard_and_report(setup, tmp_path):
    out = tmp_path / "m.int8.onnx"
    result = quantize(setup["onnx"], "onnx", setup["calib"], out=out, data=setup["data"], method="entropy",
                      bench_iters=2, show_progress=False)
    meta = read_meta(out)
    assert meta.precision == "int8" and meta.quantization.scheme["method"] == "entropy"
    assert meta.input.dynamic_batch
    assert abs(result.fp32_top1 - result.int8_top1) <= 1.0 or result.float_layers
    graph, init = _initializers(out)
    activation_zero_points = [init[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert activation_zero_points and all(z.dtype == np.uint8 for z in activation_zero_points)
    report = json.loads(result.report_path.read_text())
    assert [r["precision"] for r in report["rows"]] == ["fp32", "int8"]
    assert report["rows"][1]["size_mb"] < report["rows"][0]["size_mb"] and report["rows"][1]["speedup"] > 0


def test_openvino_int8_ir_loads_and_agrees_with_fp32(setup, tmp_path):
    result = quantize(setup["run"], "openvino", setup["calib"], out=tmp_path / "m.int8.xml", bench_iters=0,
                      show_progress=False)
    predictor = load(result.path)
    assert predictor.backend == "openvino" and predictor.meta.precision == "int8"
    # the quantized layers run in INT8, the rest in FP32 (never BF16/FP16 behind an int8 label) on every CPU
    assert set(predictor.execution.replace("+", " ").split()) & {"i8", "u8"}, predictor.execution
    assert "bf16" not in predictor.execution and "f16" not in predictor.execution
    assert (tmp_path / "m.int8.bin").is_file()
    valset = setup["valset"]
    fp32 = valset.scores(load(setup["run"]).predict)
    int8 = valset.scores(predictor.predict)
    assert np.mean(fp32.argmax(1) == int8.argmax(1)) >= 0.75
    assert result.weighted_layers == 11 and result.float_layers == []


def test_onnx_guard_keeps_sensitive_layers_in_float(setup, tmp_path):
    """A calibration set at 1% of the real range clips every activation: the guard restores top-1 by keeping
    the most sensitive layers in float."""
    clips = [c * 0.01 for c in setup["valset"].clips[:, None]]
    quantizer = OnnxQuantizer(setup["onnx"], lambda: ({"clip": c} for c in clips),
                              OnnxQuantScheme.for_target("onnx"), tmp_path)
    valset = setup["valset"]
    fp32 = valset.scores(ort_predict(setup["onnx"]))
    broken = valset.scores(ort_predict(quantizer.quantize(tmp_path / "broken.onnx")))
    assert np.abs(broken - fp32).max() > 0.1 * np.abs(fp32).max()
    guard = onnx_accuracy_guard(quantizer, tmp_path / "guarded.onnx", valset, fp32, 0.0, show_progress=False)
    assert guard.float_layers and valset.top1(fp32) - guard.top1 <= 0.0
    assert guard.float_layers[0] == max(guard.sensitivity, key=guard.sensitivity.get)
    assert (tmp_path / "guarded.onnx").is_file()


def test_onnx_guard_doubles_the_float_layers_up_to_all_then_refuses(setup, tmp_path):
    valset = setup["valset"]
    quantizer = OnnxQuantizer(setup["onnx"], lambda: ({"clip": c} for c in valset.clips[:, None]),
                              OnnxQuantScheme.for_target("onnx"), tmp_path)
    calls = []
    quantize_once = quantizer.quantize
    quantizer.quantize = lambda out, exclude=(): calls.append(list(exclude)) or quantize_once(out, exclude)
    fp32 = valset.scores(ort_predict(setup["onnx"]))
    with pytest.raises(AccuracyGuardError, match="even with up to all 11 weighted layers in float") as error:
        onnx_accuracy_guard(quantizer, tmp_path / "guarded.onnx", valset, fp32, -1.0, show_progress=False)
    assert error.value.fp32_top1 == valset.top1(fp32)
    assert [len(exclude) for exclude in calls] == [0, 1, 2, 4, 8, 11]
    assert not (tmp_path / "guarded.onnx").exists()


def test_float_weight_stand_in_matches_requantizing_without_the_layer(setup, tmp_path):
    """The guard ranks layers on the INT8 graph with one layer's weights back in float: for the stem (it reads the
    graph input) and convolutions reading quantized activations, that is exactly quantize(exclude=[layer])."""
    valset = setup["valset"]
    quantizer = OnnxQuantizer(setup["onnx"], lambda: ({"clip": c} for c in valset.clips[:, None]),
                              OnnxQuantScheme.for_target("onnx"), tmp_path)
    full_path = quantizer.quantize(tmp_path / "full.onnx")
    full = valset.scores(ort_predict(full_path))
    for layer in quantizer.quantizable_nodes()[:4]:
        swapped = valset.scores(ort_predict(quantizer.with_float_weights([layer])))
        requantized = valset.scores(ort_predict(quantizer.quantize(tmp_path / "without.onnx", [layer])))
        np.testing.assert_allclose(swapped, requantized, atol=1e-5, err_msg=layer)
        assert np.abs(swapped - full).max() > 1e-4, layer


def test_export_int8_with_calib_gives_qdq_onnx_and_trtexec_line(setup, tmp_path):
    result = export(setup["run"] / "best.pt", "trt", "int8", out=tmp_path / "m.engine", calib=setup["calib"],
                    onnx_only=True)
    assert result.path.suffix == ".onnx" and read_meta(result.path).precision == "int8"
    assert "--stronglyTyped" in result.command and "--int8" not in result.command


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_bad_inputs_are_clear_errors_and_write_nothing(setup, tmp_path, monkeypatch):
    run, calib = setup["run"], setup["calib"]
    int8 = quantize(run, "onnx", calib, out=tmp_path / "q.onnx", bench_iters=0, show_progress=False).path
    before = _listing(tmp_path)
    with pytest.raises(EdgevidError, match="already INT8"):
        quantize(int8, "onnx", calib, out=tmp_path / "again.onnx", show_progress=False)
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(EdgevidError, match=r"--target openvino needs the Python package\(s\) nncf.*pip install nncf"):
        quantize(run, "openvino", calib, out=tmp_path / "m.xml", show_progress=False)
    monkeypatch.undo()
    manifest = json.loads(calib.read_text())
    manifest["preprocessing"]["size"] = 64
    (setup["root"] / "wrong.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgevidError, match=r"built for 4x64x64.*expects 4x32x32"):
        quantize(run, "trt", setup["root"] / "wrong.json", out=tmp_path / "m.onnx", show_progress=False)
    manifest = json.loads(calib.read_text())
    manifest["clips"][0]["path"] = "train/missing.mp4"
    (setup["root"] / "missing.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgevidError, match=r"missing\.mp4 does not exist"):
        quantize(run, "openvino", setup["root"] / "missing.json", out=tmp_path / "m.xml", show_progress=False)
    with pytest.raises(EdgevidError, match="not one of openvino, onnx, trt"):
        quantize(run, "tflite", calib, show_progress=False)
    with pytest.raises(EdgevidError, match=r"must end in \.xml"):
        quantize(run, "openvino", calib, out=tmp_path / "m.onnx", show_progress=False)
    assert _listing(tmp_path) == before


def test_cli_quantize_reports_and_fails_cleanly(setup, tmp_path, capsys):
    out = tmp_path / "cli.int8.trt.onnx"
    assert main(["quantize", str(setup["run"]), "-t", "trt", "-c", str(setup["calib"]), "-o", str(out),
                 "--bench-iters", "0"]) == 0
    assert "edgevid export" in capsys.readouterr().out and out.is_file()
    assert main(["quantize", str(out), "-t", "trt", "-c", str(setup["calib"])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "already INT8" in err and "\n" not in err.strip()


@pytest.mark.parametrize(("axis", "ok"), [(1, True), (0, False)])
def test_trt_check_wants_matmul_weights_per_output_channel(tmp_path, axis, ok):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgevid.compress.quant_onnx import qdq_summary
    from edgevid.compress.quantize import _check_trt_qdq

    weight = np.ones((4, 3), np.int8)
    scales = np.full(weight.shape[axis], 0.1, np.float32)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["w_f"], axis=axis),
         helper.make_node("MatMul", ["x", "w_f"], ["y"])],
        "matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(scales, "s"),
         numpy_helper.from_array(np.zeros_like(scales, np.int8), "z")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    summary = qdq_summary(path)
    assert summary["output_channel_axes"] == {"w": 1}
    if ok:
        _check_trt_qdq(summary, path)
    else:
        with pytest.raises(EdgevidError, match="output-channel axis"):
            _check_trt_qdq(summary, path)


def test_openvino_int8_runs_the_convs_after_tsm_shifts_in_int8(tmp_path):
    import torch

    from edgevid.compress import quant_openvino as qov
    from edgevid.export.base import ExportOptions
    from edgevid.export.onnx import model_to_onnx
    from edgevid.meta import ArtifactMeta
    from edgevid.models import create_model, int8_graph
    from edgevid.runtime.openvino_backend import compile_model

    torch.manual_seed(0)
    meta = ArtifactMeta(model="tsm_r18", classes=["a", "b", "c"], frames=4, size=32, sampling_stride=2,
                        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    model = create_model("tsm_r18", 3).eval()
    with int8_graph(model):  # as `edgevid quantize` exports a checkpoint
        model_to_onnx(model, meta, tmp_path / "tsm.onnx", ExportOptions())
    assert all(not m.int8_form for m in model.modules() if hasattr(m, "int8_form"))
    fp32 = qov.openvino_model(tmp_path / "tsm.onnx")
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((1, 3, 4, 32, 32)).astype(np.float32) for _ in range(4)]
    int8 = qov.quantize_openvino(fp32, clips)
    compiled = compile_model(int8, "int8")
    runtime = [(op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
               for op in compiled.get_runtime_model().get_ordered_ops()]
    precisions = [precision for kind, precision in runtime if kind == "Convolution"]
    assert len(precisions) == 20 and set(precisions) <= {"u8", "i8"}, precisions
    # the shift's Gathers (2 per block) and the stem's max-pool move INT8 data: NNCF quantizes through them, where
    # the float form's Slice and mask product kept the shift and everything before it in FP32
    moved = [(kind, precision) for kind, precision in runtime if kind in ("Gather", "Pooling", "MaxPool")
             and precision != "i32"]  # not the shape arithmetic
    assert len(moved) == 17 and {precision for _, precision in moved} <= {"u8", "i8"}, moved
    batch = np.concatenate(clips)
    expected = qov.CompiledRun(fp32, "fp32")(batch)
    got = np.asarray(compiled(batch)[0])
    assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max()


def test_trt_qdq_sits_on_the_inputs_of_weighted_ops_only(tmp_path):
    """TensorRT Q/DQ: one pair on the input of each conv and GEMM, none on their outputs; X3D's sigmoids, gating
    multiplies and means read float tensors (ONNX Runtime's default quantizes those too, which cost X3D-XS 4 points
    of top-1). A residual add reads the Q/DQ of the conv that shares its input."""
    import torch

    from edgevid.compress.quant_onnx import TRT_QUANTIZED_OPS
    from edgevid.export.base import ExportOptions
    from edgevid.export.onnx import model_to_onnx
    from edgevid.meta import ArtifactMeta
    from edgevid.models import create_model

    torch.manual_seed(0)
    meta = ArtifactMeta(model="x3d_xs", classes=["a", "b", "c"], frames=2, size=32, sampling_stride=2,
                        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    model_to_onnx(create_model("x3d_xs", 3).eval(), meta, tmp_path / "x3d.onnx", ExportOptions())
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((1, 3, 2, 32, 32)).astype(np.float32) for _ in range(4)]
    quantizer = OnnxQuantizer(tmp_path / "x3d.onnx", lambda: ({"clip": clip} for clip in clips),
                              OnnxQuantScheme.for_target("trt"), tmp_path)
    graph, init = _initializers(quantizer.quantize(tmp_path / "int8.onnx"))
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    activation_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in init]
    read = {op for n in activation_dq for op in readers.get(n.output[0], [])}
    assert read == {"Conv", "Gemm", "Add"}, read
    weighted = [n for n in graph.node if n.op_type in TRT_QUANTIZED_OPS]
    assert len(activation_dq) == len(weighted) == 115 + 2
    assert {"Mul", "Sigmoid", "ReduceMean"} <= {n.op_type for n in graph.node}  # there, reading float tensors
