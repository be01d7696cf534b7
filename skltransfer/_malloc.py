"""The C library's allocator: one handle for its tuning calls.

glibc serves allocations below its mmap threshold (which grows to 32 MiB as
torch frees large tensors) from heaps that it keeps after a free. A training
run's peak (activations, gradients, batches) thus stays in the process once
freed: harmless for reuse, but loky, which runs ``GridSearchCV(n_jobs=...)``,
reads a worker grown 300 MB past its first task as a memory leak and replaces
it ("A worker stopped while some jobs were given to the executor").
:func:`release_freed_memory` hands those pages back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["glibc", "release_freed_memory"]


@functools.cache
def glibc():
    """The loaded C library where it is glibc (it has ``mallopt`` and
    ``malloc_trim``), else None (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None
    glibc_only = ("mallopt", "malloc_trim")
    return libc if all(hasattr(libc, f) for f in glibc_only) else None


def release_freed_memory() -> None:
    """Return the memory freed in the heaps to the system (glibc only)."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
