"""Process-wide state: named memos, and one function that empties them all."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

import skltransfer
from skltransfer import PretrainedImageFeatures, PretrainedTextEmbeddings
from skltransfer import _process_state as state
from skltransfer.backbones import ModuleBackbone, load_backbone
from skltransfer.distributed import BatchFunction, clear_loaded_estimators

IMAGES = np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3), np.uint8)
TEXTS = ["a good film", "an awful film", "the cat sat"]


@pytest.fixture(autouse=True)
def _fresh_process():
    skltransfer.clear_process_state()
    yield
    skltransfer.clear_process_state()


def _memos() -> dict:
    return {
        name: memo
        for name, memo in vars(state).items()
        if isinstance(memo, state.ProcessMemo)
    }


def test_the_memos_are_named_for_what_they_hold():
    assert set(_memos()) == {
        "reused_frozen_backbone",
        "measured_batch_sizes",
        "compiled_forwards",
        "engine_runners",
        "loaded_estimators",
        "layer_group_orders",
    }


def test_clear_process_state_empties_every_memo():
    est = PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES)
    BatchFunction(est).estimator()
    state.measured_batch_sizes.put("key", (16, 100))
    state.compiled_forwards.put("key", "compiled")
    state.engine_runners.put("key", "runner")
    state.layer_group_orders.put("key", ["a", "b"])
    assert all(len(memo) for memo in _memos().values())
    skltransfer.clear_process_state()
    assert not any(len(memo) for memo in _memos().values())


def test_clear_loaded_estimators_empties_its_memo_only():
    est = PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES)
    first = BatchFunction(est).estimator()
    assert len(state.loaded_estimators) == 1
    clear_loaded_estimators()
    assert len(state.loaded_estimators) == 0
    assert len(state.reused_frozen_backbone) == 1
    assert BatchFunction(est).estimator() is not first


@pytest.mark.parametrize(
    ("make", "X"),
    [
        (lambda: PretrainedImageFeatures("test_tiny_cnn"), IMAGES),
        (lambda: PretrainedTextEmbeddings("test_tiny_bert"), TEXTS),
    ],
    ids=["image", "text"],
)
def test_clones_reuse_the_frozen_backbone_until_cleared(make, X):
    est = make().fit(X)
    assert clone(est).fit(X).backbone_ is est.backbone_
    skltransfer.clear_process_state()
    assert clone(est).fit(X).backbone_ is not est.backbone_


def test_a_spec_holding_its_own_module_is_never_shared():
    spec = ModuleBackbone(load_backbone("test_tiny_cnn").body)
    assert state.load_frozen(spec) is not state.load_frozen(spec)
    assert len(state.reused_frozen_backbone) == 0


def test_an_unpickled_estimator_loads_its_backbone_through_the_memo():
    est = PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES)
    skltransfer.clear_process_state()  # as in another process
    loaded = pickle.loads(pickle.dumps(est))  # by reference
    again = pickle.loads(pickle.dumps(est))
    assert loaded.backbone_ is again.backbone_


def test_a_memo_forgets_its_least_recently_used_entries():
    memo = state.ProcessMemo(maxsize=2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # now the most recent
    memo.put("c", 3)
    assert [k for k, _ in memo.items()] == ["a", "c"]
    assert memo.get_or_put("c", lambda: 0) == 3
    assert memo.get_or_put("c", lambda: 4, valid=lambda v: v > 3) == 4
