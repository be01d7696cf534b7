"""Warnings and errors raised by skltransfer."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "FrozenCacheWarning",
    "MissingDependencyError",
    "SkltransferWarning",
    "TruncationWarning",
    "missing_dependency",
    "warn_at_caller",
]


class SkltransferWarning(UserWarning):
    """Base class of the warnings skltransfer emits."""


class TruncationWarning(SkltransferWarning):
    """Inputs were longer than the model accepts and were cut."""


class FrozenCacheWarning(SkltransferWarning):
    """Frozen layers run at every epoch: their outputs could not be cached."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB = os.path.dirname(os.path.abspath(warnings.__file__)) + os.sep


def _internal(filename: str) -> bool:
    """Whether ``filename`` is skltransfer, the standard library (contextlib,
    ...), scikit-learn or joblib: frames a warning should not point at."""
    path = os.path.abspath(filename)
    in_stdlib = path.startswith(_STDLIB) and "site-packages" not in path
    if path.startswith(_PACKAGE) or in_stdlib:
        return True
    return any(p in path.split(os.sep) for p in ("sklearn", "joblib"))


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """Warn pointing at the first frame outside skltransfer and scikit-learn.

    The user's own line (the ``fit`` or ``transform`` call, or the
    ``cross_val_score`` around it) is what the warning should name, however
    deep inside the library it arises.
    """
    frame, level = sys._getframe(1), 2  # 2: the caller of this function
    while frame is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class MissingDependencyError(ImportError):
    """An optional package is needed for the requested feature.

    The message names the ``pip install`` command that provides it.
    """


def missing_dependency(package: str, purpose: str, pip_name: str | None = None):
    """Build a :class:`MissingDependencyError` naming the install command."""
    pip_name = pip_name or package
    return MissingDependencyError(
        f"{purpose} needs the package '{package}', which is not installed. "
        f"Install it with: pip install {pip_name}"
    )
