"""What a backbone is before it is loaded: specs, registry entries, input kinds.

A spec is a lightweight, picklable description of a backbone; it holds no
weights until :meth:`BackboneSpec.load`. Every spec answers
:attr:`BackboneSpec.input_kind` (what ``X`` the loaded backbone takes) from
what it declares, so estimators can ask before any weights are read. This
module imports nothing else from :mod:`skltransfer.backbones`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

__all__ = ["BackboneSpec", "Entry", "TrainedBackbone", "input_kind"]

#: What a backbone takes: images, strings, or numeric arrays of any rank.
INPUT_KINDS = ("image", "text", "tensor")
#: The kinds of pretrained model a hub id or folder can hold.
MODALITIES = ("image", "text")


class BackboneSpec:
    """Base class of the lightweight, picklable descriptions of a backbone.

    A spec holds no weights; :meth:`load` builds the :class:`Backbone`.
    Subclasses are frozen dataclasses, so specs compare and hash by value and
    survive ``clone`` and ``GridSearchCV``.
    """

    #: Whether :meth:`load` gives the same weights in another process where
    #: the model is installed (registered names, torchvision, timm, Hugging
    #: Face); fitted estimators then pickle the spec instead of the weights.
    reloadable: ClassVar[bool] = False

    #: What the loaded backbone takes, ``"image"``, ``"text"`` or
    #: ``"tensor"``, known without loading; None when only loading tells.
    input_kind: ClassVar[str | None] = None

    def load(self):  # pragma: no cover - abstract
        raise NotImplementedError


def input_kind(backbone) -> str:
    """``"text"``, ``"image"`` or ``"tensor"``: what a loaded backbone takes.

    A text encoder has a tokenizer, an image backbone has image
    preprocessing; any other module takes numeric arrays.
    """
    if getattr(backbone, "tokenizer", None) is not None:
        return "text"
    if getattr(backbone, "preprocessing", None) is not None:
        return "image"
    return "tensor"


@dataclass(frozen=True, eq=False)
class TrainedBackbone(BackboneSpec):
    """A trained backbone (e.g. a fine-tuned text encoder with its tokenizer).

    Each :meth:`load` returns a fresh copy, so estimators never share weights.

    Parameters
    ----------
    backbone : torch.nn.Module
        The loaded :class:`Backbone` to reuse.
    """

    backbone: torch.nn.Module

    @property
    def input_kind(self) -> str:
        return input_kind(self.backbone)

    def load(self):
        return copy.deepcopy(self.backbone).eval()


@dataclass(frozen=True)
class Entry:
    """A registered backbone: its loader and what is known of it before loading.

    ``class_names`` may be a zero-argument callable, for a long list that is
    read from a library (ImageNet's) only when asked for.
    """

    name: str
    loader: Callable[[], object]
    description: str = ""
    pretrained: bool = True
    input_kind: str = "image"
    feature_size: int | None = None
    class_names: Sequence[str] | Callable[[], Sequence[str]] | None = None

    def __post_init__(self):
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(
                f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}."
            )

    @property
    def modality(self) -> str | None:
        """``"image"`` or ``"text"``; None for a backbone of numeric arrays."""
        return self.input_kind if self.input_kind in MODALITIES else None

    def declared_class_names(self) -> list[str] | None:
        """The names of the pretrained head's outputs, when declared."""
        names = self.class_names() if callable(self.class_names) else self.class_names
        return None if names is None else list(names)
