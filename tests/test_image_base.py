"""What the image estimators share (_image_base.py): one backbone load, one
input set-up and one batched inference path, for direct use and features."""

import numpy as np
import pytest
import torch

from skltransfer import PretrainedImageClassifier, PretrainedImageFeatures
from skltransfer.backbones import ModuleBackbone

IMAGES = np.random.default_rng(0).integers(0, 256, (5, 20, 20, 3), dtype=np.uint8)
ESTIMATORS = [PretrainedImageFeatures, PretrainedImageClassifier]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_both_estimators_learn_the_same_conventions(estimator):
    est = estimator("test_tiny_cnn").fit(IMAGES)
    reference = PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES)
    assert est.preprocessing_ == reference.preprocessing_
    assert est.value_range_ == reference.value_range_


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_module_without_image_preprocessing_names_the_wrapper(estimator):
    with pytest.raises(ValueError, match=r"ModuleBackbone\(module, preprocessing="):
        estimator(ModuleBackbone(torch.nn.Linear(4, 4))).fit(IMAGES)


@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_outputs_do_not_depend_on_the_batch_size(batch_size):
    """Every batch plan (fixed sizes, the measured size) gives the same rows, in
    input order."""
    reference = PretrainedImageFeatures("test_tiny_cnn", batch_size=5).fit(IMAGES)
    est = PretrainedImageFeatures("test_tiny_cnn", batch_size=batch_size).fit(IMAGES)
    np.testing.assert_allclose(
        est.transform(IMAGES), reference.transform(IMAGES), rtol=1e-5, atol=1e-6
    )
    logits = PretrainedImageClassifier("test_tiny_cnn", batch_size=batch_size)
    one_by_one = [
        logits.fit(IMAGES).decision_function(IMAGES[i : i + 1]) for i in range(5)
    ]
    np.testing.assert_allclose(
        logits.decision_function(IMAGES),
        np.concatenate(one_by_one),
        rtol=1e-5,
        atol=1e-6,
    )
