"""The one head API of every backbone (backbones/_api.py): features, logits,
layer outputs, parameters by layer group."""

import pytest
import torch
from torch import nn

from skltransfer.backbones import Backbone, load_backbone


def test_head_api_features_then_logits():
    bb = load_backbone("test_tiny_cnn")
    x = bb.example_input(2)
    feats = bb.forward_features(x)
    assert feats.shape == (2, 32)
    assert torch.allclose(bb.forward_head(feats), bb(x))
    assert bb.class_names == [f"class_{i}" for i in range(10)]


def test_forward_layer_returns_the_stage_output():
    bb = load_backbone("test_tiny_cnn")
    x = bb.example_input(1)
    expected = bb.body.stages[0](bb.body.stem(x))
    out = bb.forward_layer(x, bb.resolve_layer("stages.0"))
    assert torch.allclose(out, expected)
    assert bb.resolve_layer(-1) == "stages.2"
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        bb.resolve_layer("nope")
    with pytest.raises(ValueError, match="out of range"):
        bb.resolve_layer(9)


def test_backbone_without_preprocessing_has_no_example():
    bb = Backbone(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no image preprocessing"):
        bb.example_input()
    with pytest.raises(ValueError, match="no pretrained head"):
        bb.forward_head(torch.zeros(1, 2))


def test_group_parameters_cover_every_body_parameter():
    bb = load_backbone("test_tiny_vit")
    grouped = [p for ps in bb.group_parameters() for p in ps]
    assert {id(p) for p in grouped} == {id(p) for p in bb.body.parameters()}
    assert len(grouped) == len(list(bb.body.parameters()))
