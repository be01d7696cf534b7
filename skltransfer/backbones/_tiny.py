"""Tiny randomly initialised backbones for tests and examples (never downloaded).

Their weights are drawn from a fixed seed, so every load gives the same model.
"""

from __future__ import annotations

from torch import nn

from ._api import Backbone, split_head
from ._loading import seeded
from ._preprocessing import ImagePreprocessing
from ._sources import TimmBackbone
from ._spec import Entry

_TINY_CNN_CLASSES = tuple(f"class_{i}" for i in range(10))


def _conv_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """A four-group CNN (stem + three stages) with a 10-class head."""

    def __init__(self, widths=(8, 16, 24, 32), num_classes: int = 10):
        super().__init__()
        self.stem = _conv_bn(3, widths[0], 2)
        self.stages = nn.Sequential(
            *[_conv_bn(a, b, 2) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))


def tiny_cnn() -> Backbone:
    with seeded():
        model = TinyCNN()
    body, head = split_head(model, "fc")
    return Backbone(
        body,
        head,
        preprocessing=ImagePreprocessing(crop_size=32, resize_size=36),
        class_names=_TINY_CNN_CLASSES,
        name="test_tiny_cnn",
    )


def tiny_vit() -> Backbone:
    return TimmBackbone("test_vit", pretrained=False).load()


#: The tiny models the registry declares.
BUILTINS = (
    Entry(
        "test_tiny_cnn",
        tiny_cnn,
        "Tiny random CNN for tests (32 px)",
        pretrained=False,
        feature_size=32,
        class_names=_TINY_CNN_CLASSES,
    ),
    Entry(
        "test_tiny_vit",
        tiny_vit,
        "Tiny random timm ViT for tests",
        pretrained=False,
        feature_size=64,  # the width of timm's test_vit
    ),
)
