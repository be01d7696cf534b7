"""What the fine-tuning estimators share (finetune/_base.py): a fit completes or
leaves the estimator as it was; fitted estimators as sources; seeds, warm
starts and training length; parameters checked at fit."""

import pickle

import numpy as np
import pytest
import torch
from _common_finetune import FAST, IMAGE, mlp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, cross_val_score
from torch import nn

from skltransfer import FineTuneClassifier
from skltransfer.backbones import ModuleBackbone
from skltransfer.finetune import _base
from skltransfer.finetune._base import MIN_EPOCHS, MIN_STEPS

pytestmark = pytest.mark.usefixtures("one_thread")


def _state(clf):
    return {k: v.clone() for k, v in clf.module_.state_dict().items()}


def _same_fit(clf, before_state, before_proba, X):
    after = clf.module_.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before_state.items())
    np.testing.assert_array_equal(clf.predict_proba(X), before_proba)


# -- a fit completes or leaves the estimator as it was -----------------------------


def test_failed_refit_leaves_the_previous_fit(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST).fit(X[:60], y[:60] % 2)
    state, proba = _state(clf), clf.predict_proba(X[:10])
    attributes = set(vars(clf))
    with pytest.raises(ValueError, match="unfreeze"):
        clf.set_params(unfreeze=99).fit(X[:60], y[:60] % 4)
    assert set(vars(clf)) == attributes
    assert clf.classes_.tolist() == [0, 1]
    _same_fit(clf, state, proba, X[:10])


def test_interrupted_fit_leaves_the_previous_fit(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST).fit(X[:60], y[:60])
    state, proba = _state(clf), clf.predict_proba(X[:10])
    n_iter, best = clf.n_iter_, clf.best_epoch_

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    clf._run_epoch = interrupt
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[:80], y[:80])
    del clf._run_epoch
    assert (clf.n_iter_, clf.best_epoch_) == (n_iter, best)
    _same_fit(clf, state, proba, X[:10])


def test_interrupted_first_fit_leaves_nothing(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    clf._run_epoch = interrupt
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[:60], y[:60])
    assert not [k for k in vars(clf) if k.endswith("_") and not k.startswith("_")]
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])


def test_warm_start_refit_that_diverges_keeps_the_previous_model(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST, warm_start=True).fit(X[:60], y[:60])
    state, proba = _state(clf), clf.predict_proba(X[:10])
    history = list(clf.history_)
    with pytest.raises(FloatingPointError, match="diverged at epoch 4"):
        clf.set_params(lr=1e12).fit(X[:60], y[:60])
    assert clf.history_ == history and clf.n_iter_ == 3
    _same_fit(clf, state, proba, X[:10])


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _round_trip(clf):
    """``clf`` through a pickle by reference (the default)."""
    return pickle.loads(pickle.dumps(clf))


def test_interrupted_refit_then_pickle_keeps_what_the_fit_trained(small_digits):
    """The record of trained entries a pickle by reference is built from comes
    back with the weights: the stem the first fit trained is not reloaded
    pretrained."""
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze="all", random_state=0)
    proba = clf.fit(X[:60], y[:60]).predict_proba(X[60:70])
    clf._run_epoch = _interrupt
    with pytest.raises(KeyboardInterrupt):
        clf.set_params(unfreeze=1).fit(X[:60], y[:60])
    del clf._run_epoch
    np.testing.assert_array_equal(_round_trip(clf).predict_proba(X[60:70]), proba)


def test_failed_refit_on_another_backbone_then_pickle(small_digits):
    """The pretrained spec and fingerprint the pickle reloads from are those of
    the fitted network, not of the backbone the failed refit loaded."""
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze="all", random_state=0)
    proba = clf.fit(X[:60], y[:60]).predict_proba(X[60:70])
    with pytest.raises(ValueError, match="at least two classes"):
        clf.set_params(backbone="test_tiny_vit", unfreeze=1).fit(X[:60], 0 * y[:60])
    clf.set_params(backbone=IMAGE["backbone"])
    np.testing.assert_array_equal(_round_trip(clf).predict_proba(X[60:70]), proba)


