
import pytest
import torch

from edgevid.checkpoint import load_checkpoint, load_model, save_checkpoint
from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta, read_meta, sidecar_path
from edgevid.models import create_model
from edgevid.utils.atomic import atomic_path


def _meta(**kw):
    base = dict(model="tiny3d", classes=["a", "b", "c"], frames=4, size=32, sampling_stride=2,
                mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), arch={"width": 8})
    base.update(kw)
    return ArtifactMeta(**base)


def test_meta_json_roundtrip_and_validation():
    meta = _meta(head="frame")
    assert ArtifactMeta.from_json(meta.to_json()) == meta
    assert meta.num_classes == 3
    with pytest.raises(EdgevidError, match="head"):
        _meta(head="bogus")
    with pytest.raises(EdgevidError, match="lacks classes"):
        ArtifactMeta.from_dict({k: v for k, v in meta.to_dict().items() if k != "classes"})


def test_meta_clip_seconds_roundtrip_and_old_artifacts():
    seconds = _meta(clip_seconds=1.28)
    assert ArtifactMeta.from_json(seconds.to_json()).clip_seconds == 1.28
    old = _meta().to_dict()
    del old["clip_seconds"]  # an artifact written before the field existed
    loaded = ArtifactMeta.from_dict(old)
    assert loaded.clip_seconds is None and loaded.sampling_stride == 2
    with pytest.raises(EdgevidError, match="clip_seconds"):
        _meta(clip_seconds=0)


def test_checkpoint_roundtrip(tmp_path):
    meta = _meta()
    model = create_model("tiny3d", num_classes=3, width=8).eval()
    path = save_checkpoint(tmp_path / "best.pt", model, meta, {"epoch": 3})
    loaded, loaded_meta = load_model(path)
    assert loaded_meta == meta
    assert load_checkpoint(path).train_state == {"epoch": 3}
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert read_meta(path) == meta
    assert read_meta(tmp_path) == meta  # a run directory resolves to its checkpoint


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_pickled_callable_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "edgevid-checkpoint", "meta": {}, "state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(EdgevidError, match="refused"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("tiny3d", num_classes=3, width=8), _meta())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EdgevidError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_text("whole")
    assert final.read_text() == "whole"


def test_sidecar_metadata(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(EdgevidError, match="cannot read edgevid metadata"):
        read_meta(engine)
    sidecar_path(engine).write_text(_meta().to_json())
    assert read_meta(engine).model == "tiny3d"


def test_cli_errors_are_one_line_with_nonzero_exit(capsys):
    assert main(["models", "no_such_model*"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no model matches" in err and "\n" not in err
    assert main(["--version"]) == 0


