"""A per-sample on-disk cache of embeddings, shared across folds and searches.

It holds the rows of the feature transformers and the frozen activations of
the fine-tuners (see :mod:`skltransfer.finetune._shared_activations`).

Each output row is stored under two keys: the *model key* (everything that
changes the output: the backbone's structure and tensors, layer, pooling,
preprocessing, precision) and the *sample key* (a hash of the sample's
content; for image files, of the file's bytes). A new cross-validation fold
or grid-search candidate with the same model settings therefore reuses every
row an earlier one computed, and so do workers that see the same files at
different paths.

What it guarantees:

- **No wrong row.** An entry stores its sample key and its length, and is
  served only when both match, its size matches its header exactly, and its
  values are finite. Anything else (a truncated, corrupt or foreign file, a
  FIFO or a symbolic link in its place) is recomputed, never trusted, and
  nothing is allocated from a header before the file size confirms it.
- **No partial file.** Writes go to a temporary file that is renamed into
  place, so parallel workers can share a cache directory. Temporary files
  orphaned by killed processes are removed after an hour.
- **Little lost work.** Missing rows are computed in chunks of ``CHUNK``
  samples and stored as they come: image features batch by batch, other
  rows a chunk at a time. A failure late in a long input keeps what came
  before it (for images, all but the failing batch). A cache that cannot be
  written (read-only, disk full) gives one warning per call and the
  transform goes on without storing.
- **Only finite rows.** A row holding NaN (an image that could not be read,
  with ``on_error="nan"``) is returned but never stored.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ._files import url_error
from ._validation import HasMethods
from .exceptions import SkltransferWarning, warn_at_caller

__all__ = [
    "CACHE_CONSTRAINT",
    "CHUNK",
    "EmbeddingCache",
    "cached_rows",
    "file_digest",
    "hash_bytes",
    "module_fingerprint",
    "open_cache",
    "text_keys",
    "weights_fingerprint",
]

#: Parameter constraint of an estimator's ``cache``: a path or a joblib.Memory.
CACHE_CONSTRAINT = [str, os.PathLike, HasMethods(["cache"]), None]
#: Missing rows are computed and written this many samples at a time.
CHUNK = 512

_SUBDIR = "skltransfer-embeddings"
_MAGIC = b"SKLTROW1"
_HEADER = struct.Struct("<8s32sQ")  # magic, sample key, row length
_ORPHAN_SECONDS = 3600


def _key_bytes(key: str) -> bytes:
    """A sample key as stored in an entry's header (32 bytes, NUL-padded)."""
    return key.encode()[:32].ljust(32, b"\0")


def _hasher():
    # SHA-256 runs on dedicated instructions on current x86 and ARM CPUs: 2x
    # faster than blake2b there, which matters when every image of every
    # cross-validation fold is hashed for its cache key.
    return hashlib.sha256()


def hash_bytes(*parts: bytes | str | memoryview) -> str:
    """A short hex digest of ``parts`` (SHA-256, first 128 bits)."""
    h = _hasher()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()[:32]


def file_digest(path) -> str:
    """SHA-256 (first 128 bits) of a file's bytes."""
    h = _hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def _update_tensors(h, named) -> None:
    import torch

    for name, tensor in named:
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)


def weights_fingerprint(module) -> str:
    """A digest of a module's ``state_dict`` (names, shapes and values)."""
    h = _hasher()
    _update_tensors(h, module.state_dict().items())
    return h.hexdigest()[:32]


@functools.cache
def _forward_source(cls) -> bytes:
    """The source of a module class's ``forward`` (empty when unavailable)."""
    try:
        return inspect.getsource(cls.forward).encode()
    except (OSError, TypeError):
        return b""


_SIMPLE = (bool, int, float, str, type(None))


def _simple_attributes(module) -> bytes:
    """Plain Python settings of a module (``p``, ``inplace``, ``eps``, ...)."""
    items = []
    for key, value in sorted(vars(module).items()):
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, _SIMPLE) or (
            isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)
        ):
            items.append(f"{key}={value!r}")
    return ";".join(items).encode()


