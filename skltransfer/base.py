"""Behaviour shared by every torch-backed estimator: device handling and pickling."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._config import get_config
from ._device import resolve_device
from .caching import module_fingerprint

__all__ = ["TorchModelMixin", "load_verified"]


def _on_accelerator(module: nn.Module) -> bool:
    tensors = list(module.parameters()) + list(module.buffers())
    return any(t.device.type != "cpu" for t in tensors)


def load_verified(load, spec, fingerprint: str) -> nn.Module:
    """``load(spec)``, refusing weights other than those fingerprinted at fit
    (:func:`~skltransfer.caching.module_fingerprint`): an estimator pickled by
    reference loads its backbone again this way."""
    backbone = load(spec)
    if module_fingerprint(backbone) != fingerprint:
        raise ValueError(
            f"The weights of {spec!r} installed here differ from those this "
            "model was fitted with (their fingerprints differ). Install the "
            "same version of the model, or pickle the fitted model inside "
            "skltransfer.config_context(pickle_weights=True)."
        )
    return backbone


class TorchModelMixin:
    """Device resolution and device-portable pickling for fitted torch state.

    Fitted modules live in attributes ending in ``_``. Pickling stores them on
    the CPU so that a model fitted on a GPU loads on a machine without one; the
    next call that computes moves them to the estimator's device again.

    A frozen ``backbone_`` loaded from a reloadable spec (see
    ``BackboneSpec.reloadable``) is pickled as that spec plus a fingerprint of
    its weights, and loaded again on first use after unpickling; see
    :func:`skltransfer.config_context` to keep the weights in the pickle.
    """

    def _device(self) -> torch.device:
        return resolve_device(getattr(self, "device", "auto"))

    def __getstate__(self):
        # A copy: on Python >= 3.11 the parent returns the live __dict__ itself.
        state = dict(super().__getstate__())
        frozen = "backbone_" in state or "_backbone_fingerprint" in state
        if frozen and state.get("_backbone_spec") is not None:
            if get_config()["pickle_weights"]:
                state["backbone_"] = self.backbone_  # loaded, if it was not yet
            elif "backbone_" in state:
                # A reference to installed weights instead of the weights.
                backbone = state.pop("backbone_")
                state["_backbone_fingerprint"] = module_fingerprint(backbone)
        for key, value in state.items():
            if isinstance(value, nn.Module) and _on_accelerator(value):
                # Copy rather than move: pickling must not change the live model.
                state[key] = copy.deepcopy(value).to("cpu")
        return state

    def __getattr__(self, name):
        # Only reached when normal lookup fails: ``backbone_`` of an estimator
        # unpickled from a reference loads on first use.
        state = self.__dict__
        if name == "backbone_" and "_backbone_fingerprint" in state:
            backbone = load_verified(
                self._load_frozen_spec,
                state["_backbone_spec"],
                state["_backbone_fingerprint"],
            )
            state["backbone_"] = backbone
            return backbone
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}"
        )

    def _remember_spec(self, spec) -> None:
        """Pickle ``backbone_`` by reference when ``spec`` can load it anywhere."""
        self._backbone_spec = spec if getattr(spec, "reloadable", False) else None
        self.__dict__.pop("_backbone_fingerprint", None)

    def _load_frozen_spec(self, spec):
        return spec.load().eval().requires_grad_(False)
