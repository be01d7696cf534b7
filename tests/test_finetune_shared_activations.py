"""Frozen activations kept across fits (finetune/_shared_activations.py): fits
with the same ``cache`` read each other's rows instead of running the frozen
groups, get the results of ``cache=None``, and never read rows of another
model, split point or input setting."""

import os
import threading

import numpy as np
import pytest
from _common_finetune import IMAGE, SENTIMENT_LABELS, SENTIMENT_TEXTS, mlp
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from skltransfer import FineTuneClassifier, FineTuneRegressor, PretrainedTextEmbeddings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data(small_digits):
    X, y = small_digits
    return X[:90], y[:90], X[90:130]


def _image(**kw):
    return FineTuneClassifier(**{**IMAGE, "unfreeze": 1, "random_state": 0, **kw})


def _rows(folder) -> list[str]:
    return [f for _, _, fs in os.walk(folder) for f in fs]


def _distinct(X) -> int:
    """Samples of different content: one row each in the cache."""
    return len({x.tobytes() for x in X})


def test_a_refit_reads_every_row_and_predicts_as_without_cache(
    data, tmp_path, frozen_pass
):
    X, y, X_test = data
    plain = _image().fit(X, y).predict_proba(X_test)
    frozen_pass.clear()
    first = _image(cache=tmp_path).fit(X, y)
    assert sum(frozen_pass) == len(X) and len(_rows(tmp_path)) == _distinct(X)
    frozen_pass.clear()
    second = clone(first).fit(X, y)
    assert frozen_pass == [] and first.cache_status_ == second.cache_status_
    np.testing.assert_array_equal(first.predict_proba(X_test), plain)
    np.testing.assert_array_equal(second.predict_proba(X_test), plain)


def test_overlapping_folds_compute_only_the_new_samples(data, tmp_path, frozen_pass):
    X, y, _ = data
    _image(cache=tmp_path).fit(X[:60], y[:60])
    frozen_pass.clear()
    _image(cache=tmp_path).fit(X[30:], y[30:])
    assert sum(frozen_pass) == 30  # X[60:90]; X[30:60] are read


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"unfreeze": 1}, {"unfreeze": 2}),  # another split point
        ({"unfreeze": 0}, {"unfreeze": 1}),  # the features, then a prefix
        ({}, {"image_size": 24}),  # another input size
        ({}, {"precision": "bf16"}),
    ],
)
def test_other_settings_never_read_these_rows(
    data, tmp_path, frozen_pass, first, second
):
    X, y, X_test = data
    _image(cache=tmp_path, **first).fit(X, y)
    frozen_pass.clear()
    other = _image(cache=tmp_path, **second).fit(X, y)
    assert sum(frozen_pass) == len(X)
    np.testing.assert_array_equal(
        other.predict_proba(X_test), _image(**second).fit(X, y).predict_proba(X_test)
    )


def test_other_weights_never_read_these_rows(small_digits, tmp_path, frozen_pass):
    X, y = small_digits[0][:60], small_digits[1][:60]

    def fit(seed, cache):
        clf = FineTuneClassifier(mlp(seed=seed), unfreeze=1, max_epochs=2, cache=cache)
        return clf.set_params(random_state=0).fit(X, y)

    fit(0, tmp_path)
    frozen_pass.clear()
    other = fit(1, tmp_path)
    assert sum(frozen_pass) == len(X)
    np.testing.assert_array_equal(other.predict(X), fit(1, None).predict(X))


def test_a_regressor_shares_the_classifiers_rows(data, tmp_path, frozen_pass):
    X, y, _ = data
    _image(cache=tmp_path).fit(X, y)
    frozen_pass.clear()
    FineTuneRegressor(**IMAGE, unfreeze=1, cache=tmp_path).fit(X, y.astype(float))
    assert frozen_pass == []


def test_an_unreadable_entry_is_computed_again(data, tmp_path, frozen_pass):
    X, y, X_test = data
    expected = _image(cache=tmp_path).fit(X, y).predict_proba(X_test)
    root, _, names = next((r, d, f) for r, d, f in os.walk(tmp_path) if f)
    with open(os.path.join(root, names[0]), "r+b") as f:
        f.truncate(20)
    frozen_pass.clear()
    again = _image(cache=tmp_path).fit(X, y)
    assert sum(frozen_pass) == 1
    # That sample ran in a batch of its own: equal up to rounding.
    np.testing.assert_allclose(again.predict_proba(X_test), expected, atol=1e-5)


