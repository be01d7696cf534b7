"""Name -> backbone specification, and the resolution of user-given backbones."""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

__all__ = [
    "BackboneSpec",
    "RegisteredBackbone",
    "get_spec",
    "list_backbones",
    "load_backbone",
    "register_backbone",
]


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

    def load(self):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class _Entry:
    name: str
    loader: Callable[[], object]
    description: str
    pretrained: bool


_REGISTRY: dict[str, _Entry] = {}


def register_backbone(name: str, *, description: str = "", pretrained: bool = True):
    """Decorator registering a zero-argument loader that returns a ``Backbone``.

    Parameters
    ----------
    name : str
        The name estimators then accept as ``backbone``; it must be new.
    description : str, default=""
        A one-line description of the model.
    pretrained : bool, default=True
        Whether the loader gives pretrained weights (``list_backbones``
        filters on it); test and random models set False.

    Returns
    -------
    decorator : callable
        Registers the decorated loader and returns it unchanged.
    """

    def decorator(loader):
        if name in _REGISTRY:
            raise ValueError(f"A backbone named {name!r} is already registered.")
        _REGISTRY[name] = _Entry(name, loader, description, pretrained)
        return loader

    return decorator


def list_backbones(pattern: str = "*", *, pretrained: bool | None = None) -> list[str]:
    """Names of registered backbones matching a shell-style ``pattern``.

    Besides these names, any torchvision model (``"torchvision:resnet50"``), timm
    model (``"timm:convnext_tiny"``) and Hugging Face image model
    (``"hf:facebook/dinov2-small"`` or a local folder) is accepted.

    Parameters
    ----------
    pattern : str, default="*"
        A shell-style pattern (:func:`fnmatch.fnmatchcase`), e.g.
        ``"efficientnet*"``.
    pretrained : bool or None, default=None
        True lists only models with pretrained weights, False only random
        ones (the ``test_*`` models); None lists both.

    Returns
    -------
    names : list of str
        Sorted registered names.

    Examples
    --------
    >>> from skltransfer.backbones import list_backbones
    >>> list_backbones("efficientnet_lite*")
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
    """
    _ensure_builtins()
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))
    if pretrained is not None:
        names = [n for n in names if _REGISTRY[n].pretrained == pretrained]
    return names


@dataclass(frozen=True)
class RegisteredBackbone(BackboneSpec):
    """A backbone from the registry, by name.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    """

    reloadable: ClassVar[bool] = True

    name: str

    def load(self):
        _ensure_builtins()
        backbone = _REGISTRY[self.name].loader()
        backbone.name = self.name
        return backbone.eval()


def _ensure_builtins() -> None:
    # The built-in loaders register themselves on import; importing them lazily
    # keeps `import skltransfer` free of torchvision/timm.
    from . import _efficientnet_lite, _text, _tiny  # noqa: F401


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(
        f"Unknown backbone {name!r}.{hint} Registered backbones: "
        "skltransfer.backbones.list_backbones(); other sources: 'torchvision:NAME', "
        "'timm:NAME', 'hf:HUB_ID_OR_FOLDER'."
    )


def get_spec(backbone) -> BackboneSpec:
    """Turn what a user passes as ``backbone`` into a :class:`BackboneSpec`."""
    from ._sources import (
        HFImageBackbone,
        ModuleBackbone,
        TimmBackbone,
        TorchvisionBackbone,
    )

    if isinstance(backbone, BackboneSpec):
        return backbone
    if isinstance(backbone, nn.Module):
        return ModuleBackbone(backbone)
    if hasattr(backbone, "to_backbone_spec"):
        return backbone.to_backbone_spec()
    if not isinstance(backbone, str):
        raise TypeError(
            "backbone must be a name, a BackboneSpec or a torch.nn.Module, "
            f"got {type(backbone).__name__}."
        )
    source, sep, rest = backbone.partition(":")
    if sep and source in ("torchvision", "tv"):
        return TorchvisionBackbone(rest)
    if sep and source == "timm":
        return TimmBackbone(rest)
    if sep and source == "hf":
        return HFImageBackbone(rest)
    _ensure_builtins()
    if backbone in _REGISTRY:
        return RegisteredBackbone(backbone)
    if os.path.isdir(backbone):
        return HFImageBackbone(backbone)
    raise _unknown(backbone)


def load_backbone(backbone):
    """Load ``backbone`` (a name, spec or module) as a :class:`Backbone` in eval mode.

    Parameters
    ----------
    backbone : str, BackboneSpec or torch.nn.Module
        A registered name, ``"torchvision:NAME"``, ``"timm:NAME"``,
        ``"hf:HUB_ID"`` or a local Hugging Face folder, a spec, or a module
        (wrapped as :class:`ModuleBackbone`).

    Returns
    -------
    backbone : Backbone
        The loaded network, with its preprocessing and layer groups.

    Examples
    --------
    >>> from skltransfer.backbones import load_backbone
    >>> bb = load_backbone("test_tiny_cnn")
    >>> bb.layer_names()
    ['stem', 'stages.0', 'stages.1', 'stages.2']
    """
    return get_spec(backbone).load().eval()
