"""Frozen activations (finetune/_frozen_activations.py): where they go, what a
fit says when it cannot use them, and that they change no result."""

import os
import tempfile
import warnings
from collections import namedtuple

import numpy as np
import pytest
from _common_finetune import IMAGE, SENTIMENT_LABELS, SENTIMENT_TEXTS, mlp

import skltransfer
from skltransfer import FineTuneClassifier
from skltransfer.exceptions import FrozenCacheWarning
from skltransfer.finetune import _frozen_activations
from skltransfer.finetune._frozen_activations import (
    FrozenActivationsConfig,
    FrozenActivationsResult,
    frozen_activations,
)
from skltransfer.inputs import batches

pytestmark = pytest.mark.usefixtures("one_thread")


# The stored path is compared with the plain one exactly: both run on torch
# (an engine's activations equal torch's to float32 rounding; test_engines.py).
def _fit(X, y, **kw):
    params = {**IMAGE, "unfreeze": 1, "random_state": 0, "engine": "torch"}
    return FineTuneClassifier(**{**params, **kw}).fit(X, y)


@pytest.fixture
def data(small_digits):
    X, y = small_digits
    return X[:90], y[:90], X[90:130]


@pytest.fixture
def plain(data):
    X, y, X_test = data
    return _fit(X, y, cache_frozen=False).predict_proba(X_test)


def test_statuses(data, plain):
    X, y, X_test = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these warns
        off = _fit(X, y, cache_frozen=False)
        cached = _fit(X, y)
        nothing = _fit(X, y, unfreeze="all")
    assert (off.cache_status_, off.cached_groups_) == ("off", 0)
    assert (cached.cache_status_, cached.cached_groups_) == ("memory", 3)
    assert (nothing.cache_status_, nothing.cached_groups_) == ("nothing frozen", 0)
    np.testing.assert_allclose(cached.predict_proba(X_test), plain, atol=1e-6)


def test_images_decoded_lazily_are_cached_too(data, plain, monkeypatch):
    """Images too large to keep in memory no longer lose the cache (a cliff)."""
    X, y, X_test = data
    monkeypatch.setattr(batches, "MATERIALIZE_BYTES", 0)
    clf = _fit(X, y)
    assert clf.cache_status_ == "memory" and clf.cached_groups_ == 3
    np.testing.assert_allclose(clf.predict_proba(X_test), plain, atol=1e-6)


@pytest.mark.parametrize("unfreeze", [0, 1])
def test_activations_beyond_memory_go_to_a_mapped_file(data, monkeypatch, unfreeze):
    X, y, X_test = data
    folders = []
    real_folder = tempfile.TemporaryDirectory

    def recording_folder(**kw):
        folder = real_folder(**kw)
        folders.append(folder.name)
        return folder

    monkeypatch.setattr(_frozen_activations, "memory_budget", lambda: 0)
    monkeypatch.setattr(
        _frozen_activations.tempfile, "TemporaryDirectory", recording_folder
    )
    clf = _fit(X, y, unfreeze=unfreeze, early_stopping=True)
    assert clf.cache_status_ == "disk" and clf.cached_groups_ > 0
    assert len(folders) == 1 and not os.path.exists(folders[0])  # removed after fit
    # Early stopping changes the split, so compare with the same settings.
    same = _fit(X, y, unfreeze=unfreeze, early_stopping=True, cache_frozen=False)
    np.testing.assert_allclose(clf.predict_proba(X_test), same.predict_proba(X_test))


def _no_room(monkeypatch):
    monkeypatch.setattr(_frozen_activations, "memory_budget", lambda: 0)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        _frozen_activations.shutil, "disk_usage", lambda _p: usage(1, 1, 0)
    )


def test_no_room_anywhere_warns_at_the_users_line(data, plain, monkeypatch):
    X, y, X_test = data
    _no_room(monkeypatch)
    with pytest.warns(FrozenCacheWarning, match="fit neither in the memory") as rec:
        clf = _fit(X, y)
    assert rec[0].filename == __file__
    assert clf.cache_status_.startswith("plain: the activations")
    assert clf.cached_groups_ == 0
    np.testing.assert_allclose(clf.predict_proba(X_test), plain, atol=1e-6)