def test_interrupted_refit_keeps_the_kind_of_labels(small_digits):
    X, y = small_digits
    Y = np.column_stack([y[:60] % 2, y[:60] < 5]).astype(int)
    clf = FineTuneClassifier(mlp(), **FAST).fit(X[:60], Y)
    clf._run_epoch = _interrupt
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[:60], y[:60])
    del clf._run_epoch
    assert clf.predict(X[:5]).shape == (5, 2)  # still multi-label


def test_a_fit_from_scratch_replaces_an_unpickled_network(small_digits):
    """Refitted from scratch, an estimator unpickled with its optimiser state
    pickles the new fit only (the old state had another parameter grouping)."""
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze=1, random_state=0, warm_start=True)
    loaded = _round_trip(clf.fit(X[:60], y[:60]))
    loaded.set_params(warm_start=False, unfreeze=2).fit(X[:60], y[:60])
    proba = loaded.predict_proba(X[60:70])
    np.testing.assert_array_equal(_round_trip(loaded).predict_proba(X[60:70]), proba)


# -- a backbone with non-finite outputs ----------------------------------------------


class NaNRows(nn.Module):
    """A small MLP body whose output is NaN where the first input exceeds 2."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 16)

    def forward(self, x):
        return torch.where(x[:, :1] > 2, torch.nan, torch.relu(self.fc(x)))


def _digits_marked_at(small_digits, positions, n=40):
    X, y = small_digits
    X = X[:n].copy()
    X[list(positions), 0] = 5.0
    return X, y[:n] % 2


@pytest.mark.parametrize(
    "params",
    [{}, {"head_init": "random"}, {"early_stopping": True}],
    ids=["probe", "random-head", "validation-split"],
)
def test_a_backbone_with_non_finite_outputs_is_named_with_the_samples(
    small_digits, params
):
    """Neither the data (the probe's "X contains NaN") nor the learning rate
    ("training diverged") is blamed: the backbone and the samples are named,
    by their positions in X, also when a validation split reorders them."""
    X, y = _digits_marked_at(small_digits, [3, 11])
    clf = FineTuneClassifier(NaNRows(), **FAST, **params)
    expected = r"backbone 'NaNRows' produced non-finite outputs .* 2 of 40 samples"
    with pytest.raises(ValueError, match=expected + r", at positions 3, 11 of X\."):
        clf.fit(X, y)
    assert not hasattr(clf, "module_")


def test_divergence_of_a_finite_backbone_is_still_divergence(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST, head_init="random", lr=1e12)
    with pytest.raises(FloatingPointError, match="Training diverged"):
        clf.fit(X[:60], y[:60])


def test_non_finite_predictions_name_the_samples(small_digits):
    X, y = _digits_marked_at(small_digits, [])
    clf = FineTuneClassifier(NaNRows(), **FAST).fit(X, y)
    marked, _ = _digits_marked_at(small_digits, [1], n=3)
    with pytest.raises(ValueError, match="fitted network .* at position 1 of X"):
        clf.predict_proba(marked)


# -- fitted estimators as sources --------------------------------------------------


class DigitsCNN(nn.Module):
    """A small CNN on flattened 8x8 digits; its output feeds the new head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU())

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x.view(-1, 1, 8, 8))))


@pytest.mark.slow  # trains a source and two targets to convergence
def test_pretrained_source_beats_scratch_on_50_target_samples(small_digits):
    # Same network and training recipe for both arms; on 8x8 digits a network
    # trained from scratch catches up given many more epochs (see
    # benchmarks/bench_finetune_digits.py), the pretrained one starts ahead.
    X, y = small_digits
    source_mask = y < 5
    recipe = {"unfreeze": "all", "lr": 1e-2, "lr_decay": 1.0, "max_epochs": 5}
    torch.manual_seed(0)
    source = FineTuneClassifier(DigitsCNN(), **{**recipe, "max_epochs": 15})
    source.fit(X[source_mask], y[source_mask])
    Xt, yt = X[~source_mask], y[~source_mask]
    gains = []
    for seed in range(3):
        idx = np.random.default_rng(seed).permutation(len(yt))
        fit_idx, test_idx = idx[:50], idx[50:]
        scores = []
        for backbone in (source, DigitsCNN()):
            clf = FineTuneClassifier(backbone, **recipe, random_state=seed)
            clf.fit(Xt[fit_idx], yt[fit_idx])
            scores.append(clf.score(Xt[test_idx], yt[test_idx]))
        gains.append(scores[0] - scores[1])
    assert np.mean(gains) > 0.05, gains


