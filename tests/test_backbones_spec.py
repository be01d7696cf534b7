"""Backbone specs (backbones/_spec.py): a trained backbone as a spec."""

from skltransfer.backbones import TrainedBackbone, load_backbone, load_text_backbone
from skltransfer.backbones._spec import input_kind


def test_trained_backbone_takes_what_its_backbone_takes():
    text = load_text_backbone("test_tiny_bert")
    spec = TrainedBackbone(text)
    assert spec.input_kind == input_kind(text) == "text"
    copy = spec.load()
    assert copy is not text and isinstance(copy, type(text))
    assert TrainedBackbone(load_backbone("test_tiny_cnn")).input_kind == "image"
