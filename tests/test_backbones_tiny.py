"""The tiny offline test models (backbones/_tiny.py)."""

import torch

from skltransfer.backbones import load_backbone


def test_tiny_backbone_loads_identically_every_time():
    a, b = load_backbone("test_tiny_cnn"), load_backbone("test_tiny_cnn")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not a.training
