"""Preprocessing that travels with the weights (backbones/_preprocessing.py)."""

import pytest
import torch

from skltransfer.backbones import ImagePreprocessing


def test_preprocessing_keeps_crop_ratio_and_validates():
    pre = ImagePreprocessing(crop_size=224, resize_size=256)
    assert pre.with_crop_size(112).resize_size == 128
    with pytest.raises(ValueError, match="interpolation"):
        ImagePreprocessing(interpolation="lanczos7")
    out = pre(torch.rand(2, 3, 30, 40))
    assert out.shape == (2, 3, 224, 224)
