"""Whether ``verbose`` shows a progress bar (_progress.py)."""

import io
import sys
import threading
import types

import joblib
import pytest

from skltransfer import _progress
from skltransfer._progress import AUTO_DELAY, progress_bar, shows_progress


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.fixture
def terminal(monkeypatch):
    """A session a person watches: a terminal, no CI, the main process.

    Returns what the module sees as ``sys`` (its ``stderr`` and ``modules``),
    to change in a test: pytest's capture resets the real ``sys.stderr``
    between a fixture and its test.
    """
    seen = types.SimpleNamespace(stderr=_Stream(tty=True), modules={})
    monkeypatch.setattr(_progress, "sys", seen)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(_progress, "_in_worker", lambda: False)
    return seen


@pytest.fixture
def no_engine(monkeypatch):
    """The main thread of a process no engine started."""
    monkeypatch.setattr(_progress.multiprocessing, "parent_process", lambda: None)
    monkeypatch.setattr(_progress.threading, "current_thread", threading.main_thread)
    for name in ("distributed", "ray", "pyspark"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.mark.parametrize("verbose", [0, False])
def test_zero_never_shows(terminal, verbose):
    assert not shows_progress(verbose)


@pytest.mark.parametrize("verbose", [1, 2, True])
def test_positive_always_shows(monkeypatch, verbose):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(_progress, "_in_worker", lambda: True)
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    assert shows_progress(verbose)


def test_auto_shows_in_a_terminal(terminal):
    assert shows_progress("auto")


def test_auto_is_silent_without_a_terminal(terminal):
    terminal.stderr = _Stream(tty=False)
    assert not shows_progress("auto")
    terminal.stderr = None  # pythonw, some services
    assert not shows_progress("auto")


def _fake_ipython(shell):
    return types.SimpleNamespace(get_ipython=lambda: shell)


def test_auto_shows_in_a_notebook_kernel(terminal):
    terminal.stderr = _Stream(tty=False)
    kernel_shell = types.SimpleNamespace(kernel=object())
    terminal.modules["IPython"] = _fake_ipython(kernel_shell)
    assert shows_progress("auto")


def test_auto_is_silent_in_ipython_without_a_kernel_or_terminal(terminal):
    terminal.stderr = _Stream(tty=False)
    terminal.modules["IPython"] = _fake_ipython(None)
    assert not shows_progress("auto")


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", "github"])
def test_auto_is_silent_in_ci(terminal, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert not shows_progress("auto")


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_a_false_ci_variable_is_no_ci(terminal, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert shows_progress("auto")


def test_auto_is_silent_in_a_worker(terminal, monkeypatch):
    monkeypatch.setattr(_progress, "_in_worker", lambda: True)
    assert not shows_progress("auto")


def test_the_main_process_is_no_worker(no_engine):
    assert not _progress._in_worker()


def test_a_multiprocessing_child_is_a_worker(no_engine, monkeypatch):
    monkeypatch.setattr(_progress.multiprocessing, "parent_process", lambda: object())
    assert _progress._in_worker()


def test_a_thread_is_a_worker(monkeypatch):
    monkeypatch.setattr(_progress.multiprocessing, "parent_process", lambda: None)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_progress._in_worker()))
    thread.start()
    thread.join()
    assert seen == [True]


def _raise(exc):
    raise exc


def test_a_dask_worker_is_a_worker(no_engine, monkeypatch):
    dask = types.SimpleNamespace(get_worker=lambda: _raise(ValueError("no worker")))
    monkeypatch.setitem(sys.modules, "distributed", dask)
    assert not _progress._in_worker()  # a client, not a worker
    dask.get_worker = object
    assert _progress._in_worker()


def _fake_ray(mode, initialized=True):
    context = types.SimpleNamespace(worker=types.SimpleNamespace(mode=mode))
    return types.SimpleNamespace(
        is_initialized=lambda: initialized,
        get_runtime_context=lambda: context,
        WORKER_MODE=1,
    )


def test_a_ray_task_is_a_worker(no_engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", _fake_ray(mode=0))  # the driver
    assert not _progress._in_worker()
    monkeypatch.setitem(sys.modules, "ray", _fake_ray(mode=1, initialized=False))
    assert not _progress._in_worker()
    monkeypatch.setitem(sys.modules, "ray", _fake_ray(mode=1))
    assert _progress._in_worker()


def test_a_spark_task_is_a_worker(no_engine, monkeypatch):
    context = types.SimpleNamespace(get=lambda: None)
    pyspark = types.SimpleNamespace(TaskContext=context)
    monkeypatch.setitem(sys.modules, "pyspark", pyspark)
    assert not _progress._in_worker()  # the driver
    context.get = object
    assert _progress._in_worker()


def test_an_engine_that_fails_to_answer_is_no_worker(no_engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace())  # no API at all
    assert not _progress._in_worker()


def _worker_answer():
    return _progress._in_worker()


@pytest.mark.slow  # starts two worker processes
def test_joblib_workers_are_workers():
    """The workers of ``GridSearchCV(n_jobs=2)``: loky's child processes."""
    answers = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_worker_answer)() for _ in range(2)
    )
    assert answers == [True, True]


# -- the bars ---------------------------------------------------------------------


def test_auto_bar_waits_before_it_appears(terminal, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])
    out = io.StringIO()
    bar = progress_bar(verbose="auto", total=3, desc="Working", file=out)
    bar.update()
    assert out.getvalue() == ""  # a short call stays silent
    now[0] = AUTO_DELAY + 0.5
    bar.update()
    assert "Working" in out.getvalue()
    bar.close()


def test_a_short_auto_pass_writes_nothing(terminal):
    out = io.StringIO()
    for _ in progress_bar(range(5), verbose="auto", file=out):
        pass
    assert out.getvalue() == ""


def test_verbose_bar_appears_at_once(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    out = io.StringIO()
    bar = progress_bar(verbose=1, total=3, desc="Working", file=out)
    assert "Working" in out.getvalue()
    bar.close()


def test_a_silent_bar_is_disabled(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    bar = progress_bar(range(3), verbose="auto")
    assert bar.disable and list(bar) == [0, 1, 2]