def test_the_plain_path_neither_reads_nor_writes(data, tmp_path):
    X, y, _ = data
    with pytest.warns(match="augmentation"):
        _image(cache=tmp_path, augmentation="noise").fit(X, y)
    _image(cache=tmp_path, cache_frozen=False).fit(X, y)
    assert _rows(tmp_path) == []


def test_concurrent_writers_leave_a_consistent_cache(
    small_digits, tmp_path, frozen_pass
):
    X, y = small_digits[0][:60], small_digits[1][:60]
    # A module's own weights: no random initialisation races between threads.
    module = mlp()

    def clf(cache):
        return FineTuneClassifier(
            module, unfreeze=1, max_epochs=2, random_state=0, cache=cache
        )

    errors = []

    def fit():
        try:
            clf(tmp_path).fit(X, y)
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=fit) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = _rows(tmp_path)
    assert len(names) == _distinct(X) and all(n.endswith(".row") for n in names)
    frozen_pass.clear()
    reread = clf(tmp_path).fit(X, y)
    assert frozen_pass == []
    np.testing.assert_array_equal(reread.predict(X), clf(None).fit(X, y).predict(X))


@pytest.mark.slow  # starts two worker processes
def test_parallel_workers_of_a_search_share_the_cache(data, tmp_path, frozen_pass):
    X, y, X_test = data
    search = GridSearchCV(_image(cache=tmp_path), {"lr": [1e-3, 1e-2]}, cv=3, n_jobs=2)
    search.fit(X, y)
    assert len(_rows(tmp_path)) == _distinct(X)
    frozen_pass.clear()
    again = _image(cache=tmp_path, **search.best_params_).fit(X, y)
    assert frozen_pass == []
    np.testing.assert_array_equal(
        again.predict_proba(X_test), search.predict_proba(X_test)
    )


# -- texts --------------------------------------------------------------------------


def _text(**kw):
    params = {"unfreeze": 1, "max_epochs": 2, "batch_size": 4, "contrastive": False}
    return FineTuneClassifier("test_tiny_bert", random_state=0, **{**params, **kw})


def test_token_states_are_read_back(tmp_path, frozen_pass):
    X, y = SENTIMENT_TEXTS, SENTIMENT_LABELS
    plain = _text().fit(X, y).predict_proba(X)
    _text(cache=tmp_path).fit(X, y)
    frozen_pass.clear()
    second = _text(cache=tmp_path).fit(X, y)
    assert frozen_pass == [] and second.cached_groups_ > 0
    np.testing.assert_allclose(second.predict_proba(X), plain, atol=1e-6)
    frozen_pass.clear()
    _text(cache=tmp_path, max_length=6).fit(X, y)  # another input setting
    assert sum(frozen_pass) == len(X)


def test_frozen_text_features_are_the_embeddings_rows(tmp_path, frozen_pass):
    X, y = SENTIMENT_TEXTS, SENTIMENT_LABELS
    plain = _text(unfreeze=0).fit(X, y).predict_proba(X)
    for normalize in (False, True):
        embeddings = PretrainedTextEmbeddings(
            "test_tiny_bert", normalize=normalize, cache=tmp_path / str(normalize)
        )
        embeddings.fit(X).transform(X)
    frozen_pass.clear()
    reused = _text(unfreeze=0, cache=tmp_path / "False").fit(X, y)
    assert frozen_pass == []
    np.testing.assert_allclose(reused.predict_proba(X), plain, atol=1e-6)
    # Normalised embeddings are other rows than the fine-tuner's features.
    _text(unfreeze=0, cache=tmp_path / "True").fit(X, y)
    assert sum(frozen_pass) == len(X)


def test_embeddings_read_the_fine_tuners_features(tmp_path, monkeypatch):
    X, y = SENTIMENT_TEXTS, SENTIMENT_LABELS
    _text(unfreeze=0, cache=tmp_path).fit(X, y)
    plain = PretrainedTextEmbeddings("test_tiny_bert", normalize=False)
    expected = plain.fit(X).transform(X)
    cached = PretrainedTextEmbeddings("test_tiny_bert", normalize=False, cache=tmp_path)
    monkeypatch.setattr(
        PretrainedTextEmbeddings, "_encode", lambda *a: pytest.fail("computed")
    )
    np.testing.assert_allclose(cached.fit(X).transform(X), expected, atol=1e-6)
