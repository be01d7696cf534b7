"""Training-time augmentation: image presets, Gaussian noise and user callables.

Augmentations apply only to training batches inside ``fit``, never to
validation or prediction batches, so cross-validation scores stay clean.

Images are augmented after resizing and cropping, as float tensors in [0, 1]
of the backbone's input size, and normalised afterwards with the backbone's
own mean and standard deviation. Each image of a batch draws its own random
parameters.

Accepted ``augmentation`` values:

- ``"light"`` (images): random resized crop (80-100 % of the area) and
  horizontal flip;
- ``"strong"`` (images): a wider random resized crop (35-100 %), horizontal
  flip, brightness/contrast/saturation jitter, random greyscale and random
  erasing;
- ``"noise"`` or :class:`GaussianNoise` (any numeric input): additive
  Gaussian noise;
- a callable, applied to each training batch: a float tensor (B, 3, S, S) in
  [0, 1] for images, the float input tensor for tensor inputs, the list of
  strings for texts. Wrap a torchvision transform in :class:`PerSample` to
  draw its random parameters per image. Use a module-level function or class
  (not a lambda) to keep the estimator picklable.

Examples
--------
>>> import torch
>>> from skltransfer.augmentation import GaussianNoise, make_augmentation
>>> aug = make_augmentation("light", kind="image", image_size=32)
>>> aug(torch.rand(4, 3, 32, 32)).shape
torch.Size([4, 3, 32, 32])
>>> noise = make_augmentation(GaussianNoise(std=0.5), kind="tensor")
>>> noise(torch.zeros(3, 2)).shape
torch.Size([3, 2])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "IMAGE_PRESETS",
    "GaussianNoise",
    "PerSample",
    "image_preset",
    "make_augmentation",
]

IMAGE_PRESETS = ("light", "strong")
_NAMES = (*IMAGE_PRESETS, "noise")


@dataclass(frozen=True)
class GaussianNoise:
    """Additive Gaussian noise, the classic augmentation for numeric inputs.

    Parameters
    ----------
    std : float, default=0.1
        Standard deviation of the noise. For images it is in units of the
        [0, 1] pixel range (noisy pixels are clipped back into it).
    relative : bool, default=True
        For tensor inputs, measure ``std`` in units of each feature's
        standard deviation over the training data, so features of any scale
        get comparable noise. Ignored for images.
    """

    std: float = 0.1
    relative: bool = True

    def __post_init__(self):
        if not self.std >= 0:
            raise ValueError(f"GaussianNoise std must be >= 0, got {self.std!r}.")


class _AddNoise:
    """Noise of a fixed per-feature scale; optionally clipped to [0, 1]."""

    def __init__(self, scale, clip: bool):
        self.scale = scale
        self.clip = clip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale
        if isinstance(scale, torch.Tensor):
            scale = scale.to(x.device, x.dtype)
        out = x + torch.randn_like(x) * scale
        return out.clamp_(0.0, 1.0) if self.clip else out


class PerSample:
    """Apply a transform to each sample of a batch separately.

    torchvision transforms draw one set of random parameters per call; on a
    batch that would crop or flip every image alike. This wrapper calls the
    transform once per image.

    Parameters
    ----------
    transform : callable
        Maps one sample (e.g. a (3, H, W) tensor) to a sample of the same shape.

    Examples
    --------
    >>> import torch
    >>> from torchvision.transforms import v2
    >>> from skltransfer.augmentation import PerSample
    >>> PerSample(v2.RandomHorizontalFlip())(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 3, 8, 8])
    """

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(x) for x in batch])

    def __repr__(self) -> str:
        return f"PerSample({self.transform!r})"


def image_preset(name: str, image_size: int) -> PerSample:
    """The ``"light"`` or ``"strong"`` torchvision pipeline for ``image_size`` px.

    Parameters
    ----------
    name : str
        The preset, ``"light"`` or ``"strong"`` (see the module docstring).
    image_size : int
        Side of the square images, in pixels.

    Returns
    -------
    augmentation : PerSample
        The pipeline, drawing its random parameters per image.
    """
    from torchvision.transforms import v2

    if name == "light":
        ops = [
            v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    elif name == "strong":
        ops = [
            v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
            v2.RandomGrayscale(p=0.1),
            v2.RandomErasing(p=0.25),
        ]
    else:
        raise _unknown(name)
    return PerSample(v2.Compose(ops))


def _unknown(name) -> ValueError:
    return ValueError(
        f"Unknown augmentation {name!r}; use one of {list(_NAMES)} "
        "('light' and 'strong' are for images, 'noise' for any numeric input), "
        "a GaussianNoise(...), a callable, or None."
    )


def _noise(spec: GaussianNoise, kind: str, X: torch.Tensor | None) -> _AddNoise:
    if kind == "image":
        return _AddNoise(spec.std, clip=True)
    if spec.relative and X is not None:
        scale = spec.std * X.float().std(dim=0, keepdim=True)
        return _AddNoise(torch.nan_to_num(scale), clip=False)
    return _AddNoise(spec.std, clip=False)


def make_augmentation(augmentation, *, kind: str, image_size=None, X=None):
    """Build the training-batch transform for ``augmentation``.

    Parameters
    ----------
    augmentation : None, str, GaussianNoise or callable
        See the module documentation.
    kind : {"image", "tensor", "text"}
        What the batches hold.
    image_size : int or None
        Side of the training images (for the image presets).
    X : tensor or None
        Training inputs, for noise relative to each feature's spread.

    Returns
    -------
    transform : callable or None
        Maps a training batch to an augmented batch; None for no augmentation.
    """
    if augmentation is None:
        return None
    if isinstance(augmentation, str):
        if augmentation not in _NAMES:
            raise _unknown(augmentation)
        if augmentation == "noise":
            augmentation = GaussianNoise()
        elif kind != "image":
            raise ValueError(
                f"augmentation={augmentation!r} is an image preset, but the "
                f"backbone takes {kind} inputs; use 'noise' or a callable."
            )
        else:
            return image_preset(augmentation, image_size)
    if isinstance(augmentation, GaussianNoise):
        if kind == "text":
            raise ValueError(
                "Gaussian noise does not apply to text inputs; pass a callable "
                "that transforms the batch's list of strings."
            )
        return _noise(augmentation, kind, X)
    if callable(augmentation):
        return augmentation
    raise TypeError(
        "augmentation must be None, a name, a GaussianNoise or a callable, got "
        f"{type(augmentation).__name__}."
    )
