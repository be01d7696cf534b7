"""Image preprocessing that belongs to a set of pretrained weights."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImagePreprocessing"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision is imported when images are resized, not with this module: text
# estimators share the backbone package and never touch images.
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _interpolation_mode(name: str):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(name)


@dataclass(frozen=True)
class ImagePreprocessing:
    """Resize, centre-crop and normalise images as the weights expect.

    Parameters
    ----------
    crop_size : int
        Side of the square the model sees.
    resize_size : int or None
        The shorter side is resized to this before the centre crop. ``None``
        resizes the whole image straight to ``crop_size`` x ``crop_size``.
    interpolation : {"bilinear", "bicubic", "nearest"}
        Resampling filter.
    mean, std : tuple of float
        Per-channel normalisation of RGB values in [0, 1].
    """

    crop_size: int = 224
    resize_size: int | None = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {sorted(_INTERPOLATIONS)}, "
                f"got {self.interpolation!r}."
            )

    def with_crop_size(self, crop_size: int) -> ImagePreprocessing:
        """The same preprocessing at another input size, keeping the crop ratio."""
        if self.resize_size is None:
            return replace(self, crop_size=crop_size)
        ratio = self.resize_size / self.crop_size
        return replace(
            self, crop_size=crop_size, resize_size=math.floor(crop_size * ratio)
        )

    @property
    def crop_fraction(self) -> float:
        """The share of the resized shorter side that the centre crop keeps."""
        return 1.0 if self.resize_size is None else self.crop_size / self.resize_size

    def adjusted(self, image_size=None, crop_fraction="auto") -> ImagePreprocessing:
        """This preprocessing at another input size and crop fraction.

        ``image_size`` None keeps the weights' size; ``crop_fraction`` "auto"
        keeps the weights' convention (224 of 256 for most ImageNet models),
        a float in (0, 1] resizes the shorter side to ``crop_size /
        crop_fraction`` so that 1.0 keeps the whole shorter side. A
        preprocessing that resizes straight to a square has no crop to adjust.
        """
        pre = self if image_size is None else self.with_crop_size(image_size)
        if crop_fraction == "auto" or pre.resize_size is None:
            return pre
        resize = max(pre.crop_size, round(pre.crop_size / crop_fraction))
        return replace(pre, resize_size=resize)

    @property
    def decode_side(self) -> int:
        """The smallest side an image needs before resizing: larger images may
        be decoded reduced (JPEG draft mode) down to it, and not below."""
        return self.resize_size if self.resize_size is not None else self.crop_size

    def resize_crop_uint8(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and crop uint8 images (N, C, H, W); float RGB in [0, 1] out.

        Resampling runs on the 8-bit data, as a PIL-based pipeline does, and
        only the crop is converted to float: less memory and time than
        converting the whole decoded image first. An image whose shorter side
        is already the resize target skips the resampling (the crop is a
        view). Grey images become RGB and an alpha channel is dropped after
        the crop.
        """
        channels = images.shape[1]
        if channels == 4:
            images = images[:, :3]
        if self.interpolation == "nearest" or images.device.type == "cpu":
            out = self._resample(images)
        else:  # native uint8 resampling is a CPU kernel
            out = self._resample(images.float()).round_().clamp_(0, 255)
        out = out.float().div_(255.0)
        return out.expand(-1, 3, -1, -1) if channels == 1 else out

    def _resample(self, images: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        mode = _interpolation_mode(self.interpolation)
        if self.resize_size is None:
            size = [self.crop_size, self.crop_size]
            return TF.resize(images, size, interpolation=mode, antialias=True)
        out = TF.resize(images, [self.resize_size], interpolation=mode, antialias=True)
        return TF.center_crop(out, [self.crop_size, self.crop_size])

    def resize_crop(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and crop float images (N, 3, H, W) in [0, 1]."""
        out = self._resample(images)
        # Bicubic overshoots; keep values in the range the weights were trained
        # on (out of place: without resampling, ``out`` views ``images``).
        return out.clamp(0.0, 1.0) if self.interpolation == "bicubic" else out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise resized float images (N, 3, H, W) in [0, 1]."""
        from torchvision.transforms.v2 import functional as TF

        return TF.normalize(images, list(self.mean), list(self.std))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Resize, crop and normalise float images (N, 3, H, W) in [0, 1]."""
        return self.normalize(self.resize_crop(images))
