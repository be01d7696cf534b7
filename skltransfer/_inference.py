"""Iterating batches on a device: the one runner behind inference and fine-tuning.

Every pass over inputs goes through :func:`prefetched`: the next batch is
prepared (decoded, resized, tokenised, read from disk) in the worker thread of
:func:`prefetch_pool` while the current one is on the device; torch releases
the GIL in both, so the two overlap. On top of it:

- :func:`run_inputs` (and :func:`iter_inputs`, batch by batch): the one
  inference pass over inputs (see :mod:`skltransfer.inputs.batches`) of every
  estimator (features, prediction). It owns the set-up around the pass: the
  model on its device, the autocast precision, the length order of texts
  (restored in the output), and the batch sizes (given, or measured and
  remembered under a key built from the inputs' ``batch_size_key``), and
  the engine that runs the forward (torch, or ONNX Runtime or OpenVINO
  through :mod:`._engines`, a forward function swapped in);
- :func:`run_batched` and :func:`iter_batched`, below it: preprocess (CPU) ->
  forward (device) -> numpy (CPU), with batch halving on out-of-memory,
  batch-size measuring and padding for compiled forwards;
- :func:`iterate_batches`: the batches of fine-tuning inputs over an order
  (training epochs, validation), and :func:`map_batches`, one pass without
  gradients whose results stay tensors (frozen activations, the probe's
  features, BatchNorm re-estimation);
- :func:`check_finite_rows`: outputs never leave with NaN or infinity in
  them unnoticed; the error names the samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from ._batch_size import AutoBatchSize, batch_slices, plan_batches
from ._device import autocast, resolve_precision, to_device
from ._engines import EngineSpec, inputs_forward
from ._progress import progress_bar
from .exceptions import SkltransferWarning, warn_at_caller

__all__ = [
    "batch_slices",
    "check_finite_rows",
    "iter_batched",
    "iter_inputs",
    "iterate_batches",
    "map_batches",
    "n_steps_per_epoch",
    "prefetch_pool",
    "prefetched",
    "restore_order",
    "run_batched",
    "run_inputs",
    "to_device",
]

_CPU = torch.device("cpu")
_END = object()
# Samples named in the error about non-finite outputs; the rest are counted.
_NAMED = 5


def _one_thread() -> None:
    """Run this thread's torch operations on one core, leaving other threads'.

    Not ``torch.set_num_threads(1)``: it is process-wide (the default of
    every thread that starts later, the caller's own if its first parallel
    operation comes after, and other thread pools). OpenMP's thread count
    is a setting of each thread: torch sets this thread's from the process
    default on its first use (forced here, so that it cannot undo the
    limit later), then OpenMP's own call lowers it for this thread only.
    """
    torch.get_num_threads()
    ThreadpoolController().select(user_api="openmp").limit(limits=1)


def prefetch_pool(device: torch.device) -> ThreadPoolExecutor:
    """The worker thread that prepares the next batch (decode, resize, tokenise).

    When the model runs on the CPU, the worker's torch operations use one
    thread: with the default (every core), resizing the next batch competed
    with the forward pass for the cores it needs. On an accelerator the
    worker keeps every core, since preparing batches is then the CPU's only
    work. The rest of the process keeps its thread count (see
    :func:`_one_thread`).
    """
    initializer = _one_thread if device.type == "cpu" else None
    return ThreadPoolExecutor(max_workers=1, initializer=initializer)


def prefetched(
    load: Callable, keys: Iterable, device: torch.device, *, ahead: bool = True
) -> Iterator[tuple]:
    """Yield ``(key, load(key))`` for each of ``keys``, in order.

    With ``ahead``, ``load`` of the next key runs in the worker thread while
    the caller works on the current batch (``device`` is where the caller's
    model runs). ``keys`` may be a generator; it is then advanced one key
    ahead of the caller, before the current batch is handed over. Without
    ``ahead`` (batches that are cheap to cut, or already on the device),
    ``load`` runs in the caller's thread.
    """
    if not ahead:
        for key in keys:
            yield key, load(key)
        return
    keys = iter(keys)
    with prefetch_pool(device) as pool:
        key = next(keys, _END)
        pending = pool.submit(load, key) if key is not _END else None
        while key is not _END:
            batch = pending.result()
            following = next(keys, _END)
            if following is not _END:
                pending = pool.submit(load, following)
            yield key, batch
            key = following


# -- inference ------------------------------------------------------------------


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc)


def _forward_to_numpy(forward, batch, device, dtype) -> np.ndarray:
    with torch.inference_mode(), autocast(device, dtype):
        out = forward(batch)
    return out.float().cpu().numpy()


def _forward_halving(forward, batch, device, dtype, state) -> np.ndarray:
    """Run ``forward``; on CUDA out-of-memory, split the batch in halves and retry."""
    try:
        return _forward_to_numpy(forward, batch, device, dtype)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        n = _batch_len(batch)
        if not _is_oom(exc) or n < 2:
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        state["oom"] = max(n, state["oom"] or 0)
        if not state["warned"]:
            state["warned"] = True
            warn_at_caller(
                f"Out of device memory with a batch of {n}; continuing with "
                "smaller batches. Pass a smaller batch_size to avoid the retry.",
                SkltransferWarning,
            )
        half = n // 2
        parts = [
            _batch_slice(batch, slice(0, half)),
            _batch_slice(batch, slice(half, n)),
        ]
        return np.concatenate(
            [_forward_halving(forward, p, device, dtype, state) for p in parts]
        )


def _batch_len(batch) -> int:
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch)


def _batch_slice(batch, sl: slice):
    if isinstance(batch, dict):
        return {k: v[sl] for k, v in batch.items()}
    return batch[sl]


def _work(batch) -> int:
    """The size of a batch in elements: samples x pixels, or padded tokens."""
    if isinstance(batch, dict):
        return max(v.numel() for v in batch.values())
    return batch.numel()


def _pad(batch, n: int):
    """Repeat the last row of ``batch`` up to ``n`` rows."""
    if isinstance(batch, dict):
        return {k: _pad(v, n) for k, v in batch.items()}
    extra = n - len(batch)
    return torch.cat([batch, batch[-1:].expand(extra, *batch.shape[1:])])


def _timed_forward(forward, batch, n: int, device, dtype, sizer, state):
    """The first ``n`` output rows of ``batch``; with ``sizer``, the pass is
    reported to it (its time, or the batch size that ran out of memory)."""
    state["oom"] = None
    start = sizer.clock() if sizer is not None else 0.0
    out = _forward_halving(forward, batch, device, dtype, state)[:n]
    if sizer is not None:
        if state["oom"] is not None:
            sizer.out_of_memory(state["oom"])
        else:
            sizer.record(n, _work(batch), sizer.clock() - start)
    return out


def run_batched(*args, **kwargs) -> list[np.ndarray]:
    """The float32 rows of every batch of :func:`iter_batched`, in a list."""
    return [rows for _, rows in iter_batched(*args, **kwargs)]


def iter_batched(
    prepare: Callable[[slice], object],
    forward: Callable[[object], torch.Tensor],
    slices: Iterable[slice],
    *,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    sizer: AutoBatchSize | None = None,
    pad_to: int | None = None,
    verbose: int | str = 0,
    desc: str = "",
    total: int | None = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Run ``forward(prepare(sl))`` over ``slices``, yielding ``(sl, rows)``
    with float32 ``rows`` as each batch is done.

    ``prepare`` builds a CPU batch (a tensor or a dict of tensors) for one
    slice of the inputs and is run one batch ahead in a worker thread.
    ``slices`` may be a generator; with ``sizer`` (whose ``slices`` it then
    is), every forward pass is timed and reported to it. ``pad_to`` pads
    shorter batches to that many rows (repeating the last row) and drops the
    padding from the output, so that a compiled forward sees one shape.
    """
    state = {"warned": sizer is not None}  # a measuring sizer expects OOMs
    bar = progress_bar(
        verbose=verbose, total=total, desc=desc, unit="sample", leave=False
    )
    with closing(prefetched(prepare, slices, device)) as batches, bar:
        for sl, batch in batches:
            n = sl.stop - sl.start
            if pad_to is not None and n < pad_to:
                batch = _pad(batch, pad_to)
            batch = to_device(batch, device, channels_last)
            rows = _timed_forward(forward, batch, n, device, dtype, sizer, state)
            if sizer is not None and not bar.disable:
                bar.set_postfix(batch_size=sizer.chosen or n, refresh=False)
            bar.update(n)
            yield sl, rows


