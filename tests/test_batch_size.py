"""Batch size chosen from measured throughput (_batch_size.py)."""

import warnings

import numpy as np
import pytest
import torch

from skltransfer import PretrainedImageFeatures, _batch_size
from skltransfer._batch_size import (
    AutoBatchSize,
    chosen_batch_sizes,
    forget_batch_sizes,
)
from skltransfer._inference import run_batched

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_choices():
    forget_batch_sizes()
    yield
    forget_batch_sizes()


class FakeDevice:
    """A forward pass whose duration follows a cost model, on a fake clock.

    ``cost(n)`` is the time of a batch of ``n``; the first batch of each size
    costs ``setup`` more, as a new shape does on a real device.
    """

    def __init__(self, cost, setup=10.0, max_batch=None):
        self.now = 0.0
        self.cost, self.setup, self.max_batch = cost, setup, max_batch
        self.sizes = []

    def clock(self):
        return self.now

    def forward(self, batch):
        n = len(batch)
        if self.max_batch is not None and n > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        self.now += self.cost(n) + (self.setup if n not in self.sizes else 0.0)
        self.sizes.append(n)
        return batch * 2


def _run(device, n, key="model", **kwargs):
    sizer = AutoBatchSize(
        key, default=32, start=8, limit=128, clock=device.clock, **kwargs
    )
    data = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    out = run_batched(
        lambda sl: data[sl], device.forward, sizer.slices(n), device=CPU, sizer=sizer
    )
    np.testing.assert_array_equal(np.concatenate(out), data.numpy() * 2)
    return sizer


def test_the_fastest_size_is_chosen_and_serves_the_rest():
    # Per-batch overhead plus a per-sample cost that grows with the batch
    # (cache misses): throughput peaks at 32.
    device = FakeDevice(lambda n: 1.0 + 0.1 * n + 0.0015 * n * n)
    sizer = _run(device, 3000)
    rates = {s: s / (1.0 + 0.1 * s + 0.0015 * s * s) for s in (8, 16, 32, 64)}
    assert max(rates, key=rates.get) == 32
    assert sizer.chosen == 32
    assert device.sizes[:2] == [8, 8]  # each size runs at least twice
    measured = [s for s in device.sizes if s != 32]
    assert set(measured) <= {8, 16, 64}
    assert len(measured) <= 9  # the measurement is a short prefix
    assert device.sizes[-2] == 32  # before the partial last batch
    assert chosen_batch_sizes() == {"model": 32}


def test_doubling_stops_at_the_limit_when_larger_keeps_paying():
    device = FakeDevice(lambda n: 1.0 + 0.01 * n)  # overhead dominates
    assert _run(device, 3000).chosen == 128
    assert max(device.sizes) == 128


def test_set_up_cost_of_a_new_shape_is_not_measured():
    # Without discarding each size's first run, the large set-up cost would
    # make every doubling look slower and stop the search at 8.
    device = FakeDevice(lambda n: 1.0 + 0.01 * n, setup=100.0)
    assert _run(device, 3000).chosen == 128


def test_a_remembered_choice_is_used_from_the_first_batch():
    _run(FakeDevice(lambda n: 1.0 + 0.1 * n + 0.0015 * n * n), 3000)
    device = FakeDevice(lambda n: 1.0)
    _run(device, 100)
    assert device.sizes == [32, 32, 32, 4]
    forget_batch_sizes()
    device = FakeDevice(lambda n: 1.0)
    _run(device, 40)  # too small to measure: the default
    assert device.sizes == [32, 8]
    assert chosen_batch_sizes() == {}
    device = FakeDevice(lambda n: 1.0)
    _run(device, 70)  # cut short while measuring: nothing is remembered
    assert device.sizes[:3] == [8, 8, 8]
    assert chosen_batch_sizes() == {}


def test_a_much_larger_input_measures_again():
    _run(FakeDevice(lambda n: 1.0 + 0.1 * n + 0.004 * n * n), 200)
    assert chosen_batch_sizes() == {"model": 16}
    peak_at_32 = FakeDevice(lambda n: 1.0 + 0.1 * n + 0.0015 * n * n)
    _run(peak_at_32, 800)  # up to 4x the measured input: remembered
    assert set(peak_at_32.sizes[:-1]) == {16}
    _run(peak_at_32, 801)
    assert chosen_batch_sizes() == {"model": 32}


def test_out_of_memory_while_measuring_settles_below_it_quietly():
    device = FakeDevice(lambda n: 1.0 + 0.01 * n, max_batch=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a measurement expects OOM: no warning
        sizer = _run(device, 3000)
    assert sizer.chosen == 32
    assert max(device.sizes) <= 40
    assert chosen_batch_sizes() == {"model": 32}


def test_out_of_memory_on_a_remembered_size_lowers_it():
    _run(FakeDevice(lambda n: 1.0 + 0.01 * n), 3000)
    assert chosen_batch_sizes() == {"model": 128}
    device = FakeDevice(lambda n: 1.0, max_batch=100)
    _run(device, 1000)
    assert chosen_batch_sizes() == {"model": 64}
    assert device.sizes[-2] == 64


def test_measured_batch_size_gives_the_same_features():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (1000, 8, 8), dtype=np.uint8)
    # On torch: an engine takes a fixed size (tests/test_engines.py).
    fixed = PretrainedImageFeatures("test_tiny_cnn", batch_size=32, engine="torch")
    auto = PretrainedImageFeatures("test_tiny_cnn", engine="torch").fit(X)
    fixed.fit(X)
    np.testing.assert_allclose(
        auto.transform(X), fixed.transform(X), rtol=1e-5, atol=1e-6
    )
    (key,) = chosen_batch_sizes()
    assert key[0] == "PretrainedImageFeatures" and key[1] == "test_tiny_cnn"
    # A size the CPU sweep measures: the doublings from its start to its limit.
    start, limit = _batch_size._SWEEP["cpu"]
    swept = [start * 2**k for k in range(8) if start * 2**k <= limit]
    assert chosen_batch_sizes()[key] in swept
