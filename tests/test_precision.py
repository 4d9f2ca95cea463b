"""Precision is what runs: every code path that compiles an OpenVINO model runs FP32 as FP32 on any CPU, bf16 is a
precision of its own where the hardware has it (and a clear error where it does not), and CPU features are
detected, never assumed."""

import numpy as np
import pytest
import torch

from edgevid.bench.formats import Format, FormatBuilder, FormatUnavailable
from edgevid.checkpoint import save_checkpoint
from edgevid.compress import quant_openvino as qov
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.precision import PRECISIONS, resolve_precision
from edgevid.runtime import load
from edgevid.runtime import openvino_backend as ovb
from edgevid.runtime.streaming import load_streaming
from edgevid.utils.machine import cpu_features, isa_level

HAS_BF16 = "BF16" in ovb.device_capabilities("CPU")
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no BF16 arithmetic (OpenVINO lists no BF16)")

AVX2_EPYC = frozenset({"fpu", "sse4_2", "avx", "fma", "avx2"})
ZEN4 = AVX2_EPYC | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "avx512_fp16"}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A random tiny3d and a causal X3D with large logits (where BF16 would show) as checkpoints and IRs."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("precision")
    meta = ArtifactMeta(model="tiny3d", classes=["a", "b", "c"], frames=4, size=32, sampling_stride=2,
                        mean=(0.45,) * 3, std=(0.225,) * 3, arch={"width": 8})
    model = create_model("tiny3d", 3, width=8).eval()
    with torch.no_grad():  # logits of magnitude ~100: BF16 (8-bit mantissa) is then off by far more than 1e-3
        model.head.fc.weight.mul_(200.0)
    ckpt = save_checkpoint(root / "tiny.pt", model, meta)
    return {"root": root, "pt": ckpt, "xml": export(ckpt, "openvino").path, "onnx": export(ckpt, "onnx").path}


def test_cpu_features_and_isa_level_come_from_the_flags():
    assert isa_level(AVX2_EPYC) == "avx2" and isa_level(ZEN4) == "avx512-bf16" and isa_level(SAPPHIRE_RAPIDS) == "amx"
    assert cpu_features(AVX2_EPYC) == {"avx2": True, "avx512": False, "vnni": False, "bf16": False, "amx": False,
                                       "fp16": False, "neon": False}
    assert cpu_features(SAPPHIRE_RAPIDS)["fp16"] and cpu_features(ZEN4)["vnni"]
    assert isa_level(frozenset({"asimd", "fp"})) == "neon"


def test_every_openvino_path_compiles_fp32_as_fp32(artifacts, tmp_path):
    """Runtime predictor, streaming predictor, export parity check and quantization's float runs all read back
    f32 from the compiled model, whatever this CPU's default precision is."""
    predictor = load(artifacts["xml"])
    assert predictor.precision == "fp32" and predictor.execution == "f32"
    compiled = predictor.request_for({"clip": (1, 3, 4, 32, 32)}).get_compiled_model()
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    result = export(artifacts["pt"], "openvino", out=tmp_path / "again.xml")
    assert result.parity.execution == "f32" and result.row()["execution"] == "f32"
    run = qov.CompiledRun(qov.openvino_model(artifacts["onnx"]), "fp32")
    assert run.execution == "f32"

    causal = create_model("x3d_xs", 3, causal=True).eval()
    stream_meta = ArtifactMeta(model="x3d_xs", classes=["a", "b", "c"], frames=4, size=32, sampling_stride=2,
                               mean=(0.45,) * 3, std=(0.225,) * 3, arch={"causal": True})
    stream_ckpt = save_checkpoint(tmp_path / "causal.pt", causal, stream_meta)
    stream = load_streaming(export(stream_ckpt, "openvino", streaming=True, out=tmp_path / "s.xml").path)
    assert stream.execution == "f32"


def test_fp32_parity_holds_on_large_logits(artifacts):
    """The check that failed on BF16 CPUs: FP32 OpenVINO matches torch to 1e-3 of the logit scale."""
    clip = np.random.default_rng(0).standard_normal((2, 3, 4, 32, 32)).astype(np.float32)
    reference = load(artifacts["pt"]).predict(clip)
    got = load(artifacts["xml"]).predict(clip)
    assert np.abs(got - reference).max() <= PRECISIONS["fp32"].tolerance * max(1.0, np.abs(reference).max())


