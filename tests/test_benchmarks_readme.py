"""benchmarks/make_readme.py: sections, embedded tables and plot links from a results folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_readme.py"


def _make_readme():
    spec = importlib.util.spec_from_file_location("make_readme", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_from_a_results_folder(tmp_path: Path) -> None:
    make_readme = _make_readme()
    machine = tmp_path / "results" / "cpu-4c-test"
    machine.mkdir(parents=True)
    (machine / "backends.md").write_text("# backends\n\nnoisy machine\n\n| model | p50_ms |\n|---|---|\n"
                                         "| x3d_xs | 12.5 |\n\n## X3D-XS settings\n\n| setting | p50_ms |\n")
    (machine / "backends.png").write_bytes(b"\x89PNG fake")
    (machine / "backends_quick.md").write_text("# backends_quick\n\n| quick | row |\n")
    (machine / "training_quick_curves.png").write_bytes(b"\x89PNG fake")
    (machine / "mystery.md").write_text("# mystery\n\n| unknown | study |\n")
    out = tmp_path / "README.md"

    assert make_readme.main(tmp_path / "results", out) == out
    text = out.read_text(encoding="utf-8")
    lines = text.splitlines()

    assert "## `cpu-4c-test`" in lines
    assert f"### {make_readme.STUDIES['backends'][0]}" in lines
    assert "python -m benchmarks.bench_backends" in text
    assert "| x3d_xs | 12.5 |" in lines
    assert "#### X3D-XS settings" in lines
    assert "# backends" not in lines
    assert "![backends](results/cpu-4c-test/backends.png)" in lines
    assert "| quick | row |" not in lines
    assert "backends_quick" not in text and "training_quick_curves" not in text
    assert "| unknown | study |" not in lines
    assert "Other result files: [mystery.md](results/cpu-4c-test/mystery.md)" in lines
    assert f"### {make_readme.STUDIES['pruning'][0]}" not in lines


def test_plots_go_to_the_longest_matching_study() -> None:
    make_readme = _make_readme()
    studies = ["int8", "int8_calibration_size", "training"]
    assert make_readme._owner(Path("int8_calibration_size.png"), studies) == "int8_calibration_size"
    assert make_readme._owner(Path("int8_speedup.png"), studies) == "int8"
    assert make_readme._owner(Path("training_x3d_xs_curves.png"), studies) == "training"
    assert make_readme._owner(Path("training_quick_curves.png"), studies) is None
    assert make_readme._owner(Path("int8x.png"), studies) is None


def test_empty_results_folder(tmp_path: Path) -> None:
    text = _make_readme().render(tmp_path / "missing", tmp_path)
    assert text.startswith("# Benchmarks")
    assert "No results yet" in text


def test_machines_side_by_side_from_their_backends_results(tmp_path: Path) -> None:
    import json

    make_readme = _make_readme()
    for name, p50 in (("cpu-2c-epyc-avx2", 16.0), ("cpu-2c-xeon-amx", 8.0)):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"model": "x3d_xs", "backend": "openvino", "precision": "fp32", "p50_ms": p50,
                 "speedup_vs_torch": 40 / p50}]
        if name.endswith("amx"):
            rows.append({"model": "x3d_xs", "backend": "openvino", "precision": "bf16", "p50_ms": 5.0,
                         "speedup_vs_torch": 8.0})
            rows.append({"model": "x3d_xs", "backend": "onnxruntime", "precision": "bf16", "reason": "no kernels"})
        (folder / "backends.json").write_text(json.dumps({"info": {}, "rows": rows}))
    table = make_readme.side_by_side(sorted(tmp_path.iterdir())).splitlines()
    assert table[2] == "| model | backend | precision | `cpu-2c-epyc-avx2` | `cpu-2c-xeon-amx` |"
    assert "| x3d_xs | openvino | fp32 | 16.0 (2.50x) | 8.0 (5.00x) |" in table
    assert "| x3d_xs | openvino | bf16 | - | 5.0 (8.00x) |" in table
    assert not any("onnxruntime" in line for line in table)  # an unavailable row has no number to compare
    assert make_readme.side_by_side([tmp_path / "cpu-2c-xeon-amx"]) is None
