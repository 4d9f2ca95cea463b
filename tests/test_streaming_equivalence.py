import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.export.streaming import streaming_onnx, streaming_parity
from edgevid.meta import ArtifactMeta, read_meta
from edgevid.models import create_model
from edgevid.models.streaming import to_streaming
from edgevid.models.video_resnet import BasicBlock, VideoResNet, conv2plus1d, r2plus1d_stem
from edgevid.models.x3d import X3D, X3DConfig
from edgevid.precision import PRECISIONS
from edgevid.runtime import Predictor, StreamingPredictor, load
from edgevid.runtime.onnx_backend import OnnxRuntimePredictor
from edgevid.runtime.openvino_backend import device_capabilities
from edgevid.runtime.streaming import (
    GraphStreamingPredictor,
    OpenVINOStreamingPredictor,
    TorchStreamingPredictor,
    load_streaming,
)

TINY_X3D = X3DConfig(stem_width=8, widths=(8, 16, 16, 16), base_depths=(1, 1, 1, 1), depth_factor=1.0,
                     bottleneck_factor=2.0, head_hidden=16)
SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one intra-op thread (tests/conftest.py)."""


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so that a wrong state would show in the logits."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def tiny_x3d() -> X3D:
    return _randomize_bn(X3D(TINY_X3D, num_classes=3, causal=True, dropout=0.0))


def tiny_tsm() -> nn.Module:
    return _randomize_bn(create_model("tsm_mobilenetv2", num_classes=3, shift_mode="online", width_mult=0.25))


def _meta(model: str, arch: dict, frames: int = 5) -> ArtifactMeta:
    return ArtifactMeta(model=model, classes=["a", "b", "c"], frames=frames, size=SIZE, sampling_stride=2,
                        mean=(0.45,) * 3, std=(0.225,) * 3, arch=arch)


def _streaming_export(model, meta: ArtifactMeta, directory: Path, target: str) -> Path:
    """The streaming ONNX of ``model``, or that ONNX converted to an OpenVINO IR (FP32) with the same metadata."""
    out_meta = streaming_onnx(to_streaming(model), meta, directory / "stream.onnx")
    assert out_meta.extra["exporter"] == "torch.onnx/dynamo"  # no fallback to the TorchScript exporter
    if target == "onnx":
        return directory / "stream.onnx"
    import openvino as ov

    from edgevid.meta import write_openvino_meta

    ir = ov.convert_model(str(directory / "stream.onnx"))
    write_openvino_meta(ir, out_meta)
    ov.save_model(ir, str(directory / "stream.xml"), compress_to_fp16=False)
    return directory / "stream.xml"


def _stream_all(streaming, clip):
    states = streaming.initial_states(clip.shape[0], clip.shape[-1])
    outputs = []
    with torch.no_grad():
        for t in range(clip.shape[2]):
            logits, *states = streaming(clip[:, :, t:t + 1], *states)
            outputs.append(logits)
    return outputs


def _assert_stream_equals_clip(model, frames):
    clip = torch.randn(2, 3, frames, SIZE, SIZE)
    streaming = to_streaming(model)
    with torch.no_grad():
        for t, logits in enumerate(_stream_all(streaming, clip)):
            expected = model(clip[:, :, :t + 1])
            torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    return streaming


def test_causal_x3d_streaming_equals_clip_after_every_frame():
    streaming = _assert_stream_equals_clip(tiny_x3d(), frames=6)
    kinds = [s.kind for s in streaming.specs]
    assert kinds.count("buffer") == 4 + 4 * 2  # a frame per past step: stem conv (k=5) + each block's k=3 conv
    assert kinds.count("sum") == kinds.count("count") == 4 + 1  # causal SE of each stage's first block + pool
    assert kinds[-1] == "step"


def test_online_tsm_streaming_equals_clip_after_every_frame():
    streaming = _assert_stream_equals_clip(tiny_tsm(), frames=5)
    assert {s.kind for s in streaming.specs} == {"buffer", "sum", "count", "step"}


def test_causal_r2plus1d_with_temporal_strides_streams_exactly():
    model = _randomize_bn(VideoResNet(BasicBlock, [conv2plus1d] * 4, (1, 1, 1, 1), r2plus1d_stem, num_classes=3,
                                      causal=True))
    streaming = _assert_stream_equals_clip(model, frames=9)
    rates = {s.module: s.rate for s in streaming.specs}
    assert rates["pool"] == 8 and rates["stem.3"] == 1 and rates["layer4.0.conv1.0.3"] == 4


def test_causal_model_trains_and_still_streams_exactly():
    model = tiny_x3d().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 4, SIZE, SIZE)), torch.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    optimizer.step()
    _assert_stream_equals_clip(model.eval(), frames=3)


def test_streaming_is_a_copy_and_step_reset_work():
    model = tiny_x3d()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    streaming = to_streaming(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    clip = torch.randn(1, 3, 3, SIZE, SIZE)
    first = [streaming.step(clip[:, :, t:t + 1]) for t in range(3)]
    streaming.reset()
    again = [streaming.step(clip[:, :, t:t + 1]) for t in range(3)]
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)
    assert all(float(s.abs().sum()) == 0 for s in streaming.initial_states(1, SIZE))


def test_non_causal_models_are_refused_with_the_recipe_fix():
    with pytest.raises(ValueError, match="causal: true"):
        to_streaming(X3D(TINY_X3D, num_classes=3))
    with pytest.raises(ValueError, match="shift_mode='online'"):
        to_streaming(create_model("tsm_mobilenetv2", num_classes=3, width_mult=0.25))
    with pytest.raises(ValueError, match="non-causal temporal conv"):
        to_streaming(create_model("tiny3d", num_classes=3, width=4))


def test_horizon_turns_the_cumulative_mean_into_a_moving_one():
    model = tiny_tsm()
    meta = _meta("tsm_mobilenetv2", {})
    predictor = TorchStreamingPredictor.from_model(model, meta, Path("tsm"), horizon=1)
    clip = torch.randn(1, 3, 4, SIZE, SIZE)
    for t in range(4):
        got = predictor.step(clip[:, :, t:t + 1].numpy())
    # horizon 1: the pool forgets everything but the newest frame = the frame head at the last frame
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(clip), "frame")[..., -1].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_onnx_runtime_streaming_equals_the_causal_clip_model(tmp_path):
    model = tiny_x3d()
    meta = _meta("x3d_tiny", {})
    path = tmp_path / "stream.onnx"
    out_meta = streaming_onnx(to_streaming(model), meta, path)
    assert read_meta(path).streaming and out_meta.stream.states[-1].kind == "step"
    session = OnnxRuntimePredictor.open(path)
    states = out_meta.stream.states
    assert session.input_names == ["frame", *(s.name for s in states)]
    # the older frame buffers are shifted by the predictor, not copied by the graph
    shifted = [s for s in states if s.shifted_from]
    assert len(shifted) == 3 + 4 and shifted[0].shifted_from == "buffer.stem.conv_t.1"
    assert session.output_names == ["logits", *(f"next.{s.name}" for s in states if not s.shifted_from)]
    predictor = GraphStreamingPredictor(session)
    parity = streaming_parity(model, predictor, meta, tolerance=1e-4, frames=5)
    assert parity.clips == 5 and parity.max_abs_diff < 1e-4
    clip = np.random.default_rng(3).standard_normal((2, 3, 1, SIZE, SIZE)).astype(np.float32)
    first = predictor.step(clip)
    predictor.reset()
    np.testing.assert_array_equal(predictor.step(clip), first)  # reset = zero states again, batch 2 works


def test_openvino_streaming_equals_the_causal_clip_model(tmp_path):
    model = tiny_x3d()
    meta = _meta("x3d_tiny", {})
    predictor = load_streaming(_streaming_export(model, meta, tmp_path, "openvino"))
    assert predictor.backend == "openvino"
    assert streaming_parity(model, predictor, meta, tolerance=1e-4, frames=4).max_abs_diff < 1e-4
    reference = TorchStreamingPredictor.from_model(model, meta, Path("x3d"), horizon=2)
    predictor.horizon = 2
    frames = np.random.default_rng(4).standard_normal((4, 1, 3, 1, SIZE, SIZE)).astype(np.float32)
    first = reference.step(frames[0])
    reference.reset()
    for frame in frames:  # the moving average (decayed sums and counts) matches too
        np.testing.assert_allclose(predictor.step(frame), reference.step(frame), atol=1e-4)
    predictor.reset()  # zero states again, also after a change of batch size (recompiled, buffers rebound)
    np.testing.assert_allclose(predictor.step(frames[0]), first, atol=1e-4)
    both = predictor.step(np.concatenate([frames[0], frames[0]]))
    np.testing.assert_allclose(both, np.concatenate([first, first]), atol=1e-4)


def test_openvino_streams_an_online_tsm_whose_states_are_single_frames(tmp_path):
    model = tiny_tsm()
    meta = _meta("tsm_mobilenetv2", {})
    predictor = load_streaming(_streaming_export(model, meta, tmp_path, "openvino"))
    assert streaming_parity(model, predictor, meta, tolerance=1e-4, frames=4).max_abs_diff < 1e-4
    assert len(predictor._requests) == 2  # no chain of frame buffers: two requests take turns


@pytest.mark.skipif("BF16" not in device_capabilities("CPU"), reason="this CPU has no BF16 arithmetic")
def test_openvino_bf16_streaming_keeps_frame_buffers_in_bf16(tmp_path, monkeypatch):
    model = tiny_x3d()
    meta = _meta("x3d_tiny", {})
    path = _streaming_export(model, meta, tmp_path, "openvino")
    frames = np.random.default_rng(5).standard_normal((5, 1, 3, 1, SIZE, SIZE)).astype(np.float32)
    reference = TorchStreamingPredictor.from_model(model, meta, Path("x3d"))
    expected = [reference.step(frame) for frame in frames]
    scale = max(1.0, max(float(np.abs(e).max()) for e in expected))
    bf16 = load_streaming(path, precision="bf16")
    got = [bf16.step(frame) for frame in frames]
    assert bf16.execution == "bf16"
    compiled = bf16._requests[0].get_compiled_model()
    ports = {port.get_any_name(): str(port.get_element_type()) for port in compiled.inputs}
    buffers = [s["name"] for s in bf16.states if s["kind"] == "buffer"]
    assert buffers and {ports[name] for name in buffers} == {"<Type: 'bfloat16'>"}
    assert ports["sum.pool"] == ports["frame"] == "<Type: 'float32'>"
    monkeypatch.setattr(OpenVINOStreamingPredictor, "_bf16_buffers", lambda self: set())
    fp32_states = load_streaming(path, precision="bf16")
    for frame, logits, want in zip(frames, got, expected, strict=True):
        assert 0 < np.abs(logits - want).max() <= PRECISIONS["bf16"].tolerance * scale
        np.testing.assert_allclose(fp32_states.step(frame), logits, rtol=0, atol=1e-2 * scale)


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_strided_causal_r2plus1d_streams_exactly_through_graph_runtimes(tmp_path, target):
    """Temporal strides: a shifted frame buffer only moves on its layer's active steps (every 2nd, 4th, 8th step)."""
    model = _randomize_bn(VideoResNet(BasicBlock, [conv2plus1d] * 4, (1, 1, 1, 1), r2plus1d_stem, num_classes=3,
                                      causal=True))
    meta = _meta("r2plus1d_tiny", {}, frames=9)
    path = _streaming_export(model, meta, tmp_path, target)
    assert {s.rate for s in read_meta(path).stream.states if s.shifted_from} == {1, 2, 4, 8}
    predictor = load_streaming(path)
    assert predictor.backend == ("openvino" if target == "openvino" else "onnxruntime")
    parity = streaming_parity(model, predictor, meta, tolerance=1e-4, frames=9)
    assert parity.clips == 9 and parity.max_abs_diff < 1e-4


