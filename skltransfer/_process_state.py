"""Process-wide state: what this process remembers from one estimator to the next.

Every memo the library keeps outside estimators is here, named for what it
holds. Each lives as long as the process, is bounded or small, and holds
nothing a result depends on: emptying it (:func:`clear_process_state`) only
costs the work it saved, done again on next use.

``reused_frozen_backbone`` (one entry)
    The most recently loaded frozen backbone, by spec, reused by
    the next fit of the same spec (:func:`load_frozen`): cross-validation and
    grid search fit a clone per fold, and loading weights (plus the first
    forward pass of a new module) would cost about a second each time.
``measured_batch_sizes`` (unbounded, a few entries per model)
    Inference batch sizes chosen by measurement (:mod:`._batch_size`), by
    model and input configuration, with the number of inputs measured on.
``compiled_forwards`` (four entries)
    ``torch.compile``'d forward passes (:mod:`._compile`), by model and
    forward configuration; each holds compiled code and, with inductor's
    freezing, a copy of the weights.
``engine_runners`` (four entries)
    Forward passes started on an inference engine, ONNX Runtime or OpenVINO
    (:mod:`._engines`), by model and forward configuration, or the fallback
    to torch of a model that could not be exported (said once).
``layer_group_orders`` (64 entries)
    The order in which a body runs its layer groups, and which of them
    reach the output, by architecture (:mod:`.backbones._groups`): finding
    it takes a forward and a backward pass of the whole body.
``loaded_estimators`` (four entries)
    Fitted estimators unpickled by :class:`skltransfer.distributed.BatchFunction`
    in this (worker) process, by the SHA-256 of their pickle.

Not here: the word-vector tables that estimators share through weak
references (``features/_vector_files.py``), which live only while an
estimator holds them. This module imports no torch, so that
:mod:`skltransfer.distributed` stays light.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = [
    "ProcessMemo",
    "clear_process_state",
    "compiled_forwards",
    "engine_runners",
    "layer_group_orders",
    "load_frozen",
    "loaded_estimators",
    "measured_batch_sizes",
    "reused_frozen_backbone",
]

_MISSING = object()


class ProcessMemo:
    """A thread-safe mapping that forgets its least recently used entries.

    Parameters
    ----------
    maxsize : int or None
        How many entries it keeps; None keeps every one.
    """

    def __init__(self, maxsize: int | None):
        self.maxsize = maxsize
        self._entries: OrderedDict = OrderedDict()
        # Re-entrant: get_or_put calls get and put under the same lock.
        self._lock = threading.RLock()

    def get(self, key: Hashable, default=None):
        """The value under ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            if key not in self._entries:
                return default
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: Hashable, value) -> None:
        """Remember ``value`` under ``key``; the oldest beyond ``maxsize`` go."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while self.maxsize is not None and len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def get_or_put(self, key: Hashable, make: Callable, valid: Callable | None = None):
        """The value under ``key``, or ``make()`` remembered under it.

        ``valid(value)`` False counts as a miss. One thread makes a value at a
        time, so that threads asking for the same key make it once.
        """
        with self._lock:
            value = self.get(key, _MISSING)
            if value is _MISSING or (valid is not None and not valid(value)):
                value = make()
                self.put(key, value)
            return value

    def items(self) -> list:
        """A snapshot of the ``(key, value)`` pairs, oldest first."""
        with self._lock:
            return list(self._entries.items())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


reused_frozen_backbone = ProcessMemo(maxsize=1)
measured_batch_sizes = ProcessMemo(maxsize=None)
compiled_forwards = ProcessMemo(maxsize=4)
engine_runners = ProcessMemo(maxsize=4)
loaded_estimators = ProcessMemo(maxsize=4)
layer_group_orders = ProcessMemo(maxsize=64)

_ALL = (
    reused_frozen_backbone,
    measured_batch_sizes,
    compiled_forwards,
    engine_runners,
    loaded_estimators,
    layer_group_orders,
)


def clear_process_state() -> None:
    """Forget what this process remembers between estimators.

    skltransfer keeps a few memos for the life of the process, to save work
    when many estimators use the same model (the folds of a cross-validation,
    the tasks of a distributed job):

    - the last frozen backbone loaded, reused by the next fit of the same one;
    - the inference batch sizes chosen by measurement;
    - the ``torch.compile``'d forward passes (``compile=True``);
    - the forward passes started on an inference engine (``engine=``);
    - the fitted estimators a worker loaded for
      :class:`skltransfer.distributed.BatchFunction`.

    Clearing them frees the models they hold (once no estimator refers to
    them) and makes the next use load, measure or compile again, as in a
    new process. Results do not change.

    Examples
    --------
    >>> import skltransfer
    >>> skltransfer.clear_process_state()
    """
    for memo in _ALL:
        memo.clear()


def _holds_module(spec) -> bool:
    """Whether ``spec`` holds a module of its own (a user's, which the user may
    go on training): such a spec loads afresh at every fit."""
    from torch import nn  # imported by then: specs load torch modules

    if not dataclasses.is_dataclass(spec):
        return False
    return any(
        isinstance(getattr(spec, f.name), nn.Module) for f in dataclasses.fields(spec)
    )


def load_frozen(spec):
    """``spec.load()`` in eval mode without gradients, reusing the last one
    loaded.

    Frozen estimators never change weights, so sharing the module between
    them is safe (fine-tuners copy its tensors); a spec holding a module of
    its own is never shared.
    """

    def make():
        return spec.load().eval().requires_grad_(False)

    if _holds_module(spec):
        return make()
    return reused_frozen_backbone.get_or_put(spec, make)
