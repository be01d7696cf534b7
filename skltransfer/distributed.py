"""Run fitted estimators on Dask, Ray and Spark workers.

The engines do the scheduling, the data movement and the fault tolerance;
this module supplies the three things each of them needs from a model:

- :class:`BatchFunction`: a small, picklable callable that carries a fitted
  estimator as its (light, see :func:`skltransfer.config_context`) pickle,
  loads it once per worker process, and maps one of its methods over the
  batches an engine hands out: pandas partitions (``dask.dataframe``,
  ``dask_ml``'s ``ParallelPostFit``, Ray Data's ``"pandas"`` format), dicts of
  arrays (Ray Data's default format), numpy arrays (``dask.array`` blocks,
  Spark's ``predict_batch_udf``) and lists (``dask.bag``).
- The output's description before anything runs (:attr:`BatchFunction.meta`,
  :meth:`BatchFunction.map_blocks`): Dask builds its task graph from it.
- :func:`worker_setup`: the process settings torch needs in a worker.
  Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also
  pins glibc's mmap threshold at 128 KiB, so every large tensor is mapped and
  unmapped afresh (page faults on every batch: 1.9-2.2x slower inference measured
  on a 2-core LocalCluster); and every engine starts torch with one thread per
  task. :func:`worker_setup` restores glibc's large-allocation thresholds and
  gives torch its share of the host's cores.

Threads rule (``n_threads=None``): the cores this process may use divided by
the tasks the engine runs at once on this host, at least 1: under Dask the
sum of ``nthreads`` of the workers on this host, under Ray the CPUs assigned
to the task or actor, under Spark ``spark.task.cpus``. Outside an engine
torch is left as it is. Torch's thread count is a setting of the thread
that calls it, so it is applied in every task, not once per process.
"""

from __future__ import annotations

import functools
import hashlib
import pickle

import joblib
import numpy as np

from ._process_state import loaded_estimators

__all__ = ["BatchFunction", "worker_setup", "clear_loaded_estimators"]

_METHODS = ("transform", "predict", "predict_proba", "decision_function")

# Fitted estimators this worker process has unpickled are kept in
# ``loaded_estimators`` (see skltransfer._process_state): loaded on a process's
# first task, reused by every later task, bounded so that a long-lived worker
# serving many models (a search) does not grow without limit.


def clear_loaded_estimators() -> None:
    """Forget the estimators this process loaded for :class:`BatchFunction`.

    :func:`skltransfer.clear_process_state` forgets them too, with the rest
    of what the process remembers.
    """
    loaded_estimators.clear()


# -- worker set-up ----------------------------------------------------------

# glibc's mallopt parameters (malloc.h) and the values its dynamic thresholds
# grow to on 64-bit Linux: allocations below 32 MiB come from the heap and are
# reused, and up to twice that stays mapped after a free.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20


@functools.cache
def _restore_malloc_thresholds() -> bool:
    """Once per process; False where the C library is not glibc."""
    from ._malloc import glibc

    libc = glibc()
    return libc is not None and bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD)
    )


@functools.cache
def _dask_slots_on_host(address: str) -> int | None:
    """Task slots (threads) of all Dask workers on this worker's host."""
    from distributed import get_client

    host = address.split("://")[-1].rsplit(":", 1)[0]
    info = get_client().scheduler_info(n_workers=-1)["workers"]
    slots = [w["nthreads"] for w in info.values() if w.get("host") == host]
    return sum(slots) or None


