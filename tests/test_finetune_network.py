"""The fine-tuner's fitted network as one value (finetune/_network.py): its
light form for pickles by reference, the checkpoint a failed warm start goes
back to, and moving between devices."""

import pickle

import pytest
import torch
from _common_finetune import mlp

import skltransfer
from skltransfer import FineTuneClassifier, PretrainedTextEmbeddings
from skltransfer import _process_state as state
from skltransfer.backbones import get_spec
from skltransfer.caching import module_fingerprint
from skltransfer.finetune._network import FittedNetwork, load_fresh

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


# -- a fresh copy of the pretrained weights ------------------------------------


def _storages(module) -> set:
    return {t.untyped_storage().data_ptr() for t in module.state_dict().values()}


def test_a_fresh_copy_owns_its_tensors_and_knows_its_fingerprint():
    skltransfer.clear_process_state()
    spec = get_spec("test_tiny_bert")
    shared = state.load_frozen(spec)
    # A frozen pass in another thread may hook the shared copy meanwhile.
    handle = shared.body.register_forward_hook(lambda *args: None)
    try:
        copy = load_fresh(spec)
    finally:
        handle.remove()
    assert not _storages(copy) & _storages(shared)
    # Nothing trains the tokenizer: it is shared, not copied.
    assert copy.tokenizer is shared.tokenizer and copy.body is not shared.body
    assert not any(m._forward_hooks for m in copy.modules())
    assert all(p.requires_grad for p in copy.parameters()) and not copy.training
    # Known without hashing again, and what hashing would give.
    known = copy.__dict__["_skltransfer_fingerprint"][1]
    assert module_fingerprint(copy) == known == module_fingerprint(spec.load())


def test_a_fresh_copy_is_in_the_memory_order_of_a_load():
    """Frozen image passes put the shared copy's 4-D weights in channels-last
    order; a fit copying them must not depend on whether one ran before."""
    skltransfer.clear_process_state()
    spec = get_spec("test_tiny_cnn")
    state.load_frozen(spec).to(memory_format=torch.channels_last)
    weights = [p for p in load_fresh(spec).parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous() for p in weights)


def test_fine_tuning_leaves_the_shared_frozen_copy_as_it_was():
    skltransfer.clear_process_state()
    texts = ["a good film", "an awful film", "great fun", "dull and long"] * 2
    labels = [1, 0, 1, 0] * 2
    embed = PretrainedTextEmbeddings("test_tiny_bert").fit(texts)
    before = embed.transform(texts)
    shared = {k: v.clone() for k, v in embed.backbone_.state_dict().items()}
    clf = FineTuneClassifier(
        "test_tiny_bert", unfreeze="all", max_epochs=2, random_state=0
    ).fit(texts, labels)
    trained = clf.module_.backbone.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in shared.items())
    after = embed.backbone_.state_dict()
    assert all(torch.equal(after[k], v) for k, v in shared.items())
    assert (embed.transform(texts) == before).all()
    # Both took their weights from one loaded copy.
    [(_, loaded)] = state.reused_frozen_backbone.items()
    assert loaded is embed.backbone_
