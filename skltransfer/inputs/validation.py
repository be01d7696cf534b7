"""Validation of an estimator's ``X`` (and ``y``) into inputs, for every estimator.

Like scikit-learn's ``validate_data``, these functions take the estimator:
with ``reset=True`` (in ``fit``) they set what later calls check against
(``n_features_in_`` for numeric tables, ``preprocessing_`` and
``value_range_`` for images). The image feature estimators and the
fine-tuners set up images with the same two calls:
:func:`fit_image_conventions` and :func:`validate_images`.
:class:`InputsMixin` turns the inputs of a fine-tuner into the batch-ready
inputs of :mod:`.batches`, by the kind of input its backbone takes.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import validate_data
from ..backbones._spec import input_kind
from ..exceptions import SkltransferWarning, warn_at_caller
from .batches import (
    ImageInputs,
    TensorInputs,
    TextInputs,
    text_array,
    warn_truncated,
)
from .images import ImageSource, as_image_source, background_rgb
from .text import as_texts, check_max_length, is_missing, where

__all__ = [
    "InputsMixin",
    "check_lengths",
    "check_missing_targets",
    "check_not_text",
    "check_value_range",
    "fit_image_conventions",
    "is_flat_numeric",
    "validate_images",
]

# scikit-learn's value of ``y`` for an estimator that takes none.
_NO_Y = "no_validation"
# Positions named in the error about missing targets; the rest are counted.
_NAMED = 5


def _no_y(y) -> bool:
    return isinstance(y, str) and y == _NO_Y


def is_flat_numeric(X) -> bool:
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


def check_value_range(value_range) -> tuple[float, float]:
    """An explicit ``value_range`` parameter as two floats, low < high."""
    if len(value_range) != 2 or not value_range[1] > value_range[0]:
        raise ValueError(
            "value_range must be 'auto' or (low, high) with high > low, "
            f"got {value_range!r}."
        )
    return (float(value_range[0]), float(value_range[1]))


def check_not_text(X) -> None:
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


def check_lengths(n_x: int, y) -> None:
    if y is not None and n_x != len(y):
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{n_x}, {len(y)}]"
        )


def check_missing_targets(y) -> None:
    """Refuse missing values in ``y`` (None, NaN, ``pd.NA``, NaT), naming
    their positions: scikit-learn fails on them sorting mixed labels
    (``TypeError``), or says only that ``y`` contains NaN.

    A ``y`` that is not array-like is left to scikit-learn's checks.
    """
    if y is None or _no_y(y) or sp.issparse(y):
        return
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError):  # ragged: scikit-learn says what is wrong
        return
    if arr.ndim == 0 or arr.size == 0:
        return
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
    elif arr.dtype.kind in "mM":
        missing = np.isnat(arr)
    elif arr.dtype.kind == "O":
        flags = (is_missing(v) for v in arr.ravel())
        missing = np.fromiter(flags, bool, count=arr.size).reshape(arr.shape)
    else:
        return
    rows = np.flatnonzero(missing.reshape(len(arr), -1).any(axis=1))
    if rows.size:
        raise ValueError(_missing_message(arr, rows, y))


def _missing_message(arr: np.ndarray, rows: np.ndarray, y) -> str:
    labels = list(y.index) if hasattr(y, "iloc") else None
    if arr.dtype.kind in "mM":
        kinds = ["NaT"]
    else:
        values = arr.reshape(len(arr), -1)[rows[:_NAMED]].ravel()
        kinds = sorted({_missing_name(v) for v in values if is_missing(v)})
    named = ", ".join(where(int(i), labels) for i in rows[:_NAMED])
    more = f" and {rows.size - _NAMED} more" if rows.size > _NAMED else ""
    values = "a missing value" if rows.size == 1 else f"{rows.size} missing values"
    return (
        f"y has {values} ({', '.join(kinds)}) at {named}{more}. Drop those "
        "samples, or fill in their targets."
    )


def _missing_name(value) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return {"NAType": "pd.NA", "NaTType": "NaT"}.get(name, "NaN")


def _check_y(estimator, y, y_numeric: bool):
    """``y`` alone through scikit-learn's checks; None when there is none."""
    if y is None or _no_y(y):
        return None
    check_missing_targets(y)
    return validate_data(estimator, y=y, multi_output=True, y_numeric=y_numeric)


def _forget_features(estimator) -> None:
    """Inputs that are not tables have no columns to remember."""
    for attr in ("n_features_in_", "feature_names_in_"):
        estimator.__dict__.pop(attr, None)


def _validate_table(estimator, X, y, *, reset: bool, y_numeric: bool, **kwargs):
    """``(X, y)`` of a numeric table: scikit-learn's checks of shape, dtype,
    feature names and the columns seen in fit. In fit, ``X`` and ``y`` are
    checked together (a missing ``y`` raises scikit-learn's error)."""
    if reset and not _no_y(y):
        check_missing_targets(y)
        return validate_data(
            estimator,
            X,
            y,
            reset=True,
            multi_output=True,
            y_numeric=y_numeric,
            **kwargs,
        )
    X = validate_data(estimator, X, reset=reset, **kwargs)
    y = _check_y(estimator, y, y_numeric)
    check_lengths(len(X), y)
    return X, y