# -- the runner of inputs -------------------------------------------------------


def restore_order(sorted_rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Undo an order of the samples: row ``k`` of ``sorted_rows`` is sample
    ``order[k]``."""
    out = np.empty_like(sorted_rows)
    out[order] = sorted_rows
    return out


def _place(model, device: torch.device, channels_last: bool | None) -> None:
    """``model`` on ``device``; with ``channels_last`` a bool, its 4-D weights
    in that memory format too."""
    if model is None:
        return
    if channels_last is None:
        model.to(device)
        return
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory)


def run_inputs(inputs, forward, **kwargs) -> np.ndarray:
    """The float32 rows of ``forward`` over every sample of ``inputs``, in
    their order, as one array (see :func:`iter_inputs` for the arguments).

    Inputs with a length order (texts) run longest first, so that each batch
    pads little; the rows come back in input order.
    """
    order = inputs.length_order()
    rows = np.concatenate(list(iter_inputs(inputs, forward, order=order, **kwargs)))
    return rows if order is None else restore_order(rows, order)


def iter_inputs(
    inputs,
    forward: Callable[[object], torch.Tensor],
    *,
    device: torch.device,
    precision: str | torch.dtype | None = None,
    batch_size: int | None = None,
    key: tuple | None = None,
    order: np.ndarray | None = None,
    model: torch.nn.Module | None = None,
    channels_last: bool | None = None,
    pad_to: int | None = None,
    engine: EngineSpec | None = None,
    verbose: int | str = 0,
    desc: str = "",
) -> Iterator[np.ndarray]:
    """The float32 rows of ``forward`` over ``inputs``, batch by batch.

    Parameters
    ----------
    inputs : skltransfer.inputs.batches.Inputs
        Read with ``prepare`` (one batch ahead, in the worker thread); rows
        of samples it could not read (``unread``) are NaN.
    forward : callable
        A device batch -> a tensor of rows, run under ``inference_mode``.
    device : torch.device
        Where ``model`` and the batches go.
    precision : str, torch.dtype or None
        The autocast precision: a ``precision`` parameter, or its dtype.
    batch_size : int or None
        Samples per batch; None measures the fastest size when ``key`` is
        given, else uses the device's default; on an engine, None is
        ``_batch_size._ENGINE_BATCH`` unmeasured.
    key : tuple or None
        What, besides the inputs, the device and the precision, decides the
        cost of a batch (estimator, model, settings): a measured size is
        remembered under it with the inputs' ``batch_size_key``.
    order : ndarray or None
        The order of the samples to run (the rows come in that order).
    model : nn.Module or None
        Moved to ``device`` first, with ``channels_last`` (None: its memory
        format left as it is; a bool: its 4-D weights in NHWC order or not,
        and so are the batches).
    pad_to : int or None
        Batches padded to this many rows (a compiled forward sees one shape).
    engine : EngineSpec or None
        Run ``forward`` (a function of ``model``) on this inference engine
        instead of torch, exported at the first samples of ``inputs`` (see
        :func:`skltransfer._engines.inputs_forward`), when ``inputs`` has at
        least its ``min_samples``; None: torch.
    verbose, desc : int or "auto", str
        A progress bar (see :func:`skltransfer._progress.progress_bar`), and
        its text.
    """
    dtype = (
        resolve_precision(precision, device)
        if isinstance(precision, str)
        else precision
    )
    _place(model, device, channels_last)
    on_engine = False
    if engine is not None:
        torch_forward = forward
        forward = inputs_forward(engine, model, forward, inputs)
        on_engine = forward is not torch_forward
        if on_engine:
            channels_last = False  # the engine takes plain NCHW batches
    if key is not None:
        key = (*key, *inputs.batch_size_key(), str(device), dtype)
    slices, sizer = plan_batches(
        len(inputs), batch_size, device, key, measure=key is not None, engine=on_engine
    )

    def index(sl: slice):
        return sl if order is None else inputs.positions(order[sl])

    batches = iter_batched(
        lambda sl: inputs.prepare(index(sl)),
        forward,
        slices,
        device=device,
        dtype=dtype,
        channels_last=bool(channels_last),
        sizer=sizer,
        pad_to=pad_to,
        verbose=verbose,
        desc=desc,
        total=len(inputs),
    )
    for sl, rows in batches:
        unread = inputs.unread(index(sl))
        if unread.any():
            rows[unread] = np.nan
        yield rows


def check_finite_rows(
    rows: np.ndarray,
    source: str,
    *,
    positions=None,
    of: str = "X",
    error: type[Exception] = ValueError,
) -> None:
    """Raise ``error`` naming the samples whose row holds NaN or infinity.

    Parameters
    ----------
    rows : ndarray of shape (n_samples, ...)
        One output row per sample.
    source : str
        What produced them, to start the message (``"The backbone 'x'"``).
    positions : array-like of int, optional
        The position of each row's sample in the caller's ``X``; by default
        the row index.
    of : str, default="X"
        What the positions index, for the message.
    error : type of Exception, default=ValueError
        What to raise.
    """
    bad = np.flatnonzero(~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1))
    if not bad.size:
        return
    where = bad if positions is None else np.asarray(positions)[bad]
    named = ", ".join(str(int(i)) for i in where[:_NAMED])
    more = f" and {bad.size - _NAMED} more" if bad.size > _NAMED else ""
    positions = "position" if bad.size == 1 else "positions"
    raise error(
        f"{source} produced non-finite outputs (NaN or infinity) for "
        f"{bad.size} of {len(rows)} samples, at {positions} {named}{more} of {of}. "
        "Check these samples (extreme, empty or degenerate values) and the "
        "model; their outputs cannot be used."
    )


# -- fine-tuning inputs ---------------------------------------------------------


def _chunks(order, batch_size: int, training: bool) -> list:
    starts = list(range(0, len(order), batch_size))
    if training and len(starts) > 1 and len(order) - starts[-1] == 1:
        # A last batch of one sample would break BatchNorm in training mode.
        starts.pop()
    ends = [*starts[1:], len(order)]
    return [order[a:b] for a, b in zip(starts, ends, strict=True)]


def n_steps_per_epoch(n: int, batch_size: int) -> int:
    """Training batches in an epoch of ``n`` samples (see :func:`iterate_batches`)."""
    return len(_chunks(range(n), batch_size, training=True))


def iterate_batches(
    inputs, order, batch_size: int, *, training: bool = False, device=_CPU
):
    """Yield ``(idx, raw_batch)`` over ``order`` in chunks of ``batch_size``.

    ``inputs`` are fine-tuning inputs (see :mod:`skltransfer.inputs.batches`).
    In training, a last chunk of a single sample joins the one before it.
    Inputs that decode lazily are loaded one batch ahead in the worker thread
    (``device`` is where the model runs), overlapping decoding with the
    forward and backward passes.
    """
    chunks = _chunks(order, batch_size, training)
    return prefetched(inputs.load, chunks, device, ahead=inputs.prefetch)


def map_batches(
    inputs,
    fn,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    batch_size: int,
    training: bool = False,
    order: np.ndarray | None = None,
    verbose: int | str = 0,
    desc: str = "",
) -> list:
    """``fn(batch)`` for every batch of ``inputs``, without gradients.

    The pass over a fit's inputs whose results stay tensors (cached
    activations, frozen features, the probe's features, BatchNorm
    re-estimation): batches go to ``device`` un-augmented, under the
    autocast ``dtype`` (None: float32). ``training`` follows
    :func:`iterate_batches` (no last batch of one). ``order``: the order of
    the samples (None: as they are). ``verbose`` and ``desc``: a progress
    bar over the samples, and its text.
    """
    order = inputs.positions(np.arange(len(inputs)) if order is None else order)
    batches = iterate_batches(
        inputs, order, batch_size, training=training, device=device
    )
    bar = progress_bar(
        verbose=verbose, total=len(inputs), desc=desc, unit="sample", leave=False
    )
    out = []
    with torch.no_grad(), autocast(device, dtype), closing(batches), bar:
        for idx, raw in batches:
            out.append(fn(inputs.to_model(raw, device)))
            bar.update(len(idx))
    return out
