"""Never below the probe (finetune/_interpolation.py): the final weights lie
between the probe head start and the trained ones, chosen on held-out folds."""

import re

import numpy as np
import pytest
import torch
from _common_finetune import IMAGE

from skltransfer import FineTuneClassifier
from skltransfer.finetune import _interpolation

pytestmark = pytest.mark.usefixtures("one_thread")


def test_interpolation_mixes_the_head_start_and_the_trained_weights(small_digits):
    X, y = small_digits
    params = {**IMAGE, "unfreeze": 1, "max_epochs": 3, "random_state": 0}
    start = FineTuneClassifier(**params, interpolation=0.0).fit(X[:60], y[:60])
    trained = FineTuneClassifier(**params, interpolation=1.0).fit(X[:60], y[:60])
    half = FineTuneClassifier(**params, interpolation=0.5).fit(X[:60], y[:60])
    assert half.interpolation_ == 0.5 and half.cross_fit_ is None
    # Weight 0 is the probe head start itself.
    probe = FineTuneClassifier(**{**params, "max_epochs": 0}).fit(X[:60], y[:60])
    np.testing.assert_allclose(
        start.predict_proba(X[60:90]), probe.predict_proba(X[60:90]), atol=1e-6
    )
    s, t, h = (m.module_.state_dict() for m in (start, trained, half))
    changed = [k for k in s if s[k].is_floating_point() and not torch.equal(s[k], t[k])]
    assert any(k.startswith("head") for k in changed)
    assert any(k.startswith("backbone") for k in changed)
    for k in changed:
        torch.testing.assert_close(h[k], (s[k] + t[k]) / 2)


@pytest.mark.usefixtures("cross_fit")
def test_the_interpolation_is_chosen_on_held_out_folds(small_digits):
    X, y = small_digits
    params = {**IMAGE, "unfreeze": 1, "max_epochs": 2, "random_state": 0}
    clf = FineTuneClassifier(**params).fit(X[:60], y[:60])
    report = clf.cross_fit_
    assert report["folds"] == _interpolation.CROSS_FIT_FOLDS
    assert report["interpolations"] == list(_interpolation.INTERPOLATIONS)
    losses = np.array(report["held_out_loss"])
    assert (
        losses.shape == (len(_interpolation.INTERPOLATIONS),)
        and np.isfinite(losses).all()
    )
    scores = np.array(report["held_out_score"])
    error = report["probe_lead_error"]
    # The best weight above 0 (ties to the larger), unless the probe leads it
    # by more than two standard errors.
    best = max(range(1, len(scores)), key=lambda i: (scores[i], i))
    chosen = 0 if scores[0] - scores[best] > 2 * error else best
    assert clf.interpolation_ == _interpolation.INTERPOLATIONS[chosen]
    assert error >= 0 and ((scores >= 0) & (scores <= 1)).all()
    # Seeded: the same folds, losses and weights.
    again = FineTuneClassifier(**params).fit(X[:60], y[:60])
    assert again.cross_fit_ == report
    np.testing.assert_array_equal(
        clf.predict_proba(X[60:90]), again.predict_proba(X[60:90])
    )
    # The held-out losses are those of the folds' networks: weight 0 is each
    # fold's probe, scored on samples it did not see.
    assert losses[0] > 0
    # A frozen body has nothing to interpolate: no cross-fit.
    frozen = FineTuneClassifier(**{**params, "unfreeze": 0}).fit(X[:60], y[:60])
    assert frozen.cross_fit_ is None and frozen.interpolation_ == 1.0


def _scores(n, *wrong_only):
    """Per-sample accuracies of candidates that are right on every sample but
    the given ones."""
    out = np.ones((len(wrong_only), n))
    for row, wrong in zip(out, wrong_only, strict=True):
        row[list(wrong)] = 0
    return out


def test_the_probe_wins_only_by_more_than_two_standard_errors():
    n, w = 128, np.ones(128)
    choose = _interpolation.choose_weight
    assert _interpolation.PROBE_LEAD_ERRORS == 2
    # The probe (candidate 0) right on one sample more: noise, not evidence.
    assert choose(_scores(n, [0, 1], [0, 1, 2]), w)[0] == 1
    assert choose(_scores(n, [0, 1], [2, 3]), w)[0] == 1  # a tie
    # Three samples more and none fewer: 1.7 standard errors; four: 2.02.
    for ahead, chosen in ((3, 1), (4, 0)):
        index, error = choose(_scores(n, [], range(ahead)), w)
        lead = ahead / n
        assert index == chosen and (lead > 2 * error) == (chosen == 0)
    # Right on six the other misses, wrong on two it gets: four samples
    # ahead, 1.4 standard errors, as the probe led in a draw of 64 movie
    # snippets per class: the trained candidate stays.
    index, error = choose(_scores(n, range(2), range(2, 8)), w)
    assert index == 1 and 1.4 < (4 / n) / error < 1.45
    # Ten samples more: the standard error of the difference is about 0.028.
    index, error = choose(_scores(n, [], range(10)), w)
    assert index == 0
    np.testing.assert_allclose(error, np.sqrt(10 / 128 * 118 / 128 / 127))
    # Sample weights: the probe's lead on heavy samples counts more.
    heavy = np.where(np.arange(n) < 6, 20.0, 1.0)
    assert choose(_scores(n, [], range(6)), heavy)[0] == 0
    assert choose(_scores(n, [], range(6, 12)), heavy)[0] == 1
    # Among the weights above 0 the best score wins, ties to the larger, even
    # by a single sample.
    assert choose(_scores(n, range(8), [0], [0, 1]), w)[0] == 1
    assert choose(_scores(n, range(8), [0], [1], [0, 1]), w)[0] == 2
    # The probe compared with the best of the others only.
    assert choose(_scores(n, [], range(10), [0]), w)[0] == 2


@pytest.mark.usefixtures("cross_fit")
def test_a_fit_whose_training_loses_what_the_probe_knew_stays_at_the_probe(
    small_digits,
):
    X, y = small_digits
    params = {**IMAGE, "unfreeze": 2, "lr_decay": 1.0, "random_state": 0}
    # A learning rate far too high wrecks the body's features.
    wrecked = {**params, "lr": 2.0, "max_epochs": 20}
    clf = FineTuneClassifier(**wrecked).fit(X[:60], y[:60])
    scores = np.array(clf.cross_fit_["held_out_score"])
    error = clf.cross_fit_["probe_lead_error"]
    assert scores[0] - scores[1:].max() > 2 * error  # the folds say so
    assert clf.interpolation_ == 0.0
    probe = FineTuneClassifier(**{**params, "max_epochs": 0}).fit(X[:60], y[:60])
    np.testing.assert_allclose(
        clf.predict_proba(X[60:90]), probe.predict_proba(X[60:90]), atol=1e-6
    )


@pytest.mark.usefixtures("cross_fit")
def test_a_verbose_fit_counts_the_folds_with_silent_fold_fits(small_digits, capsys):
    X, y = small_digits
    params = {**IMAGE, "unfreeze": 1, "max_epochs": 1, "random_state": 0}
    FineTuneClassifier(**params, verbose=1).fit(X[:60], y[:60])
    err = capsys.readouterr().err
    assert "Cross-fitting" in err
    # The folds' own stages and epochs stay silent: one run of each, the
    # whole fit's.
    assert len(re.findall(r"Frozen layers: +0%", err)) == 1
