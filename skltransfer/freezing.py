"""Freezing by layer groups: how deep a backbone trains, and how fast.

A backbone's layer groups (see
:meth:`skltransfer.backbones.Backbone.layer_groups`) are its stages from the
stem to the top. Freezing counts them from the top, so one number means the
same thing for every architecture:

- ``unfreeze=0`` trains only the new head on a frozen body;
- ``unfreeze=k`` also trains the last ``k`` groups;
- ``unfreeze="all"`` trains the whole body.

Frozen groups get no gradient and run in inference mode, so their BatchNorm
running statistics stay as pretrained (and their dropout is off). Trainable
groups learn at rates that shrink with depth below the head (discriminative
learning rates), and may be unfrozen one by one during training (gradual
unfreezing).

Examples
--------
>>> from torch import nn
>>> from skltransfer.backbones import load_backbone
>>> from skltransfer.freezing import freeze, layerwise_param_groups
>>> bb = load_backbone("test_tiny_cnn")
>>> groups = bb.group_parameters()
>>> freeze(groups, n_trainable=1)
>>> [all(p.requires_grad for p in ps) for ps in groups]
[False, False, False, True]
>>> head = nn.Linear(32, 2)
>>> param_groups = layerwise_param_groups(
...     head.parameters(), groups, n_trainable=1, lr=1e-3, lr_decay=0.5
... )
>>> sorted({g["lr"] for g in param_groups})
[0.0005, 0.001]
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

from torch import nn

__all__ = [
    "freeze",
    "frozen_modules",
    "layerwise_param_groups",
    "n_unfrozen_at",
    "resolve_unfreeze",
    "set_train_mode",
    "trainable_groups",
]


def resolve_unfreeze(unfreeze, n_groups: int, *, name: str = "the backbone") -> int:
    """The number of trainable layer groups that ``unfreeze`` asks for.

    Parameters
    ----------
    unfreeze : int or "all"
        Number of last layer groups that train; ``"all"`` means every group.
    n_groups : int
        Number of layer groups of the backbone.
    name : str
        Used in the error message.

    Returns
    -------
    n_trainable : int
        Between 0 and ``n_groups``.

    Raises
    ------
    ValueError
        When ``unfreeze`` is negative or larger than ``n_groups``.
    """
    if isinstance(unfreeze, str) and unfreeze == "all":
        return n_groups
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, numbers.Integral):
        raise TypeError(f"unfreeze must be an int or 'all', got {unfreeze!r}.")
    if not 0 <= unfreeze <= n_groups:
        raise ValueError(
            f"unfreeze={unfreeze} is out of range: {name} has {n_groups} layer "
            f"groups, so unfreeze must be between 0 and {n_groups} (the maximum), "
            "or 'all'."
        )
    return int(unfreeze)


def n_unfrozen_at(epoch: int, n_trainable: int, every: int | None) -> int:
    """Trainable groups at ``epoch`` (0-based) under gradual unfreezing.

    With ``every=None`` all ``n_trainable`` groups train from the start.
    Otherwise the first ``every`` epochs train the head alone and one more
    group unfreezes every ``every`` epochs, top first, up to ``n_trainable``
    (ULMFiT's gradual unfreezing).

    Examples
    --------
    >>> from skltransfer.freezing import n_unfrozen_at
    >>> [n_unfrozen_at(e, 2, every=2) for e in range(7)]
    [0, 0, 1, 1, 2, 2, 2]
    """
    if every is None:
        return n_trainable
    return min(n_trainable, epoch // every)


def _trainable_slice(n_groups: int, n_trainable: int) -> slice:
    return slice(n_groups - n_trainable, n_groups)


def trainable_groups(group_params: Sequence, n_trainable: int) -> list:
    """The last ``n_trainable`` entries of ``group_params``: the groups that
    train (none for 0)."""
    return list(group_params[_trainable_slice(len(group_params), n_trainable)])


def freeze(group_params: Sequence[Sequence[nn.Parameter]], n_trainable: int) -> None:
    """Let only the last ``n_trainable`` groups of parameters receive gradients.

    Parameters
    ----------
    group_params : list of list of Parameter
        Parameters of each layer group, stem first (as returned by
        :meth:`~skltransfer.backbones.Backbone.group_parameters`).
    n_trainable : int
        Number of last groups that train.
    """
    trainable = _trainable_slice(len(group_params), n_trainable)
    for i, params in enumerate(group_params):
        flag = trainable.start <= i < trainable.stop
        for p in params:
            p.requires_grad_(flag)


def frozen_modules(body: nn.Module, groups, n_trainable: int) -> list[nn.Module]:
    """The modules of the first ``len(groups) - n_trainable`` layer groups."""
    frozen = groups[: len(groups) - n_trainable]
    return [body.get_submodule(name) for g in frozen for name in g.modules]


def set_train_mode(
    body: nn.Module, groups, n_trainable: int, *, freeze_batchnorm: bool = True
) -> None:
    """Put ``body`` in training mode, keeping frozen groups in inference mode.

    With ``freeze_batchnorm=True`` the frozen groups run as at inference: their
    BatchNorm layers normalise with the pretrained running statistics and do
    not update them, and their dropout is off. With ``False`` the frozen
    groups' BatchNorm layers adapt their statistics to the new data (their
    weights stay frozen).
    """
    body.train()
    if freeze_batchnorm:
        for module in frozen_modules(body, groups, n_trainable):
            module.eval()


def _decay_split(params: Iterable[nn.Parameter], lr: float, weight_decay: float, depth):
    """Two optimiser groups: matrices/kernels decay, biases and norm scales do not."""
    params = list(params)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    out = []
    for ps, wd in ((decay, weight_decay), (no_decay, 0.0)):
        if ps:
            out.append({"params": ps, "lr": lr, "weight_decay": wd, "depth": depth})
    return out


def layerwise_param_groups(
    head_params: Iterable[nn.Parameter],
    group_params: Sequence[Sequence[nn.Parameter]],
    n_trainable: int,
    *,
    lr: float,
    lr_decay: float = 1.0,
    weight_decay: float = 0.0,
) -> list[dict]:
    """Optimiser parameter groups with layer-wise learning-rate decay.

    The head learns at ``lr``; the layer group at depth ``d`` below the head
    (``d=1`` for the top group) at ``lr * lr_decay**d``. Only the last
    ``n_trainable`` groups are included. Weight decay applies to weight
    matrices and kernels, not to biases or normalisation parameters. Each
    dict carries its ``"depth"`` so learning rates can be recomputed later.
    """
    out = _decay_split(head_params, lr, weight_decay, 0)
    trainable = trainable_groups(group_params, n_trainable)
    for depth, params in enumerate(reversed(trainable), start=1):
        out += _decay_split(params, lr * lr_decay**depth, weight_decay, depth)
    return out
