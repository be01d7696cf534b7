"""What a backbone takes as input, and trained backbones as specs.

The backbone decides what ``X`` is: a text encoder (it has a tokenizer) takes
strings, an image backbone (it has image preprocessing) takes images, and any
other module takes numeric arrays of any rank. ``X`` itself is validated by
:class:`skltransfer.inputs.validation.InputsMixin`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..backbones import BackboneSpec, ModuleBackbone, get_spec

__all__ = ["TrainedBackbone", "input_kind", "spec_input_kind"]


@dataclass(frozen=True, eq=False)
class TrainedBackbone(BackboneSpec):
    """A trained backbone (e.g. a fine-tuned text encoder with its tokenizer).

    Each :meth:`load` returns a fresh copy, so estimators never share weights.
    """

    backbone: torch.nn.Module

    def load(self):
        return copy.deepcopy(self.backbone).eval()


def input_kind(backbone) -> str:
    """``"text"``, ``"image"`` or ``"tensor"``: what a loaded backbone takes."""
    if getattr(backbone, "tokenizer", None) is not None:
        return "text"
    if getattr(backbone, "preprocessing", None) is not None:
        return "image"
    return "tensor"


_IMAGE_SPECS = ("TorchvisionBackbone", "TimmBackbone", "HFImageBackbone")


def spec_input_kind(backbone) -> str | None:
    """The input kind of a ``backbone`` parameter without loading weights (None:
    not known before loading)."""
    if hasattr(backbone, "to_backbone_spec"):  # a source estimator: no copy
        return getattr(backbone, "input_kind_", None)
    try:
        spec = get_spec(backbone)
    except (TypeError, ValueError):
        return None
    if isinstance(spec, TrainedBackbone):
        return input_kind(spec.backbone)
    if isinstance(spec, ModuleBackbone):
        return "tensor" if spec.preprocessing is None else "image"
    kind = type(spec).__name__
    if kind.endswith("TextBackbone"):
        return "text"
    if kind in _IMAGE_SPECS:
        return "image"
    if kind == "RegisteredBackbone":
        from ..backbones._registry import _REGISTRY

        loader = getattr(_REGISTRY.get(spec.name), "loader", None)
        return (
            "text" if getattr(loader, "__module__", "").endswith("_text") else "image"
        )
    return None
