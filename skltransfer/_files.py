"""Local files: read together with the hash of their bytes, trusted by their
state only when it stands for their content, and told apart from URLs.

A process that remembers what it read from a file (a parsed table, a digest)
must know when the file changed. Its bytes say so for certain, at the cost of
reading them; its state (:func:`file_state`) says so cheaply, and honestly
under two conditions:

- the state holds the inode and the change time, not only the size and the
  modification time: tar, zip, rsync and ``cp -p`` restore those two, but a
  file they replace gets a new inode and one they rewrite a new change time,
  which only the kernel sets. Windows reports no change time, so there a
  state never stands for content (:data:`STATE_TRUSTED`);
- the file last changed well before it was read (:func:`settled`): a second
  change within the same tick of the file system's clock (a few milliseconds
  on Linux, 2 s on FAT) would leave its state as it was, so a file changed
  less than :data:`SETTLE_NS` before it was read is compared by content at
  its next use, as git does for "racily clean" files.

skltransfer reads local files only; a URL where a path is expected gets an
error that says what to do instead (:func:`url_error`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
import urllib.parse
import urllib.request

__all__ = [
    "SETTLE_NS",
    "STATE_TRUSTED",
    "HashedReading",
    "clock_ns",
    "file_state",
    "hash_rest",
    "replacing",
    "settled",
    "url_error",
]

#: A file changed less than this before it was read is checked by content.
SETTLE_NS = 2_000_000_000
#: Whether file states may stand for content here (Windows has no change time:
#: its ``st_ctime`` is the creation time).
STATE_TRUSTED = os.name != "nt"


def clock_ns() -> int:
    """The time now, in the nanoseconds of file times."""
    return time.time_ns()


def file_state(st: os.stat_result) -> tuple:
    """Device, inode, size, modification and change time of a ``stat`` result."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(states, started_ns: int) -> bool:
    """Whether files in ``states``, read from ``started_ns`` on, keep their
    content for as long as they keep these states."""
    limit = started_ns - SETTLE_NS
    return STATE_TRUSTED and all(max(s[3], s[4]) < limit for s in states)


def hash_rest(f, h) -> None:
    """Feed the rest of the binary file ``f`` to the hash ``h``."""
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)


class HashedReading:
    """Files read one after the other: the SHA-256 of their bytes, in order,
    and the state of each (None for a file that changed while it was read)."""

    def __init__(self):
        self.hash = hashlib.sha256()
        self.started = clock_ns()
        self.states: list = []

    @contextlib.contextmanager
    def open(self, path: str):
        """``path`` opened in binary mode; its state is recorded at the end.
        What is read from it must go to :attr:`hash` (see :meth:`hashed`)."""
        with open(path, "rb") as f:
            before = file_state(os.fstat(f.fileno()))
            yield f
            after = file_state(os.fstat(f.fileno()))
        self.states.append(before if before == after else None)

    def hashed(self, f) -> io.BufferedReader:
        """``f`` as a buffered binary file whose bytes are hashed as read."""
        return io.BufferedReader(_HashedFile(f, self.hash), 1 << 20)

    def read(self, path: str) -> bytes:
        """All of ``path``, hashed."""
        with self.open(path) as f:
            data = f.read()
        self.hash.update(data)
        return data

    def state(self) -> tuple | None:
        """The states of the files read, or None if one changed meanwhile."""
        return None if None in self.states else tuple(self.states)

    def settled(self) -> bool:
        """Whether the files' states stand for their content from now on."""
        state = self.state()
        return state is not None and settled(state, self.started)


class _HashedFile(io.RawIOBase):
    """A binary file whose bytes feed a hash as they are read."""

    def __init__(self, f, h):
        self._f, self._h = f, h

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(buffer)
        self._h.update(memoryview(buffer)[:n])
        return n


@contextlib.contextmanager
def replacing(path: str):
    """A binary file that replaces ``path`` once written: never a partial
    file, and never new bytes under a process that memory-maps the old ones
    (the old file keeps its inode and content until unmapped)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# A scheme of two characters or more (one is a Windows drive letter), then "://".
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


def url_error(value, what: str, remedy: str) -> ValueError | None:
    """The error for ``value`` if it is a URL where a local path is expected
    (None if it is not): ``what`` names it, ``remedy`` says what to pass."""
    if not isinstance(value, str) or not _URL.match(value):
        return None
    if value[:7].lower() == "file://":
        path = urllib.request.url2pathname(urllib.parse.urlparse(value).path)
        return ValueError(f"{what} {value!r} is a file URL: pass its path, {path!r}.")
    return ValueError(
        f"{what} {value!r} is a URL; skltransfer reads local files only. {remedy}"
    )
