"""What the image estimators share: loading the backbone, reading inputs, batching."""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator

from ._batch_size import default_batch_size, plan_batches
from ._compile import compiled_forward
from ._device import PRECISIONS, resolve_precision
from ._inference import run_batched
from ._process_state import load_frozen
from ._validation import Interval, StrOptions, check_is_fitted, validate_data
from .backbones import get_spec
from .base import TorchModelMixin
from .inputs.images import as_image_source, background_rgb


def _is_flat_numeric(X) -> bool:
    """Whether ``X`` is a 2-D table of numbers (rows of flattened images).

    Sparse matrices count too, so that scikit-learn's validation rejects them
    with its standard message.
    """
    if sp.issparse(X):
        return True
    if hasattr(X, "dtypes") and getattr(X, "ndim", 0) == 2:
        return all(dtype.kind in "biuf" for dtype in X.dtypes)
    if isinstance(X, list | tuple):
        first = X[0] if X else None
        return isinstance(first, list | tuple) or (
            isinstance(first, np.ndarray) and first.ndim == 1
        )
    if not hasattr(X, "__array__"):
        return False
    arr = np.asarray(X)
    if arr.ndim != 2:
        return False
    if arr.dtype == object:  # numbers stored as objects, but not paths or images
        return arr.size > 0 and not isinstance(arr.flat[0], str | bytes | os.PathLike)
    return arr.dtype.kind in "biufc"


class PretrainedImageBase(TorchModelMixin, BaseEstimator):
    """Shared fit/inference machinery of the image estimators (not public)."""

    # The backbone parameter may hold a user's module (see TorchModelMixin).
    _device_state = ("backbone", "backbone_")

    _parameter_constraints: dict = {
        "backbone": "no_validation",  # checked by get_spec in fit
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "crop_fraction": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="right")],
        "background": [str, tuple, list],
        "image_shape": [tuple, list, None],
        "value_range": [StrOptions({"auto"}), tuple, list],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "verbose": ["verbose"],
        "compile": ["boolean"],
    }

    def _fit_backbone(self, X):
        """Load weights and learn input conventions from ``X``; returns the source."""
        # get_spec validates the backbone parameter (names, specs or modules).
        spec = get_spec(self.backbone)
        backbone = load_frozen(spec)
        self._remember_spec(spec)
        if backbone.preprocessing is None:
            raise ValueError(
                f"Backbone {backbone.name!r} has no image preprocessing; wrap a "
                "module as ModuleBackbone(module, preprocessing=ImagePreprocessing())."
            )
        background_rgb(self.background)  # a clear error at fit, not at transform
        self.backbone_ = backbone
        self.preprocessing_ = backbone.preprocessing.adjusted(
            self.image_size, self.crop_fraction
        )
        if self.value_range != "auto":
            self.value_range_ = self._check_value_range(self.value_range)
        if X is None:  # nothing to learn from: numeric inputs are taken as 0-1
            self.value_range_ = getattr(self, "value_range_", None)
            return None
        source = self._image_source(X, reset=True)
        if self.value_range == "auto":
            self.value_range_ = source.fit_value_range()
        return source

    @staticmethod
    def _check_value_range(value_range):
        if len(value_range) != 2 or not value_range[1] > value_range[0]:
            raise ValueError(
                f"value_range must be 'auto' or (low, high) with high > low, "
                f"got {value_range!r}."
            )
        return (float(value_range[0]), float(value_range[1]))

    def _image_source(self, X, *, reset: bool):
        if _is_flat_numeric(X) or (not reset and hasattr(self, "n_features_in_")):
            # Rows of flattened images: scikit-learn's checks of shape, dtype,
            # feature names and the number of columns seen in fit.
            # dtype="numeric" keeps uint8/float as they are and converts objects.
            X = validate_data(self, X, reset=reset, dtype="numeric")
        elif reset:
            for attr in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(attr, None)
        return as_image_source(
            X,
            image_shape=self.image_shape,
            value_range=None if reset else self.value_range_,
            background=background_rgb(self.background),
        )

    def _example(self, n: int = 1) -> torch.Tensor:
        size = self.preprocessing_.crop_size
        return torch.zeros(n, 3, size, size)

    def _compilable(self) -> bool:
        """Whether the forward pass can be compiled as one graph."""
        return True

    def _forward_key(self) -> tuple:
        """What, besides the backbone, decides the computation of ``forward``."""
        return ()

    def _channels_last(self) -> bool:
        # Convolutions with oneDNN/cuDNN run faster on NHWC tensors; transformers
        # gain nothing. Decided once per fit from the architecture.
        return any(isinstance(m, torch.nn.Conv2d) for m in self.backbone_.modules())

    def _run(self, X, forward, desc: str) -> np.ndarray:
        """Apply ``forward`` (device batch -> tensor) to every image of ``X``."""
        check_is_fitted(self, "backbone_")
        return self._run_source(self._image_source(X, reset=False), forward, desc)

    def _run_source(self, source, forward, desc: str) -> np.ndarray:
        device = self._device()
        dtype = resolve_precision(self.precision, device)
        channels_last = self._channels_last()
        memory_format = (
            torch.channels_last if channels_last else torch.contiguous_format
        )
        self.backbone_.to(device=device, memory_format=memory_format)
        pre = self.preprocessing_
        config = (self._forward_key(), str(device), dtype, channels_last)
        # The key of a measured batch size; the size of each image is fixed.
        key = (type(self).__name__, self.backbone_.name, id(self.backbone_))
        key += (pre.crop_size, *config)
        compile_ = self.compile and self._compilable()
        # With compile, one fixed size: every new batch shape compiles again.
        slices, sizer = plan_batches(
            len(source), self.batch_size, device, key, measure=not compile_
        )
        pad_to = None
        if compile_:
            forward = compiled_forward(self.backbone_, config, forward)
            pad_to = self.batch_size or default_batch_size(device)
        outputs = run_batched(
            lambda sl: source.load(sl, pre),
            forward,
            slices,
            device=device,
            dtype=dtype,
            channels_last=channels_last,
            sizer=sizer,
            pad_to=pad_to,
            verbose=self.verbose,
            desc=desc,
            total=len(source),
        )
        return np.concatenate(outputs).astype(np.float32, copy=False)
