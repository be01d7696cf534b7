"""Choosing the inference batch size from measured throughput.

When an estimator's ``batch_size`` is None, the first batches of a large
enough input are a measurement: sizes double from a small start, each size
runs twice on real inputs (the first run of a new shape carries one-off
set-up costs: kernel selection, memory pools, so only later runs are timed),
and doubling stops when throughput gains less than ``min_gain`` or the device
runs out of memory. The fastest size measured then serves the rest of the
input and is remembered, per model and input configuration, for later calls
in the same process (``measured_batch_sizes`` in :mod:`._process_state`): the
folds of a cross-validation tune once. A much
larger input (four times the one measured on) measures again: a short input
gives few batches to measure on.

Nothing is computed twice: every measured batch is part of the output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator

from ._process_state import measured_batch_sizes

__all__ = [
    "AutoBatchSize",
    "batch_slices",
    "chosen_batch_sizes",
    "default_batch_size",
    "forget_batch_sizes",
    "plan_batches",
]

# Used on inputs too small to measure on. On a 2-core CPU the best size fell
# as images grew (EfficientNet-Lite0 at fp32: 16 at 112 px, 4 to 8 at 224
# px; see benchmarks/bench_batch_size.py and bench_image_features.py); 8 is
# within 0.9x of the best at both. 128 is a common choice for GPUs.
_DEFAULT = {"cpu": 8}
_GPU_DEFAULT = 128
# (start, limit) of the measured sizes. On the CPU the sweep starts at 2: a
# convolution network at 224 px peaked at 4 on two cores, and a batch of 1
# only adds per-call overhead.
_SWEEP = {"cpu": (2, 128)}
_GPU_SWEEP = (32, 1024)
# An inference engine on the CPU (OpenVINO, ONNX Runtime) pays more per call
# than torch and gains from larger batches in small steps: EfficientNet-Lite0
# at 224 px, two cores, medians of 5 rounds, at batches of 4, 8, 16, 32 and
# 64: OpenVINO 52, 56, 61, 63 and 58 images/s, ONNX Runtime 45, 45, 46, 50
# and 51. A measurement, which times one batch of each size, is noise on
# such a curve: on 256 images it chose 2, 2 and 32 in three fresh passes
# (36 to 60 images/s after). Engines take this size unmeasured.
_ENGINE_BATCH = 32
# Inputs shorter than this are not measured on (the default serves them).
_MIN_MEASURED = 32

# A remembered choice is measured again on an input this many times larger
# than the one it came from: a short input gives few batches to measure on.
_REMEASURE_GROWTH = 4


def chosen_batch_sizes() -> dict:
    """The batch sizes chosen so far in this process, by configuration."""
    return {key: size for key, (size, _) in measured_batch_sizes.items()}


def forget_batch_sizes() -> None:
    """Forget every chosen batch size, so the next large input measures again."""
    measured_batch_sizes.clear()


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def default_batch_size(device) -> int:
    """The batch size used when none is given and none is measured."""
    return _DEFAULT.get(device.type, _GPU_DEFAULT)


def plan_batches(
    n: int, batch_size: int | None, device, key, *, measure=True, engine=False
):
    """Slices over ``n`` inputs and the sizer that measures them (or None).

    A given ``batch_size`` is used as it is. Otherwise the size is measured
    (``key`` names the configuration it is remembered under), or, when
    ``measure`` is False, the device's default is used. On an inference
    engine on the CPU (``engine``), the size is ``_ENGINE_BATCH``.
    """
    if batch_size is not None:
        return batch_slices(n, batch_size), None
    if engine:
        return batch_slices(n, _ENGINE_BATCH), None
    default = default_batch_size(device)
    if not measure:
        return batch_slices(n, default), None
    start, limit = _SWEEP.get(device.type, _GPU_SWEEP)
    sizer = AutoBatchSize(key, default=default, start=start, limit=limit)
    return sizer.slices(n), sizer


class AutoBatchSize:
    """Plan batch sizes for one pass over ``n`` inputs, measuring as it goes.

    Parameters
    ----------
    key : hashable or None
        What the choice is remembered under (model, layer, input size, device,
        precision); None remembers nothing.
    default : int
        The size used when ``n`` is too small to measure and nothing is
        remembered.
    start, limit : int
        The first and the largest size tried (powers of two from ``start``).
    min_gain : float
        Doubling goes on while throughput improves by more than this fraction.
    clock : callable
        Seconds, monotonic; replaceable for tests.
    """

    def __init__(
        self,
        key: Hashable | None,
        *,
        default: int,
        start: int,
        limit: int,
        min_gain: float = 0.05,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.key = key
        self.default = default
        self.start = start
        self.limit = limit
        self.min_gain = min_gain
        self.clock = clock
        self.chosen: int | None = None
        self._n = 0
        self._size = start
        self._seen: dict[int, int] = {}  # batches run per size
        self._rates: dict[int, float] = {}  # best timed work/second per size

    def min_samples(self) -> int:
        """The smallest input worth measuring on: a few batches of each first size.

        A measurement cut short by the end of the input chooses nothing, and
        the next call measures again.
        """
        return max(8 * self.start, _MIN_MEASURED)

    def slices(self, n: int) -> Iterator[slice]:
        """Consecutive slices covering ``range(n)``, sized by the plan.

        A generator: each size is decided when the slice is requested, from
        the batches recorded by then.
        """
        self._n = n
        # (batch size chosen by a finished measurement, inputs it ran over)
        remembered = None if self.key is None else measured_batch_sizes.get(self.key)
        if remembered is not None and n <= _REMEASURE_GROWTH * remembered[1]:
            self.chosen = remembered[0]
        elif n < self.min_samples():
            # Too little input to measure; nothing is remembered.
            self.chosen = remembered[0] if remembered is not None else self.default
        i = 0
        while i < n:
            size = self.chosen if self.chosen is not None else self._size
            yield slice(i, min(i + size, n))
            i += size

    def record(self, size: int, work: float, seconds: float) -> None:
        """Note that a batch of ``size`` inputs did ``work`` units in ``seconds``."""
        if self.chosen is not None or size != self._size:
            return  # settled, or a partial batch (the last, or an OOM split)
        runs = self._seen.get(size, 0) + 1
        self._seen[size] = runs
        if runs == 1 or seconds <= 0:
            return  # the first run of a shape pays its set-up costs
        rate = work / seconds
        self._rates[size] = max(rate, self._rates.get(size, 0.0))
        smaller = [r for s, r in self._rates.items() if s < size]
        no_gain = bool(smaller) and rate <= max(smaller) * (1 + self.min_gain)
        if no_gain or size * 2 > self.limit:
            self._settle()
        else:
            self._size = size * 2

    def out_of_memory(self, size: int) -> None:
        """Note that ``size`` inputs did not fit: never plan that many again."""
        self.limit = min(self.limit, max(1, size // 2))
        if self.chosen is not None and self.chosen <= self.limit:
            return
        fitting = {s: r for s, r in self._rates.items() if s <= self.limit}
        if fitting:
            self._settle(fitting)
        else:
            current = self.chosen if self.chosen is not None else self._size
            self.chosen = self._size = max(1, min(current, self.limit))
            self._remember()

    def _settle(self, rates: dict[int, float] | None = None) -> None:
        rates = self._rates if rates is None else rates
        self.chosen = max(rates, key=rates.get) if rates else self._size
        self._remember()

    def _remember(self) -> None:
        if self.key is not None:
            measured_batch_sizes.put(self.key, (self.chosen, self._n))
