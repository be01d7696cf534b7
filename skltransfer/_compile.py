"""``torch.compile`` for frozen inference, compiled once per model and forward.

Frozen feature extraction is the case where compilation pays best: the weights
never change, so inductor's *freezing* folds them into the graph as constants
(convolution + batch-norm fusion, pre-packed weights for oneDNN on the CPU).
Compilation costs seconds to a minute on the first batch. The compiled forward
is kept per (model, forward configuration) in ``compiled_forwards`` (see
:mod:`._process_state`), so the clones that cross-validation and grid search
fit on the same loaded model (see ``load_frozen``) reuse it instead of
compiling again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

from ._inference import _is_oom
from ._process_state import compiled_forwards
from .exceptions import SkltransferWarning, warn_at_caller

__all__ = ["compiled_forward"]


class CompiledForward:
    """A forward pass compiled on first use, falling back to eager if that fails.

    A compiler failure (no C++ compiler, an operation inductor cannot lower)
    is reported once as a warning and the eager forward is used from then on;
    once a compiled call has succeeded, errors propagate as they are.
    """

    def __init__(self, forward: Callable):
        self.eager = forward
        self.compiled = torch.compile(forward, options={"freezing": True})
        self.state = "new"  # "new" -> "compiled" | "eager"

    def __call__(self, x):
        if self.state == "compiled":
            return self.compiled(x)
        if self.state == "eager":
            return self.eager(x)
        try:
            out = self.compiled(x)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly
            if _is_oom(exc):
                raise  # the inference loop's batch halving handles it
            self.state = "eager"
            reason = str(exc).strip().splitlines()
            warn_at_caller(
                f"torch.compile failed ({type(exc).__name__}: "
                f"{reason[0] if reason else ''}); running the model uncompiled.",
                SkltransferWarning,
            )
            return self.eager(x)
        self.state = "compiled"
        return out


def compiled_forward(model: torch.nn.Module, key: Hashable, forward: Callable):
    """The compiled version of ``forward`` (a function of ``model``) for ``key``.

    ``key`` must describe everything ``forward`` computes besides ``model``
    (layer, pooling, device, precision); ``forward`` must not hold on to an
    estimator, since the compiled result outlives it.
    """
    # Entries hold the model, so that its id cannot be reused while they live.
    _, compiled = compiled_forwards.get_or_put(
        (id(model), key),
        lambda: (model, CompiledForward(forward)),
        valid=lambda entry: entry[0] is model,
    )
    return compiled
