"""Behaviour shared by every torch-backed estimator: device handling and pickling."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._device import resolve_device

__all__ = ["TorchModelMixin"]


def _on_accelerator(module: nn.Module) -> bool:
    tensors = list(module.parameters()) + list(module.buffers())
    return any(t.device.type != "cpu" for t in tensors)


class TorchModelMixin:
    """Device resolution and device-portable pickling for fitted torch state.

    Fitted modules live in attributes ending in ``_``. Pickling stores them on
    the CPU so that a model fitted on a GPU loads on a machine without one; the
    next call that computes moves them to the estimator's device again.
    """

    def _device(self) -> torch.device:
        return resolve_device(getattr(self, "device", "auto"))

    def __getstate__(self):
        # A copy: on Python >= 3.11 the parent returns the live __dict__ itself.
        state = dict(super().__getstate__())
        for key, value in state.items():
            if isinstance(value, nn.Module) and _on_accelerator(value):
                # Copy rather than move: pickling must not change the live model.
                state[key] = copy.deepcopy(value).to("cpu")
        return state
