"""Progress bars: whether ``verbose`` shows one, decided in one place.

Every bar of the library is made by :func:`progress_bar`. ``verbose=0`` (or
False) never shows one and ``verbose>=1`` (or True) always does, at once.
``verbose="auto"``, the default of every estimator, shows a bar only where a
person is watching and the wait is long enough to notice:

- the session is interactive: standard error is a terminal, or the code runs
  in a Jupyter or IPython kernel (``tqdm.auto`` then draws a notebook widget);
- it is not a continuous-integration run (the ``CI`` environment variable set
  to anything but ``""``, ``0``, ``false``, ``no`` or ``off``);
- it is not a worker: a child process of ``multiprocessing`` (joblib's loky
  workers, as in ``GridSearchCV(n_jobs=2)``, and Dask's nanny-started
  workers among them), a thread other than the main one (thread pools of
  joblib or Dask), a Dask worker, a Ray task or actor, a Spark task; bars
  there would interleave or land in a log;
- and the call runs longer than :data:`AUTO_DELAY` seconds: the bar appears
  only then (tqdm's ``delay``), so short calls stay silent.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading

from tqdm.auto import tqdm

__all__ = ["AUTO_DELAY", "progress_bar", "shows_progress"]

# verbose="auto": seconds a bar waits before it first appears.
AUTO_DELAY = 2.0
_FALSE = {"", "0", "false", "no", "off"}


def _is_auto(verbose) -> bool:
    return isinstance(verbose, str) and verbose == "auto"


def shows_progress(verbose) -> bool:
    """Whether ``verbose`` shows progress bars here and now (see the module
    docstring); for ``"auto"``, before its delay."""
    if not _is_auto(verbose):
        return bool(verbose)
    return _interactive() and not _in_ci() and not _in_worker()


def progress_bar(iterable=None, *, verbose, **kwargs) -> tqdm:
    """A ``tqdm.auto`` bar over ``iterable`` (or updated by hand), shown as
    ``verbose`` says; with ``"auto"`` it appears after :data:`AUTO_DELAY`
    seconds. ``kwargs`` go to tqdm (``total``, ``desc``, ``unit``, ``leave``).
    """
    delay = AUTO_DELAY if _is_auto(verbose) else 0.0
    return tqdm(iterable, disable=not shows_progress(verbose), delay=delay, **kwargs)


def _interactive() -> bool:
    """Standard error is a terminal, or this is a Jupyter/IPython kernel
    (whose standard error is a stream to the notebook, never a terminal)."""
    stream = sys.stderr
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        pass
    ipython = sys.modules.get("IPython")
    if ipython is None:  # never imported here: no kernel either
        return False
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None) is not None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in _FALSE


def _in_worker() -> bool:
    """A process or thread that works for another one (see the module
    docstring). The engines are asked only when already imported."""
    if multiprocessing.parent_process() is not None:
        return True
    if threading.current_thread() is not threading.main_thread():
        return True
    for engine in (_dask_worker, _ray_worker, _spark_task):
        try:
            if engine():
                return True
        except Exception:  # an engine's API changed: its bars are not worth a fit
            continue
    return False


def _dask_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:  # not in a worker
        return False
    return True


def _ray_worker() -> bool:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    # The driver's mode is SCRIPT_MODE; tasks and actors run in WORKER_MODE.
    worker = getattr(ray.get_runtime_context(), "worker", None)
    return getattr(worker, "mode", None) == ray.WORKER_MODE


def _spark_task() -> bool:
    pyspark = sys.modules.get("pyspark")
    return pyspark is not None and pyspark.TaskContext.get() is not None