def _tensor_versions(module) -> tuple:
    """Identity, in-place version and storage of every tensor: any change to
    a weight in place, or a tensor swapped in, changes this."""
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((id(t), t._version, t.data_ptr()) for t in tensors)


def copy_fingerprint(source, copy) -> None:
    """Let ``copy``, a deep copy of ``source`` (the same structure, equal
    tensors), know the fingerprint of ``source`` without hashing its tensors
    again; a change to ``copy`` in place is fingerprinted afresh as usual."""
    copy.__dict__["_skltransfer_fingerprint"] = (
        _tensor_versions(copy),
        module_fingerprint(source),
    )


def module_fingerprint(module) -> str:
    """What determines a module's output, as a digest.

    The structure (each submodule's name, class, ``extra_repr``, plain Python
    settings and the source of its ``forward``) and every tensor (parameters
    and buffers, persistent or not). So two modules that differ only in a
    parameter-free layer (average against max pooling) or in a
    non-persistent buffer get different keys.

    The digest is remembered on the module, with the identity, in-place
    version and storage of each of its tensors; a module changed in place
    (weights edited, a tensor swapped) is fingerprinted again.
    """
    versions = _tensor_versions(module)
    memo = module.__dict__.get("_skltransfer_fingerprint")
    if memo is not None and memo[0] == versions:
        return memo[1]
    h = _hasher()
    for name, sub in module.named_modules():
        cls = type(sub)
        h.update(
            f"{name}:{cls.__module__}.{cls.__qualname__}:{sub.extra_repr()}".encode()
        )
        h.update(_simple_attributes(sub))
        h.update(_forward_source(cls))
    _update_tensors(h, module.named_parameters())
    _update_tensors(h, module.named_buffers())
    key = h.hexdigest()[:32]
    module.__dict__["_skltransfer_fingerprint"] = (versions, key)
    return key


def _location(cache) -> str | None:
    if cache is None:
        return None
    if isinstance(cache, str | os.PathLike):
        remote = url_error(cache, "cache", "Pass a local directory.")
        if remote is not None:
            raise remote  # os.makedirs would make a local folder named "s3:"
        return os.fspath(cache)
    location = getattr(cache, "location", None)  # joblib.Memory
    if location is None and hasattr(cache, "location"):
        return None  # joblib.Memory(None): caching disabled
    if location is None:
        raise TypeError(
            "cache must be None, a directory path or a joblib.Memory, "
            f"got {type(cache).__name__}."
        )
    return os.fspath(location)


