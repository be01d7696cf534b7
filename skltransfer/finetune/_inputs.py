"""Validation of ``X`` and ``y`` for each input kind, and trained backbones as specs.

The backbone decides what ``X`` is: a text encoder (it has a tokenizer) takes
strings, an image backbone (it has image preprocessing) takes images, and any
other module takes numeric arrays of any rank.
"""

from __future__ import annotations

import numpy as np
import torch

from .._image_base import _is_flat_numeric
from .._validation import validate_data
from ..backbones._spec import input_kind
from ..inputs.images import as_image_source, background_rgb
from ..inputs.text import as_texts
from ._data import ImageInputs, TensorInputs, TextInputs

__all__ = ["InputsMixin"]


def _check_not_text(X) -> None:
    """Strings for a backbone that takes numeric arrays: say so plainly."""
    first = X[0] if isinstance(X, list | tuple) and X else None
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS" and X.size:
        first = X.flat[0]
    if isinstance(first, str):
        raise ValueError(
            f"X holds strings (sample 0: {first!r}), but this backbone takes "
            "numeric arrays. For texts, pass a text encoder as backbone, e.g. "
            "'all-MiniLM-L6-v2'."
        )


def _check_lengths(n_x: int, y) -> None:
    if y is not None and n_x != len(y):
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{n_x}, {len(y)}]"
        )


def _check_value_range(value_range):
    if len(value_range) != 2 or not value_range[1] > value_range[0]:
        raise ValueError(
            "value_range must be 'auto' or (low, high) with high > low, "
            f"got {value_range!r}."
        )
    return (float(value_range[0]), float(value_range[1]))


class InputsMixin:
    """Turns ``X`` (and ``y`` in fit) into inputs of the right kind."""

    _y_numeric = False

    def _validate_inputs(self, X, y, *, reset: bool, backbone=None):
        """Return ``(inputs, y)``; ``y`` is None at prediction time."""
        if reset:
            self.input_kind_ = input_kind(backbone)
        else:
            backbone = self.module_.backbone
        validate = getattr(self, f"_{self.input_kind_}_inputs")
        return validate(X, y, reset=reset, backbone=backbone)

    def _check_y(self, y, reset: bool):
        """Validate ``y`` alone (inputs that are not numeric tables); None at
        prediction. A warm-start refit (``reset=False``) validates it too."""
        if y is None:
            return None
        return validate_data(self, y=y, multi_output=True, y_numeric=self._y_numeric)

    def _forget_features(self, reset: bool) -> None:
        if reset:
            for attr in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(attr, None)

    def _tensor_inputs(self, X, y, *, reset, backbone):
        _check_not_text(X)
        kwargs = {"dtype": np.float32, "allow_nd": True}
        if reset:
            X, y = validate_data(
                self,
                X,
                y,
                reset=True,
                multi_output=True,
                y_numeric=self._y_numeric,
                **kwargs,
            )
        else:
            X = validate_data(self, X, reset=False, **kwargs)
        # A copy: the inputs may be read-only (memory-mapped) arrays.
        return TensorInputs(torch.tensor(X, dtype=torch.float32)), y

    def _image_inputs(self, X, y, *, reset, backbone):
        if _is_flat_numeric(X) or (not reset and hasattr(self, "n_features_in_")):
            if reset:
                X, y = validate_data(
                    self,
                    X,
                    y,
                    reset=True,
                    dtype="numeric",
                    multi_output=True,
                    y_numeric=self._y_numeric,
                )
            else:
                X = validate_data(self, X, reset=False, dtype="numeric")
                y = self._check_y(y, reset)
        else:
            self._forget_features(reset)
            y = self._check_y(y, reset)
        if reset:
            self.preprocessing_ = backbone.preprocessing.adjusted(
                self.image_size, self.crop_fraction
            )
        source = as_image_source(
            X,
            image_shape=self.image_shape,
            value_range=None if reset else self.value_range_,
            background=background_rgb(self.background),
        )
        if reset:
            self.value_range_ = (
                source.fit_value_range()
                if self.value_range == "auto"
                else _check_value_range(self.value_range)
            )
            source.value_range = self.value_range_
        _check_lengths(len(source), y)
        return ImageInputs(source, self.preprocessing_), y

    def _text_inputs(self, X, y, *, reset, backbone):
        texts = as_texts(X)
        self._forget_features(reset)
        y = self._check_y(y, reset)
        _check_lengths(len(texts), y)
        limit = backbone.model_max_length
        if self.max_length is not None and self.max_length > limit:
            raise ValueError(
                f"max_length={self.max_length} is more than the {limit} tokens "
                f"that {backbone.name!r} accepts."
            )
        array = np.empty(len(texts), dtype=object)
        array[:] = texts
        return TextInputs(array, backbone, self.max_length), y
