"""What the image estimators share: loading the backbone, reading inputs, batching."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._batch_size import default_batch_size
from ._compile import compiled_forward
from ._device import resolve_precision
from ._engines import check_engine, engine_spec
from ._inference import iter_inputs
from ._process_state import load_frozen
from ._validation import (
    check_is_fitted,
    engine_constraints,
    image_input_constraints,
    runtime_constraints,
)
from .backbones import get_spec
from .base import TorchModelMixin
from .exceptions import UnreadableImageWarning, warn_at_caller
from .inputs._positions import unreadable_summary
from .inputs.batches import ImageInputs
from .inputs.validation import fit_image_conventions, validate_images


class PretrainedImageBase(TorchModelMixin, BaseEstimator):
    """Shared fit/inference machinery of the image estimators (not public)."""

    # The backbone parameter may hold a user's module (see TorchModelMixin).
    _device_state = ("backbone", "backbone_")

    _parameter_constraints: dict = {
        "backbone": "no_validation",  # checked by get_spec in fit
        **image_input_constraints(),
        **runtime_constraints(measured_batch_size=True),
        "compile": ["boolean"],
        **engine_constraints(),
    }

    def _fit_backbone(self, X):
        """Load weights and learn the image conventions (of ``X`` when given)."""
        check_engine(self.engine, self.device, self.precision, compile=self.compile)
        # get_spec validates the backbone parameter (names, specs or modules).
        spec = get_spec(self.backbone, modality="image")
        backbone = load_frozen(spec)
        self._remember_spec(spec)
        if backbone.preprocessing is None:
            raise ValueError(
                f"Backbone {backbone.name!r} has no image preprocessing; wrap a "
                "module as ModuleBackbone(module, preprocessing=ImagePreprocessing())."
            )
        if X is None:  # nothing to learn from: numeric inputs are taken as 0-1
            fit_image_conventions(self, backbone)
            self.value_range_ = getattr(self, "value_range_", None)
        else:
            validate_images(
                self, X, reset=True, backbone=backbone, on_error=self._on_error()
            )
        self.backbone_ = backbone

    def _on_error(self) -> str:
        """What to do with an image that cannot be read: "raise" or "nan"."""
        return "raise"

    def _image_source(self, X, *, reset: bool):
        return validate_images(
            self, X, reset=reset, backbone=self.backbone_, on_error=self._on_error()
        )[0]

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
        """The rows of ``forward`` over every image of ``source``, as one array."""
        return np.concatenate(list(self._iter_source(source, forward, desc)))

    def _iter_source(self, source, forward, desc: str):
        """The rows of ``forward`` over ``source``, batch by batch (float32);
        the rows of images that could not be read are NaN."""
        device = self._device()
        dtype = resolve_precision(self.precision, device)
        channels_last = self._channels_last()
        key = (type(self).__name__, self.backbone_.name, id(self.backbone_))
        key += (self._forward_key(), channels_last)
        pad_to = None
        engine = engine_spec(
            self.engine,
            device,
            dtype,
            kind="image",
            key=(type(self).__name__, *self._forward_key()),
            compile=self.compile and self._compilable(),
        )
        if self.compile and self._compilable():
            config = (self._forward_key(), str(device), dtype, channels_last)
            forward = compiled_forward(self.backbone_, config, forward)
            # One fixed size, never measured: every new batch shape compiles again.
            pad_to = self.batch_size or default_batch_size(device)
            key = None
        return iter_inputs(
            ImageInputs(source, self.preprocessing_),
            forward,
            device=device,
            precision=dtype,
            batch_size=self.batch_size,
            key=key,
            model=self.backbone_,
            channels_last=channels_last,
            pad_to=pad_to,
            engine=engine,
            verbose=self.verbose,
            desc=desc,
        )

    def _warn_unreadable(self, source) -> None:
        """One warning for the images of ``source`` that could not be read."""
        if source.unreadable:
            message = unreadable_summary(source.unreadable, len(source), source.labels)
            warning = UnreadableImageWarning(message, source.unreadable)
            warn_at_caller(warning, UnreadableImageWarning)
