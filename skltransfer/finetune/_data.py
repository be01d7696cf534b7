"""Inputs of fine-tuning: tensors, images and texts behind one small interface.

Every input kind offers the same three steps, so the training loop never asks
what it is reading:

- ``load(idx)``: a CPU batch for the samples ``idx`` (thread-safe and free of
  randomness, so it may run ahead in a worker thread);
- ``to_model(raw, device, augment)``: the batch the network takes, on
  ``device``, with the training augmentation applied (images are augmented in
  [0, 1] before normalisation, texts before tokenisation);
- ``subset(idx)``: the inputs of a part of the samples (the validation split).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from .._device import autocast
from .._inference import prefetch_pool
from ..inputs.images import ImageSource
from ..inputs.text import length_order

__all__ = [
    "CACHED_KEY",
    "ImageInputs",
    "MappedInputs",
    "TokenStateInputs",
    "TensorInputs",
    "TextInputs",
    "iterate_batches",
    "map_batches",
    "n_steps_per_epoch",
]

_CPU = torch.device("cpu")

# Resized training images are kept in memory when they take at most this much.
MATERIALIZE_BYTES = 1 << 30


def _identity(batch):
    return batch


def _to(batch, device: torch.device):
    non_blocking = device.type == "cuda"
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    return batch.to(device, non_blocking=non_blocking)


class _OnTheCPU:
    """``example`` for inputs whose batches are built on the CPU."""

    def example(self, n: int = 2):
        """The first ``n`` samples as the network takes them, on the CPU."""
        return self.to_model(self.load(slice(0, n)), torch.device("cpu"))


@dataclass
class TensorInputs:
    """Samples held in one float tensor (tabular rows, image arrays, resized images).

    ``finish`` runs after augmentation (e.g. image normalisation).
    """

    X: torch.Tensor
    kind: str = "tensor"
    finish: Callable = _identity
    prefetch: bool = False

    def __len__(self) -> int:
        return len(self.X)

    def load(self, idx):
        return self.X[idx]

    def to_model(self, raw, device, augment=None):
        batch = _to(raw, device)
        if augment is not None:
            batch = augment(batch)
        return self.finish(batch)

    def subset(self, idx) -> TensorInputs:
        return replace(self, X=self.X[idx])

    def to(self, device) -> TensorInputs:
        """The same inputs with the tensor moved to ``device`` once."""
        return replace(self, X=self.X.to(device))

    def example(self, n: int = 2):
        return self.to_model(self.load(slice(0, n)), self.X.device)


@dataclass
class MappedInputs(_OnTheCPU):
    """Samples in a memory-mapped array on disk: cached activations too large
    for memory. Batches are read (one ahead, in a worker thread) as needed."""

    array: np.ndarray
    kind: str = "tensor"
    prefetch: bool = True

    def __len__(self) -> int:
        return len(self.array)

    def load(self, idx):
        rows = self.array[idx if isinstance(idx, slice) else np.asarray(idx)]
        return torch.from_numpy(np.ascontiguousarray(rows))

    def to_model(self, raw, device, augment=None):
        batch = _to(raw, device)
        return batch if augment is None else augment(batch)

    def subset(self, idx) -> TensorInputs:
        """The rows ``idx``, read into memory."""
        return TensorInputs(self.load(idx))


# The key under which a text batch carries cached token states to the body.
CACHED_KEY = "skltransfer_cached_states"


@dataclass
class TokenStateInputs(_OnTheCPU):
    """Cached token states of texts (N, T, D), right-padded, with their masks.

    A batch is the dict a text body takes, cut to its longest text: the
    attention mask, placeholder token ids of the same shape, and the states
    under ``CACHED_KEY`` (see :mod:`._cache`).
    """

    states: torch.Tensor | np.ndarray
    mask: torch.Tensor
    kind: str = "tensor"
    prefetch: bool = False

    def __len__(self) -> int:
        return len(self.mask)

    def load(self, idx):
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
        mask = self.mask[idx]
        t = int(mask.sum(1).max())
        states = self.states[idx][:, :t]
        if isinstance(states, np.ndarray):
            states = torch.from_numpy(np.ascontiguousarray(states))
        mask = mask[:, :t]
        return {
            "input_ids": torch.zeros_like(mask),
            "attention_mask": mask,
            CACHED_KEY: states,
        }

    def to_model(self, raw, device, augment=None):
        return _to(raw, device)

    def subset(self, idx) -> TokenStateInputs:
        idx = np.asarray(idx)
        return replace(self, states=self.states[idx], mask=self.mask[idx])


def _subset_source(source: ImageSource, idx) -> ImageSource:
    if source.array is not None:
        return replace(source, array=source.array[idx])
    return replace(source, items=[source.items[i] for i in np.asarray(idx)])


@dataclass
class ImageInputs(_OnTheCPU):
    """Images decoded, resized and cropped batch by batch from an ImageSource."""

    source: ImageSource
    preprocessing: object
    kind: str = "image"
    prefetch: bool = True

    def __len__(self) -> int:
        return len(self.source)

    def load(self, idx):
        if isinstance(idx, slice):
            return self.source.load_resized(idx, self.preprocessing)
        part = _subset_source(self.source, idx)
        return part.load_resized(slice(0, len(part)), self.preprocessing)

    def to_model(self, raw, device, augment=None):
        batch = _to(raw, device)
        if augment is not None:
            batch = augment(batch)
        return self.preprocessing.normalize(batch)

    def subset(self, idx) -> ImageInputs:
        return replace(self, source=_subset_source(self.source, idx))

    def materialize(self, batch_size: int = 64):
        """Resized images in memory (a TensorInputs) when small enough, else self.

        Decoding and resizing then happen once per ``fit`` instead of once
        per epoch; augmentation and normalisation still run per batch.
        """
        size = self.preprocessing.crop_size
        if len(self) * 3 * size * size * 4 > MATERIALIZE_BYTES:
            return self
        parts = [
            self.load(slice(i, i + batch_size)) for i in range(0, len(self), batch_size)
        ]
        return TensorInputs(
            torch.cat(parts), kind="image", finish=self.preprocessing.normalize
        )


@dataclass
class TextInputs(_OnTheCPU):
    """Texts tokenised batch by batch by the backbone's tokenizer."""

    texts: np.ndarray
    backbone: object
    max_length: int | None = None
    kind: str = "text"
    prefetch: bool = False

    def __len__(self) -> int:
        return len(self.texts)

    def load(self, idx):
        return self.texts[idx].tolist()

    def to_model(self, raw, device, augment=None):
        if augment is not None:
            raw = list(augment(list(raw)))
        return _to(self.backbone.tokenize(raw, max_length=self.max_length), device)

    def subset(self, idx) -> TextInputs:
        return replace(self, texts=self.texts[idx])

    def length_order(self) -> np.ndarray:
        """Longest first, so that prediction batches pad little."""
        return length_order([len(t) for t in self.texts])


