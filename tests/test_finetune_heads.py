"""The new head and the network the fine-tuners train (finetune/_heads.py)."""

import pytest
import torch
from torch import nn

from skltransfer.backbones import load_backbone
from skltransfer.finetune._heads import (
    FineTuneNetwork,
    UnitLength,
    build_head,
    check_head,
)


@pytest.mark.parametrize(
    ("head", "hidden"), [("linear", ()), ((), ()), ((16, 8), (16, 8)), ([4], (4,))]
)
def test_check_head_gives_the_hidden_sizes(head, hidden):
    assert check_head(head) == hidden


@pytest.mark.parametrize(
    ("head", "error"),
    [
        ("mlp", ValueError),
        (3, TypeError),
        ((16, 0), ValueError),
        ((16.0,), ValueError),
        ((True,), ValueError),
    ],
)
def test_check_head_refuses_anything_else(head, error):
    with pytest.raises(error, match="head"):
        check_head(head)


def test_build_head_layers():
    assert isinstance(build_head("linear", 8, 3), nn.Linear)
    mlp = build_head((16, 4), 8, 3, dropout=0.5)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Dropout", "Linear", "ReLU"] * 2 + ["Dropout", "Linear"]
    assert [m.out_features for m in mlp if isinstance(m, nn.Linear)] == [16, 4, 3]
    assert mlp(torch.zeros(5, 8)).shape == (5, 3)


def test_a_head_behind_unit_length_ignores_the_length_of_the_features():
    for head in ("linear", (16,)):
        layers = build_head(head, 8, 3, unit_length=True)
        assert isinstance(layers[0], UnitLength)
        x = torch.randn(5, 8)
        torch.testing.assert_close(layers(x), layers(x * torch.rand(5, 1) * 10))


def test_network_drops_the_pretrained_head_and_feeds_the_features():
    backbone = load_backbone("test_tiny_cnn")
    x = backbone.example_input(2)
    features = backbone.forward_features(x)
    head = nn.Linear(features.shape[1], 3)
    network = FineTuneNetwork(backbone, head)
    assert backbone.head is None
    torch.testing.assert_close(network(x), head(features))


@pytest.mark.parametrize("model", ["test_tiny_cnn", "test_tiny_bert"])
@pytest.mark.parametrize("head", ["linear", (16,)])
def test_the_network_knows_the_width_of_the_features_without_a_pass(model, head):
    backbone = load_backbone(model)
    width = backbone.forward_features(backbone.example_input(2)).shape[1]
    network = FineTuneNetwork(
        backbone, build_head(head, width, 3, unit_length=model.endswith("bert"))
    )
    assert network.n_features == width
