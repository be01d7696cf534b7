"""Warnings and errors raised by skltransfer."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "EngineFallbackWarning",
    "FrozenCacheWarning",
    "MissingDependencyError",
    "SkltransferWarning",
    "TruncationWarning",
    "UnreadableImageWarning",
    "WeightsUnavailableError",
    "missing_dependency",
    "warn_at_caller",
]


class SkltransferWarning(UserWarning):
    """Base class of the warnings skltransfer emits."""


class TruncationWarning(SkltransferWarning):
    """Inputs were longer than the model accepts and were cut."""


class FrozenCacheWarning(SkltransferWarning):
    """Frozen layers run at every epoch: their outputs could not be cached."""


class EngineFallbackWarning(SkltransferWarning):
    """A model could not run on the inference engine asked for; it runs on
    torch. Said once per model and configuration in a process, with the
    reason (a forward that does not trace, an operation the exporter rejects,
    outputs that differ from torch's)."""


class UnreadableImageWarning(SkltransferWarning):
    """Some images could not be read; their output rows are NaN.

    One per call of a method given ``on_error="nan"``. Besides the message,
    which lists the first few, ``positions`` holds the position in ``X`` of
    every unreadable image (sorted) and ``reasons`` maps each to its reason.
    """

    def __init__(self, message: str, reasons: dict | None = None):
        super().__init__(message)
        self.reasons = dict(sorted((reasons or {}).items()))
        self.positions = list(self.reasons)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB = os.path.dirname(os.path.abspath(warnings.__file__)) + os.sep
# Libraries that call into skltransfer (model selection, parallel jobs, torch
# modules running hooks): a warning names the user's line around them.
_CALLERS = ("sklearn", "joblib", "torch")


def _internal(filename: str) -> bool:
    """Whether ``filename`` is skltransfer, the standard library (contextlib,
    ...), or a library in :data:`_CALLERS`: frames a warning should not point
    at."""
    path = os.path.abspath(filename)
    in_stdlib = path.startswith(_STDLIB) and "site-packages" not in path
    if path.startswith(_PACKAGE) or in_stdlib:
        return True
    for name in _CALLERS:
        module = sys.modules.get(name)  # never imported: not on the stack
        file = getattr(module, "__file__", None)
        if file and path.startswith(os.path.dirname(os.path.abspath(file)) + os.sep):
            return True
    return False


def warn_at_caller(message: str | Warning, category: type[Warning]) -> None:
    """Warn pointing at the first frame outside skltransfer and the libraries
    that call it.

    The user's own line (the ``fit`` or ``transform`` call, or the
    ``cross_val_score`` around it) is what the warning should name, however
    deep inside the library it arises. Where no such frame exists (a worker
    thread or process), the warning names the library line that raised it.
    """
    frame, level = sys._getframe(1), 2  # 2: the caller of this function
    while frame is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)


class WeightsUnavailableError(OSError):
    """Pretrained weights are not on this machine and cannot be downloaded.

    The message says how to proceed offline: random weights, or a local file
    or folder. The library's own error (no network, offline mode) is chained.
    """


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
