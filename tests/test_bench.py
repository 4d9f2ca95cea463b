"""``edgevid bench``: formats side by side on a tiny model, result schema, plot, failures recorded per row."""

import csv
import json

import pytest
import torch

from edgevid.bench import STATUSES, TABLE_COLUMNS, BenchOptions, BenchRow, bench
from edgevid.checkpoint import save_checkpoint
from edgevid.cli import main
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.models import count_macs, create_model
from edgevid.utils.machine import time_callable

CLASSES = ["move_left", "move_right", "move_up"]
FAST = dict(iters=8, warmup=1, max_seconds=0.2, threads=1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory holding an (untrained) tiny3d checkpoint at 4 x 32 x 32."""
    run = tmp_path_factory.mktemp("run")
    meta = ArtifactMeta(model="tiny3d", classes=CLASSES, frames=4, size=32, sampling_stride=2,
                        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), arch={"width": 8})
    torch.manual_seed(0)
    save_checkpoint(run / "best.pt", create_model("tiny3d", num_classes=3, width=8).eval(), meta)
    return run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synth(root, SynthConfig(classes=3, videos_per_class=1, val_per_class=2, frames=16, size=32),
                   show_progress=False, overwrite=True)
    return root


@pytest.fixture(scope="module")
def result(run_dir, dataset, tmp_path_factory):
    """torch/onnx/openvino/trt in FP32 with top-1 on the val split."""
    out = tmp_path_factory.mktemp("bench")
    return bench(run_dir, out, targets=["torch", "onnx", "openvino", "trt"], precisions=["fp32"], data=dataset,
                 eval_workers=0, show_progress=False, **FAST), out


def _row(result, target, precision):
    (row,) = [r for r in result.rows if r.target == target and r.precision == precision]
    return row


def test_formats_side_by_side(result, run_dir):
    result, _ = result
    assert [(r.target, r.precision, r.batch) for r in result.rows] == [
        (t, "fp32", 1) for t in ("torch", "onnx", "openvino", "trt")]
    gmacs = count_macs(create_model("tiny3d", num_classes=3, width=8), 4, 32) / 1e9
    fp32 = [_row(result, t, "fp32") for t in ("torch", "onnx", "openvino")]
    for row in fp32:
        assert row.status == "ok", row.reason
        assert 0 < row.p50_ms <= row.p95_ms <= row.p99_ms
        assert row.fps == pytest.approx(1000.0 / row.p50_ms)
        assert row.iters >= 5
        assert row.peak_rss_mb > 50 and row.size_mb > 0
        assert row.gmacs == pytest.approx(gmacs)
    # the same FP32 weights in three runtimes classify the val clips alike
    assert len({round(row.top1, 3) for row in fp32}) == 1
    assert {row.backend for row in fp32} == {"torch", "onnxruntime", "openvino"}


def test_unavailable_and_failed_formats_are_recorded(result, run_dir, tmp_path):
    result, _ = result
    trt = _row(result, "trt", "fp32")
    assert trt.status == "unavailable" and "tensorrt" in trt.reason and trt.p50_ms is None
    assert trt.command.startswith("trtexec") and "--useCudaGraph" in trt.command
    # INT8 without any calibration set cannot be produced; a device that does not exist fails at load: both rows
    # say why, and the run goes on to write every file
    failed = bench(run_dir, tmp_path, targets=["openvino", "torch"], precisions=["int8"], show_progress=False)
    rows = {(r.target, r.precision): r for r in failed.rows}
    assert rows["torch", "int8"].status == "unavailable" and "FP32" in rows["torch", "int8"].reason
    assert rows["openvino", "int8"].status == "export failed" and "calibration" in rows["openvino", "int8"].reason
    assert all(line.split(": ")[1] in STATUSES for line in failed.failures())
    assert all(path.exists() for path in failed.files.values())
    (runtime_failed,) = bench(run_dir, tmp_path / "npu", targets=["openvino"], precisions=["fp32"], device="npu:7",
                              show_progress=False, **FAST).rows
    assert runtime_failed.status == "runtime failed" and "npu" in runtime_failed.reason.lower()


def test_result_files_schema(result):
    result, out = result
    data = json.loads((out / "bench.json").read_text())
    assert data["columns"] == BenchRow.columns()
    assert data["machine"]["cpu_cores"] >= 1 and "versions" in data["machine"]
    assert all(set(row) == set(BenchRow.columns()) and row["status"] in STATUSES for row in data["rows"])
    with (out / "bench.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows) and list(rows[0]) == BenchRow.columns()
    markdown = (out / "bench.md").read_text()
    assert "| " + " | ".join(TABLE_COLUMNS) + " |" in markdown and result.machine["machine"] in markdown
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_of_an_exported_artifact(result, tmp_path, capsys):
    result, _ = result
    onnx = _row(result, "onnx", "fp32").artifact
    paths = {kind: tmp_path / f"r.{ext}" for kind, ext in (("json", "json"), ("csv", "csv"), ("md", "md"),
                                                          ("plot", "png"))}
    args = ["bench", onnx, "--iters", "5", "--seconds", "0.1", "--warmup", "0", "--batch", "2"]
    args += [x for kind, path in paths.items() for x in (f"--{kind}", str(path))]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ONNX Runtime" in printed and "fp32" in printed
    assert all(path.exists() for path in paths.values())
    (row,) = json.loads(paths["json"].read_text())["rows"]
    assert row["status"] == "ok" and row["target"] == "onnx" and row["batch"] == 2
    assert row["fps"] == pytest.approx(2000.0 / row["p50_ms"])


def test_bad_options_are_clear_errors(run_dir):
    with pytest.raises(EdgevidError, match="--targets"):
        BenchOptions(targets=("onnx", "coreml"))
    with pytest.raises(EdgevidError, match="--batch"):
        BenchOptions(batches=(0,))
    with pytest.raises(EdgevidError, match="--streaming"):
        BenchOptions(streaming=True, batches=(1, 4))
    with pytest.raises(EdgevidError, match="--data"):
        BenchOptions(data="/no/such/dir")
    assert main(["bench", str(run_dir), "--batch", "1,x"]) == 1


def test_time_callable_is_time_boxed():
    calls = []
    stats = time_callable(lambda: calls.append(1), warmup=2, iters=10**7, max_seconds=0.05, min_iters=5)
    assert 5 <= stats["iters"] < 10**7 and len(calls) == stats["iters"] + 2
    assert stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"]


def test_cli_exits_1_when_no_format_ran(run_dir, tmp_path, capsys):
    code = main(["bench", str(run_dir), "--targets", "torch", "--precisions", "int8,fp16", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "no format ran" in err
    assert (tmp_path / "bench.json").is_file()  # the table of reasons is still written