def test_explicit_true_that_cannot_be_honoured_raises(data, monkeypatch):
    X, y, _ = data
    with pytest.raises(ValueError, match="cache_frozen=True.*augmentation"):
        _fit(X, y, cache_frozen=True, augmentation="noise")
    _no_room(monkeypatch)
    with pytest.raises(ValueError, match="cache_frozen=True.*disk"):
        _fit(X, y, cache_frozen=True)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"augmentation": "noise"}, "augmentation changes the inputs"),
        ({"freeze_batchnorm": False}, "freeze_batchnorm=False"),
    ],
)
def test_every_plain_path_says_why(data, params, reason):
    X, y, _ = data
    with pytest.warns(FrozenCacheWarning, match=reason):
        clf = _fit(X, y, **params)
    assert clf.cache_status_.startswith("plain: ") and reason in clf.cache_status_
    assert clf.cached_groups_ == 0


def test_memory_budget_is_at_least_the_floor():
    assert _frozen_activations.memory_budget() >= _frozen_activations.CACHE_BYTES


# -- texts: token states at the freeze boundary -----------------------------------

TEXTS = [
    "a good film",
    "great movie with a plot that kept me watching until the very end",
    "happy",
    "bad film, and far too long for what it had to say",
    "awful",
    "a wonderful cast, a sharp script and music to remember",
] * 4
LABELS = np.array([1, 1, 1, 0, 0, 1] * 4)


def _fit_text(**kw):
    params = {
        "unfreeze": 1,
        "max_epochs": 3,
        "batch_size": 4,
        "contrastive": False,
        "random_state": 0,
        "engine": "torch",
    }
    return FineTuneClassifier("test_tiny_bert", **{**params, **kw}).fit(TEXTS, LABELS)


# The memory-mapped variant of images is in the quick loop; of text, slow.
@pytest.mark.parametrize(
    "where", ["memory", pytest.param("disk", marks=pytest.mark.slow)]
)
def test_frozen_lower_blocks_of_a_text_encoder_run_once(where, monkeypatch):
    plain = _fit_text(cache_frozen=False, early_stopping=True)
    if where == "disk":
        monkeypatch.setattr(_frozen_activations, "memory_budget", lambda: 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrozenCacheWarning)
        cached = _fit_text(early_stopping=True)
    assert cached.cache_status_ == where
    assert cached.cached_groups_ == len(cached.layer_groups_) - 1
    # Batches of texts of different lengths: each is cut to its longest text.
    np.testing.assert_allclose(
        cached.predict_proba(TEXTS), plain.predict_proba(TEXTS), atol=1e-5
    )


def test_the_frozen_pass_runs_texts_longest_first(monkeypatch):
    """So that each batch pads little; the rows still land where their texts
    belong (the predictions above equal those of the plain path)."""
    passes = []
    real = _frozen_activations.map_batches

    def spying(inputs, *args, order=None, **kwargs):
        passes.append((inputs, order))
        return real(inputs, *args, order=order, **kwargs)

    monkeypatch.setattr(_frozen_activations, "map_batches", spying)
    _fit_text()
    inputs, order = passes[0]
    lengths = inputs.lengths()[order]
    assert len(order) == len(inputs) and (np.diff(lengths) <= 0).all()
    assert lengths[0] > lengths[-1]


def test_text_embeddings_run_once_per_fit(monkeypatch):
    from transformers.models.bert import modeling_bert

    calls = []
    real = modeling_bert.BertEmbeddings.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(modeling_bert.BertEmbeddings, "forward", counting)
    _fit_text(cache_frozen=False)
    plain, calls[:] = len(calls), []
    _fit_text()
    # Building the network and checking the split take a few single
    # batches; then one pass over the 24 texts in batches of 4. The plain
    # path runs them at each of the 3 epochs.
    assert len(calls) <= 4 + 6 and plain >= 3 * 6


def test_left_padding_tokenizers_take_the_plain_path(monkeypatch, request):
    from skltransfer.backbones import _text

    real = _text.tiny_tokenizer

    def left(*a, **kw):
        tok = real(*a, **kw)
        tok.padding_side = "left"
        return tok

    monkeypatch.setattr(_text, "tiny_tokenizer", left)
    # Neither take a copy loaded before with the real tokenizer, nor leave
    # this one to the tests after.
    skltransfer.clear_process_state()
    request.addfinalizer(skltransfer.clear_process_state)
    with pytest.warns(FrozenCacheWarning, match="pads on the left"):
        clf = _fit_text()
    assert clf.cache_status_ == "plain: the tokenizer pads on the left"


# -- the module's own interface: a config in, a result out ----------------------