def test_source_model_spec_survives_clone(small_digits):
    X, y = small_digits
    source = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=2).fit(X[:60], y[:60])
    spec = source.to_backbone_spec()
    assert isinstance(spec, ModuleBackbone)
    target = clone(FineTuneClassifier(spec, unfreeze=1, max_epochs=1))
    target.fit(X[60:120], y[60:120] % 2)
    assert target.layer_groups_ == source.layer_groups_
    with pytest.raises(NotFittedError, match="to_backbone_spec"):
        FineTuneClassifier(clone(source)).fit(X[:10], y[:10])


def test_bare_source_in_grid_search_names_the_fix(small_digits):
    X, y = small_digits
    source = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=1).fit(X[:60], y[:60])
    target = FineTuneClassifier(source, max_epochs=1)
    search = GridSearchCV(target, {"unfreeze": [0, 1]}, cv=2)
    fix = r"backbone=FrozenEstimator\(source\).*backbone=source\.to_backbone_spec\(\)"
    with pytest.raises(ValueError, match=fix):  # every fit failed, each with that
        search.fit(X[60:120], y[60:120] % 2)


@pytest.mark.slow  # seven fits at the default training length
def test_frozen_estimator_source_in_grid_search(small_digits, source):
    X, y = small_digits
    before = {k: v.clone() for k, v in source.module_.state_dict().items()}
    target = FineTuneClassifier(FrozenEstimator(source), max_epochs=5, random_state=0)
    search = GridSearchCV(target, {"unfreeze": [0, 1]}, cv=2, error_score="raise")
    Xt, yt = X[y >= 5][:80], y[y >= 5][:80]
    search.fit(Xt, yt)
    assert search.best_estimator_.layer_groups_ == source.layer_groups_
    # Both depths fitted and scored (a failed fit would raise), and differ.
    scores = search.cv_results_["mean_test_score"]
    assert (scores > 0.7).all() and scores[0] != scores[1]
    assert search.best_estimator_.n_trainable_groups_ == search.best_params_["unfreeze"]
    # cross_val_score clones it too.
    assert cross_val_score(target, Xt, yt, cv=2, error_score="raise").min() > 0.7
    # The source itself is never modified by the searches.
    for key, value in source.module_.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_unfitted_source_names_both_ways(small_digits):
    X, y = small_digits
    unfitted = FineTuneClassifier(mlp())
    with pytest.raises(Exception, match=r"FrozenEstimator\(source\).*to_backbone_spec"):
        FineTuneClassifier(unfitted).fit(X[:20], y[:20])


# -- seeds, warm starts and what a fit keeps ---------------------------------------


@pytest.mark.slow  # two fits at the default training length (300 steps)
def test_seeded_default_fits_are_identical(small_digits, source):
    X, y = small_digits
    a = FineTuneClassifier(source, random_state=3).fit(X[:60], y[:60])
    b = FineTuneClassifier(source, random_state=3).fit(X[:60], y[:60])
    np.testing.assert_array_equal(
        a.predict_proba(X[60:200]), b.predict_proba(X[60:200])
    )


def test_random_state_gives_identical_predictions(small_digits):
    X, y = small_digits
    state = torch.random.get_rng_state()
    kw = {**IMAGE, "unfreeze": 2, "augmentation": "light", "head_dropout": 0.3}
    fits = [
        FineTuneClassifier(**kw, random_state=s).fit(X[:60], y[:60]) for s in (7, 7, 8)
    ]
    probas = [f.predict_proba(X[60:80]) for f in fits]
    assert np.array_equal(probas[0], probas[1])
    assert not np.array_equal(probas[0], probas[2])
    assert torch.equal(state, torch.random.get_rng_state())


