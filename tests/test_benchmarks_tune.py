"""benchmarks/bench_tune.py: the tuned-vs-shipped comparison read from a machine's generalise results."""

import json

import pytest

from benchmarks import bench_tune


def test_comparison_checks_only_the_styles_the_recipe_was_not_tuned_on(tmp_path, monkeypatch):
    rows = [
        {"recipe": "x3d_xs", "style": "shapes", "changes": "-", "best_val_top1": 87.5},
        {"recipe": "x3d_xs", "style": "photo", "changes": "-", "best_val_top1": 39.2},
        {"recipe": "x3d_xs", "style": "wild", "changes": "-", "best_val_top1": 16.7},
        {"recipe": "x3d_xs", "style": "wild", "changes": "data.frames=8", "best_val_top1": 99.0},  # a screen
        {"recipe": "x3d_xs_tuned_photo", "style": "shapes", "changes": "-", "best_val_top1": 85.0},
        {"recipe": "x3d_xs_tuned_photo", "style": "photo", "changes": "-", "best_val_top1": 30.0},
        {"recipe": "x3d_xs_tuned_photo", "style": "wild", "changes": "-", "best_val_top1": 20.0},
    ]
    (tmp_path / "generalise.json").write_text(json.dumps({"info": {}, "rows": rows}))
    monkeypatch.setattr(bench_tune, "results_dir", lambda *a: tmp_path)
    table = {r["style"]: r for r in bench_tune.compare("x3d_xs", "x3d_xs_tuned_photo", "photo",
                                                        ["shapes", "photo", "wild"])}
    assert table["shapes"]["change_points"] == pytest.approx(-2.5) and table["shapes"]["target"] == "MISSED (not worse)"
    assert table["wild"]["shipped_best_val_top1"] == 16.7 and table["wild"]["target"] == "met (not worse)"
    assert table["photo"]["tuned_on"] == "yes" and table["photo"]["target"] == "-"  # no target where it was tuned
    missing = bench_tune.compare("x3d_xs", "x3d_xs_tuned_wild", "wild", ["shapes"])[0]
    assert missing["tuned_best_val_top1"] is None and missing["target"] == "-"


def test_comparison_under_changes_takes_the_shipped_rows_with_the_same_changes(tmp_path, monkeypatch):
    init = "model.init=runs/pretrain-cache/pretrain/x3d_xs-shapes-0.pt"
    rows = [
        {"recipe": "x3d_xs", "style": "photo", "changes": "-", "best_val_top1": 68.3},
        {"recipe": "x3d_xs", "style": "photo", "changes": init, "best_val_top1": 82.5},
        {"recipe": "x3d_xs_tuned_wild", "style": "photo", "changes": init, "best_val_top1": 80.0},
        {"recipe": "x3d_xs_tuned_wild", "style": "shapes", "changes": "-", "best_val_top1": 99.0},  # other regime
    ]
    (tmp_path / "generalise.json").write_text(json.dumps({"info": {}, "rows": rows}))
    monkeypatch.setattr(bench_tune, "results_dir", lambda *a: tmp_path)
    table = {r["style"]: r for r in bench_tune.compare("x3d_xs", "x3d_xs_tuned_wild", "wild", ["shapes", "photo"],
                                                        changes=init)}
    assert table["photo"]["shipped_best_val_top1"] == 82.5 and table["photo"]["change_points"] == pytest.approx(-2.5)
    assert table["photo"]["target"] == "MISSED (not worse)"
    assert table["shapes"]["tuned_best_val_top1"] is None and table["shapes"]["target"] == "-"
