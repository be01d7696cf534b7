"""The probe head start (finetune/_probe.py, LP-FT): the new head's output layer
starts as a convex probe on the frozen features."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import StratifiedKFold
from torch import nn

from skltransfer import FineTuneClassifier, FineTuneRegressor, PretrainedTextEmbeddings
from skltransfer.finetune import _probe
from skltransfer.finetune._probe import (
    PROBE_CS,
    RIDGE_ALPHAS,
    _fold_losses,
    _lbfgs_fit,
    _newton_fit,
    _newton_fits,
    _past_the_minimum,
    _path,
    _span,
    choose_C,
    weighted_mean_se,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _features(backbone, X):
    body = backbone.to_backbone_spec().load() if hasattr(backbone, "fit") else backbone
    with torch.no_grad():
        return body.forward_features(torch.as_tensor(X)).double().numpy()


def _probe_space(F_train):
    """The probe's scaling fitted on ``F_train``: centred, over one common scale."""
    mean = F_train.mean(axis=0)
    scale = np.sqrt(np.mean((F_train - mean) ** 2))
    return lambda F: (F - mean) / scale


def _scaled(F):
    return _probe_space(F)(F)


def _exact_lr(**params):
    """LogisticRegression solved to its optimum (the probe's solver for
    few-shot problems is exact; lbfgs at its default tolerance is 1e-3 off
    in probability)."""
    return LogisticRegression(tol=1e-10, max_iter=10_000, **params)


def test_probe_alone_equals_logistic_regression(small_digits, source):
    X, y = small_digits
    X_tr, y_tr, X_te = X[y >= 5][:80], y[y >= 5][:80], X[y >= 5][80:300]
    clf = FineTuneClassifier(source, max_epochs=0, random_state=0).fit(X_tr, y_tr)
    assert clf.n_steps_ == 0 and clf.n_iter_ == 0 and clf.best_epoch_ == 0
    F_tr, F_te = _features(source, X_tr), _features(source, X_te)
    to_probe = _probe_space(F_tr)
    lr = _exact_lr(C=clf.head_start_["C"])
    lr.fit(to_probe(F_tr), y_tr)
    expected = lr.predict_proba(to_probe(F_te))
    np.testing.assert_allclose(clf.predict_proba(X_te), expected, atol=1e-4)
    np.testing.assert_array_equal(clf.predict(X_te), lr.predict(to_probe(F_te)))


def test_text_probe_sees_the_embeddings_of_PretrainedTextEmbeddings():
    """Unit-length mean-pooled embeddings, as the transformer gives them (at
    their raw length, a probe of 8 movie snippets per class lost 8 points
    on tweets)."""
    texts = [
        "a good film",
        "a great and moving story",
        "loved it",
        "fine acting",
        "a bad film",
        "dull and far too long for what it says",
        "awful",
        "boring",
    ] * 2
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 2)
    tests = ["what a good film", "so long and dull", "I loved the acting", "bad"]
    clf = FineTuneClassifier("test_tiny_bert", contrastive=False, random_state=0)
    clf.fit(texts, labels)
    assert clf.n_iter_ == 0
    embed = PretrainedTextEmbeddings("test_tiny_bert").fit(texts)
    F_tr, F_te = embed.transform(texts), embed.transform(tests)
    np.testing.assert_allclose(np.linalg.norm(F_tr, axis=1), 1, rtol=1e-5)
    to_probe = _probe_space(F_tr.astype(np.float64))
    lr = _exact_lr(C=clf.head_start_["C"])
    lr.fit(to_probe(F_tr), labels)
    expected = lr.predict_proba(to_probe(F_te))
    np.testing.assert_allclose(clf.predict_proba(tests), expected, atol=1e-4)


@pytest.mark.usefixtures("full_probe_grid")
def test_probe_chooses_C_by_cross_validation(small_digits, source):
    X, y = small_digits
    X_tr, y_tr = X[y >= 5][:100], y[y >= 5][:100]
    clean = FineTuneClassifier(source, max_epochs=0, random_state=0).fit(X_tr, y_tr)
    # Labels that are noise: the CV must pick a stronger regularisation.
    noisy = np.random.default_rng(0).permutation(y_tr)
    shuffled = FineTuneClassifier(source, max_epochs=0, random_state=0)
    shuffled.fit(X_tr, noisy)
    assert shuffled.head_start_["C"] < clean.head_start_["C"]
    # Every C predicts noise alike: the rule takes the strongest regularisation.
    assert shuffled.head_start_["C"] == PROBE_CS[0]