def test_warm_start_continues(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, warm_start=True, random_state=0)
    clf.fit(X[:60], y[:60])
    module, first = clf.module_, clf.predict_proba(X[:10])
    clf.fit(X[:60], y[:60])
    assert clf.module_ is module and clf.n_iter_ == 4 and len(clf.history_) == 4
    assert not np.array_equal(first, clf.predict_proba(X[:10]))
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[:60], y[:60] % 2)
    cold = clone(clf).set_params(warm_start=False).fit(X[:60], y[:60])
    assert cold.n_iter_ == 2


def test_a_fitted_estimator_keeps_no_training_state(small_digits, monkeypatch):
    from skltransfer.finetune import _base

    released = []
    monkeypatch.setattr(_base, "release_freed_memory", lambda: released.append(1))
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=1).fit(X[:40], y[:40])
    # The fit's peak is handed back and only the weights stay: a search's
    # worker does not grow with the layers its candidates train.
    assert released == [1]
    assert all(p.grad is None for p in clf.module_.parameters())
    assert not clf.optimizer_.state  # the moments serve only a warm start
    warm = clone(clf).set_params(warm_start=True).fit(X[:40], y[:40])
    assert warm.optimizer_.state and len(released) == 2


# -- training length, depth and head start -----------------------------------------


