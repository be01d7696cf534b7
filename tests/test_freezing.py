import pytest
import torch
from _common_finetune import IMAGE
from torch import nn

from skltransfer import FineTuneClassifier
from skltransfer.backbones import load_backbone
from skltransfer.freezing import (
    freeze,
    frozen_modules,
    layerwise_param_groups,
    n_unfrozen_at,
    resolve_unfreeze,
    set_train_mode,
)


@pytest.fixture
def tiny_cnn():
    return load_backbone("test_tiny_cnn")


def test_resolve_unfreeze():
    assert resolve_unfreeze("all", 4) == 4
    assert resolve_unfreeze(0, 4) == 0
    assert resolve_unfreeze(4, 4) == 4


@pytest.mark.parametrize("value", [5, -1])
def test_resolve_unfreeze_out_of_range_names_the_maximum(value):
    with pytest.raises(ValueError, match="between 0 and 4 \\(the maximum\\)"):
        resolve_unfreeze(value, 4, name="backbone 'x'")


@pytest.mark.parametrize("value", ["some", 1.5, True])
def test_resolve_unfreeze_type(value):
    with pytest.raises(TypeError, match="unfreeze must be an int or 'all'"):
        resolve_unfreeze(value, 4)


def test_gradual_unfreezing_schedule():
    assert [n_unfrozen_at(e, 3, every=None) for e in range(3)] == [3, 3, 3]
    assert [n_unfrozen_at(e, 2, every=1) for e in range(4)] == [0, 1, 2, 2]
    assert [n_unfrozen_at(e, 1, every=3) for e in range(7)] == [0] * 3 + [1] * 4


def test_freeze_sets_requires_grad_by_group(tiny_cnn):
    groups = tiny_cnn.group_parameters()
    freeze(groups, 2)
    flags = [{p.requires_grad for p in ps} for ps in groups]
    assert flags == [{False}, {False}, {True}, {True}]
    freeze(groups, 0)
    assert not any(p.requires_grad for ps in groups for p in ps)


def test_set_train_mode_keeps_frozen_batchnorm_in_eval(tiny_cnn):
    body, groups = tiny_cnn.body, tiny_cnn.layer_groups()
    set_train_mode(body, groups, 1)
    frozen = frozen_modules(body, groups, 1)
    bns = [m for f in frozen for m in f.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    top = body.get_submodule("stages.2")
    assert all(m.training for m in top.modules())


def test_set_train_mode_switch_lets_batchnorm_adapt(tiny_cnn):
    body, groups = tiny_cnn.body, tiny_cnn.layer_groups()
    set_train_mode(body, groups, 1, freeze_batchnorm=False)
    assert all(m.training for m in body.modules())


def test_layerwise_param_groups(tiny_cnn):
    head = nn.Linear(32, 3)
    groups = layerwise_param_groups(
        head.parameters(),
        tiny_cnn.group_parameters(),
        n_trainable=2,
        lr=1.0,
        lr_decay=0.5,
        weight_decay=0.1,
    )
    lrs = {g["depth"]: g["lr"] for g in groups}
    assert lrs == {0: 1.0, 1: 0.5, 2: 0.25}
    for g in groups:
        decays = {p.ndim >= 2 for p in g["params"]}
        assert decays == {g["weight_decay"] > 0}
    n_params = sum(len(g["params"]) for g in groups)
    top_two = tiny_cnn.group_parameters()[2:]
    assert n_params == 2 + sum(len(ps) for ps in top_two)
    # A usable optimiser.
    torch.optim.AdamW(groups)


# -- freezing in fine-tuning -------------------------------------------------------


def _frozen_and_top(state, top="stages.2."):
    frozen = {k: v for k, v in state.items() if not k.startswith(top)}
    trained = {k: v for k, v in state.items() if k.startswith(top)}
    return frozen, trained


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("cache_frozen", [False, True])
def test_frozen_groups_are_bit_identical(small_digits, cache_frozen):
    X, y = small_digits
    clf = FineTuneClassifier(
        **IMAGE, unfreeze=1, cache_frozen=cache_frozen, random_state=0
    ).fit(X[:90], y[:90])
    before = _frozen_and_top(load_backbone("test_tiny_cnn").body.state_dict())
    after = _frozen_and_top(clf.module_.backbone.body.state_dict())
    for key, value in before[0].items():  # weights and BatchNorm statistics
        assert torch.equal(value, after[0][key]), key
    changed = [not torch.equal(v, after[1][k]) for k, v in before[1].items()]
    assert all(changed)  # conv weight, BN weight/bias and running statistics
    assert clf.cached_groups_ == (3 if cache_frozen else 0)


@pytest.mark.usefixtures("one_thread")
def test_batchnorm_switch_lets_frozen_statistics_adapt(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze=1, freeze_batchnorm=False)
    clf.fit(X[:60], y[:60])
    before = load_backbone("test_tiny_cnn").body.state_dict()
    after = clf.module_.backbone.body.state_dict()
    assert torch.equal(before["stem.0.weight"], after["stem.0.weight"])
    assert not torch.equal(before["stem.1.running_mean"], after["stem.1.running_mean"])


@pytest.mark.usefixtures("one_thread")
def test_gradual_unfreezing_and_layerwise_rates(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        **{**IMAGE, "max_epochs": 4}, unfreeze=2, unfreeze_schedule=1, lr_decay=0.5
    ).fit(X[:60], y[:60])
    assert [r["n_unfrozen"] for r in clf.history_] == [0, 1, 2, 2]
    base = {g["depth"]: g["base_lr"] for g in clf.optimizer_.param_groups}
    assert base == {0: 1e-3, 1: 5e-4, 2: 2.5e-4}
    before = load_backbone("test_tiny_cnn").body.state_dict()
    after = clf.module_.backbone.body.state_dict()
    assert torch.equal(before["stages.0.0.weight"], after["stages.0.0.weight"])
    assert not torch.equal(before["stages.1.0.weight"], after["stages.1.0.weight"])


@pytest.mark.usefixtures("one_thread")
def test_unfreeze_out_of_range_names_the_maximum(small_digits):
    X, y = small_digits
    with pytest.raises(ValueError, match="between 0 and 4 \\(the maximum\\)"):
        FineTuneClassifier(**IMAGE, unfreeze=5).fit(X[:20], y[:20])
