"""Device and precision resolution shared by every estimator."""

from __future__ import annotations

import contextlib
import itertools

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device) -> torch.device:
    """Turn ``"auto"``, a string or a :class:`torch.device` into a device.

    ``"auto"`` picks CUDA when available, then Apple's MPS, then the CPU.
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Unknown device {device!r}.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    return resolved


def device_available(device: torch.device) -> bool:
    """Whether this machine has ``device`` (its index included, for CUDA)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        index = device.index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    backend = getattr(torch.backends, device.type, None) or getattr(
        torch, device.type, None
    )
    is_available = getattr(backend, "is_available", None)
    return bool(is_available is not None and is_available())


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype for ``precision`` on ``device`` (None: fp32).

    ``"auto"`` means bf16 on GPUs that support it, fp16 on other GPUs and fp32
    on the CPU, where reduced precision rarely pays for frozen inference.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _DTYPES.get(precision)


def precision_name(dtype: torch.dtype | None) -> str:
    """The ``precision`` name of an autocast ``dtype`` from
    :func:`resolve_precision` ("fp32" for None)."""
    names = {v: k for k, v in _DTYPES.items()}
    return "fp32" if dtype is None else names.get(dtype, str(dtype))


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# Multiply-adds per optimiser step below which a CPU step runs on one thread.
SMALL_STEP = 2**24


@contextlib.contextmanager
def step_threads(work: int, device: torch.device):
    """Run this thread's torch operations on one core while steps are small.

    A step of a head on stored features (16 x 384 inputs, a hidden layer of
    64) is a few hundred thousand multiply-adds: microseconds of work, and
    every operation of it starts and joins a team of threads. Each join
    waits for the slowest thread, and on a busy machine one of them is often
    off its core: on two cores running two other jobs, such steps took 94 to
    168 ms each on two threads and 4 to 6 ms on one. ``work`` is the
    multiply-adds of one step; below ``SMALL_STEP`` (a few milliseconds of
    one core) the block runs on one thread.

    ``torch.set_num_threads``, not an OpenMP limit alone (as
    ``_inference._one_thread`` uses): the matrix products run in MKL, which
    keeps its own count once torch has set one. It sets this thread's
    OpenMP and MKL counts, and the default of threads that first use torch
    meanwhile; the thread's own count is put back at the end. On an
    accelerator nothing changes.
    """
    if device.type != "cpu" or work >= SMALL_STEP:
        yield
        return
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def module_device(module: torch.nn.Module) -> torch.device:
    """Where ``module``'s first parameter (or buffer) lives; the CPU for a
    module without tensors."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def modes_restored(module: torch.nn.Module):
    """Inside the block ``module``'s submodules may change between training
    and eval mode; on exit each has its own mode back (``module.train(m)``
    would set one mode on all of them, undoing a partly frozen network's)."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def to_device(batch, device: torch.device, channels_last: bool = False):
    """A tensor or a dict of tensors on ``device`` (asynchronously to CUDA);
    ``channels_last`` stores 4-D image batches in NHWC order."""
    non_blocking = device.type == "cuda"
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    if channels_last and batch.ndim == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch.to(device, non_blocking=non_blocking)


def on_module_device(module: torch.nn.Module, example):
    """``example`` (a tensor or a dict of tensors) where ``module`` lives.

    A probe of a module on an example (its output width, the order of its
    layer groups) must run wherever the module is: a module shared by the
    estimators of a process may be on the GPU after one of them ran there,
    and a user may pass a module that lives there.
    """
    return to_device(example, module_device(module))
