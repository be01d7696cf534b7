"""The one place where skltransfer touches scikit-learn's validation helpers.

scikit-learn's parameter-constraint machinery lives in private modules; keeping
every import of it here means a change there is mended in one file.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils._param_validation import (  # noqa: F401  (re-exported)
    HasMethods,
    Interval,
    StrOptions,
)
from sklearn.utils.validation import check_is_fitted, validate_data  # noqa: F401

__all__ = [
    "HasMethods",
    "Interval",
    "StrOptions",
    "check_is_fitted",
    "check_positive_int",
    "validate_data",
    "validate_params",
]


def validate_params(estimator) -> None:
    """Check ``estimator.get_params()`` against its ``_parameter_constraints``."""
    estimator._validate_params()


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int, or raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | np.integer):
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)
