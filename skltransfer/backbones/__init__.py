"""Pretrained backbones: one registry, one resolver and one head API for every source.

A backbone is named by a registered name (``"efficientnet_lite0"``), a source
prefix (``"torchvision:resnet50"``, ``"timm:convnext_tiny"``,
``"hf:facebook/dinov2-small"``), a local Hugging Face folder, a
:class:`BackboneSpec` or a ``torch.nn.Module``; :func:`get_spec` resolves
image and text backbones alike. :func:`load_backbone` returns a
:class:`Backbone` in eval mode with its preprocessing, class names and ordered
layer groups.
"""

from ._api import Backbone, split_head
from ._groups import LayerGroup, find_layer_groups
from ._preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing
from ._registry import (
    RegisteredBackbone,
    get_spec,
    list_backbones,
    load_backbone,
    load_text_backbone,
    register_backbone,
)
from ._sources import HFImageBackbone, ModuleBackbone, TimmBackbone, TorchvisionBackbone
from ._spec import BackboneSpec, TrainedBackbone
from ._text import HFTextBackbone, TextBackbone

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "BackboneSpec",
    "HFImageBackbone",
    "HFTextBackbone",
    "ImagePreprocessing",
    "LayerGroup",
    "ModuleBackbone",
    "RegisteredBackbone",
    "TextBackbone",
    "TimmBackbone",
    "TorchvisionBackbone",
    "TrainedBackbone",
    "find_layer_groups",
    "get_spec",
    "list_backbones",
    "load_backbone",
    "load_text_backbone",
    "register_backbone",
    "split_head",
]
