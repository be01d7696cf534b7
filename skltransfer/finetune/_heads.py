"""The new head on top of a backbone, and the network the estimators train."""

from __future__ import annotations

import numbers

import torch
from torch import nn

__all__ = ["FineTuneNetwork", "build_head", "check_head"]


def check_head(head) -> tuple[int, ...]:
    """Hidden sizes of ``head``: () for ``"linear"``; raises on anything else."""
    if isinstance(head, str):
        if head == "linear":
            return ()
        raise ValueError(
            f"head must be 'linear' or a tuple of hidden sizes, got {head!r}."
        )
    try:
        sizes = tuple(head)
    except TypeError:
        raise TypeError(
            f"head must be 'linear' or a tuple of hidden sizes, got {head!r}."
        ) from None
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"head hidden sizes must be positive ints, got {head!r}.")
    return tuple(int(s) for s in sizes)


def build_head(head, in_features: int, n_outputs: int, dropout: float = 0.0):
    """A linear layer, or an MLP with ReLU and dropout between its layers.

    Examples
    --------
    >>> from skltransfer.finetune._heads import build_head
    >>> build_head((16,), in_features=8, n_outputs=3)
    Sequential(
      (0): Linear(in_features=8, out_features=16, bias=True)
      (1): ReLU()
      (2): Linear(in_features=16, out_features=3, bias=True)
    )
    """
    layers: list[nn.Module] = []
    width = in_features
    for size in check_head(head):
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, n_outputs))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


class FineTuneNetwork(nn.Module):
    """A backbone body followed by a new head.

    Parameters
    ----------
    backbone : skltransfer.backbones.Backbone
        Its :meth:`forward_features` feeds the head; its pretrained head is
        dropped (it is not used and would only take memory).
    head : nn.Module
        Maps the features (N, D) to the outputs.
    """

    def __init__(self, backbone, head: nn.Module):
        super().__init__()
        backbone.head = None
        self.backbone = backbone
        self.head = head

    def forward(self, x) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))
