"""The training loop (finetune/_loop.py): validation and early stopping,
divergence, sample weights, precision and progress."""

import warnings

import numpy as np
import pytest
import torch
from _common_finetune import mlp
from sklearn.exceptions import NotFittedError
from torch import nn

from skltransfer import FineTuneClassifier, FineTuneRegressor
from skltransfer.exceptions import SkltransferWarning

pytestmark = pytest.mark.usefixtures("one_thread")


# -- epochs, validation and early stopping -----------------------------------------


def test_history_and_early_stopping(small_digits):
    X, y = small_digits
    # A random head: no head start that the epochs are compared with too.
    clf = FineTuneClassifier(
        mlp(),
        unfreeze="all",
        head_init="random",
        lr=0.05,
        max_epochs=40,
        early_stopping=True,
        n_iter_no_change=2,
        random_state=0,
    ).fit(X[:300], y[:300])
    keys = {"epoch", "train_loss", "valid_loss", "valid_score", "lr", "n_unfrozen"}
    assert keys < set(clf.history_[0])
    losses = [r["valid_loss"] for r in clf.history_]
    assert clf.n_iter_ == len(clf.history_) < 40
    assert clf.best_epoch_ == int(np.argmin(losses)) + 1


def test_validation_keeps_the_probe_when_training_does_not_help(small_digits, source):
    X, y = small_digits
    X_tr, y_tr = X[y >= 5][:200], y[y >= 5][:200]
    # A learning rate this high wrecks the head: the validation loss never
    # beats the head start's, whose weights are then restored.
    clf = FineTuneClassifier(
        source, unfreeze=0, lr=5.0, max_epochs=3, early_stopping=True, random_state=0
    )
    clf.fit(X_tr, y_tr)
    assert clf.best_epoch_ == 0 and clf.n_iter_ == 3
    # The same split and probe without training: the same weights.
    probe = FineTuneClassifier(
        source, unfreeze=0, max_epochs=0, early_stopping=True, random_state=0
    ).fit(X_tr, y_tr)
    np.testing.assert_allclose(clf.predict_proba(X), probe.predict_proba(X), atol=1e-6)
    clf.set_params(early_stopping=False).fit(X_tr, y_tr)  # the wrecked weights
    assert clf.best_epoch_ == 3
    assert np.abs(clf.predict_proba(X) - probe.predict_proba(X)).max() > 0.1


def test_steps_follow_the_epochs(small_digits, source):
    X, y = small_digits
    clf = FineTuneClassifier(source, batch_size=16, max_epochs=3, random_state=0)
    clf.fit(X[:100], y[:100])
    assert clf.n_steps_ == 3 * 7


# -- divergence: non-finite weights are never kept ---------------------------------


@pytest.mark.parametrize("Estimator", [FineTuneClassifier, FineTuneRegressor])
def test_huge_learning_rate_never_keeps_non_finite_weights(small_digits, Estimator):
    X, y = small_digits
    est = Estimator(mlp(), unfreeze="all", lr=1e6, max_epochs=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkltransferWarning)
        try:
            est.fit(X[:100], y[:100].astype(float))
        except FloatingPointError:
            assert not hasattr(est, "module_")  # nothing was fitted before
            return
    params = est.module_.state_dict().values()
    assert all(torch.isfinite(p).all() for p in params)
    out = est.predict_proba(X[:20]) if hasattr(est, "predict_proba") else None
    assert out is None or np.isfinite(out).all()


def test_huge_learning_rate_on_an_image_backbone(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        "test_tiny_cnn", image_shape=(8, 8), lr=1e6, max_epochs=3, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkltransferWarning)
        try:
            clf.fit(X[:60], y[:60])
        except FloatingPointError:
            assert not hasattr(clf, "module_")
            return
    assert all(torch.isfinite(p).all() for p in clf.module_.state_dict().values())
    assert np.isfinite(clf.predict_proba(X[:20])).all()


class PoisonAfter(torch.nn.Module):
    """A linear layer whose weights turn to NaN right after its ``after``-th
    training forward pass: the loss of that step is still finite."""

    def __init__(self, after: int):
        super().__init__()
        self.linear = torch.nn.Linear(64, 16)
        self.after = after
        self.calls = 0

    def forward(self, x):
        out = self.linear(x)
        self.calls += self.training
        if self.training and self.calls == self.after:
            with torch.no_grad():
                self.linear.weight.fill_(float("nan"))
        return out


