"""Structured pruning: channels removed to a MAC budget, consistent shapes (residual adds, depthwise convs, SE,
TSM shifts), checkpoints that load and export without the original, fine-tuning through the training engine."""

import shutil

import pytest
import torch
from compress_fixtures import FRAMES, SIZE, make_synth, tiny_meta, train_tiny_run

from edgevid.checkpoint import load_checkpoint, load_model, save_checkpoint
from edgevid.cli import main
from edgevid.compress.pruning import prune, prune_channels, prune_to_macs, pruned_meta
from edgevid.errors import EdgevidError
from edgevid.export import export
from edgevid.models import count_macs, count_params, create_model
from edgevid.models.tsm import TemporalShift
from edgevid.runtime import load


def _conv_widths(model):
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]


def test_prune_to_mac_budget_keeps_shapes_consistent(tmp_path):
    model = create_model("tiny3d", num_classes=3, width=16).eval()
    pruned = prune_to_macs(model, FRAMES, SIZE, 0.5)
    assert abs(pruned.mac_reduction - 0.5) <= 0.03
    assert pruned.macs_after == count_macs(pruned.model, FRAMES, SIZE) and pruned.params_after < pruned.params_before
    assert all(a < b for a, b in zip(_conv_widths(pruned.model), _conv_widths(model), strict=True))
    assert _conv_widths(model)[0] == 16  # the original is untouched
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE)
    assert pruned.model(x).shape == (2, 3)
    assert pruned.model.head.fc.out_features == 3

    meta = pruned_meta(tiny_meta(["a", "b", "c"]).replace(arch={"width": 16}), pruned, model, {"ratio": 0.5})
    path = save_checkpoint(tmp_path / "pruned.pt", pruned.model, meta)
    loaded, loaded_meta = load_model(path)
    torch.testing.assert_close(loaded(x), pruned.model(x))
    assert count_params(loaded) == pruned.params_after and loaded_meta.pruned_shapes
    onnx = export(path, "onnx", out=tmp_path / "pruned.onnx")
    assert onnx.parity.passed and load(onnx.path).predict(x.numpy()).shape == (2, 3)


@pytest.mark.parametrize(("global_pruning", "importance"), [(False, "bn"), (True, "l2")])
def test_x3d_depthwise_and_se_blocks_prune_together(global_pruning, importance):
    model = create_model("x3d_xs", num_classes=4).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    prune_channels(model, x, 0.25, global_pruning=global_pruning, importance=importance)
    block = model.stages[0][0]
    assert block.conv_b.groups == block.conv_b.in_channels == block.conv_b.out_channels == block.bn_a.num_features
    assert block.se.fc1.in_channels == block.se.fc2.out_channels == block.conv_b.out_channels
    assert block.conv_c.out_channels == block.shortcut[0].out_channels == model.stages[0][1].conv_a.in_channels
    assert count_params(model) < count_params(create_model("x3d_xs", num_classes=4))
    assert model(x).shape == (1, 4)


def test_tsm_shift_fold_follows_the_pruned_channels():
    model = create_model("tsm_r18", num_classes=4).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    prune_channels(model, x, 0.3)
    blocks = model.backbone.residual_blocks()
    assert all(isinstance(b.temporal, TemporalShift) for b in blocks)
    channels = blocks[0].conv1.in_channels
    assert channels < 64 and model(x).shape == (1, 4)
    shifted = blocks[0].temporal(torch.ones(8, channels, 2, 2), 8)
    fold = channels // 8
    assert shifted[-1, :fold].abs().sum() == 0 and shifted[0, fold:2 * fold].abs().sum() == 0
    assert shifted[0, 2 * fold:].min() == 1


def test_prune_run_with_finetuning_loads_without_the_original(tmp_path):
    data = make_synth(tmp_path / "data", classes=3, videos=2, val=1)
    run = train_tiny_run(data, tmp_path / "run", steps=2)
    result = prune(run, 0.4, data, finetune_epochs=1, out=tmp_path / "pruned", bench_iters=0, val_clips=0,
                   show_progress=False)
    assert {"pruned.pt", "best.pt", "last.pt", "recipe.yaml"} <= {p.name for p in result.run_dir.iterdir()}
    meta = load_checkpoint(result.checkpoint).meta
    assert meta.pruned_shapes and meta.extra["pruning"]["ratio"] == 0.4
    assert meta.extra["epoch"] == 1 and meta.precision == "fp32"
    shutil.rmtree(run)
    model, _ = load_model(result.run_dir)
    assert count_macs(model, FRAMES, SIZE) == meta.extra["pruning"]["macs_after"]
    pruned_widths = [shape[0] for shape in meta.pruned_shapes.values() if len(shape) == 5]  # conv weights
    assert pruned_widths and all(width % 8 == 0 for width in pruned_widths)  # round_to=8 by default
    assert load(result.run_dir).predict(torch.randn(1, 3, FRAMES, SIZE, SIZE).numpy()).shape == (1, 3)


def test_bad_ratios_and_inputs_write_nothing(tmp_path, capsys):
    data = make_synth(tmp_path / "data", classes=2, videos=1, val=1)
    run = train_tiny_run(data, tmp_path / "run", steps=1)
    for ratio in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(EdgevidError, match=r"--ratio .* must be in \(0, 1\)"):
            prune(run, ratio, data, out=tmp_path / "out")
    with pytest.raises(EdgevidError, match="importance 'taylor' is not one of l2, bn"):
        prune(run, 0.5, data, importance="taylor", out=tmp_path / "out")
    with pytest.raises(EdgevidError, match=r"no recipe\.yaml"):
        (run / "recipe.yaml").unlink()
        prune(run, 0.5, data, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["prune", str(run), "--ratio", "2", "--data", str(data)]) == 1
    assert "must be in (0, 1)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
