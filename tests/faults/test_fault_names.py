"""Output that shows what matters: default names carry each tag once, and the prune report's status is whole
and never points into the temporary folder it was measured in."""

from pathlib import Path
from types import SimpleNamespace

import edgevid.compress.pruning
from edgevid.checkpoint import save_checkpoint
from edgevid.compress.pruning import compare_models, print_prune_report
from edgevid.errors import EdgevidError
from edgevid.export.base import ExportOptions, get_exporter
from edgevid.formats import artifact_stem
from edgevid.meta import ArtifactMeta
from edgevid.models import create_model
from edgevid.utils.console import console


def test_names_derived_from_a_tagged_artifact_carry_each_tag_once():
    assert artifact_stem("runs/tiny/export/tiny3d.int8.trt.onnx") == "tiny3d"
    assert artifact_stem("best.pt") == "best" and artifact_stem("my.model.onnx") == "my.model"
    trt = get_exporter("trt")(ExportOptions(precision="int8"))
    source = SimpleNamespace(path=Path("runs/tiny/export/tiny3d.int8.trt.onnx"))
    assert trt.default_out(source) == Path("runs/tiny/export/tiny3d.int8.engine")
    onnx = get_exporter("onnx")(ExportOptions(precision="fp16"))
    assert onnx.default_out(SimpleNamespace(path=Path("runs/tiny/best.pt"))) == Path("runs/tiny/best.fp16.onnx")


def test_prune_report_status_is_whole_and_names_no_temporary_folder(tmp_path, monkeypatch):
    meta = ArtifactMeta(model="tiny3d", classes=["a", "b"], frames=4, size=32, sampling_stride=2, mean=(0.45,) * 3,
                        std=(0.225,) * 3, arch={"width": 4})
    model = create_model("tiny3d", num_classes=2, width=4).eval()
    before = save_checkpoint(tmp_path / "before.pt", model, meta)
    after = save_checkpoint(tmp_path / "after.pt", model, meta)
    reason = "the exported graph differs from its source by more than the tolerance " * 4

    def failing_export(checkpoint, target, out, **kwargs):
        raise EdgevidError(f"{out.parent / ('.' + out.name + '.tmp-123')}: {reason.strip()}")

    monkeypatch.setattr(edgevid.compress.pruning, "export", failing_export)
    work = tmp_path / ".prune-report-x"
    work.mkdir()
    rows = compare_models(before, after, backends=("torch", "onnxruntime"), iters=1, work=work)
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) == 2 and all(r["status"].endswith(reason.strip()) for r in failed)
    assert all(str(work) not in r["status"] and str(work) not in str(r.get("artifact")) for r in rows)
    assert {r["status"].split(":")[1].strip() for r in failed} == {f"<export of {before}>", f"<export of {after}>"}
    with console.capture() as captured:
        print_prune_report(rows, "pruning")
    assert str(work) not in captured.get()