def _chunks(order, batch_size: int, training: bool) -> list:
    starts = list(range(0, len(order), batch_size))
    if training and len(starts) > 1 and len(order) - starts[-1] == 1:
        # A last batch of one sample would break BatchNorm in training mode.
        starts.pop()
    ends = [*starts[1:], len(order)]
    return [order[a:b] for a, b in zip(starts, ends, strict=True)]


def n_steps_per_epoch(n: int, batch_size: int) -> int:
    """Training batches in an epoch of ``n`` samples (see :func:`_chunks`)."""
    return len(_chunks(range(n), batch_size, training=True))


def iterate_batches(
    inputs, order, batch_size: int, *, training: bool = False, device=_CPU
):
    """Yield ``(idx, raw_batch)`` over ``order`` in chunks of ``batch_size``.

    In training, a last chunk of a single sample joins the one before it.
    Inputs that decode lazily are loaded one batch ahead in a worker thread
    (see :func:`~skltransfer._inference.prefetch_pool`; ``device`` is where
    the model runs), overlapping decoding with the forward and backward
    passes.
    """
    chunks = _chunks(order, batch_size, training)
    if not inputs.prefetch:
        for idx in chunks:
            yield idx, inputs.load(idx)
        return
    with prefetch_pool(device) as pool:
        pending = pool.submit(inputs.load, chunks[0]) if chunks else None
        for i, idx in enumerate(chunks):
            raw = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(inputs.load, chunks[i + 1])
            yield idx, raw


def map_batches(inputs, fn, ctx, batch_size: int, *, training: bool = False) -> list:
    """``fn(batch)`` for every batch of ``inputs`` in order, without gradients.

    The one inference pass over a fit's inputs (cached activations, frozen
    features, the probe's features, BatchNorm re-estimation): batches go to
    ``ctx.device`` un-augmented, under the fit's autocast precision.
    ``training`` follows :func:`iterate_batches` (no last batch of one).
    """
    if isinstance(inputs, TensorInputs):
        order = torch.arange(len(inputs), device=inputs.X.device)
    else:
        order = np.arange(len(inputs))
    with torch.no_grad(), autocast(ctx.device, ctx.dtype):
        return [
            fn(inputs.to_model(raw, ctx.device))
            for _, raw in iterate_batches(
                inputs, order, batch_size, training=training, device=ctx.device
            )
        ]