@pytest.mark.usefixtures("full_probe_grid")
@pytest.mark.parametrize(("n", "d", "k"), [(10, 96, 2), (11, 96, 3), (40, 6, 4)])
def test_the_newton_path_is_logistic_regression_at_every_C(n, d, k):
    """Few-shot folds (fewer samples than features) and more samples than
    features: the reduced problem has the same optimum."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % k
    Z = rng.normal(size=(n, d))
    Z[:, :k] += 2 * np.eye(k)[y]
    weights = rng.uniform(0.5, 2.0, n)
    Z_test = rng.normal(size=(30, d))
    assert _newton_fits(Z, y)
    path = list(_path(_newton_fit, Z, y, weights, Z_test))
    assert len(path) == len(PROBE_CS)
    for C, (classes, proba) in zip(PROBE_CS, path, strict=True):
        lr = _exact_lr(C=C).fit(Z, y, sample_weight=weights)
        np.testing.assert_array_equal(classes, lr.classes_)
        np.testing.assert_allclose(proba, lr.predict_proba(Z_test), atol=2e-4)
    # L-BFGS, for problems too large for Newton's method, stops where
    # scikit-learn's lbfgs does at its defaults: close to the optimum where
    # the regularisation is strong, within a few hundredths of a probability
    # where it is weak and the objective flat (scikit-learn's own lbfgs was
    # 0.32 off at C=100 on the three-class problem).
    lbfgs = _path(_lbfgs_fit, Z, y, weights, Z_test)
    for C, (_, a), (_, b) in zip(PROBE_CS, path, lbfgs, strict=True):
        np.testing.assert_allclose(a, b, atol=0.01 if C <= 1 else 0.13)


def test_newton_runs_where_its_hessian_is_small():
    rng = np.random.default_rng(0)
    assert _newton_fits(rng.normal(size=(30, 1280)), np.arange(30) % 10)
    assert not _newton_fits(rng.normal(size=(200, 1280)), np.arange(200) % 10)
    assert _newton_fits(rng.normal(size=(300, 384)), np.arange(300) % 2)


def test_the_span_factors_through_the_smaller_side():
    """Wide (few-shot) and tall (many texts of few features) alike: the
    Gram matrix is the square of the smaller side, never of the samples of a
    tall problem."""
    rng = np.random.default_rng(0)
    for n, d in [(30, 96), (400, 12)]:
        Z = rng.normal(size=(n, d))
        X, Vt = _span(Z)
        assert X.shape == (n, min(n, d)) and Vt.shape == (min(n, d), d)
        np.testing.assert_allclose(X @ Vt, Z, atol=1e-10)
        np.testing.assert_allclose(Vt @ Vt.T, np.eye(min(n, d)), atol=1e-10)
    low_rank = rng.normal(size=(50, 5)) @ rng.normal(size=(5, 80))
    X, Vt = _span(low_rank)
    assert X.shape == (50, 5)
    np.testing.assert_allclose(X @ Vt, low_rank, atol=1e-9)


def test_the_path_stops_only_after_rising_twice_out_of_the_band():
    se = np.full(5, 0.1)
    assert _past_the_minimum(np.array([3.0, 2.0, 1.0, 1.5, 2.0]), se)
    # Still within one standard error of the best: it may be the choice.
    assert not _past_the_minimum(np.array([3.0, 2.0, 1.0, 1.05, 1.5]), se)
    # Once out of the band is not twice.
    assert not _past_the_minimum(np.array([3.0, 2.0, 1.0, 1.5]), se[:4])
    # Falling again: a new minimum may follow.
    assert not _past_the_minimum(np.array([3.0, 2.0, 1.0, 1.6, 1.5]), se)


@pytest.mark.usefixtures("full_probe_grid")
def test_choice_of_C_stops_early_and_chooses_as_the_whole_path(monkeypatch):
    """The weak regularisations past the minimum are the slowest fits; the
    choice skips them and still takes the C that the whole path gives."""
    rng = np.random.default_rng(0)
    n, d, k = 150, 200, 5  # L-BFGS, not Newton
    y = np.arange(n) % k
    Z = rng.normal(size=(n, d))
    Z[:, :k] += 1.5 * np.eye(k)[y]
    seed = 3
    folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(Z, y))
    losses = np.empty((len(PROBE_CS), n))
    for train, test in folds:
        losses[:, test] = np.array(list(_fold_losses(Z, y, train, test, None, None)))
    mean, se = weighted_mean_se(losses, np.ones(n))
    best = int(np.argmin(mean))
    expected = PROBE_CS[int(np.flatnonzero(mean <= mean[best] + se[best])[0])]
    assert best < len(PROBE_CS) - 3  # the curve rises after its minimum

    steps = []
    real = _probe._fold_losses

    def counted(*args):
        for row in real(*args):
            steps.append(1)
            yield row

    monkeypatch.setattr(_probe, "_fold_losses", counted)
    assert choose_C(Z, y, None, seed) == expected
    assert len(steps) < 3 * len(PROBE_CS)

    # The folds in threads: the same losses, so the same choice and stop.
    monkeypatch.setattr(_probe, "_THREADED_SIZE", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    threaded = _probe._SCIPY_VERSION >= (1, 15)  # earlier L-BFGS-B: one at a time
    assert _probe._fold_workers(Z, 3) == (3 if threaded else 1)
    serial = len(steps)
    assert choose_C(Z, y, None, seed) == expected
    assert len(steps) == 2 * serial


def test_one_standard_error_statistics():
    losses = np.array([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 4.0, 4.0]])
    weights = np.array([1.0, 1.0, 2.0, 0.0])
    mean, se = weighted_mean_se(losses, weights)
    np.testing.assert_allclose(mean, [9 / 4, 2.0])
    var = np.average((losses[0] - 9 / 4) ** 2, weights=weights)
    n_eff = 4**2 / 6
    np.testing.assert_allclose(se[0], np.sqrt(var / n_eff))


def test_head_start_honours_class_weight(small_digits, source):
    X, y = small_digits
    X_tr, y_tr, X_te = X[y >= 5][:80], y[y >= 5][:80], X[y >= 5][80:400]
    weights = {5: 50.0}
    clf = FineTuneClassifier(
        source, max_epochs=0, class_weight=weights, random_state=0
    ).fit(X_tr, y_tr)
    plain = FineTuneClassifier(source, max_epochs=0, random_state=0).fit(X_tr, y_tr)
    # More predictions of the up-weighted class, as a weighted logistic regression.
    assert (clf.predict(X_te) == 5).sum() > (plain.predict(X_te) == 5).sum()
    F_tr, F_te = _features(source, X_tr), _features(source, X_te)
    to_probe = _probe_space(F_tr)
    lr = _exact_lr(C=clf.head_start_["C"], class_weight=weights)
    lr.fit(to_probe(F_tr), y_tr)
    np.testing.assert_allclose(
        clf.predict_proba(X_te), lr.predict_proba(to_probe(F_te)), atol=1e-4
    )


def test_head_start_honours_sample_weight(small_digits, source):
    X, y = small_digits
    X_tr, y_tr, X_te = X[y >= 5][:80], y[y >= 5][:80], X[y >= 5][80:300]
    w = np.where(y_tr == 7, 20.0, 1.0)
    clf = FineTuneClassifier(source, max_epochs=0, random_state=0)
    clf.fit(X_tr, y_tr, sample_weight=w)
    Z = _scaled(_features(source, X_tr))
    F_tr, F_te = _features(source, X_tr), _features(source, X_te)
    to_probe = _probe_space(F_tr)
    lr = _exact_lr(C=clf.head_start_["C"])
    lr.fit(Z, y_tr, sample_weight=w / w.mean())  # only the ratios count
    np.testing.assert_allclose(
        clf.predict_proba(X_te), lr.predict_proba(to_probe(F_te)), atol=1e-4
    )


def test_binary_head_start_matches_the_binary_probe(small_digits, source):
    X, y = small_digits
    X_tr, y_tr = X[:120], (y[:120] % 2).astype(bool)
    clf = FineTuneClassifier(source, max_epochs=0, random_state=0).fit(X_tr, y_tr)
    Z = _scaled(_features(source, X_tr))
    lr = _exact_lr(C=clf.head_start_["C"])
    lr.fit(Z, y_tr)
    np.testing.assert_allclose(clf.predict_proba(X_tr), lr.predict_proba(Z), atol=1e-4)
    assert clf.predict(X_tr).dtype == bool


def test_multilabel_head_start(small_digits, source):
    X, y = small_digits
    Y = np.stack([y[:150] % 2, (y[:150] > 4), np.ones(150)], axis=1).astype(int)
    clf = FineTuneClassifier(source, max_epochs=0, random_state=0).fit(X[:150], Y)
    assert len(clf.head_start_["C"]) == 2  # the constant label keeps its prior
    proba = clf.predict_proba(X[:150])
    assert np.all(proba[:, 2] > 0.99)
    assert (clf.predict(X[:150])[:, :2] == Y[:, :2]).mean() > 0.8


def test_regressor_head_start_equals_ridge(small_digits, source):
    X, y = small_digits
    target = X[:150] @ np.linspace(-1, 1, 64) + 0.1 * y[:150]
    reg = FineTuneRegressor(source, max_epochs=0, random_state=0)
    reg.fit(X[:150], target)
    Z = _scaled(_features(source, X[:150]))
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(Z, (target - target.mean()) / target.std())
    assert reg.head_start_["alpha"] == pytest.approx(ridge.alpha_)
    expected = ridge.predict(Z) * target.std() + target.mean()
    np.testing.assert_allclose(reg.predict(X[:150]), expected, rtol=1e-4, atol=1e-3)


def test_mlp_head_output_layer_is_probed(small_digits, source):
    X, y = small_digits
    clf = FineTuneClassifier(source, head=(16,), max_epochs=0, random_state=0)
    clf.fit(X[y >= 5][:100], y[y >= 5][:100])
    # The hidden layer keeps its initialisation; the output layer is a probe
    # on it, so it already separates the training classes well.
    assert clf.score(X[y >= 5][:100], y[y >= 5][:100]) > 0.6
    random = FineTuneClassifier(
        source, head=(16,), head_init="random", max_epochs=1, lr=1e-6, random_state=0
    ).fit(X[y >= 5][:100], y[y >= 5][:100])
    assert random.score(X[y >= 5][:100], y[y >= 5][:100]) < 0.5


def test_never_worse_than_the_probe_with_a_frozen_body(small_digits, source):
    X, y = small_digits
    X_tr, y_tr, X_te, y_te = (
        X[y >= 5][:60],
        y[y >= 5][:60],
        X[y >= 5][60:],
        y[y >= 5][60:],
    )
    probe = FineTuneClassifier(source, unfreeze=0, max_epochs=0, random_state=0)
    trained = FineTuneClassifier(source, unfreeze=0, random_state=0)
    probe_score = probe.fit(X_tr, y_tr).score(X_te, y_te)
    assert trained.fit(X_tr, y_tr).score(X_te, y_te) >= probe_score - 0.01


def test_batchnorm_of_trainable_groups_is_re_estimated_before_the_probe(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        "test_tiny_cnn", image_shape=(8, 8), unfreeze=1, max_epochs=0, random_state=0
    ).fit(X[:64], y[:64])
    body = clf.module_.backbone.body
    top = body.get_submodule(clf.layer_groups_[-1])
    bn = next(m for m in top.modules() if isinstance(m, nn.BatchNorm2d))
    # Running statistics equal to the statistics of the training inputs at
    # that layer (a cumulative average over the training batches).
    captured = []
    hook = bn.register_forward_pre_hook(lambda _m, a: captured.append(a[0]))
    clf.predict(X[:64])
    hook.remove()
    acts = torch.cat(captured)
    np.testing.assert_allclose(
        bn.running_mean.numpy(), acts.mean(dim=(0, 2, 3)).numpy(), atol=1e-4
    )
    frozen = body.get_submodule(clf.layer_groups_[0])
    pretrained = FineTuneClassifier("test_tiny_cnn", image_shape=(8, 8))
    pretrained_bn = next(
        m
        for m in pretrained._load_backbone()
        .body.get_submodule(clf.layer_groups_[0])
        .modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    frozen_bn = next(m for m in frozen.modules() if isinstance(m, nn.BatchNorm2d))
    torch.testing.assert_close(frozen_bn.running_mean, pretrained_bn.running_mean)
