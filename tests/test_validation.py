"""Parameter validation at fit, with the constraints the estimators share."""

import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import InvalidParameterError

from skltransfer import (
    FineTuneClassifier,
    FineTuneRegressor,
    PretrainedImageClassifier,
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
    PretrainedWordVectors,
)
from skltransfer._validation import fit_context

IMAGES = np.zeros((2, 16, 16, 3), np.uint8)
TEXTS = ["a good film", "a bad film"]
WORDS = (np.eye(3, dtype=np.float32), ["good", "bad", "film"])

ESTIMATORS = [
    (lambda **kw: PretrainedImageFeatures("test_tiny_cnn", **kw), IMAGES),
    (lambda **kw: PretrainedImageClassifier("test_tiny_cnn", **kw), IMAGES),
    (lambda **kw: PretrainedTextEmbeddings("test_tiny_bert", **kw), TEXTS),
]


@pytest.mark.parametrize(("make", "X"), ESTIMATORS)
@pytest.mark.parametrize(
    "bad", [{"verbose": -1}, {"precision": "fp8"}, {"device": 0}, {"batch_size": 0}]
)
def test_bad_runtime_parameters_raise_at_fit(make, X, bad):
    est = make(**bad)  # __init__ only stores them
    with pytest.raises(InvalidParameterError, match=next(iter(bad))):
        est.fit(X)


@pytest.mark.parametrize(("make", "X"), ESTIMATORS)
@pytest.mark.parametrize("verbose", ["auto", True, False, 0, 2])
def test_verbose_takes_auto_booleans_and_counts(make, X, verbose):
    assert make(verbose=verbose).fit(X).verbose == verbose


@pytest.mark.parametrize(("make", "X"), ESTIMATORS)
def test_verbose_takes_no_other_string(make, X):
    with pytest.raises(InvalidParameterError, match="verbose"):
        make(verbose="loud").fit(X)


@pytest.mark.parametrize(
    "estimator",
    [
        PretrainedImageFeatures,
        PretrainedImageClassifier,
        PretrainedTextEmbeddings,
        FineTuneClassifier,
        FineTuneRegressor,
    ],
)
def test_verbose_is_auto_by_default_and_clone_keeps_it(estimator):
    est = estimator()
    assert est.get_params()["verbose"] == "auto"
    assert clone(est).get_params()["verbose"] == "auto"
    assert clone(estimator(verbose=0)).get_params()["verbose"] == 0


@pytest.mark.parametrize(("make", "X"), ESTIMATORS)
def test_feature_estimators_measure_their_batch_size(make, X):
    make(batch_size=None).fit(X)


def test_fine_tuning_needs_a_batch_size():
    clf = FineTuneClassifier("test_tiny_cnn", batch_size=None, max_epochs=1)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        clf.fit(IMAGES, [0, 1])


@pytest.mark.parametrize(
    "make", [PretrainedTextEmbeddings, lambda b, **kw: FineTuneClassifier(b, **kw)]
)
def test_text_estimators_share_one_max_length_rule(make):
    """At least 2 tokens (room for the special tokens), at most the model's."""
    est = make("test_tiny_bert", max_length=1)
    with pytest.raises(InvalidParameterError, match=r"max_length.*\[2, inf\)"):
        est.fit(TEXTS, [0, 1])
    est.set_params(max_length=10_000)
    with pytest.raises(ValueError, match="max_length=10000 exceeds what"):
        est.fit(TEXTS, [0, 1])


class _Recorder(BaseEstimator):
    """Writes fitted, private and new state, then fails if asked."""

    _parameter_constraints = {"fail": ["boolean"]}

    def __init__(self, fail=False):
        self.fail = fail

    @fit_context
    def fit(self, X=None):
        self.coef_ = "new"
        self._spec = "new"
        self.history_.append("new")
        self.extra_ = "new"
        if self.fail:
            raise KeyboardInterrupt
        return self


def test_a_failed_fit_restores_every_attribute_that_is_not_a_parameter():
    est = _Recorder()
    est.coef_, est._spec, est.history_ = "old", "old", ["old"]
    est.set_params(fail=True)
    with pytest.raises(KeyboardInterrupt):
        est.fit()
    assert vars(est) == {
        "fail": True,
        "coef_": "old",
        "_spec": "old",
        "history_": ["old"],
    }
    est.set_params(fail=False).fit()
    assert (est.coef_, est._spec, est.history_) == ("new", "new", ["old", "new"])


def test_a_failed_first_fit_leaves_nothing():
    est = _Recorder(fail=True)
    est.history_ = []
    with pytest.raises(KeyboardInterrupt):
        est.fit()
    assert vars(est) == {"fail": True, "history_": []}


def test_scikit_learn_can_skip_the_validation():
    est = PretrainedWordVectors(WORDS, pooling="median")
    with pytest.raises(InvalidParameterError, match="pooling"):
        est.fit(TEXTS)
    with sklearn.config_context(skip_parameter_validation=True):
        est.fit(TEXTS)  # the invalid pooling only fails where it is used
    with pytest.raises(InvalidParameterError):
        est.fit(TEXTS)
