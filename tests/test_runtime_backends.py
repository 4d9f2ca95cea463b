"""The ONNX Runtime and OpenVINO backends behind runtime.load, and checkpoint/ONNX/IR parity through
`edgevid predict` and `edgevid eval` on generated videos."""

import json

import numpy as np
import onnx
import pytest
import torch

from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.runtime import load
from edgevid.runtime.onnx_backend import OnnxRuntimePredictor
from edgevid.runtime.openvino_backend import OpenVINOPredictor


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A random tiny3d (2 classes, matching the generated data) as checkpoint, ONNX and OpenVINO IR."""
    from edgevid.data.synth import SynthConfig, generate_synth

    torch.manual_seed(1)
    root = tmp_path_factory.mktemp("rt")
    config = SynthConfig(classes=2, videos_per_class=1, val_per_class=3, frames=8, size=32, fps=25, seed=0)
    info = generate_synth(root / "data", config, show_progress=False)
    meta = ArtifactMeta(model="tiny3d", classes=info["classes"], frames=4, size=32, sampling_stride=2,
                        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), arch={"width": 4})
    ckpt = save_checkpoint(root / "run" / "best.pt", create_model("tiny3d", 2, width=4), meta)
    return {"data": root / "data", "pt": ckpt, "onnx": export(ckpt, "onnx").path,
            "xml": export(ckpt, "openvino").path}


def test_backends_are_picked_by_suffix_and_honour_threads(artifacts):
    ort = load(artifacts["onnx"], threads=1)
    ov = load(artifacts["xml"], threads=1)
    assert isinstance(ort, OnnxRuntimePredictor) and ort.backend == "onnxruntime"
    assert ort.session.get_session_options().intra_op_num_threads == 1
    assert isinstance(ov, OpenVINOPredictor) and ov.device == "CPU" and ov.precision == "fp32"
    compiled = ov.request_for({"clip": (1, 3, 4, 32, 32)}).get_compiled_model()
    assert compiled.get_property("PERFORMANCE_HINT") == "LATENCY"
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>" and ov.execution == "f32"
    assert ort.warmup(iterations=1) > 0 and ov.warmup(iterations=1, batch=2) > 0
    clip = np.random.default_rng(0).standard_normal((3, 4, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(ov.predict(clip), ort.predict(clip[None]), atol=1e-4, rtol=0)
    named = ort.run_named({"clip": clip[None]})
    assert list(named) == ["logits"] and named["logits"].shape == (1, 2)


def test_openvino_predictors_share_one_core_but_keep_their_own_settings(artifacts):
    one, two = load(artifacts["xml"], threads=1), load(artifacts["xml"], threads=2)
    assert one.core is two.core  # a Core per predictor crashed a later DataLoader with workers (SIGSEGV)
    clip = np.zeros((1, 3, 4, 32, 32), np.float32)
    compiled = [p.request_for({"clip": clip.shape}).get_compiled_model() for p in (one, two)]
    assert [c.get_property("INFERENCE_NUM_THREADS") for c in compiled] == [1, 2]


def test_openvino_shares_inputs_but_returns_outputs_the_next_call_does_not_overwrite(artifacts):
    ov, reference = load(artifacts["xml"], threads=1), load(artifacts["onnx"], threads=1)
    rng = np.random.default_rng(1)
    first, second = (rng.standard_normal((2, 3, 4, 32, 32)).astype(np.float32) for _ in range(2))
    kept = ov.run_named({"clip": first})["logits"]
    again = ov.run_named({"clip": second})["logits"]  # same shapes: the same infer request runs again
    assert len(ov._compiled) == 1 and not np.shares_memory(kept, again)
    np.testing.assert_allclose(kept, reference.predict(first), atol=1e-4, rtol=0)
    np.testing.assert_allclose(again, reference.predict(second), atol=1e-4, rtol=0)
    with pytest.raises(EdgevidError, match=r"missing input\(s\) clip"):
        ov.run_named({"frame": first})


def test_wrong_input_shape_names_file_and_expected_shape(artifacts):
    for kind in ("onnx", "xml"):
        predictor = load(artifacts[kind])
        with pytest.raises(EdgevidError, match=rf"{artifacts[kind].name}.*expects \[3, 4, 32, 32\]"):
            predictor.predict(np.zeros((1, 3, 4, 48, 48), np.float32))
        with pytest.raises(EdgevidError, match=r"expects \[3, 4, 32, 32\]"):
            predictor.predict(np.zeros((1, 3, 5, 32, 32), np.float32))  # tiny3d needs an even T
        with pytest.raises(EdgevidError, match=r"expected clips \[B, 3, T, H, W\]"):
            predictor.predict(np.zeros((1, 1, 4, 32, 32), np.float32))


def test_unavailable_devices_are_clear_errors(artifacts):
    with pytest.raises(EdgevidError, match="CUDAExecutionProvider"):
        load(artifacts["onnx"], device="cuda")
    with pytest.raises(EdgevidError, match="not one of cpu"):
        load(artifacts["onnx"], device="npu")
    with pytest.raises(EdgevidError, match="OpenVINO device 'NPU7' is not available"):
        load(artifacts["xml"], device="NPU7")


def test_truncated_corrupt_and_metadata_less_artifacts(artifacts, tmp_path):
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(artifacts["onnx"].read_bytes()[:5000])
    with pytest.raises(EdgevidError, match=r"cut.onnx: not a readable ONNX model"):
        load(truncated)
    bare = onnx.load(str(artifacts["onnx"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(EdgevidError, match=r"bare.onnx: ONNX model has no edgevid metadata"):
        load(tmp_path / "bare.onnx")
    corrupt = tmp_path / "bad.xml"
    corrupt.write_text(artifacts["xml"].read_text()[:400])
    (tmp_path / "bad.bin").write_bytes(artifacts["xml"].with_suffix(".bin").read_bytes())
    with pytest.raises(EdgevidError, match=r"bad.xml: not a readable OpenVINO IR"):
        load(corrupt)
    lonely = tmp_path / "lonely.xml"
    lonely.write_text(artifacts["xml"].read_text())
    with pytest.raises(EdgevidError, match=r"lonely.bin are missing"):
        load(lonely)
    with pytest.raises(EdgevidError, match="no such artifact"):
        load(tmp_path / "missing.onnx")


def test_predict_and_eval_agree_across_checkpoint_onnx_and_openvino(artifacts, capsys):
    video = sorted((artifacts["data"] / "val").rglob("*.mp4"))[0]
    tops, evals = {}, {}
    for kind in ("pt", "onnx", "xml"):
        assert main(["predict", str(artifacts[kind]), str(video), "--topk", "2", "--json"]) == 0
        predictions = json.loads(capsys.readouterr().out)["predictions"]
        tops[kind] = [(p["label"], round(p["score"], 4)) for p in predictions]
        assert main(["eval", str(artifacts[kind]), "--data", str(artifacts["data"]), "--workers", "0", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        evals[kind] = (result["top1"], result["clips"], result["confusion"])
    assert tops["onnx"] == tops["pt"] == tops["xml"]
    assert evals["onnx"] == evals["pt"] == evals["xml"]