@needs_bf16
def test_bf16_runs_in_bf16_and_stays_within_its_tolerance(artifacts, tmp_path):
    clip = np.random.default_rng(1).standard_normal((2, 3, 4, 32, 32)).astype(np.float32)
    reference = load(artifacts["pt"]).predict(clip)
    scale = max(1.0, float(np.abs(reference).max()))
    result = export(artifacts["pt"], "openvino", "bf16", out=tmp_path / "m.bf16.xml")
    assert result.meta.precision == "bf16" and result.parity.execution == "bf16"
    ov_bf16 = load(result.path)
    assert ov_bf16.execution == "bf16"
    ov_diff = np.abs(ov_bf16.predict(clip) - reference).max()
    assert 0 < ov_diff <= PRECISIONS["bf16"].tolerance * scale
    assert load(artifacts["xml"], precision="bf16").execution == "bf16"  # an FP32 IR run as BF16 on request
    torch_bf16 = load(artifacts["pt"], precision="bf16")
    assert torch_bf16.execution == "bf16 (autocast)"
    torch_diff = np.abs(torch_bf16.predict(clip) - reference).max()
    assert 0 < torch_diff <= PRECISIONS["bf16"].tolerance * scale


def test_bf16_is_an_error_where_it_cannot_run(artifacts, monkeypatch, tmp_path):
    with pytest.raises(EdgevidError, match="ONNX Runtime's CPU provider has no BF16"):
        load(artifacts["onnx"], precision="bf16")
    with pytest.raises(EdgevidError, match="--precision bf16: the onnx target exports fp32, fp16, int8"):
        export(artifacts["pt"], "onnx", "bf16", out=tmp_path / "m.onnx")
    with pytest.raises(EdgevidError, match="runs on openvino as int8, not fp32"):
        resolve_precision("openvino", "int8", "fp32", "cpu", "m.int8.xml")
    # a CPU without BF16 (an AVX2 EPYC): OpenVINO and torch refuse instead of running FP32 under a bf16 label
    monkeypatch.setattr(ovb, "device_capabilities", lambda device: ["FP32", "INT8", "BIN", "EXPORT_IMPORT"])
    monkeypatch.setattr("edgevid.precision.cpu_features", lambda: cpu_features(AVX2_EPYC))
    with pytest.raises(EdgevidError, match=r"bf16 is not available on OpenVINO CPU: .*FP32, INT8"):
        load(artifacts["xml"], precision="bf16")
    with pytest.raises(EdgevidError, match=r"bf16 needs a CPU with AVX512_BF16 or AMX.*\(detected: AVX2\)$"):
        load(artifacts["pt"], precision="bf16")
    assert ovb.precision_hint("fp16") == "f32"  # no FP16 arithmetic: FP16 weights, FP32 compute
    builder = FormatBuilder(artifacts["pt"], load(artifacts["pt"]).meta, tmp_path / "bench", data=None, calib=None,
                            calib_clips=4, streaming=False, threads=None)
    for target, reason in (("openvino", "OpenVINO CPU lists no BF16"), ("torch", "no BF16 arithmetic"),
                           ("onnx", "no BF16 convolution kernels")):
        with pytest.raises(FormatUnavailable, match=reason):
            builder.build(Format(target, "bf16"))
    assert not (tmp_path / "bench").exists() or not any((tmp_path / "bench").iterdir())


def test_live_reports_what_ran_and_the_cpu(artifacts, tmp_path):
    from edgevid.data.synth import SynthConfig, render_video, write_video
    from edgevid.runtime.live import LiveOptions, run_live

    frames = render_video(SynthConfig().class_names[0], np.random.default_rng(0), 12, 32)
    video = write_video(tmp_path / "clip.mp4", frames, fps=30)
    report = run_live(artifacts["xml"], str(video), LiveOptions(report=str(tmp_path / "r.json")))
    assert report.precision == "fp32" and report.execution == "f32"
    assert report.cpu_features == [name for name, on in cpu_features().items() if on]
    assert "fp32 ran as f32" in dict((r["metric"], r["value"]) for r in report.rows())["model"]
    with pytest.raises(EdgevidError, match="ONNX Runtime's CPU provider has no BF16"):
        run_live(artifacts["onnx"], str(video), LiveOptions(precision="bf16"))
