"""The batched inference loop: order, dtype, prefetching and out-of-memory retries."""

import os
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from skltransfer._inference import (
    batch_slices,
    check_finite_rows,
    map_batches,
    prefetched,
    run_batched,
)
from skltransfer.exceptions import SkltransferWarning

DATA = torch.arange(20, dtype=torch.float64).reshape(10, 2)


def _run(forward, batch_size=4):
    return np.concatenate(
        run_batched(
            lambda sl: DATA[sl],
            forward,
            batch_slices(len(DATA), batch_size),
            device=torch.device("cpu"),
        )
    )


def test_verbose_passes_show_a_bar_and_silent_ones_do_not(capsys):
    from skltransfer.inputs.batches import TensorInputs

    inputs = TensorInputs(DATA)
    cpu = torch.device("cpu")
    kw = {"device": cpu, "dtype": None, "batch_size": 4}
    shown = map_batches(inputs, torch.clone, verbose=1, desc="Mapping", **kw)
    assert "Mapping" in capsys.readouterr().err
    assert torch.equal(torch.cat(shown), DATA)
    _run(torch.clone)  # verbose=0, the default of the runner
    map_batches(inputs, torch.clone, desc="Mapping", **kw)
    assert capsys.readouterr().err == ""


def test_batch_slices_cover_the_range():
    assert batch_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batch_slices(0, 3) == []


def test_rows_come_back_in_order_as_float32():
    out = _run(lambda b: b * 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, DATA.numpy() * 2)


