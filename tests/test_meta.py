"""Typed metadata: the current layout round-trips, and every layout written so far still loads (upgraded)."""

import json
from pathlib import Path

import pytest

from edgevid.checkpoint import build_model, load_checkpoint, save_checkpoint
from edgevid.errors import EdgevidError
from edgevid.export.tensorrt import shape_ranges
from edgevid.meta import (
    META_VERSION,
    ArtifactMeta,
    InputSpec,
    QuantizationInfo,
    StateSpec,
    StreamSpec,
    read_meta,
    upgrade_meta_dict,
)

FIXTURES = Path(__file__).parent / "data" / "meta"
V1_RUN_KEYS = {"sampling", "input", "output", "dynamic_batch", "dynamic_time", "min_frames", "frame_multiple",
               "streaming", "pruned_shapes", "quantization"}


def _v1(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_every_fixture_of_layout_1_loads_and_keeps_no_run_fact_in_extra(name):
    data = _v1(name)
    assert "meta_version" not in data
    meta = ArtifactMeta.from_dict(data, name)
    assert not V1_RUN_KEYS & set(meta.extra)
    assert meta.sampling == data["extra"].get("sampling", "dense")
    # what no loader needs stays in extra, untouched
    assert {k: v for k, v in data["extra"].items() if k not in V1_RUN_KEYS} == meta.extra
    again = ArtifactMeta.from_json(meta.to_json(), name)
    assert again == meta and json.loads(meta.to_json())["meta_version"] == META_VERSION


def test_onnx_exports_keep_their_time_axis_rules():
    for name in ("onnx_fp32", "openvino_fp32", "onnx_int8"):
        meta = ArtifactMeta.from_dict(_v1(name))
        assert meta.input == InputSpec(name="clip", output="logits", dynamic_batch=True, dynamic_time=True,
                                       min_frames=2, frame_multiple=2)
        assert meta.accepts_frames(4) and meta.accepts_frames(8) and not meta.accepts_frames(5)
        assert shape_ranges(meta, 4).time == (2, 4, 8) and shape_ranges(meta, 4).time_input == "clip"
    checkpoint = ArtifactMeta.from_dict(_v1("checkpoint"))
    assert checkpoint.input == InputSpec() and not checkpoint.input.dynamic_time
    assert checkpoint.accepts_frames(4) and not checkpoint.accepts_frames(8)
    # one default for an input spec that names no rules: min_frames 1, frame_multiple 1, in meta and TensorRT
    dynamic = checkpoint.replace(input=InputSpec(dynamic_time=True))
    assert dynamic.accepts_frames(1) and dynamic.accepts_frames(3)
    assert shape_ranges(dynamic, 2).time == (1, 4, 8)


def test_quantization_pruning_and_streaming_become_typed():
    int8 = ArtifactMeta.from_dict(_v1("onnx_int8"))
    assert int8.precision == "int8" and isinstance(int8.quantization, QuantizationInfo)
    assert int8.quantization.target == "onnx" and int8.quantization.scheme["method"] == "minmax"
    assert int8.quantization.calib_clips == 8 and int8.quantization.weighted_layers == 11

    pruned = ArtifactMeta.from_dict(_v1("pruned_checkpoint"))
    assert pruned.pruned_shapes and pruned.extra["pruning"]["ratio"] == 0.4
    model = build_model(pruned)
    state = model.state_dict()
    assert all(list(state[key].shape) == shape for key, shape in pruned.pruned_shapes.items())

    stream = ArtifactMeta.from_dict(_v1("streaming_onnx"))
    assert stream.streaming and isinstance(stream.stream, StreamSpec)
    assert stream.stream.input == "frame" and stream.stream.output == "logits"
    assert all(isinstance(s, StateSpec) for s in stream.stream.states) and stream.stream.states[-1].kind == "step"
    assert stream.input.name == "frame" and stream.input.dynamic_batch and not stream.input.dynamic_time
    assert stream.stream.states[0].shifted_from == stream.stream.states[1].name


def test_old_checkpoint_on_disk_loads(tmp_path):
    """A checkpoint file whose payload carries a layout-1 dict (as every checkpoint written so far does)."""
    import torch

    data = _v1("pruned_checkpoint")
    meta = ArtifactMeta.from_dict(data)
    model = build_model(meta)
    save_checkpoint(tmp_path / "new.pt", model, meta)
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    payload["meta"] = data
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded.meta == meta == read_meta(tmp_path / "new.pt")
    model.load_state_dict(loaded.state_dict)


def test_sampling_rate_is_read_as_sampling_stride_and_newer_versions_are_refused():
    data = _v1("checkpoint")
    data["sampling_rate"] = data.pop("sampling_stride")
    assert ArtifactMeta.from_dict(data).sampling_stride == _v1("checkpoint")["sampling_stride"]
    with pytest.raises(EdgevidError, match=r"m\.onnx: edgevid metadata version 99 is newer"):
        ArtifactMeta.from_dict({**_v1("checkpoint"), "meta_version": 99}, "m.onnx")
    current = ArtifactMeta.from_dict(_v1("checkpoint")).to_dict()
    assert upgrade_meta_dict(current) == {k: v for k, v in current.items() if k != "meta_version"}
    with pytest.raises(EdgevidError, match="malformed"):
        ArtifactMeta.from_dict({**current, "input": {"nme": "clip"}})


def test_frame_fit_travels_in_the_metadata_and_defaults_to_crop():
    current = ArtifactMeta.from_dict(_v1("checkpoint")).to_dict()
    assert current["fit"] == "crop"
    squash = ArtifactMeta.from_dict({**current, "fit": "squash"})
    assert ArtifactMeta.from_dict(squash.to_dict()).fit == "squash"
    assert ArtifactMeta.from_dict({k: v for k, v in current.items() if k != "fit"}).fit == "crop"
    with pytest.raises(EdgevidError, match="metadata fit 'letterbox' is not one of crop, squash"):
        ArtifactMeta.from_dict({**current, "fit": "letterbox"})
