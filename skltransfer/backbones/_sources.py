"""Backbone specifications for each source: torchvision, timm, Hugging Face, modules.

Each spec is a frozen dataclass whose :meth:`load` imports its library lazily and
returns a :class:`~skltransfer.backbones.Backbone` in eval mode on the CPU.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from ..exceptions import missing_dependency
from ._api import Backbone, split_head
from ._groups import LayerGroup, declared_layer_groups
from ._loading import (
    HuggingFaceSpec,
    close_matches,
    fetching_weights,
    quiet_weight_loading,
    seeded,
)
from ._preprocessing import ImagePreprocessing
from ._spec import BackboneSpec

__all__ = ["HFImageBackbone", "ModuleBackbone", "TimmBackbone", "TorchvisionBackbone"]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard order (ships offline)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass(frozen=True)
class TorchvisionBackbone(BackboneSpec):
    """A torchvision classification model.

    Parameters
    ----------
    name : str
        A name from ``torchvision.models.list_models()``, e.g. ``"resnet50"``.
    weights : str, weights enum member or None
        ``"DEFAULT"``, a member name such as ``"IMAGENET1K_V2"``, an enum member,
        or None for random initialisation (no download).
    """

    reloadable: ClassVar[bool] = True
    input_kind: ClassVar[str] = "image"

    name: str
    weights: object = "DEFAULT"

    def _weights(self):
        from torchvision import models

        if self.weights is None or not isinstance(self.weights, str):
            return self.weights
        enum = models.get_model_weights(self.name)
        try:
            return enum[self.weights]
        except KeyError:
            raise ValueError(
                f"Unknown weights {self.weights!r} for torchvision model "
                f"{self.name!r}; choose from {[w.name for w in enum]} or None."
            ) from None

    def _remedy(self) -> str:
        import torch.hub

        weights = self._weights()
        file = os.path.basename(getattr(weights, "url", "")) or "the weights file"
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        return (
            "Run once with network access (torch keeps them in "
            f"{folder}), copy {file} into that folder from a machine that has "
            "it, or use random weights: "
            f"backbone=TorchvisionBackbone({self.name!r}, weights=None)."
        )

    def load(self) -> Backbone:
        from torchvision import models

        available = models.list_models(module=models)
        if self.name not in available:
            raise ValueError(
                f"Unknown torchvision model {self.name!r}."
                + close_matches(self.name, available)
            )
        weights = self._weights()
        with seeded(), fetching_weights(f"'torchvision:{self.name}'", self._remedy()):
            model = models.get_model(self.name, weights=weights)
        body, head = split_head(model)
        if weights is None:
            return Backbone(
                body, head, preprocessing=ImagePreprocessing(), name=self.name
            )
        t = weights.transforms()
        preprocessing = ImagePreprocessing(
            crop_size=t.crop_size[0],
            resize_size=t.resize_size[0],
            interpolation=t.interpolation.value,
            mean=tuple(t.mean),
            std=tuple(t.std),
        )
        return Backbone(
            body,
            head,
            preprocessing=preprocessing,
            class_names=weights.meta.get("categories"),
            name=f"torchvision:{self.name}",
        )


def timm_preprocessing(model) -> ImagePreprocessing:
    """The preprocessing timm's pretrained config prescribes for ``model``."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    crop = cfg["input_size"][-1]
    # A ViT built for another size (``img_size=`` among the kwargs) accepts only
    # that size, whatever its pretrained config says.
    embed = getattr(model, "patch_embed", None)
    fixed = getattr(embed, "img_size", None)
    if fixed and not getattr(embed, "dynamic_img_size", False):
        crop = fixed[-1]
    return ImagePreprocessing(
        crop_size=crop,
        resize_size=math.floor(crop / cfg.get("crop_pct", 1.0)),
        interpolation=cfg.get("interpolation", "bilinear"),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )


def _as_key(ordinal) -> tuple:
    return tuple(ordinal) if isinstance(ordinal, Iterable) else (ordinal,)


def _timm_group_key(matcher):
    """The stage of a parameter name, as a sortable tuple, per timm's ``group_matcher``.

    A matcher is a dict of regular expressions (one per stage kind, each
    capturing the stage index, some with a suffix tuple) or a function of the
    name. Names no expression matches (a neck) come last, as in timm.
    """
    if callable(matcher):
        return lambda name: _as_key(matcher(name))
    patterns = []
    for ordinal, spec in enumerate(matcher.values()):
        specs = spec if isinstance(spec, list | tuple) else [(spec, None)]
        patterns += [(re.compile(rx), ordinal, suffix or ()) for rx, suffix in specs]

    def key(name: str) -> tuple:
        for pattern, ordinal, suffix in patterns:
            match = pattern.match(name)
            if match:
                indexes = (float(g) for g in match.groups() if g is not None)
                return (ordinal, *indexes, *suffix)
        return (math.inf,)

    return key


