"""The one place where skltransfer touches scikit-learn's validation helpers.

scikit-learn's parameter-constraint machinery lives in private modules; keeping
every import of it here means a change there is mended in one file. The
constraints of parameters that several estimators share are declared here too,
once. :func:`fit_context`, the decorator of every ``fit``, also makes each fit
all or nothing (see :class:`FittedState`).
"""

from __future__ import annotations

import copy
import functools
import numbers
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import (  # noqa: F401  (re-exported)
    HasMethods,
    Interval,
    StrOptions,
)
from sklearn.utils.validation import (  # noqa: F401  (re-exported)
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._device import PRECISIONS

__all__ = [
    "ENGINES",
    "FittedState",
    "HasMethods",
    "Interval",
    "StrOptions",
    "check_is_fitted",
    "check_positive_int",
    "check_sample_weight",
    "engine_constraints",
    "fit_context",
    "image_input_constraints",
    "text_input_constraints",
    "runtime_constraints",
    "validate_data",
]


class FittedState:
    """Everything a fit may change, put back by :meth:`restore` if it fails.

    That is every attribute of the estimator that is not a parameter: the
    fitted attributes and the private state next to them alike (what a
    pickle is built from, such as the spec a backbone reloads from, must
    never describe another fit than the weights it goes with). Lists, dicts
    and sets are copied, since a fit may add to them in place; other
    objects a fit replaces rather than changes. Estimators whose fit
    changes objects in place (a warm start trains the fitted network)
    extend this class and name it in a ``_fitted_state`` method.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator about to be fitted.
    """

    def __init__(self, estimator):
        self.estimator = estimator
        self.attributes = {
            key: copy.copy(value) if isinstance(value, list | dict | set) else value
            for key, value in _state(estimator).items()
        }

    def restore(self) -> None:
        """Put the attributes back as they were, dropping those added since."""
        state = vars(self.estimator)
        for key in _state(self.estimator):
            del state[key]
        state.update(self.attributes)


def _state(estimator) -> dict:
    """The attributes of ``estimator`` that are not its parameters."""
    params = set(estimator._get_param_names())
    return {k: v for k, v in vars(estimator).items() if k not in params}


def fit_context(fit):
    """Decorate ``fit``: validate the parameters first, as scikit-learn does,
    and make the fit all or nothing.

    The check is skipped under ``sklearn.config_context(
    skip_parameter_validation=True)``. Nested validation is skipped during
    ``fit``: the scikit-learn models it calls (the probe's logistic and ridge
    regressions, the validation split) receive arguments built by skltransfer,
    never an estimator of the user's, so checking them again would only cost
    time.

    A fit that raises, ``KeyboardInterrupt`` included, leaves the estimator
    as it was, unfitted or with its previous fit: its :class:`FittedState`
    (or what its ``_fitted_state()`` method returns) is restored.
    """

    @functools.wraps(fit)
    def all_or_nothing(estimator, *args, **kwargs):
        take = getattr(type(estimator), "_fitted_state", FittedState)
        snapshot = take(estimator)
        try:
            return fit(estimator, *args, **kwargs)
        except BaseException:
            snapshot.restore()
            raise

    return _fit_context(prefer_skip_nested_validation=True)(all_or_nothing)


def runtime_constraints(*, measured_batch_size: bool) -> dict:
    """Constraints of ``batch_size``, ``device``, ``precision`` and ``verbose``.

    ``measured_batch_size``: whether ``batch_size=None`` (measure the fastest
    size) is allowed; the fine-tuners train with a fixed batch size.
    """
    batch_size = [Interval(Integral, 1, None, closed="left")]
    return {
        "batch_size": batch_size + [None] if measured_batch_size else batch_size,
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "verbose": ["verbose", StrOptions({"auto"})],
    }


# The engines of a frozen pass (see ``_engines.py``).
ENGINES = ("auto", "torch", "onnxruntime", "openvino")


def engine_constraints() -> dict:
    """Constraint of ``engine``, the inference engine of the frozen estimators."""
    return {"engine": [StrOptions(set(ENGINES))]}


def image_input_constraints() -> dict:
    """Constraints of the parameters that say how images are read and cropped."""
    return {
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "crop_fraction": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="right")],
        "background": [str, tuple, list],
        "image_shape": [tuple, list, None],
        "value_range": [StrOptions({"auto"}), tuple, list],
    }


def text_input_constraints() -> dict:
    """Constraints of the parameters that say how texts are tokenised
    (``max_length`` leaves room for the special tokens: at least 2)."""
    return {"max_length": [Interval(Integral, 2, None, closed="left"), None]}


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int, or raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | np.integer):
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_sample_weight(sample_weight, n: int) -> torch.Tensor | None:
    """Sample weights as a float tensor with mean 1 (None stays None)."""
    if sample_weight is None:
        return None
    # Finite, non-negative and of length n: checked by scikit-learn's helper.
    w = _check_sample_weight(
        sample_weight, np.empty((n, 0)), dtype=np.float64, ensure_non_negative=True
    )
    if w.sum() <= 0:
        raise ValueError("sample_weight must have a positive sum.")
    return torch.as_tensor(w / w.mean(), dtype=torch.float32)
