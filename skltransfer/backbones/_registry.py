"""Name -> backbone specification, and the resolution of user-given backbones.

This module owns both: the registry of named backbones with what is known of
each before loading (:class:`~skltransfer.backbones._spec.Entry`: input kind,
feature size, class names), and :func:`get_spec`, the one resolver that turns
whatever a user passes as a backbone or text model into a
:class:`BackboneSpec`. The built-in backbones are declared by their own
modules (``BUILTINS``) and registered here.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from . import _efficientnet_lite, _text, _tiny
from ._loading import close_matches
from ._sources import HFImageBackbone, ModuleBackbone, TimmBackbone, TorchvisionBackbone
from ._spec import MODALITIES, BackboneSpec, Entry, input_kind
from ._text import HFTextBackbone, TextBackbone

__all__ = [
    "RegisteredBackbone",
    "get_spec",
    "list_backbones",
    "load_backbone",
    "load_text_backbone",
    "register_backbone",
    "spec_input_kind",
]

_REGISTRY: dict[str, Entry] = {
    entry.name: entry
    for module in (_efficientnet_lite, _text, _tiny)
    for entry in module.BUILTINS
}


def register_backbone(
    name: str,
    *,
    description: str = "",
    pretrained: bool = True,
    input_kind: str = "image",
    feature_size: int | None = None,
    class_names=None,
):
    """Decorator registering a zero-argument loader that returns a ``Backbone``.

    What is declared here is known without loading the weights: estimators
    read ``input_kind`` to tell what ``X`` holds before they fit.

    Parameters
    ----------
    name : str
        The name estimators then accept as ``backbone``; it must be new.
    description : str, default=""
        A one-line description of the model.
    pretrained : bool, default=True
        Whether the loader gives pretrained weights (``list_backbones``
        filters on it); test and random models set False.
    input_kind : {"image", "text", "tensor"}, default="image"
        What the loaded backbone takes: images (it has image
        preprocessing), strings (a :class:`TextBackbone`, with a tokenizer)
        or numeric arrays.
    feature_size : int or None, default=None
        Length of the features the backbone returns, when known.
    class_names : list of str or None, default=None
        Names of the pretrained head's outputs, when known.

    Returns
    -------
    decorator : callable
        Registers the decorated loader and returns it unchanged.
    """

    def decorator(loader):
        if name in _REGISTRY:
            raise ValueError(f"A backbone named {name!r} is already registered.")
        _REGISTRY[name] = Entry(
            name, loader, description, pretrained, input_kind, feature_size, class_names
        )
        return loader

    return decorator


def list_backbones(
    pattern: str = "*", *, pretrained: bool | None = None, modality: str | None = None
) -> list[str]:
    """Names of registered backbones matching a shell-style ``pattern``.

    Besides these names, any torchvision model (``"torchvision:resnet50"``), timm
    model (``"timm:convnext_tiny"``) and Hugging Face model
    (``"hf:facebook/dinov2-small"`` or a local folder) is accepted.

    Parameters
    ----------
    pattern : str, default="*"
        A shell-style pattern (:func:`fnmatch.fnmatchcase`), e.g.
        ``"efficientnet*"``.
    pretrained : bool or None, default=None
        True lists only models with pretrained weights, False only random
        ones (the ``test_*`` models); None lists both.
    modality : {"image", "text"} or None, default=None
        Lists only image backbones or only text encoders; None lists all.

    Returns
    -------
    names : list of str
        Sorted registered names.

    Examples
    --------
    >>> from skltransfer.backbones import list_backbones
    >>> list_backbones("efficientnet_lite*")
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
    >>> list_backbones(modality="text", pretrained=True)
    ['all-MiniLM-L6-v2']
    """
    return [
        name
        for name, entry in sorted(_REGISTRY.items())
        if fnmatch.fnmatchcase(name, pattern)
        and pretrained in (None, entry.pretrained)
        and modality in (None, entry.modality)
    ]


@dataclass(frozen=True)
class RegisteredBackbone(BackboneSpec):
    """A backbone from the registry, by name.

    Its input kind, feature size and class names are those the registry
    declares (None when not declared, or when ``name`` is not registered in
    this process).

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`.
    """

    reloadable: ClassVar[bool] = True

    name: str

    @property
    def input_kind(self) -> str | None:
        entry = _REGISTRY.get(self.name)
        return None if entry is None else entry.input_kind

    @property
    def feature_size(self) -> int | None:
        """Length of the features, as declared; None when not declared."""
        entry = _REGISTRY.get(self.name)
        return None if entry is None else entry.feature_size

    @property
    def class_names(self) -> list[str] | None:
        """Names of the pretrained head's outputs, as declared."""
        entry = _REGISTRY.get(self.name)
        return None if entry is None else entry.declared_class_names()

    def load(self):
        entry = _REGISTRY[self.name]
        backbone = entry.loader()
        loaded = input_kind(backbone)
        if loaded != entry.input_kind:
            # Estimators read the declared kind before loading, to tell what X
            # holds; a wrong declaration would fail later on the data instead.
            raise ValueError(
                f"Backbone {self.name!r} is registered with input_kind="
                f"{entry.input_kind!r} but its loader returned a {loaded} "
                f"backbone: register it with input_kind={loaded!r}."
            )
        backbone.name = self.name
        return backbone.eval()


def _unknown(name: str) -> ValueError:
    hint = close_matches(name, _REGISTRY, cutoff=0.5)
    return ValueError(
        f"Unknown backbone {name!r}.{hint} Registered backbones: "
        "skltransfer.backbones.list_backbones(); other sources: 'torchvision:NAME', "
        "'timm:NAME', 'hf:HUB_ID_OR_FOLDER'."
    )


# Top-level keys by which a transformers configuration declares image inputs:
# every vision model's configuration has one of the first two, and a model
# with a vision tower (CLIP-like) nests one under the third. Text
# configurations have none of them.
_IMAGE_CONFIG_KEYS = frozenset({"num_channels", "image_size", "vision_config"})


def _config_file(path: str) -> str | None:
    """The ``config.json`` of a local folder, or of a hub id in the local cache."""
    folder = os.path.expanduser(path)
    if os.path.isdir(folder):
        return os.path.join(folder, "config.json")
    try:
        from huggingface_hub import try_to_load_from_cache

        file = try_to_load_from_cache(path, "config.json")
    except Exception:  # no huggingface_hub, or not a valid repository id
        return None
    return file if isinstance(file, str) else None


def hf_modality(path: str) -> str | None:
    """Whether the Hugging Face model at ``path`` is an ``"image"`` or a ``"text"``
    model, read from its ``config.json`` without loading weights or code.

    The configuration of an image model declares image inputs
    (``num_channels``, ``image_size`` or a ``vision_config``); any other
    configuration is a text model's. None when no configuration is on this
    machine (a hub id that was never downloaded).
    """
    file = _config_file(path)
    try:
        with open(file, encoding="utf-8") as f:
            config = json.load(f)
    except (TypeError, OSError, ValueError):  # no file, or not a configuration
        return None
    if not isinstance(config, dict):
        return None
    return "image" if _IMAGE_CONFIG_KEYS & config.keys() else "text"


def _hf_spec(path: str, modality: str | None, trust_remote_code: bool):
    # Without a configuration to read, an ``hf:`` id is an image model: what
    # get_spec always took it for; text estimators say modality="text".
    modality = modality or hf_modality(path) or "image"
    spec = HFTextBackbone if modality == "text" else HFImageBackbone
    return spec(path, trust_remote_code)


def _type_error(backbone, modality: str | None) -> TypeError:
    # Text estimators call the parameter ``model``.
    what = "model" if modality == "text" else "backbone"
    return TypeError(
        f"{what} must be a name, a hub id, a local folder, a BackboneSpec or a "
        f"torch.nn.Module, got {type(backbone).__name__}."
    )


def get_spec(
    backbone, *, modality: str | None = None, trust_remote_code: bool = False
) -> BackboneSpec:
    """Turn what a user passes as a backbone (or text model) into a spec.

    One resolver for image and text backbones, in this order: a spec is
    returned as it is; a ``torch.nn.Module`` becomes a
    :class:`ModuleBackbone`; a fitted source estimator gives its
    ``to_backbone_spec()``; ``"torchvision:NAME"``, ``"timm:NAME"`` and
    ``"hf:ID_OR_FOLDER"`` name their source; then registered names; then local
    folders. A Hugging Face id or folder holds an image model
    (:class:`HFImageBackbone`) or a text model (:class:`HFTextBackbone`):
    ``modality`` says which when the caller knows, otherwise the model's
    ``config.json`` tells without loading any weights (it declares image
    inputs, such as ``image_size``, only for image models), and an id whose
    configuration is not on this machine is taken for an image model.

    Parameters
    ----------
    backbone : str, path-like, BackboneSpec, torch.nn.Module or estimator
        What the user passed as ``backbone`` (or ``model``).
    modality : {"image", "text"} or None, default=None
        What a Hugging Face id or folder holds, when the caller knows; with
        ``"text"``, any unregistered string is read as a hub id, as text
        models are often named by their id alone. None decides from the
        model's configuration.
    trust_remote_code : bool, default=False
        Allow model code shipped with a Hugging Face checkpoint to run.

    Returns
    -------
    spec : BackboneSpec
        A description of the backbone; no weights are loaded.

    Examples
    --------
    >>> from skltransfer.backbones import get_spec
    >>> get_spec("test_tiny_cnn")
    RegisteredBackbone(name='test_tiny_cnn')
    >>> get_spec("timm:resnet18").input_kind
    'image'
    >>> get_spec("hf:org/encoder", modality="text")
    HFTextBackbone(path='org/encoder', trust_remote_code=False)
    """
    if modality not in (None, *MODALITIES):
        raise ValueError(f"modality must be one of {MODALITIES} or None.")
    if isinstance(backbone, BackboneSpec):
        return backbone
    if isinstance(backbone, nn.Module):
        return ModuleBackbone(backbone)
    if hasattr(backbone, "to_backbone_spec"):
        return backbone.to_backbone_spec()
    if not isinstance(backbone, str | os.PathLike):
        raise _type_error(backbone, modality)
    name = os.fspath(backbone)
    source, sep, rest = name.partition(":")
    if sep and source in ("torchvision", "tv"):
        return TorchvisionBackbone(rest)
    if sep and source == "timm":
        return TimmBackbone(rest)
    if sep and source == "hf":
        return _hf_spec(rest, modality, trust_remote_code)
    if name in _REGISTRY:
        return RegisteredBackbone(name)
    if modality == "text" or os.path.isdir(name):
        return _hf_spec(name, modality, trust_remote_code)
    raise _unknown(name)


def spec_input_kind(backbone) -> str | None:
    """What ``X`` the ``backbone`` parameter takes, without loading weights.

    ``"image"``, ``"text"`` or ``"tensor"``; None when only loading can tell,
    or when ``backbone`` names no backbone.
    """
    if hasattr(backbone, "to_backbone_spec"):  # a source estimator: no copy
        return getattr(backbone, "input_kind_", None)
    try:
        spec = get_spec(backbone)
    except (TypeError, ValueError):
        return None
    return spec.input_kind


def load_backbone(backbone):
    """Load ``backbone`` (a name, spec or module) as a :class:`Backbone` in eval mode.

    Parameters
    ----------
    backbone : str, BackboneSpec or torch.nn.Module
        A registered name, ``"torchvision:NAME"``, ``"timm:NAME"``,
        ``"hf:HUB_ID"`` or a local Hugging Face folder, a spec, or a module
        (wrapped as :class:`ModuleBackbone`); see :func:`get_spec`.

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


def load_text_backbone(model, *, trust_remote_code: bool = False) -> TextBackbone:
    """Load a text encoder (name, hub id, folder or spec) as a :class:`TextBackbone`.

    Examples
    --------
    >>> from skltransfer.backbones import load_text_backbone
    >>> bb = load_text_backbone("test_tiny_bert")
    >>> batch = bb.tokenize(["a good film", "bad"])
    >>> bb.forward_features(batch).shape
    torch.Size([2, 32])
    >>> [g.name for g in bb.layer_groups()]
    ['embeddings', 'encoder.layer.0', 'encoder.layer.1']
    """
    spec = get_spec(model, modality="text", trust_remote_code=trust_remote_code)
    return check_text_backbone(spec.load().eval(), model)


def check_text_backbone(backbone, model) -> TextBackbone:
    """``backbone``, loaded from ``model``, if it is a text encoder."""
    if not isinstance(backbone, TextBackbone):
        raise ValueError(
            f"{model!r} is not a text encoder (it loads as {type(backbone).__name__})."
        )
    return backbone
