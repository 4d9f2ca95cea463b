"""Every zoo model answers get_classifier() / reset_classifier(num_classes) (fine-tuning, pruning rely on it)."""

import pytest
import torch
from torch import nn

from edgevid.models import create_model, get_spec, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_resets_its_classifier(name):
    spec = get_spec(name)
    with torch.device("meta"):  # shapes only: the registry's full-size models, no compute
        model = create_model(name, num_classes=400).eval()
        clip = torch.empty(2, 3, spec.frames, spec.size, spec.size)
        assert model(clip).shape == (2, 400)
        fc = model.get_classifier()
        assert isinstance(fc, nn.Linear) and fc.out_features == 400
        assert dict(model.named_modules())[model.classifier_name()] is fc
        model.reset_classifier(7)
        new = model.get_classifier()
        assert new is not fc and new.out_features == 7 and new.in_features == fc.in_features
        assert model(clip).shape == (2, 7)
        model.set_head_kind("frame")  # every head kind reads the new classifier
        out = model(clip)
    assert out.shape[:2] == (2, 7) and out.dim() == 3


def test_reset_classifier_keeps_the_rest_and_initialises_like_the_family():
    torch.manual_seed(0)
    model = create_model("tsm_mobilenetv2", num_classes=5, width_mult=0.25).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    name = model.classifier_name()
    model.reset_classifier(300)
    after = model.state_dict()
    assert {k for k in after if not k.startswith(name + ".")} == {k for k in before if not k.startswith(name + ".")}
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith(name + "."))
    fc = model.get_classifier()
    assert fc.weight.shape == (300, model.num_features) and torch.all(fc.bias == 0)
    assert 0.0005 < float(fc.weight.std()) < 0.002  # TSM's N(0, 0.001), as a fresh TSM head
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 300)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(0)
