"""The fine-tuner's fitted network as one value (finetune/_network.py): its
light form for pickles by reference, the checkpoint a failed warm start goes
back to, and moving between devices."""

import pickle

import pytest
import torch
from _common_finetune import mlp

from skltransfer import FineTuneClassifier
from skltransfer.finetune._network import FittedNetwork

pytestmark = pytest.mark.usefixtures("one_thread")

KW = {"image_shape": (8, 8), "max_epochs": 1, "random_state": 0}


def _estimator(small_digits, **kw) -> FineTuneClassifier:
    X, y = small_digits
    return FineTuneClassifier("test_tiny_cnn", **{**KW, **kw}).fit(X[:60], y[:60])


def _fitted(small_digits, **kw) -> FittedNetwork:
    return _estimator(small_digits, **kw)._network


def _same_weights(a, b) -> bool:
    a, b = a.module.state_dict(), b.module.state_dict()
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def test_the_light_form_holds_the_reference_and_what_training_changed(small_digits):
    network = _fitted(small_digits, unfreeze=1)
    light = network.light()
    assert light.weights is network.reference
    body = network.module.backbone.state_dict(keep_vars=True)
    parameters = {k for k, v in body.items() if isinstance(v, torch.nn.Parameter)}
    assert set(light.changed) & parameters == network.trained
    assert network.trained and network.trained < parameters  # not the frozen stem
    assert light.optimizer is not None and light.history is network.history


def test_the_light_form_loads_the_same_network(small_digits):
    clf = _estimator(small_digits, unfreeze=1, warm_start=True)
    network = clf._network
    light = pickle.loads(pickle.dumps(network.light()))
    loaded = FittedNetwork.from_light(light, clf._make_optimizer)
    assert _same_weights(loaded, network)
    assert loaded.trained == network.trained and loaded.history == network.history
    assert loaded.optimizer.state_dict()["state"]  # the moments came along


def test_without_a_reference_the_network_travels_whole(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), max_epochs=1, random_state=0).fit(X[:60], y[:60])
    assert clf._network.reference is None and clf._network.light() is None
    assert clf._network.without_optimizer().optimizer is None
    assert clf._network.module is clf._network.without_optimizer().module


def test_a_checkpoint_puts_back_weights_and_optimiser_state(small_digits):
    network = _fitted(small_digits, unfreeze=1, warm_start=True)
    before = {k: v.clone() for k, v in network.module.state_dict().items()}
    moments = network.optimizer.state_dict()["state"]
    steps = {k: s["step"].clone() for k, s in moments.items()}
    checkpoint = network.checkpoint()
    with torch.no_grad():
        for p in network.module.parameters():
            p.add_(1.0)
    for s in network.optimizer.state.values():
        s["step"] += 5
    network.restore(checkpoint)
    after = network.module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    restored = network.optimizer.state_dict()["state"]
    assert all(torch.equal(restored[k]["step"], v) for k, v in steps.items())


def test_a_continued_network_shares_the_module_not_the_history(small_digits):
    network = _fitted(small_digits, warm_start=True)
    continued = network.continued()
    assert continued.module is network.module
    assert continued.optimizer is network.optimizer
    continued.history.append({"epoch": 2})
    assert len(network.history) == 1


def test_moving_takes_the_optimiser_state_along(small_digits):
    network = _fitted(small_digits, unfreeze=1, warm_start=True)
    meta = torch.device("meta")  # any device that is not the CPU
    network.to(meta)
    assert {p.device for p in network.module.parameters()} == {meta}
    moments = [t for s in network.optimizer.state.values() for t in s.values()]
    assert {t.device for t in moments if t.ndim} == {meta}
