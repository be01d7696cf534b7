"""Inputs of fine-tuning: tensors, images and texts behind one small interface.

Every input kind offers the same steps, so the training loop never asks what
it is reading:

- ``load(idx)``: a CPU batch for the samples ``idx`` (thread-safe and free of
  randomness, so it may run ahead in a worker thread when ``prefetch`` is
  set);
- ``to_model(raw, device, augment)``: the batch the network takes, on
  ``device``, with the training augmentation applied (images are augmented in
  [0, 1] before normalisation, texts before tokenisation);
- ``subset(idx)``: the inputs of a part of the samples (the validation split);
- ``positions(order)``: sample positions as ``load`` takes them best.

The batches are iterated by :func:`skltransfer._inference.iterate_batches`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from .._inference import to_device
from .images import ImageSource
from .text import tokenize_texts

__all__ = [
    "CACHED_KEY",
    "ImageInputs",
    "MappedInputs",
    "TensorInputs",
    "TextInputs",
    "TokenStateInputs",
]

_CPU = torch.device("cpu")

# Resized training images are kept in memory when they take at most this much.
MATERIALIZE_BYTES = 1 << 30

# The key under which a text batch carries cached token states to the body.
CACHED_KEY = "skltransfer_cached_states"


def _identity(batch):
    return batch


def _rows(idx):
    """``idx`` as an index of numpy arrays: a slice, or an array of positions."""
    return idx if isinstance(idx, slice) else np.asarray(idx)


class _Inputs:
    """The defaults of every input kind (see the module docstring)."""

    kind = "tensor"
    prefetch = False

    def positions(self, order: np.ndarray):
        return order

    def finish(self, batch):
        """The last step of ``to_model``, after augmentation."""
        return batch

    def to_model(self, raw, device, augment=None):
        batch = to_device(raw, device)
        if augment is not None:
            batch = augment(batch)
        return self.finish(batch)

    def example(self, n: int = 2):
        """The first ``n`` samples as the network takes them, on the CPU."""
        return self.to_model(self.load(slice(0, n)), _CPU)


@dataclass
class TensorInputs(_Inputs):
    """Samples held in one float tensor (tabular rows, image arrays, resized images).

    ``finish`` runs after augmentation (e.g. image normalisation).
    """

    X: torch.Tensor
    kind: str = "tensor"
    finish: Callable = _identity

    def __len__(self) -> int:
        return len(self.X)

    def load(self, idx):
        return self.X[idx]

    def positions(self, order: np.ndarray) -> torch.Tensor:
        """On the samples' device: indexing a tensor there needs no copy."""
        return torch.from_numpy(order).to(self.X.device)

    def subset(self, idx) -> TensorInputs:
        return replace(self, X=self.X[idx])

    def to(self, device) -> TensorInputs:
        """The same inputs with the tensor moved to ``device`` once."""
        return replace(self, X=self.X.to(device))

    def example(self, n: int = 2):
        return self.to_model(self.load(slice(0, n)), self.X.device)


@dataclass
class MappedInputs(_Inputs):
    """Samples in a memory-mapped array on disk: cached activations too large
    for memory. Batches are read (one ahead, in a worker thread) as needed."""

    array: np.ndarray
    prefetch = True

    def __len__(self) -> int:
        return len(self.array)

    def load(self, idx):
        return torch.from_numpy(np.ascontiguousarray(self.array[_rows(idx)]))

    def subset(self, idx) -> TensorInputs:
        """The rows ``idx``, read into memory."""
        return TensorInputs(self.load(idx))


@dataclass
class TokenStateInputs(_Inputs):
    """Cached token states of texts (N, T, D), right-padded, with their masks.

    A batch is the dict a text body takes, cut to its longest text: the
    attention mask, placeholder token ids of the same shape, and the states
    under ``CACHED_KEY`` (see :mod:`skltransfer.finetune._frozen_activations`).
    """

    states: torch.Tensor | np.ndarray
    mask: torch.Tensor
    prefetch: bool = False

    def __len__(self) -> int:
        return len(self.mask)

    def load(self, idx):
        idx = _rows(idx)
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

    def subset(self, idx) -> TokenStateInputs:
        idx = np.asarray(idx)
        return replace(self, states=self.states[idx], mask=self.mask[idx])


@dataclass
class ImageInputs(_Inputs):
    """Images decoded, resized and cropped batch by batch from an ImageSource."""

    source: ImageSource
    preprocessing: object
    kind = "image"
    prefetch = True

    def __len__(self) -> int:
        return len(self.source)

    def load(self, idx):
        part = self.source if isinstance(idx, slice) else self.source.subset(idx)
        sl = idx if isinstance(idx, slice) else slice(0, len(part))
        return part.load_resized(sl, self.preprocessing)

    def finish(self, batch):
        return self.preprocessing.normalize(batch)

    def subset(self, idx) -> ImageInputs:
        return replace(self, source=self.source.subset(idx))

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
class TextInputs(_Inputs):
    """Texts tokenised batch by batch by the backbone's tokenizer."""

    texts: np.ndarray
    backbone: object
    max_length: int | None = None
    kind = "text"

    def __len__(self) -> int:
        return len(self.texts)

    def load(self, idx):
        return self.texts[idx].tolist()

    def to_model(self, raw, device, augment=None):
        if augment is not None:
            raw = list(augment(list(raw)))
        return to_device(
            self.backbone.tokenize(raw, max_length=self.max_length), device
        )

    def subset(self, idx) -> TextInputs:
        return replace(self, texts=self.texts[idx])

    def lengths(self) -> np.ndarray:
        """Tokens per text, as ``to_model`` cuts them (special tokens included)."""
        limit = self.max_length or self.backbone.max_length
        texts = self.texts.tolist()
        return tokenize_texts(self.backbone.tokenizer, texts, limit).lengths