def timm_layer_groups(model) -> list[LayerGroup] | None:
    """The stages ``model`` declares with ``group_matcher(coarse=True)``; None
    when it declares none (its groups are then found by probing)."""
    try:
        matcher = model.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError):
        return None
    return declared_layer_groups(model, _timm_group_key(matcher)) or None


def _outputs(head: nn.Module | None) -> int | None:
    """The number of classes a pretrained head scores (its last linear layer's)."""
    linears = (
        [] if head is None else [m for m in head.modules() if isinstance(m, nn.Linear)]
    )
    return linears[-1].out_features if linears else None


class _MeanOfHeads(nn.Module):
    """Classifiers that read the same pooled features, averaged as timm does at
    inference (LeViT's and RepViT's class and distillation heads)."""

    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x):
        return sum(head(x) for head in self.heads) / len(self.heads)


def _split_several_heads(
    model, head_names, size: int
) -> tuple[nn.Module, nn.Module | None]:
    """Split a timm model that declares several classifiers (distilled models).

    The body is the model without classifiers, timm's own feature extractor
    (``reset_classifier(0)``: the pooled pre-logits features). Their average is
    its pretrained head only where every classifier reads those features: it is
    checked against the model's own logits on one input, and where it differs
    (DeiT, PiT and VOLO read separate tokens, CrossViT separate branches)
    there is no head to reuse.
    """
    import torch

    heads = [model.get_submodule(name) for name in head_names]
    model.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
        model.reset_classifier(0)
        head = _MeanOfHeads(heads)
        try:
            same = torch.allclose(head(model(x)), logits, rtol=1e-3, atol=1e-4)
        except RuntimeError:  # a head of one branch (CrossViT) or of a larger tensor
            same = False
    return model, head if same else None


def timm_backbone(model, name: str, pretrained: bool) -> Backbone:
    """Wrap a timm model with the stages it declares, naming ImageNet classes when
    its head has 1000 outputs."""
    preprocessing = timm_preprocessing(model)
    head_name = model.pretrained_cfg.get("classifier")
    if isinstance(head_name, tuple | list):
        body, head = _split_several_heads(model, head_name, preprocessing.crop_size)
    else:
        if head_name and not isinstance(model.get_submodule(head_name), nn.Linear):
            head_name = None
        body, head = split_head(model, head_name)
    names = None
    if pretrained and _outputs(head) == 1000:
        names = imagenet_class_names()
    return Backbone(
        body,
        head,
        preprocessing=preprocessing,
        class_names=names,
        name=name,
        layer_groups=timm_layer_groups(body),
    )


# Prefixes timm reads in a model name: a hub repository or a local folder.
_TIMM_SOURCES = ("hf-hub", "local-dir")


@dataclass(frozen=True)
class TimmBackbone(BackboneSpec):
    """A timm model by name (``pretrained=True`` downloads its weights).

    Parameters
    ----------
    name : str
        A model name of timm, e.g. ``"convnext_tiny"``; or
        ``"local-dir:/path/to/folder"``, a folder saved by timm
        (``config.json`` and ``model.safetensors``), which loads offline; or
        ``"hf-hub:org/name"``.
    pretrained : bool, default=True
        Load the pretrained weights (a download unless cached); False draws
        random weights from a fixed seed.
    kwargs : tuple of (str, value) pairs, default=()
        More keyword arguments of ``timm.create_model``, as pairs so that the
        spec stays hashable, e.g. ``(("drop_path_rate", 0.1),)``.
    """

    reloadable: ClassVar[bool] = True
    input_kind: ClassVar[str] = "image"

    name: str
    pretrained: bool = True
    kwargs: tuple = field(default=())

    def load(self) -> Backbone:
        try:
            import timm
        except ImportError:
            raise missing_dependency("timm", "A timm backbone") from None
        source = self.name.partition(":")[0] if ":" in self.name else None
        if source not in _TIMM_SOURCES and not timm.is_model(self.name):
            raise ValueError(
                f"Unknown timm model {self.name!r}."
                + close_matches(self.name, timm.list_models())
            )
        remedy = (
            "Run once with network access (timm caches them), use random "
            f"weights: backbone=TimmBackbone({self.name!r}, pretrained=False), or "
            "load a folder saved by timm (config.json and model.safetensors): "
            "backbone='timm:local-dir:/path/to/folder'."
        )
        with seeded(), fetching_weights(f"'timm:{self.name}'", remedy):
            model = timm.create_model(
                self.name, pretrained=self.pretrained, **dict(self.kwargs)
            )
        return timm_backbone(model, f"timm:{self.name}", self.pretrained)