def fit_image_conventions(estimator, backbone) -> None:
    """Learn in fit what does not depend on ``X``: ``preprocessing_`` (the
    backbone's, adjusted by ``image_size`` and ``crop_fraction``) and an
    explicit ``value_range_``; check ``background``."""
    background_rgb(estimator.background)  # a clear error at fit, not at transform
    estimator.preprocessing_ = backbone.preprocessing.adjusted(
        estimator.image_size, estimator.crop_fraction
    )
    if estimator.value_range != "auto":
        estimator.value_range_ = check_value_range(estimator.value_range)


def validate_images(
    estimator,
    X,
    y=_NO_Y,
    *,
    reset: bool,
    backbone=None,
    y_numeric: bool = False,
    on_error: str = "raise",
) -> tuple[ImageSource, object]:
    """``X`` as an :class:`~.images.ImageSource`, and ``y`` checked.

    Rows of flattened images go through scikit-learn's checks (and set
    ``n_features_in_`` in fit); other images forget the columns of a
    previous fit. With ``reset``, the image conventions are learned from
    ``backbone`` (see :func:`fit_image_conventions`), and with
    ``value_range="auto"`` the value range from ``X``. ``y`` is as in
    scikit-learn's ``validate_data`` (``"no_validation"``: none taken).
    ``on_error`` is as in :func:`~.images.as_image_source`.
    """
    if reset:
        fit_image_conventions(estimator, backbone)
    if is_flat_numeric(X) or (not reset and hasattr(estimator, "n_features_in_")):
        # dtype="numeric" keeps uint8/float as they are and converts objects.
        X, y = _validate_table(
            estimator, X, y, reset=reset, y_numeric=y_numeric, dtype="numeric"
        )
    else:
        if reset:
            _forget_features(estimator)
        y = _check_y(estimator, y, y_numeric)
    source = as_image_source(
        X,
        image_shape=estimator.image_shape,
        value_range=None if reset else estimator.value_range_,
        background=background_rgb(estimator.background),
        explicit_range=_explicit_range(estimator),
        on_error=on_error,
    )
    if reset:
        if estimator.value_range == "auto":
            estimator.value_range_ = source.fit_value_range()
        source.value_range = estimator.value_range_
    elif estimator.value_range_ is None:
        _warn_unlearned_range(source)
    check_lengths(len(source), y)
    return source, y


def _explicit_range(estimator) -> tuple[float, float] | None:
    """The value range the user set (learned in fit as ``value_range_``):
    it applies to files and PIL images that are not 8-bit too."""
    return None if estimator.value_range == "auto" else estimator.value_range_


def _warn_unlearned_range(source: ImageSource) -> None:
    """Numeric images outside [0, 1] for an estimator that learned no value
    range (fitted on files, PIL or uint8 images): they are read as 0-1 and
    clipped, which the user should hear about."""
    if source.array is not None and source.array.dtype == np.uint8:
        return  # always read as 0-255
    seen = source.fit_value_range()
    if seen is not None and seen != (0.0, 1.0):
        warn_at_caller(
            f"Float pixel values span {seen[0]:g} to {seen[1]:g}, but this "
            "estimator was fitted on images without a numeric range (files, "
            "PIL or uint8 images), so floats are read as 0-1 and clipped. Pass "
            "uint8 arrays, scale the images to [0, 1], or set value_range "
            "(e.g. (0, 255)) and fit again.",
            SkltransferWarning,
        )


class InputsMixin:
    """Turns ``X`` (and ``y`` in fit) into inputs of the kind the backbone takes."""

    _y_numeric = False

    def _validate_inputs(self, X, y, *, reset: bool, backbone=None):
        """Return ``(inputs, y)``; ``y`` is None at prediction time."""
        if reset:
            self.input_kind_ = input_kind(backbone)
        else:
            backbone = self.module_.backbone
        validate = _VALIDATE[self.input_kind_]
        return validate(self, X, y, reset=reset, backbone=backbone)


def _tensor_inputs(estimator, X, y, *, reset, backbone):
    """Numeric arrays of any shape: scikit-learn's checks, then one tensor."""
    check_not_text(X)
    X, y = _validate_table(
        estimator,
        X,
        y,
        reset=reset,
        y_numeric=estimator._y_numeric,
        dtype=np.float32,
        allow_nd=True,
    )
    # A copy: the inputs may be read-only (memory-mapped) arrays.
    return TensorInputs(torch.tensor(X, dtype=torch.float32)), y


def _image_inputs(estimator, X, y, *, reset, backbone):
    """Images: the image set-up every image estimator shares."""
    source, y = validate_images(
        estimator, X, y, reset=reset, backbone=backbone, y_numeric=estimator._y_numeric
    )
    return ImageInputs(source, estimator.preprocessing_), y


def _text_inputs(estimator, X, y, *, reset, backbone):
    """Texts, tokenised once; one warning names those cut at ``max_length``."""
    texts = as_texts(X)
    if reset:
        _forget_features(estimator)
    y = _check_y(estimator, y, estimator._y_numeric)
    check_lengths(len(texts), y)
    max_length = estimator.max_length
    check_max_length(max_length, backbone.model_max_length, backbone.name)
    inputs = TextInputs(text_array(texts), backbone, max_length)
    warn_truncated(inputs, inputs.limit)
    return inputs, y


# The validation of X by the input kind of the backbone (see ``input_kind``).
_VALIDATE = {"tensor": _tensor_inputs, "image": _image_inputs, "text": _text_inputs}
