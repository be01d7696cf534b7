"""The batched inference loop: preprocess (CPU) -> forward (device) -> numpy (CPU).

Only :func:`run_batched` touches the device. Preparing the next batch (decoding
files, resizing, tokenising) runs in a worker thread while the current batch is
in the forward pass; torch releases the GIL in both, so the two overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from ._batch_size import AutoBatchSize, batch_slices
from ._device import autocast
from .exceptions import SkltransferWarning, warn_at_caller

__all__ = ["batch_slices", "prefetch_pool", "run_batched"]


def _one_thread() -> None:
    torch.set_num_threads(1)  # per thread: the caller's thread keeps its own


def prefetch_pool(device: torch.device) -> ThreadPoolExecutor:
    """The worker thread that prepares the next batch (decode, resize, tokenise).

    When the model runs on the CPU, the worker's torch operations use one
    thread: with the default (every core), resizing the next batch competed
    with the forward pass for the cores it needs. On an accelerator the
    worker keeps every core, since preparing batches is then the CPU's only
    work.
    """
    initializer = _one_thread if device.type == "cpu" else None
    return ThreadPoolExecutor(max_workers=1, initializer=initializer)


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


def _to_device(batch, device: torch.device, channels_last: bool = False):
    non_blocking = device.type == "cuda"
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    if channels_last and batch.ndim == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch.to(device, non_blocking=non_blocking)


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


def run_batched(
    prepare: Callable[[slice], object],
    forward: Callable[[object], torch.Tensor],
    slices: Iterable[slice],
    *,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    sizer: AutoBatchSize | None = None,
    pad_to: int | None = None,
    verbose: int = 0,
    desc: str = "",
    total: int | None = None,
) -> list[np.ndarray]:
    """Run ``forward(prepare(sl))`` over ``slices``, returning float32 arrays.

    ``prepare`` builds a CPU batch (a tensor or a dict of tensors) for one
    slice of the inputs and is run one batch ahead in a worker thread.
    ``slices`` may be a generator; with ``sizer`` (whose ``slices`` it then
    is), every forward pass is timed and reported to it. ``pad_to`` pads
    shorter batches to that many rows (repeating the last row) and drops the
    padding from the output, so that a compiled forward sees one shape.
    """
    state = {"warned": sizer is not None}  # a measuring sizer expects OOMs
    results = []
    bar = tqdm(total=total, desc=desc, unit="sample", disable=not verbose, leave=False)
    slices = iter(slices)
    with prefetch_pool(device) as pool, bar:
        sl = next(slices, None)
        pending = pool.submit(prepare, sl) if sl is not None else None
        while sl is not None:
            batch = pending.result()
            following = next(slices, None)
            if following is not None:
                pending = pool.submit(prepare, following)
            n = sl.stop - sl.start
            if pad_to is not None and n < pad_to:
                batch = _pad(batch, pad_to)
            batch = _to_device(batch, device, channels_last)
            state["oom"] = None
            start = sizer.clock() if sizer is not None else 0.0
            out = _forward_halving(forward, batch, device, dtype, state)[:n]
            if sizer is not None:
                if state["oom"] is not None:
                    sizer.out_of_memory(state["oom"])
                else:
                    sizer.record(n, _work(batch), sizer.clock() - start)
                if verbose:
                    bar.set_postfix(batch_size=sizer.chosen or n, refresh=False)
            results.append(out)
            bar.update(n)
            sl = following
    return results