def _network_and_context(small_digits, n_trainable=1):
    import torch

    from skltransfer.finetune._loop import FitContext

    X, y = small_digits
    clf = FineTuneClassifier(mlp(), unfreeze=1, max_epochs=1, random_state=0)
    net = clf.fit(X[:60], y[:60]).module_.eval()
    groups = net.backbone.layer_groups()
    ctx = FitContext(
        device=torch.device("cpu"),
        dtype=None,
        groups=groups,
        group_params=[],
        n_trainable=n_trainable,
        total_steps=0,
        warmup_steps=0,
    )
    return net, ctx, batches.TensorInputs(torch.as_tensor(X[:60]))


def _patched(net) -> list:
    return [m for m in net.modules() if {"forward", "forward_features"} & set(vars(m))]


def test_a_verbose_fit_shows_the_pass_over_the_frozen_layers(data, capsys):
    X, y, _ = data
    _fit(X, y, verbose=1)
    assert "Frozen layers" in capsys.readouterr().err


def test_a_config_in_and_a_result_out(small_digits):
    import torch

    net, ctx, inputs = _network_and_context(small_digits)
    with torch.no_grad():
        plain = net(inputs.X)
    config = FrozenActivationsConfig("auto", batch_size=16, freeze_batchnorm=True)
    n_frozen = len(ctx.groups) - 1
    with frozen_activations(net, config, ctx, inputs, None) as (stored, valid, result):
        assert result == FrozenActivationsResult("memory", n_frozen)
        assert valid is None and len(stored) == len(inputs)
        assert _patched(net)  # the frozen groups answer from the store
        with torch.no_grad():
            torch.testing.assert_close(net(stored.X), plain)
    assert not _patched(net)  # restored on leaving the block
    off = FrozenActivationsConfig(False, batch_size=16, freeze_batchnorm=True)
    with frozen_activations(net, off, ctx, inputs, None) as (same, _, result):
        assert same is inputs and result == FrozenActivationsResult("off")


def test_the_network_is_restored_when_training_fails(small_digits):
    net, ctx, inputs = _network_and_context(small_digits, n_trainable=0)
    config = FrozenActivationsConfig("auto", batch_size=16, freeze_batchnorm=True)
    with (
        pytest.raises(RuntimeError, match="diverged"),
        frozen_activations(net, config, ctx, inputs, None) as (*_, result),
    ):
        assert result.status == "memory" and _patched(net)
        raise RuntimeError("diverged")
    assert not _patched(net)


def test_the_plain_path_is_a_result_too(small_digits):
    net, ctx, inputs = _network_and_context(small_digits)
    config = FrozenActivationsConfig("auto", batch_size=16, freeze_batchnorm=False)
    with (
        pytest.warns(FrozenCacheWarning, match="freeze_batchnorm=False"),
        frozen_activations(net, config, ctx, inputs, None) as (same, _, result),
    ):
        assert same is inputs and result.cached_groups == 0
        assert result.status.startswith("plain: freeze_batchnorm=False")


# -- fits with and without stored activations agree --------------------------------


def test_cache_gives_the_plain_results(small_digits):
    X, y = small_digits
    kw = {**IMAGE, "unfreeze": 2, "head_dropout": 0.2, "early_stopping": True}
    probas = [
        FineTuneClassifier(**kw, cache_frozen=c, random_state=0)
        .fit(X[:120], y[:120])
        .predict_proba(X[120:160])
        for c in (False, True)
    ]
    np.testing.assert_allclose(probas[0], probas[1], atol=1e-6)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_frozen_body_features_are_computed_once(small_digits, kind):
    if kind == "image":
        X, y = small_digits[0][:60], small_digits[1][:60]
        kw = {**IMAGE, "unfreeze": 0, "head": (8,), "max_epochs": 3}
    else:
        X, y = SENTIMENT_TEXTS, SENTIMENT_LABELS
        kw = {"backbone": "test_tiny_bert", "unfreeze": 0, "max_epochs": 3}
    fits = [
        FineTuneClassifier(**kw, cache_frozen=c, random_state=0).fit(X, y)
        for c in (False, "auto")
    ]
    assert [f.cached_groups_ for f in fits] == [0, len(fits[0].layer_groups_)]
    np.testing.assert_allclose(
        fits[0].predict_proba(X), fits[1].predict_proba(X), atol=1e-5
    )
    # The backbone answers with its own features again after the fit.
    assert "forward_features" not in vars(fits[1].module_.backbone)
