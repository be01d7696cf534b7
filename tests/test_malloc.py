"""Returning freed memory to the system (_malloc.py)."""

import sys

import pytest

from skltransfer._malloc import glibc, release_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc is Linux's")
def test_glibc_is_found_on_linux_and_trims():
    libc = glibc()
    if libc is None:  # musl
        pytest.skip("not glibc")
    assert libc.malloc_trim(0) in (0, 1)
    release_freed_memory()


def test_without_glibc_releasing_does_nothing(monkeypatch):
    def no_library(*args, **kwargs):
        raise OSError("no C library")

    glibc.cache_clear()
    monkeypatch.setattr("ctypes.CDLL", no_library)
    try:
        assert glibc() is None
        release_freed_memory()  # musl, macOS, Windows: nothing to do
    finally:
        glibc.cache_clear()
