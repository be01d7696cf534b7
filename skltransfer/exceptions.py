"""Warnings and errors raised by skltransfer."""

from __future__ import annotations

__all__ = [
    "MissingDependencyError",
    "SkltransferWarning",
    "TruncationWarning",
    "missing_dependency",
]


class SkltransferWarning(UserWarning):
    """Base class of the warnings skltransfer emits."""


class TruncationWarning(SkltransferWarning):
    """Inputs were longer than the model accepts and were cut."""


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