class EmbeddingCache:
    """Rows of one model configuration, stored one file per sample.

    Parameters
    ----------
    root : str
        Cache directory (a ``skltransfer-embeddings`` folder is made in it).
    model_key : str
        Identifies everything that changes the output.
    """

    def __init__(self, root: str, model_key: str):
        self.root = os.path.realpath(root)
        self.directory = os.path.join(self.root, _SUBDIR, model_key)
        self.writable = True
        self._cleaned: set[str] = set()

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], f"{key}.row")

    def _inside(self, path: str) -> bool:
        """Whether ``path``'s folder resolves inside the cache root (no link
        in the path leads out of it)."""
        folder = os.path.realpath(os.path.dirname(path))
        return folder == self.root or folder.startswith(self.root + os.sep)

    def read(self, key: str, n_features: int) -> np.ndarray | None:
        """The stored row of ``key``, or None when it is missing or unusable
        (not exactly ``n_features`` finite values under this key)."""
        path = self._path(key)
        flags = (
            os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
        try:
            fd = os.open(path, flags)
        except OSError:
            return None  # missing, or a symbolic link
        try:
            info = os.fstat(fd)
            # A regular file of exactly the expected size: FIFOs and devices
            # are never read, and nothing is allocated from a bad header.
            expected = _HEADER.size + 4 * n_features
            if not stat.S_ISREG(info.st_mode) or info.st_size != expected:
                return None
            if not self._inside(path):
                return None
            data = os.read(fd, expected)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) != expected:
            return None
        magic, stored_key, length = _HEADER.unpack_from(data)
        if magic != _MAGIC or stored_key != _key_bytes(key) or length != n_features:
            return None  # corrupt, or the row of another sample
        row = np.frombuffer(data, dtype="<f4", offset=_HEADER.size).astype(np.float32)
        return row if np.isfinite(row).all() else None

    def _write(self, key: str, row: np.ndarray) -> None:
        path = self._path(key)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        if not self._inside(path):
            raise OSError(f"{folder} leads outside the cache directory")
        self._clean_orphans(folder)
        row = np.ascontiguousarray(row, dtype="<f4")
        header = _HEADER.pack(_MAGIC, _key_bytes(key), len(row))
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(row.data)
            os.replace(tmp, path)  # atomic: readers see all or nothing
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def _clean_orphans(self, folder: str) -> None:
        """Remove temporary files a killed writer left behind (once per folder)."""
        if folder in self._cleaned:
            return
        self._cleaned.add(folder)
        limit = time.time() - _ORPHAN_SECONDS
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            try:
                if name.endswith(".tmp") and os.lstat(path).st_mtime < limit:
                    os.remove(path)
            except OSError:
                pass

    def store(self, keys: Sequence[str], rows: Iterable[np.ndarray]) -> None:
        """Store each row (1-D, of any length) under its key; rows with NaN or
        infinity are skipped. A cache that cannot be written warns once and
        stores nothing more."""
        if not self.writable:
            return
        try:
            for key, row in zip(keys, rows, strict=True):
                if np.isfinite(row).all():
                    self._write(key, row)
        except OSError as exc:
            self.writable = False
            warn_at_caller(
                f"The embedding cache at {self.root} cannot be written ({exc}); "
                "the rows are computed but not stored.",
                SkltransferWarning,
            )

    def transform(
        self,
        sample_keys: Sequence[str],
        compute: Callable[[np.ndarray], np.ndarray | Iterable[np.ndarray]],
        n_features: int,
    ) -> np.ndarray:
        """Rows for ``sample_keys``: read from the cache, computing the misses.

        ``compute(indices)`` returns the rows of the samples at ``indices``
        (positions in ``sample_keys``), in that order: one array, or an
        iterable of consecutive blocks of rows, each stored as it arrives.
        Misses are computed ``CHUNK`` at a time.
        """
        out = np.empty((len(sample_keys), n_features), dtype=np.float32)
        missing = []
        for i, key in enumerate(sample_keys):
            row = self.read(key, n_features)
            if row is None:
                missing.append(i)
            else:
                out[i] = row
        missing = np.asarray(missing, dtype=np.int64)
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            rows = compute(chunk)
            done = 0
            for block in [rows] if isinstance(rows, np.ndarray) else rows:
                part = chunk[done : done + len(block)]
                out[part] = block
                self.store([sample_keys[i] for i in part], block)
                done += len(block)
        return out


def cached_rows(
    cache,
    model_key: Callable[[], str],
    sample_keys: Callable[[], Sequence[str]],
    compute: Callable[[np.ndarray | None], np.ndarray | Iterable[np.ndarray]],
    n_features: int,
) -> np.ndarray:
    """Rows of every sample, through the cache named by an estimator's ``cache``.

    ``compute(indices)`` returns the rows of the samples at ``indices`` (an
    array, or blocks of rows as in :meth:`EmbeddingCache.transform`), or an
    array of the rows of all samples for None. The keys are only computed
    when the cache is on.
    """
    store = open_cache(cache, model_key)
    if store is None:
        return compute(None)
    return store.transform(sample_keys(), compute, n_features)


def open_cache(cache, model_key: Callable[[], str]) -> EmbeddingCache | None:
    """The rows of the model configuration ``model_key()`` in the cache named
    by an estimator's ``cache`` parameter; None (and no key computed) when
    the cache is off."""
    root = _location(cache)
    if root is None:
        return None
    return EmbeddingCache(root, model_key())


def text_keys(texts: Sequence[str]) -> list[str]:
    """Cache keys of texts."""
    return [hash_bytes("text", t) for t in texts]