def test_tsm_streaming_export_onnx_runtime_and_live(tmp_path, capsys):
    arch = {"shift_mode": "online", "width_mult": 0.25}
    meta = _meta("tsm_mobilenetv2", arch, frames=4)
    checkpoint = save_checkpoint(tmp_path / "tsm.pt", _randomize_bn(create_model("tsm_mobilenetv2", num_classes=3,
                                                                                 **arch)), meta)
    out = tmp_path / "tsm.stream.onnx"
    result = export(checkpoint, "onnx", out=out, streaming=True)  # checked frame by frame through ONNX Runtime
    assert result.parity.clips == 4 and result.parity.max_abs_diff < 1e-4
    assert read_meta(out).streaming
    assert main(["export", str(checkpoint), "--streaming", "--target", "trt"]) == 1
    assert "--streaming exports to onnx or openvino" in capsys.readouterr().err
    predictor = load_streaming(out)
    assert isinstance(predictor, GraphStreamingPredictor) and predictor.backend == "onnxruntime"

    from edgevid.data.synth import SynthConfig, render_video, write_video
    from edgevid.runtime.live import LiveOptions, run_live

    video = write_video(tmp_path / "v.mp4", render_video(SynthConfig().class_names[0],
                                                         np.random.default_rng(0), 24, 48), fps=30)
    report = run_live(out, video, LiveOptions(report=str(tmp_path / "r.json")))  # streaming export: streams
    assert report.mode == "streaming" and report.backend == "onnxruntime"
    assert report.predictions == 12  # one step per 2 source frames (stride 2 at 30 fps)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["frames_processed"] + data["frames_dropped"] == data["frames_captured"] == 24
    torch_report = run_live(checkpoint, video, LiveOptions(streaming=True, horizon=0))
    assert torch_report.mode == "streaming" and torch_report.predictions == 12
    tiny = save_checkpoint(tmp_path / "tiny.pt", create_model("tiny3d", num_classes=3, width=4),
                           _meta("tiny3d", {"width": 4}))
    with pytest.raises(EdgevidError, match="causal: true"):
        run_live(tiny, video, LiveOptions(streaming=True))


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_load_returns_one_predictor_contract_for_clip_and_streaming_artifacts(tmp_path, target):
    """runtime.load: a streaming export loads as a Predictor with step()/reset(); predict() streams whole clips
    (a new stream each call) and gives the causal model's clip logits; a clip model's step() is an error."""
    model = tiny_x3d()
    meta = _meta("x3d_tiny", {})
    path = _streaming_export(model, meta, tmp_path, target)
    predictor = load(path)
    assert isinstance(predictor, Predictor) and isinstance(predictor, StreamingPredictor) and predictor.streaming
    assert predictor.backend == ("openvino" if target == "openvino" else "onnxruntime")
    clip = np.random.default_rng(4).standard_normal((2, 3, 5, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(clip)).numpy()
    np.testing.assert_allclose(predictor.predict(clip), expected, atol=1e-4)
    np.testing.assert_allclose(predictor.predict(clip), expected, atol=1e-4)  # a new stream, not a continued one
    predictor.reset()
    for t in range(clip.shape[2]):
        logits = predictor.step(clip[:, :, t:t + 1])
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    frames = np.zeros((5, 48, 40, 3), dtype=np.uint8)
    assert predictor.preprocess(frames).shape == (3, 5, SIZE, SIZE)
    assert predictor.warmup(2) >= 0 and repr(predictor).startswith(type(predictor).__name__ + f"({path}")

    tsm = tiny_tsm()
    ckpt = save_checkpoint(tmp_path / "clip.pt", tsm, _meta("tsm_mobilenetv2", {"shift_mode": "online",
                                                                                "width_mult": 0.25}, frames=4))
    clip_model = load(ckpt)
    assert isinstance(clip_model, Predictor) and not clip_model.streaming
    assert clip_model.preprocess(frames).shape == predictor.preprocess(frames).shape
    with pytest.raises(EdgevidError, match=r"clip\.pt: tsm_mobilenetv2 is a clip model and has no step\(\)"):
        clip_model.step(clip[:, :, :1])
    streamed = load_streaming(ckpt)  # a causal checkpoint streams once converted, through the same contract
    assert isinstance(streamed, Predictor) and streamed.streaming
    np.testing.assert_allclose(streamed.predict(clip[:, :, :4]), clip_model.predict(clip[:, :, :4]), atol=1e-4)