def test_out_of_memory_halves_the_batch_and_warns_once():
    sizes = []

    def forward(batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        return batch + 1

    with pytest.warns(SkltransferWarning, match="Out of device memory") as record:
        out = _run(forward, batch_size=4)
    np.testing.assert_array_equal(out, DATA.numpy() + 1)
    assert len(record) == 1 and record[0].filename == __file__
    assert max(sizes) == 4 and sizes.count(1) == 10


class _OutOfMemoryAboveTwo(torch.nn.Module):
    def forward(self, x):
        if len(x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        return x.mean(dim=(2, 3))


def test_out_of_memory_in_an_estimator_names_the_users_line():
    from skltransfer import PretrainedImageFeatures
    from skltransfer.backbones import ImagePreprocessing, ModuleBackbone

    pre = ImagePreprocessing(crop_size=8, resize_size=None)
    spec = ModuleBackbone(_OutOfMemoryAboveTwo(), preprocessing=pre)
    X = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    est = PretrainedImageFeatures(spec, batch_size=8).fit(X)
    with pytest.warns(SkltransferWarning, match="Out of device memory") as record:
        out = est.transform(X)
    assert out.shape == (8, 3) and record[0].filename == __file__


def test_other_errors_are_not_swallowed():
    def forward(batch):
        raise RuntimeError("shape mismatch")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="shape mismatch"):
            _run(forward)


def test_oom_with_a_single_sample_is_raised():
    def forward(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        _run(forward, batch_size=1)


def test_dict_batches_are_split_too():
    def prepare(sl):
        return {"a": DATA[sl], "b": DATA[sl] * 10}

    def forward(batch):
        if len(batch["a"]) > 2:
            raise torch.OutOfMemoryError("out of memory")
        return batch["a"] + batch["b"]

    with pytest.warns(SkltransferWarning):
        out = run_batched(
            prepare, forward, batch_slices(10, 5), device=torch.device("cpu")
        )
    np.testing.assert_array_equal(np.concatenate(out), DATA.numpy() * 11)


def test_non_finite_rows_are_named_by_position():
    rows = np.ones((10, 2))
    rows[[1, 2, 4, 5, 7, 8], 0] = [np.nan, np.inf, -np.inf, np.nan, np.nan, np.nan]
    with pytest.raises(ValueError, match=r"^The model produced .* for 6 of 10 "):
        check_finite_rows(rows, "The model")
    with pytest.raises(ValueError, match=r"positions 1, 2, 4, 5, 7 and 1 more of X\."):
        check_finite_rows(rows, "The model")
    with pytest.raises(FloatingPointError, match="position 13 of the split"):
        check_finite_rows(
            rows[:2], "It", positions=[12, 13], of="the split", error=FloatingPointError
        )
    check_finite_rows(np.ones((3, 2, 2)), "The model")  # finite: no error


@pytest.fixture
def two_threads():
    """Torch at two threads, a count the worker's one cannot be mistaken for."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _in_a_new_thread(fn):
    with ThreadPoolExecutor(max_workers=1) as later:
        return later.submit(fn).result()


@pytest.mark.usefixtures("two_threads")
def test_batch_preparation_leaves_the_cores_to_a_cpu_model():
    """The worker runs on one core; the process keeps its thread count, in the
    caller's thread and in threads that start later."""
    from skltransfer._inference import prefetch_pool

    seen = []

    def prepare(sl):
        seen.append(torch.get_num_threads())
        return torch.zeros(sl.stop - sl.start, 2)

    run_batched(prepare, lambda x: x, batch_slices(6, 2), device=torch.device("cpu"))
    assert seen == [1, 1, 1]
    assert torch.get_num_threads() == 2
    assert _in_a_new_thread(torch.get_num_threads) == 2
    with prefetch_pool(torch.device("cuda")) as pool:  # no model on the CPU
        assert pool.submit(torch.get_num_threads).result() == 2


@pytest.mark.slow  # loads three tiny models (a second or two each, first use)
@pytest.mark.usefixtures("two_threads")
def test_estimators_leave_the_thread_count_as_it_was(rgb_images):
    from _common_text import TEXTS

    from skltransfer import (
        FineTuneClassifier,
        PretrainedImageFeatures,
        PretrainedTextEmbeddings,
    )

    X, y = rgb_images
    PretrainedImageFeatures("test_tiny_cnn", batch_size=4).fit(X).transform(X)
    PretrainedTextEmbeddings("test_tiny_bert", batch_size=2).fit(TEXTS).transform(TEXTS)
    clf = FineTuneClassifier(
        "test_tiny_cnn", max_epochs=1, batch_size=4, head_init="random"
    )
    clf.fit(X, y).predict(X)
    assert torch.get_num_threads() == 2
    assert _in_a_new_thread(torch.get_num_threads) == 2


@pytest.mark.slow  # a fresh interpreter imports torch (seconds)
def test_a_first_transform_leaves_the_thread_count_of_a_new_process():
    """In a process whose thread has not run torch in parallel yet, the
    worker's count once became the process's."""
    code = (
        "import numpy as np, torch\n"
        "from skltransfer import PretrainedImageFeatures\n"
        "X = np.zeros((4, 16, 16, 3), np.uint8)\n"
        "PretrainedImageFeatures('test_tiny_cnn', batch_size=2).fit(X).transform(X)\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2"]


@pytest.mark.parametrize("ahead", [True, False])
def test_prefetched_batches_load_one_ahead_in_the_worker(ahead):
    asked, threads = [], set()

    def keys():
        for key in range(4):
            asked.append(key)
            yield key

    def load(key):
        threads.add(threading.get_ident())
        return key * 10

    seen = []
    for key, batch in prefetched(load, keys(), torch.device("cpu"), ahead=ahead):
        seen.append((key, batch, asked[-1]))
    ahead_by = 1 if ahead else 0
    assert seen == [(k, k * 10, min(k + ahead_by, 3)) for k in range(4)]
    assert (threading.get_ident() in threads) is not ahead


def test_padding_keeps_one_batch_shape_and_drops_the_padding():
    data = torch.arange(10, dtype=torch.float32).reshape(10, 1)
    shapes = []

    def forward(batch):
        shapes.append(tuple(batch.shape))
        return batch + 1

    out = run_batched(
        lambda sl: data[sl],
        forward,
        [slice(0, 4), slice(4, 8), slice(8, 10)],
        device=torch.device("cpu"),
        pad_to=4,
    )
    assert shapes == [(4, 1)] * 3
    np.testing.assert_array_equal(np.concatenate(out), data.numpy() + 1)
