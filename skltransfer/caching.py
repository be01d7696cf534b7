"""A per-sample on-disk cache of embeddings, shared across folds and searches.

Each output row is stored under two keys: the *model key* (everything that
changes the output: backbone weights, layer, pooling, preprocessing, precision)
and the *sample key* (a hash of the sample's content). A new cross-validation
fold or grid-search candidate with the same model settings therefore reuses
every row an earlier one computed. Writes are atomic (write to a temporary file,
then rename), so parallel workers can share a cache directory; an unreadable or
malformed entry is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from ._validation import HasMethods

__all__ = [
    "CACHE_CONSTRAINT",
    "EmbeddingCache",
    "cached_rows",
    "frozen_fingerprint",
    "hash_bytes",
    "text_keys",
    "weights_fingerprint",
]

#: Parameter constraint of an estimator's ``cache``: a path or a joblib.Memory.
CACHE_CONSTRAINT = [str, os.PathLike, HasMethods(["cache"]), None]

_SUBDIR = "skltransfer-embeddings"


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


def weights_fingerprint(module) -> str:
    """A digest of a module's parameters and buffers (names, shapes and values)."""
    import torch

    h = _hasher()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:32]


def frozen_fingerprint(module) -> str:
    """:func:`weights_fingerprint` of a module whose weights never change, memoised."""
    key = getattr(module, "_skltransfer_fingerprint", None)
    if key is None:
        key = weights_fingerprint(module)
        module._skltransfer_fingerprint = key
    return key


def _location(cache) -> str | None:
    if cache is None:
        return None
    if isinstance(cache, str | os.PathLike):
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
    """Rows of one model configuration, stored one ``.npy`` file per sample.

    Parameters
    ----------
    root : str
        Cache directory (a ``skltransfer-embeddings`` folder is made in it).
    model_key : str
        Identifies everything that changes the output.
    """

    def __init__(self, root: str, model_key: str):
        self.directory = os.path.join(root, _SUBDIR, model_key)

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], f"{key}.npy")

    def _read(self, key: str, n_features: int) -> np.ndarray | None:
        try:
            row = np.load(self._path(key), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # missing or corrupt: recompute
        if row.shape != (n_features,) or row.dtype != np.float32:
            return None
        return row

    def _write(self, key: str, row: np.ndarray) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(row, dtype=np.float32))
            os.replace(tmp, path)  # atomic: readers see all or nothing
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def transform(
        self,
        sample_keys: Sequence[str],
        compute: Callable[[np.ndarray], np.ndarray],
        n_features: int,
    ) -> np.ndarray:
        """Rows for ``sample_keys``: read from the cache, computing the misses.

        ``compute(indices)`` returns the rows of the samples at ``indices``
        (positions in ``sample_keys``), in that order.
        """
        out = np.empty((len(sample_keys), n_features), dtype=np.float32)
        missing = []
        for i, key in enumerate(sample_keys):
            row = self._read(key, n_features)
            if row is None:
                missing.append(i)
            else:
                out[i] = row
        if missing:
            missing = np.asarray(missing)
            rows = compute(missing)
            out[missing] = rows
            for i, row in zip(missing, rows, strict=True):
                self._write(sample_keys[i], row)
        return out


def cached_rows(
    cache,
    model_key: Callable[[], str],
    sample_keys: Callable[[], Sequence[str]],
    compute: Callable[[np.ndarray | None], np.ndarray],
    n_features: int,
) -> np.ndarray:
    """Rows of every sample, through the cache named by an estimator's ``cache``.

    ``compute(indices)`` returns the rows of the samples at ``indices``, or of
    all samples for None. The keys are only computed when the cache is on.
    """
    root = _location(cache)
    if root is None:
        return compute(None)
    store = EmbeddingCache(root, model_key())
    return store.transform(sample_keys(), compute, n_features)


def text_keys(texts: Sequence[str]) -> list[str]:
    """Cache keys of texts."""
    return [hash_bytes("text", t) for t in texts]