def _engine_threads() -> int | None:
    """The threads rule of the module docstring; None outside an engine."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        pass
    else:
        slots = _dask_slots_on_host(worker.address) or worker.state.nthreads
        # joblib counts the cores this process may use: CPU affinity and
        # container (cgroup) quotas included.
        return max(1, joblib.cpu_count() // slots)
    try:
        import ray

        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                return max(1, int(cpus))
    except ImportError:
        pass
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        if context is not None:
            return max(1, int(context.cpus()))
    except ImportError:
        pass
    return None


def worker_setup(n_threads: int | None = None) -> int:
    """Prepare this worker process and thread for torch; returns the threads.

    Restores glibc's large-allocation thresholds once per process (see the
    module docstring) and sets torch's thread count for the calling thread:
    ``n_threads``, or by the threads rule when None. Call it in every task,
    or register it with the engine, e.g. ``client.run(worker_setup)`` before
    a ``joblib.parallel_backend("dask")`` search; :class:`BatchFunction`
    calls it for you.

    Parameters
    ----------
    n_threads : int or None, default=None
        Torch threads for the calling thread; None follows the engine's task
        slots on this host (see the module docstring).

    Returns
    -------
    n_threads : int
        Torch's thread count after the call.
    """
    import torch

    _restore_malloc_thresholds()
    if n_threads is None:
        n_threads = _engine_threads()
    if n_threads is not None and torch.get_num_threads() != n_threads:
        torch.set_num_threads(int(n_threads))
    return torch.get_num_threads()


# -- the batch function -----------------------------------------------------


def _final_step(estimator):
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


class BatchFunction:
    """A fitted estimator's method, mapped over the batches of any engine.

    Construct it where the estimator was fitted; ship it to the workers as an
    ordinary argument. It carries the estimator's pickle (under 1 MB for a
    frozen registered backbone, which workers load again from their own
    installed copy; see :func:`skltransfer.config_context`), unpickles it once
    per worker process, and calls ``method`` on each batch.

    An error on a batch names a sample by its position in that batch (with
    its index label, for a pandas batch) and its file, and carries a note
    saying so. With ``PretrainedImageFeatures(on_error="nan")``, the rows of
    images that cannot be read are NaN in the output instead, so that a job
    over many files finishes; drop them afterwards (see the "Scaling out"
    guide).

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        Anything with ``method``; pipelines included.
    method : {"transform", "predict", "predict_proba", "decision_function"}, \
            default="transform"
    n_threads : int or None, default=None
        Torch threads per task; None follows the threads rule of
        :mod:`skltransfer.distributed`.
    column : str, list of str or None, default=None
        For batches with several columns (a DataFrame, a dict of arrays,
        Spark's input columns): the one holding the samples, or a list of
        columns passed on as a DataFrame (for a pipeline that takes several).
        None passes a DataFrame whole and takes the only column of a dict.
    output_column : str or None, default=None
        Name of the output in dict batches (and of a predicted Series):
        ``"features"``, ``"prediction"`` or ``"proba"`` by method when None.

    Attributes
    ----------
    meta : pandas.DataFrame or pandas.Series
        An empty object of the output's type, columns and dtype, as
        ``dask.dataframe.map_partitions(meta=...)`` and ``dask_ml``'s
        ``ParallelPostFit(transform_meta=...)`` want it.
    dtype : numpy.dtype
        The output's dtype; outputs are cast to it, so ``meta`` never lies.
    n_outputs : int or None
        Output columns (None for 1-D ``predict``).

    Examples
    --------
    >>> import numpy as np
    >>> from skltransfer import PretrainedImageFeatures
    >>> from skltransfer.distributed import BatchFunction
    >>> X = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), np.uint8)
    >>> features = PretrainedImageFeatures("test_tiny_cnn").fit(X)
    >>> embed = BatchFunction(features)
    >>> embed(X).shape, embed.meta.shape
    ((4, 32), (0, 32))

    On an engine: ``ddf.map_partitions(embed, meta=embed.meta)`` (Dask),
    ``ds.map_batches(embed)`` (Ray Data),
    ``predict_batch_udf(embed.make_predict_fn, ...)`` (Spark); see the
    "Scaling out" guide.
    """

    def __init__(
        self,
        estimator,
        method: str = "transform",
        *,
        n_threads: int | None = None,
        column: str | None = None,
        output_column: str | None = None,
    ):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
        if not hasattr(estimator, method):
            raise ValueError(f"{type(estimator).__name__} has no method {method!r}.")
        if n_threads is not None and (not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive int, got {n_threads!r}.")
        self.method = method
        self.n_threads = n_threads
        self.column = column
        self.output_column = output_column or {
            "transform": "features",
            "predict": "prediction",
        }.get(method, "proba" if method == "predict_proba" else "score")
        self._blob = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
        self._key = hashlib.sha256(self._blob).hexdigest()
        self._names, self.dtype = self._describe(estimator)
        self.n_outputs = None if self._names is None else len(self._names)

    # What the output looks like, known on the client without running anything.
    def _describe(self, estimator):
        last = _final_step(estimator)
        if self.method == "transform":
            names = np.asarray(estimator.get_feature_names_out(), dtype=object)
            return names, np.dtype(np.float32 if _is_ours(last) else np.float64)
        classes = getattr(last, "classes_", None)
        multilabel = bool(getattr(last, "_multilabel", False))
        if self.method == "predict" and not multilabel:
            if classes is None:  # a regressor
                return None, np.dtype(np.float64)
            return None, np.asarray(classes).dtype
        if classes is None:
            raise ValueError(f"{self.method} needs a fitted classifier with classes_.")
        names = np.asarray([f"{self.output_column}_{c}" for c in classes], object)
        if self.method == "predict":  # an indicator matrix
            return names, np.dtype(np.int64)
        if self.method == "decision_function" and len(classes) == 2:
            names = names[1:]
        return names, np.dtype(np.float32 if _is_ours(last) else np.float64)

    @property
    def meta(self):
        import pandas as pd

        if self._names is None:
            return pd.Series([], dtype=self.dtype, name=self.output_column)
        return pd.DataFrame(
            np.empty((0, len(self._names)), self.dtype), columns=list(self._names)
        )

    def estimator(self):
        """The fitted estimator, as loaded in this process (once)."""
        return loaded_estimators.get_or_put(self._key, lambda: pickle.loads(self._blob))

    def _apply(self, X) -> np.ndarray:
        worker_setup(self.n_threads)
        if len(X) == 0:
            return np.empty(
                (0,) + (() if self._names is None else (len(self._names),)), self.dtype
            )
        try:
            out = getattr(self.estimator(), self.method)(X)
        except (ValueError, TypeError) as exc:
            self._note_batch(exc, len(X))
            raise
        out = np.asarray(out)
        if (
            self.method == "decision_function"
            and out.ndim == 1
            and self._names is not None
        ):
            out = out[:, None]
        return out.astype(self.dtype, copy=False)

    def _note_batch(self, exc: Exception, n: int) -> None:
        """Say on an error that its sample numbers count within this batch:
        the engine's batch is the ``X`` the estimator saw."""
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(
                f"Raised by BatchFunction({self.method!r}) on a batch of {n} "
                "samples: a sample's position counts from this batch's first "
                "row, and a pandas batch's index labels are given beside it."
            )

    def __call__(self, batch):
        """``method`` on one batch, in the batch's own format (see the class)."""
        import pandas as pd

        if isinstance(batch, (pd.DataFrame, pd.Series)):
            samples = batch[self.column] if self.column is not None else batch
            out = self._apply(samples)
            if self._names is None:
                return pd.Series(out, index=batch.index, name=self.output_column)
            return pd.DataFrame(out, index=batch.index, columns=list(self._names))
        if isinstance(batch, dict):
            return self._apply_dict(batch)
        return self._apply(batch)

    def _apply_dict(self, batch: dict) -> dict:
        column = self.column
        if column is None:
            if len(batch) != 1:
                raise ValueError(
                    f"The batch has columns {sorted(batch)}: pass column= to say "
                    "which holds the samples."
                )
            (column,) = batch
        used = column if isinstance(column, list) else [column]
        # The batch's other columns (ids, labels) travel with the output.
        out = {k: v for k, v in batch.items() if k not in used}
        out[self.output_column] = self._apply(_samples(batch, column))
        return out

    def map_blocks(self, X):
        """``method`` over a ``dask.array`` of samples, lazily, with the true shape.

        ``X`` is split along its first axis only (other axes are gathered into
        one chunk); the result has one row per sample and ``n_outputs``
        columns (one dimension for ``predict``).
        """
        X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
        if self._names is None:
            chunks, kept = (X.chunks[0],), 1
        else:
            chunks, kept = (X.chunks[0], (len(self._names),)), 2
        empty = np.empty((0,) * len(chunks), self.dtype)
        return X.map_blocks(
            self._apply,
            dtype=self.dtype,
            chunks=chunks,
            drop_axis=list(range(kept, X.ndim)),
            new_axis=[1] if kept == 2 and X.ndim == 1 else None,
            meta=empty,
        )

    def make_predict_fn(self):
        """For Spark's ``predict_batch_udf``: the function it calls per batch.

        Spark calls this once per Python worker and the returned function
        with one numpy array per input column. A single column is the
        samples; several need their names as this object's ``column`` (a
        list), and reach the estimator as a DataFrame.
        """
        names = self.column if isinstance(self.column, list) else None

        def predict(*columns):
            if len(columns) == 1 and names is None:
                return self._apply(_samples({"x": columns[0]}, "x"))
            if names is None or len(names) != len(columns):
                raise ValueError(
                    f"{len(columns)} input columns: pass their names as "
                    "BatchFunction(column=[...])."
                )
            return self._apply(_samples(dict(zip(names, columns)), names))

        return predict

    def __repr__(self) -> str:
        return (
            f"BatchFunction(<{len(self._blob):,} byte estimator>, "
            f"method={self.method!r})"
        )


def _samples(batch: dict, column):
    """The samples of a dict batch: one column (paths and texts as a list),
    or a DataFrame of several."""
    if isinstance(column, list):
        import pandas as pd

        return pd.DataFrame({name: batch[name] for name in column})
    samples = batch[column]
    if isinstance(samples, np.ndarray) and samples.dtype.kind in "OUS":
        return samples.tolist()
    return samples


def _is_ours(estimator) -> bool:
    return type(estimator).__module__.startswith("skltransfer.")