@pytest.mark.parametrize(
    "n, batch_size, epochs",
    [(10, 32, MIN_STEPS), (50, 32, MIN_STEPS // 2), (64, 32, MIN_STEPS // 2),
     (1000, 32, MIN_EPOCHS), (100_000, 32, MIN_EPOCHS), (33, 32, MIN_STEPS)],
)  # fmt: skip
def test_auto_epochs_rule(n, batch_size, epochs):
    clf = FineTuneClassifier(batch_size=batch_size)
    assert clf._n_epochs(n) == epochs
    assert FineTuneClassifier(max_epochs=7)._n_epochs(n) == 7


def test_tiny_data_trains_the_minimum_steps_on_every_sample(small_digits, source):
    X, y = small_digits
    X_tr, y_tr = X[y >= 5][:10], y[y >= 5][:10]
    seen = []
    # A random head: a probed linear head on a frozen body would not train.
    clf = FineTuneClassifier(source, unfreeze=0, head_init="random", random_state=0)
    clf.fit(X_tr, y_tr)
    assert clf.n_steps_ == MIN_STEPS and clf.n_iter_ == MIN_STEPS
    # Every sample is in every epoch's single batch: none is dropped.

    def count(module, args):
        if module.training:  # training batches, not the cache's probes
            seen.append(len(args[0]))

    hook = clf.module_.head.register_forward_pre_hook(count)
    clf.set_params(warm_start=True, max_epochs=1).fit(X_tr, y_tr)
    hook.remove()
    assert seen == [10] and clf.n_steps_ == MIN_STEPS + 1


def test_auto_unfreeze_depends_on_the_input_kind(small_digits, source, monkeypatch):
    X, y = small_digits
    module = FineTuneClassifier(source, max_epochs=1).fit(X[:40], y[:40])
    assert module.n_trainable_groups_ == len(module.layer_groups_) == 2
    # From 1,000 training images, the top two groups; the rule is tested at a
    # threshold of 40 so that the fits stay small.
    assert _base.AUTO_DEEPER_IMAGES == 1_000
    monkeypatch.setattr(_base, "AUTO_DEEPER_IMAGES", 40)
    image = FineTuneClassifier("test_tiny_cnn", image_shape=(8, 8), max_epochs=1)
    assert image.fit(X[:39], y[:39]).n_trainable_groups_ == 1
    assert image.fit(X[:40], y[:40]).n_trainable_groups_ == 2
    texts = ["a good film", "great movie", "bad film", "awful movie"] * 3
    text = FineTuneClassifier("test_tiny_bert", max_epochs=1, contrastive=False)
    text.fit(texts, [1, 1, 0, 0] * 3)
    assert text.n_trainable_groups_ == 0
    assert text.cached_groups_ == len(text.layer_groups_)  # features run once
    # With the top block training, the blocks below run once too (token states).
    refit = text.set_params(unfreeze=1).fit(texts, [1, 1, 0, 0] * 3)
    assert refit.cached_groups_ == len(text.layer_groups_) - 1


def test_random_head_init_is_still_available(small_digits, source):
    X, y = small_digits
    clf = FineTuneClassifier(source, head_init="random", max_epochs=2, random_state=0)
    clf.fit(X[:60], y[:60])
    assert not hasattr(clf, "head_start_")
    with pytest.raises(ValueError, match="head_init='probe'"):
        FineTuneClassifier(source, head_init="random", max_epochs=0).fit(X[:60], y[:60])


# -- bad parameters, weights and backbones -----------------------------------------


@pytest.mark.parametrize(
    "params, error",
    [
        ({"head": "deep"}, ValueError),
        ({"head": (8, 0)}, ValueError),
        ({"lr": -1.0}, ValueError),
        ({"unfreeze": "some"}, ValueError),
        ({"backbone": 3}, TypeError),
    ],
)
def test_bad_parameters(small_digits, params, error):
    X, y = small_digits
    with pytest.raises(error):
        FineTuneClassifier(**{**IMAGE, **params}).fit(X[:20], y[:20])


@pytest.mark.parametrize("w", [[-1.0] * 40, [0.0] * 40, [np.nan] * 40, [1.0] * 39])
def test_bad_sample_weight(small_digits, source, w):
    X, y = small_digits
    with pytest.raises(ValueError):
        FineTuneClassifier(source, max_epochs=1).fit(X[:40], y[:40], sample_weight=w)


def test_backbone_that_cannot_run_on_x_says_so(small_digits):
    X, y = small_digits
    with pytest.raises(ValueError, match=r"cannot run on X: .* shape \(2, 10\)"):
        FineTuneClassifier(mlp(), max_epochs=1).fit(X[:20, :10], y[:20])


# -- never below the probe: the head start, the interpolation, the cross-fit -------


def test_a_probed_linear_head_on_a_frozen_body_is_the_probe(small_digits, source):
    X, y = small_digits
    X_tr, y_tr, X_te = X[y >= 5][:60], y[y >= 5][:60], X[y >= 5][60:200]
    clf = FineTuneClassifier(source, unfreeze=0, random_state=0).fit(X_tr, y_tr)
    # The probe is the regularised optimum of a linear head on fixed
    # features: training it further only overfits, so it does not train.
    assert clf.n_steps_ == 0 and clf.n_iter_ == 0
    probe = FineTuneClassifier(source, unfreeze=0, max_epochs=0, random_state=0)
    probe.fit(X_tr, y_tr)
    np.testing.assert_array_equal(clf.predict_proba(X_te), probe.predict_proba(X_te))
    # An explicit number of epochs, augmentation or an MLP head still train.
    assert clf.set_params(max_epochs=2).fit(X_tr, y_tr).n_iter_ == 2
    mlp_head = FineTuneClassifier(source, unfreeze=0, head=(8,), random_state=0)
    assert mlp_head.fit(X_tr, y_tr).n_iter_ >= MIN_EPOCHS


def _fit_on_two_threads(monkeypatch, clf):
    """Fit ``clf`` on 20 samples of 16 features with torch on two threads;
    returns the thread counts its training loops ran with, and the count
    after the fit."""
    seen = []
    fit_loop = _base.BaseFineTune._fit_loop

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit_loop(self, *args, **kwargs)

    monkeypatch.setattr(_base.BaseFineTune, "_fit_loop", spy)
    X = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    y = np.repeat([0, 1], 10)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        clf.fit(X, y)
        return seen, torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_a_fit_of_a_head_on_stored_features_trains_on_one_thread(monkeypatch):
    clf = FineTuneClassifier(nn.Identity(), head=(8,), max_epochs=2)
    seen, after = _fit_on_two_threads(monkeypatch, clf)
    assert seen == [1] and after == 2


def test_a_body_that_runs_at_each_step_keeps_its_threads(monkeypatch):
    # Its weights repeat over positions (pixels, tokens) that a count of
    # parameters does not see, so its steps are never taken for small.
    body = nn.Sequential(nn.Linear(16, 8), nn.ReLU())
    clf = FineTuneClassifier(body, unfreeze="all", max_epochs=2)
    seen, after = _fit_on_two_threads(monkeypatch, clf)
    assert clf.n_trainable_groups_ >= 1 and clf.cached_groups_ == 0
    assert seen and set(seen) == {2} and after == 2