class _HFPooled(nn.Module):
    """A Hugging Face vision encoder returning one vector per image.

    ``pooler_output`` is used when the model pools without learned weights
    (ConvNeXt, Swin, DINOv2); otherwise the CLS token of the last hidden state,
    since a BERT-style dense+tanh pooler is often left untrained in checkpoints.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        pooler = getattr(model, "pooler", None)
        self.use_cls = pooler is not None and any(
            isinstance(m, nn.Linear) for m in pooler.modules()
        )

    def forward(self, pixel_values):
        out = self.model(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        hidden = out.last_hidden_state
        if pooled is not None and not self.use_cls:
            return pooled.flatten(1)
        if hidden.ndim == 3:
            return hidden[:, 0]
        return hidden.mean(dim=(2, 3))


class _HFLogits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


_HF_REMEDY = (
    "Run once with network access (the model is then cached), or pass a local "
    "folder saved by save_pretrained: backbone='hf:/path/to/folder'."
)


def _hf_preprocessing(processor) -> ImagePreprocessing:
    from PIL import Image

    def side(size):
        if isinstance(size, int):
            return size
        size = dict(size)
        return size.get("shortest_edge") or size.get("height")

    crop = (
        getattr(processor, "crop_size", None)
        if getattr(processor, "do_center_crop", False)
        else None
    )
    size = side(processor.size)
    resample = {
        Image.Resampling.BICUBIC: "bicubic",
        Image.Resampling.NEAREST: "nearest",
    }.get(getattr(processor, "resample", None), "bilinear")
    mean = tuple(getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5))
    std = tuple(getattr(processor, "image_std", None) or (0.5, 0.5, 0.5))
    if crop:
        return ImagePreprocessing(side(crop), size, resample, mean, std)
    return ImagePreprocessing(size, None, resample, mean, std)


@dataclass(frozen=True)
class HFImageBackbone(HuggingFaceSpec):
    """A Hugging Face image model by hub id or local folder.

    Checkpoints with an image-classification head keep it (and their
    ``id2label`` class names); others are loaded with ``AutoModel``.

    Parameters
    ----------
    path : str
        A hub id (``"facebook/dinov2-small"``, downloaded by transformers) or
        a local folder.
    trust_remote_code : bool, default=False
        Allow model code shipped with the checkpoint to run.
    """

    input_kind: ClassVar[str] = "image"
    _remedy: ClassVar[str] = _HF_REMEDY

    def _load(self, transformers, path: str, kw: dict) -> Backbone:
        config = transformers.AutoConfig.from_pretrained(path, **kw)
        processor = transformers.AutoImageProcessor.from_pretrained(path, **kw)
        archs = getattr(config, "architectures", None) or []
        with seeded(), quiet_weight_loading():
            if any(a.endswith("ForImageClassification") for a in archs):
                model = transformers.AutoModelForImageClassification.from_pretrained(
                    path, **kw
                )
                body, head = split_head(_HFLogits(model))
                id2label = model.config.id2label
                names = [id2label[i] for i in sorted(id2label)]
            else:
                model = transformers.AutoModel.from_pretrained(path, **kw)
                body, head, names = _HFPooled(model), None, None
        return Backbone(
            body,
            head,
            preprocessing=_hf_preprocessing(processor),
            class_names=names,
            name=f"hf:{path}",
        )


@dataclass(frozen=True, eq=False)
class ModuleBackbone(BackboneSpec):
    """A user's own ``torch.nn.Module`` as a backbone.

    Parameters
    ----------
    module : nn.Module
        Maps an input batch to features (its output is flattened to (N, D)).
        It is copied on load, so the user's object is never modified.
    preprocessing : ImagePreprocessing or None
        For image inputs; None means inputs are used as given.
    head : str or None
        Name of a submodule to detach as the pretrained head (e.g. ``"fc"``);
        None keeps the module whole, its output being the features.
    layer_groups : list of str or None
        Submodule names, in order, to use as layer groups instead of the
        automatic split.
    class_names : list of str or None
        Names of the head's outputs.
    """

    module: nn.Module
    preprocessing: ImagePreprocessing | None = None
    head: str | None = None
    layer_groups: tuple | None = None
    class_names: tuple | None = None

    @property
    def input_kind(self) -> str:
        return "tensor" if self.preprocessing is None else "image"

    def load(self) -> Backbone:
        body = copy.deepcopy(self.module)
        body, head = split_head(body, self.head) if self.head else (body, None)
        groups = None
        if self.layer_groups is not None:
            groups = [LayerGroup(n, (n,)) for n in self.layer_groups]
        return Backbone(
            body,
            head,
            preprocessing=self.preprocessing,
            class_names=self.class_names,
            name=type(self.module).__name__,
            layer_groups=groups,
        )
