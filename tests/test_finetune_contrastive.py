"""The contrastive stage (finetune/_contrastive.py): the body learns from pairs
of training samples before the head is probed on it."""

import numpy as np
import pytest
import torch
from _common_finetune import SENTIMENT_LABELS, SENTIMENT_TEXTS

from skltransfer import FineTuneClassifier
from skltransfer.finetune import _contrastive, _estimators
from skltransfer.finetune._contrastive import contrastive_epochs, pair_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pair_loss_regresses_the_cosine_on_same_class():
    e = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    # Same class parallel, different classes orthogonal: nothing to learn.
    assert pair_loss(e, torch.tensor([0, 0, 1])) == 0
    # Swapped labels: the positive pair is orthogonal (error 1) and one of the
    # two negative pairs is parallel (error 1, the other 0): the positives
    # and negatives weigh half each, whatever their numbers.
    loss = pair_loss(e, torch.tensor([0, 1, 0]))
    torch.testing.assert_close(loss, torch.tensor(0.5 * 1 + 0.5 * 0.5))


def test_pair_loss_of_a_batch_of_one_class_uses_the_positive_pairs():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(pair_loss(e, torch.tensor([1, 1])), torch.tensor(1.0))


def test_the_number_of_epochs_follows_the_number_of_pairs():
    passes, most = _contrastive.PAIR_PASSES, _contrastive.MAX_STEPS
    # 16 samples in one batch of 16: every pair once per epoch.
    assert contrastive_epochs(16, 32) == passes
    # 40 samples in batches of 32 and 8: each sample meets 31 or 7 others.
    assert contrastive_epochs(40, 32) == int(np.ceil(passes * 39 / 31))
    # Never more than MAX_STEPS steps: 256 samples make 8 steps an epoch.
    assert contrastive_epochs(256, 32) == most // 8
    # Never fewer than MIN_STEPS steps.
    assert contrastive_epochs(3, 32) >= _contrastive.MIN_STEPS


def _fit(**kw):
    params = {"random_state": 0, **kw}
    return FineTuneClassifier("test_tiny_bert", **params).fit(
        SENTIMENT_TEXTS, SENTIMENT_LABELS
    )


def test_few_shot_texts_train_the_top_groups_on_pairs_then_probe_the_head():
    clf = _fit()
    assert clf.contrastive_ and clf.n_trainable_groups_ == len(clf.layer_groups_) - 1
    stage = clf.pair_stage_
    assert stage["steps"] >= _contrastive.MIN_STEPS and np.isfinite(stage["pair_loss"])
    # The head is the probe on the adapted body: no epochs of the head.
    assert clf.n_iter_ == 0 and clf.n_steps_ == stage["steps"]
    frozen = _fit(contrastive=False)
    assert not frozen.contrastive_ and frozen.pair_stage_ is None
    assert frozen.n_trainable_groups_ == 0
    # Every group but the embeddings changed, the embeddings did not.
    trained = clf.module_.backbone.state_dict()
    pretrained = frozen.module_.backbone.state_dict()
    top = [f"body.model.{g}." for g in clf.layer_groups_[1:]]
    for key, value in trained.items():
        moved = not torch.equal(value, pretrained[key])
        if not any(key.startswith(prefix) for prefix in top):
            assert not moved, key
    assert all(
        any(
            not torch.equal(trained[k], pretrained[k])
            for k in trained
            if k.startswith(p)
        )
        for p in top
    )


def test_the_contrastive_stage_is_seeded():
    a, b = _fit(), _fit()
    assert a.pair_stage_ == b.pair_stage_
    np.testing.assert_array_equal(
        a.predict_proba(SENTIMENT_TEXTS), b.predict_proba(SENTIMENT_TEXTS)
    )


def test_contrastive_auto_stops_above_the_few_shot_range(monkeypatch):
    monkeypatch.setattr(_estimators, "AUTO_CONTRASTIVE_PER_CLASS", 2)
    clf = _fit()
    assert not clf.contrastive_ and clf.n_trainable_groups_ == 0
    assert _fit(contrastive=True).contrastive_


def test_contrastive_needs_a_trainable_body_and_single_labels():
    with pytest.raises(ValueError, match="unfreeze to 1 or more"):
        _fit(contrastive=True, unfreeze=0)
    # "auto" with a frozen body simply probes.
    assert not _fit(unfreeze=0).contrastive_
    Y = np.array([[1, 0], [0, 1]] * (len(SENTIMENT_TEXTS) // 2))
    with pytest.raises(ValueError, match="single-label"):
        FineTuneClassifier("test_tiny_bert", contrastive=True).fit(SENTIMENT_TEXTS, Y)


def test_a_verbose_fit_shows_the_pair_stage(capsys):
    _fit(verbose=1)
    assert "Pairs" in capsys.readouterr().err