def test_weights_that_turn_non_finite_with_a_finite_loss_are_not_kept(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        PoisonAfter(4), unfreeze="all", batch_size=20, max_epochs=5, random_state=0
    )
    with pytest.warns(SkltransferWarning, match="non-finite.*weights of epoch 1"):
        clf.fit(X[:40], y[:40])
    assert clf.best_epoch_ == 1
    assert all(torch.isfinite(p).all() for p in clf.module_.state_dict().values())
    assert np.isfinite(clf.predict_proba(X[:40])).all()


class NaNAfter(nn.Module):
    """Its weights turn NaN at the ``after``-th training forward pass."""

    def __init__(self, after):
        super().__init__()
        self.linear = nn.Linear(64, 8)
        self.after = after
        self.calls = 0

    def forward(self, x):
        self.calls += self.training
        if self.calls == self.after:
            with torch.no_grad():
                self.linear.weight.fill_(float("nan"))
        return self.linear(x)


def test_nan_loss_from_the_start_is_an_error(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(NaNAfter(1), unfreeze="all")
    with pytest.raises(FloatingPointError, match="lower lr"):
        clf.fit(X[:40], y[:40])
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])


def test_nan_loss_later_stops_with_a_warning(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(NaNAfter(5), unfreeze="all", batch_size=20, max_epochs=5)
    with pytest.warns(SkltransferWarning, match="weights of epoch 2 are kept") as rec:
        clf.fit(X[:40], y[:40])
    assert rec[0].filename == __file__
    assert clf.n_iter_ == 2 and clf.best_epoch_ == 2
    assert np.isfinite(clf.predict_proba(X[:40])).all()


# -- sample weights ----------------------------------------------------------------


def test_sample_weight_in_training(small_digits, source):
    X, y = small_digits
    X_tr, y_tr = X[y >= 5][:80], y[y >= 5][:80]
    kw = {"head_init": "random", "max_epochs": 20, "random_state": 0}
    plain = FineTuneClassifier(source, **kw).fit(X_tr, y_tr)
    ones = FineTuneClassifier(source, **kw).fit(X_tr, y_tr, np.ones(len(y_tr)))
    np.testing.assert_allclose(
        plain.predict_proba(X), ones.predict_proba(X), rtol=1e-5, atol=1e-6
    )
    heavy = np.where(y_tr == 7, 50.0, 1.0)
    weighted = FineTuneClassifier(source, **kw).fit(X_tr, y_tr, heavy)
    assert (weighted.predict(X) == 7).sum() > (plain.predict(X) == 7).sum()
    # Zero weights: those samples do not count at all.
    keep = y_tr != 9
    zeroed = FineTuneClassifier(source, **kw).fit(X_tr, y_tr, keep.astype(float))
    assert zeroed.predict_proba(X)[:, -1].mean() < plain.predict_proba(X)[:, -1].mean()


def test_regressor_sample_weight_and_validation(small_digits, source):
    X, y = small_digits
    target = y[:200].astype(float)
    w = np.linspace(0.5, 2.0, 200)
    reg = FineTuneRegressor(source, max_epochs=2, early_stopping=True, random_state=0)
    reg.fit(X[:200], target, sample_weight=w)
    assert np.isfinite(reg.history_[-1]["valid_loss"])


# -- precision and progress --------------------------------------------------------


def test_precision_bf16_on_cpu(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), unfreeze="all", precision="bf16", max_epochs=3)
    proba = clf.fit(X[:100], y[:100]).predict_proba(X[:10])
    assert proba.dtype == np.float32 and np.isfinite(proba).all()


def test_verbose_progress_bar(small_digits, capsys):
    X, y = small_digits
    FineTuneClassifier(mlp(), verbose=1, max_epochs=2).fit(X[:50], y[:50])
    assert "epoch" in capsys.readouterr().err


def test_auto_progress_is_silent_where_no_one_watches(
    small_digits, capsys, no_progress_delay
):
    X, y = small_digits  # under pytest: no terminal
    FineTuneClassifier(mlp(), max_epochs=2).fit(X[:50], y[:50])
    assert capsys.readouterr().err == ""


def test_auto_progress_shows_the_epochs_in_a_terminal(
    small_digits, capsys, watched_terminal
):
    X, y = small_digits
    FineTuneClassifier(mlp(), max_epochs=2).fit(X[:50], y[:50])
    assert "epoch" in capsys.readouterr().err
