import pytest
import torch
from torch import nn

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
