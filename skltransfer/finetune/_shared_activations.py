"""Frozen activations kept across fits, in the estimator's ``cache``.

A fit that stores its frozen groups' activations (see
:mod:`._frozen_activations`) reads the rows that earlier fits left in the
embedding cache of :mod:`skltransfer.caching` and computes only the others,
which it adds. A row is one sample's activations at the freeze boundary,
flattened (for the token states of a text, those of its tokens only), under
the key of the sample's content and of everything else that decides it: the
backbone's weights (all of them, as they are when the fit starts), the split
point, the precision, and how samples become the network's input (image
preprocessing, value range and background; tokenizer, ``max_length`` and
padding side). So the folds of a cross-validation, the candidates of a grid
search and the refit share rows, and a search over ``unfreeze`` computes one
set per split point.

With every group frozen on texts, the rows are the mean-pooled token states
of the last layer, which ``PretrainedTextEmbeddings(normalize=False)``
computes too: they are stored under that transformer's key (with padding on
the right, as it pads), so either reads what the other stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._device import precision_name
from ..caching import EmbeddingCache, hash_bytes, module_fingerprint, open_cache
from ..features.image import _PIXEL_PIPELINE
from ..features.text import PretrainedTextEmbeddings, _tokenizer_key
from ..inputs.batches import ImageInputs, TextInputs

__all__ = ["SharedRows", "shared_rows"]


@dataclass
class SharedRows:
    """The rows of one model configuration in the cache, for one fit.

    ``read`` fills a fit's store with the rows found and says which samples
    are missing; ``keep`` adds the rows computed for them.
    """

    cache: EmbeddingCache
    rows_read: int = 0

    def read(self, store, inputs, dtype, lengths=None, on_read=None) -> np.ndarray:
        """Fill the rows of ``store`` whose samples of ``inputs`` are cached
        (token states: ``lengths`` tokens each, zeros after them), calling
        ``on_read(i)`` for each; returns the positions of the others."""
        self._keys = inputs.sample_keys()
        self._shapes = [
            tuple(store.shape[1:]) if lengths is None else (int(t), store.shape[2])
            for t in (range(len(self._keys)) if lengths is None else lengths)
        ]
        missing = []
        for i, (key, shape) in enumerate(zip(self._keys, self._shapes, strict=True)):
            row = self.cache.read(key, math.prod(shape))
            if row is None:
                missing.append(i)
                continue
            _put(store, i, torch.from_numpy(row).view(shape).to(dtype))
            if on_read is not None:
                on_read(i)
        self.rows_read += len(self._keys) - len(missing)
        return np.asarray(missing, dtype=np.int64)

    def keep(self, rows: np.ndarray, part: torch.Tensor) -> None:
        """Store the computed ``part`` (on the CPU) of the samples ``rows`` of
        the inputs last read."""
        shapes = [self._shapes[i] for i in rows]
        self.cache.store(
            [self._keys[i] for i in rows],
            (
                v[: shape[0]].reshape(-1).float().numpy()
                for v, shape in zip(part, shapes, strict=True)
            ),
        )


def _put(store, i: int, row: torch.Tensor) -> None:
    """Row ``i`` of ``store`` set to ``row`` (token states: its first tokens,
    zeros after them)."""
    if isinstance(store, np.ndarray):
        row = row.numpy()
    if store.ndim == 3 and len(row) < store.shape[1]:
        store[i, len(row) :] = 0
    store[i, : len(row)] = row


def shared_rows(config, network, ctx, inputs, what: str, example):
    """The rows of earlier fits in ``config.cache`` for the activations
    ``what`` (the frozen module names, or "features" for the whole body) of
    ``network`` on ``inputs``; None without a cache. ``example`` is the
    probe batch's activations."""
    cache = open_cache(
        config.cache, lambda: _rows_key(network, config, ctx, inputs, what, example)
    )
    return None if cache is None else SharedRows(cache)


def _rows_key(network, config, ctx, inputs, what: str, example) -> str:
    """Everything but the sample that decides its activations, as a key."""
    precision = precision_name(ctx.dtype)
    text = isinstance(inputs, TextInputs)
    if what == "features" and text and _padding_side(inputs) == "right":
        return _text_embeddings_key(network.backbone, inputs.limit, precision)
    shape = example.shape[2:] if text and what != "features" else example.shape[1:]
    settings = (what, tuple(shape), str(example.dtype), config.freeze_batchnorm)
    return hash_bytes(
        "FrozenActivations",
        module_fingerprint(network.backbone),
        repr(settings),
        precision,
        _input_key(inputs),
    )


def _padding_side(inputs: TextInputs) -> str:
    return inputs.side or getattr(inputs.backbone.tokenizer, "padding_side", "right")


def _input_key(inputs) -> str:
    """How the samples become the network's input, besides their content."""
    if isinstance(inputs, ImageInputs):
        source = inputs.source
        policy = (source.value_range, source.explicit_range, source.background)
        return repr((_PIXEL_PIPELINE, inputs.preprocessing, policy))
    if isinstance(inputs, TextInputs):
        side = _padding_side(inputs)
        return repr((_tokenizer_key(inputs.backbone), inputs.limit, side))
    return type(inputs).__name__


def _text_embeddings_key(backbone, max_length: int, precision: str) -> str:
    """The key under which ``PretrainedTextEmbeddings(normalize=False)`` stores
    the mean-pooled last layer of ``backbone``, asked of such a transformer
    so that the two keys stay one."""
    twin = PretrainedTextEmbeddings(
        pooling="mean", normalize=False, max_length=max_length, precision=precision
    )
    twin.backbone_, twin.layers_, twin.max_length_ = backbone, None, max_length
    return twin._cache_key()
