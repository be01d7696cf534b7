"""The batched inference loop: preprocess (CPU) -> forward (device) -> numpy (CPU).

Only :func:`run_batched` touches the device. Preparing the next batch (decoding
files, resizing, tokenising) runs in a worker thread while the current batch is
in the forward pass; torch releases the GIL in both, so the two overlap.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from ._device import autocast
from .exceptions import SkltransferWarning

__all__ = ["batch_slices", "run_batched"]


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


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
        if not state["warned"]:
            state["warned"] = True
            warnings.warn(
                f"Out of device memory with a batch of {n}; continuing with "
                "smaller batches. Pass a smaller batch_size to avoid the retry.",
                SkltransferWarning,
                stacklevel=4,
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


def run_batched(
    prepare: Callable[[slice], object],
    forward: Callable[[object], torch.Tensor],
    slices: Sequence[slice],
    *,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    verbose: int = 0,
    desc: str = "",
    total: int | None = None,
) -> list[np.ndarray]:
    """Run ``forward(prepare(sl))`` over ``slices``, returning float32 arrays.

    ``prepare`` builds a CPU batch (a tensor or a dict of tensors) for one
    slice of the inputs and is run one batch ahead in a worker thread.
    """
    state = {"warned": False}
    results = []
    bar = tqdm(total=total, desc=desc, unit="sample", disable=not verbose, leave=False)
    with ThreadPoolExecutor(max_workers=1) as pool, bar:
        pending = pool.submit(prepare, slices[0]) if slices else None
        for i, sl in enumerate(slices):
            batch = pending.result()
            if i + 1 < len(slices):
                pending = pool.submit(prepare, slices[i + 1])
            batch = _to_device(batch, device, channels_last)
            results.append(_forward_halving(forward, batch, device, dtype, state))
            bar.update(sl.stop - sl.start)
    return results
