"""Inputs behind one interface: tensors, images, texts and cached activations.

Every pass over an estimator's inputs (feature extraction, prediction,
fine-tuning, the frozen-activation pass) reads them through :class:`Inputs`,
so no runner, loop or estimator asks what it is reading. An input kind is one
subclass; each has a class attribute ``kind`` (``"tensor"``, ``"image"``,
``"text"``) and implements:

- ``load(idx)``: a CPU batch for the samples ``idx`` (a slice, or what
  ``positions`` returns), thread-safe and free of randomness, so that it may
  run ahead in a worker thread when ``prefetch`` is set;
- ``to_model(raw, device, augment)``: the batch the network takes, on
  ``device``, with the training augmentation applied (images are augmented in
  [0, 1] before normalisation, texts before tokenisation); ``prepare(idx)``
  is the un-augmented batch on the CPU, as inference takes it;
- ``subset(idx)``: the inputs of a part of the samples (a validation split,
  the samples a cache lacks), which keeps their positions in ``X``;
- ``positions(order)``: sample indices as ``load`` takes them best;
- ``length_order()``: the order to run the samples in (texts: longest first,
  so that each batch pads little), or None for the given order;
- ``sample_keys()``: a content hash per sample, for caching;
- ``truncated()``: the positions in ``X`` of samples cut to fit the model
  (texts longer than ``max_length``), reported by :func:`warn_truncated`;
- ``sample_positions()``: each sample's position in the user's ``X``;
- ``unread(idx)``: which samples of ``idx`` could not be read (their rows
  are NaN);
- ``batch_size_key()``: what, of the inputs, decides the cost of a batch (a
  measured batch size is remembered under it);
- ``materialize(batch_size)``, ``to(device)``, ``values()``: the inputs kept
  in memory or moved once for a fit, and the samples as one tensor where
  they are held in one (for noise scaled to the data).

The runner is :mod:`skltransfer._inference`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import torch

from .._inference import to_device
from ..caching import hash_bytes, text_keys
from ..exceptions import TruncationWarning, warn_at_caller
from . import text
from ._positions import positions_in_x
from .images import ImageSource
from .text import TokenizedTexts, tokenize_texts

__all__ = [
    "CACHED_KEY",
    "ImageInputs",
    "ImageTensorInputs",
    "Inputs",
    "MappedInputs",
    "TensorInputs",
    "TextInputs",
    "TokenStateInputs",
    "text_array",
    "warn_truncated",
]

_CPU = torch.device("cpu")

# Resized training images are kept in memory when they take at most this much.
MATERIALIZE_BYTES = 1 << 30

# The key under which a text batch carries cached token states to the body.
CACHED_KEY = "skltransfer_cached_states"
# Positions named in the truncation warning; the rest are counted.
_NAMED = 5


def _rows(idx):
    """``idx`` as an index of numpy arrays: a slice, or an array of positions."""
    return idx if isinstance(idx, slice) else np.asarray(idx)


def _row_keys(prefix: str, rows) -> list[str]:
    """A hash of each row's values (rows of a numpy array or a CPU tensor)."""
    keys = []
    for row in rows:
        row = np.ascontiguousarray(row.numpy() if torch.is_tensor(row) else row)
        data = memoryview(row).cast("B") if row.size else b""
        keys.append(hash_bytes(f"{prefix}:{row.dtype}:{row.shape}", data))
    return keys


class Inputs(ABC):
    """The interface of every input kind (see the module docstring)."""

    kind: ClassVar[str] = "tensor"
    prefetch = False

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, idx): ...

    @abstractmethod
    def subset(self, idx) -> Inputs: ...

    @abstractmethod
    def sample_keys(self) -> list[str]: ...

    @abstractmethod
    def batch_size_key(self) -> tuple: ...

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

    def prepare(self, idx):
        """The batch of the samples ``idx`` as the network takes it, un-augmented,
        on the CPU."""
        return self.to_model(self.load(idx), _CPU)

    def example(self, n: int = 2):
        """The first ``n`` samples as the network takes them, on the CPU."""
        return self.prepare(slice(0, n))

    def length_order(self) -> np.ndarray | None:
        return None

    def truncated(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def sample_positions(self) -> np.ndarray:
        return np.arange(len(self))

    def unread(self, idx) -> np.ndarray:
        n = len(range(*idx.indices(len(self)))) if isinstance(idx, slice) else len(idx)
        return np.zeros(n, dtype=bool)

    def materialize(self, batch_size: int = 64) -> Inputs:
        return self

    def to(self, device) -> Inputs:
        return self

    def values(self) -> torch.Tensor | None:
        return None


def text_array(texts: list[str]) -> np.ndarray:
    """Texts as a 1-D object array (never a 2-D array of characters)."""
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    return array


def warn_truncated(inputs: Inputs, max_length: int) -> None:
    """One warning for the samples of ``inputs`` cut at ``max_length`` tokens,
    naming their positions in ``X``."""
    cut = inputs.truncated()
    if not len(cut):
        return
    named = ", ".join(str(int(i)) for i in cut[:_NAMED])
    more = f" and {len(cut) - _NAMED} more" if len(cut) > _NAMED else ""
    at = "position" if len(cut) == 1 else "positions"
    warn_at_caller(
        f"{len(cut)} of {len(inputs)} texts are longer than max_length="
        f"{max_length} tokens and were truncated (at {at} {named}{more} of X).",
        TruncationWarning,
    )


@dataclass
class TensorInputs(Inputs):
    """Samples held in one float tensor (tabular rows, image arrays, activations).

    ``sample_positions`` are their positions in ``X`` (None: ``0..n-1``).
    """

    X: torch.Tensor
    x_positions: np.ndarray | None = field(default=None, repr=False)
    kind: ClassVar[str] = "tensor"

    def __len__(self) -> int:
        return len(self.X)

    def load(self, idx):
        return self.X[idx]

    def positions(self, order: np.ndarray) -> torch.Tensor:
        """On the samples' device: indexing a tensor there needs no copy."""
        return torch.from_numpy(order).to(self.X.device)

    def subset(self, idx) -> TensorInputs:
        positions = positions_in_x(self.x_positions, idx, len(self))
        return replace(self, X=self.X[idx], x_positions=positions)

    def to(self, device) -> TensorInputs:
        """The same inputs with the tensor moved to ``device`` once."""
        return replace(self, X=self.X.to(device))

    def example(self, n: int = 2):
        return self.to_model(self.load(slice(0, n)), self.X.device)

    def sample_keys(self) -> list[str]:
        return _row_keys("tensor", self.X.cpu())

    def sample_positions(self) -> np.ndarray:
        return positions_in_x(self.x_positions, slice(None), len(self))

    def batch_size_key(self) -> tuple:
        return tuple(self.X.shape[1:])

    def values(self) -> torch.Tensor:
        return self.X


@dataclass
class ImageTensorInputs(TensorInputs):
    """Resized images in [0, 1] held in memory, normalised batch by batch
    (after augmentation)."""

    preprocessing: object = None
    kind: ClassVar[str] = "image"

    def finish(self, batch):
        return self.preprocessing.normalize(batch)

    def batch_size_key(self) -> tuple:
        return (self.preprocessing.crop_size,)

    def values(self) -> None:
        return None


@dataclass
class MappedInputs(Inputs):
    """Samples in a memory-mapped array on disk: cached activations too large
    for memory. Batches are read (one ahead, in a worker thread) as needed."""

    array: np.ndarray
    prefetch = True
    kind: ClassVar[str] = "tensor"

    def __len__(self) -> int:
        return len(self.array)

    def load(self, idx):
        return torch.from_numpy(np.ascontiguousarray(self.array[_rows(idx)]))

    def subset(self, idx) -> TensorInputs:
        """The rows ``idx``, read into memory."""
        return TensorInputs(self.load(idx), positions_in_x(None, idx, len(self)))

    def sample_keys(self) -> list[str]:
        return _row_keys("tensor", self.array)

    def batch_size_key(self) -> tuple:
        return tuple(self.array.shape[1:])


@dataclass
class TokenStateInputs(Inputs):
    """Cached token states of texts (N, T, D), right-padded, with their masks.

    A batch is the dict a text body takes, cut to its longest text: the
    attention mask, placeholder token ids of the same shape, and the states
    under ``CACHED_KEY`` (see :mod:`skltransfer.finetune._frozen_activations`).
    """

    states: torch.Tensor | np.ndarray
    mask: torch.Tensor
    prefetch: bool = False
    x_positions: np.ndarray | None = field(default=None, repr=False)
    kind: ClassVar[str] = "tensor"

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
        positions = positions_in_x(self.x_positions, idx, len(self))
        return replace(
            self, states=self.states[idx], mask=self.mask[idx], x_positions=positions
        )

    def sample_positions(self) -> np.ndarray:
        return positions_in_x(self.x_positions, slice(None), len(self))

    def sample_keys(self) -> list[str]:
        lengths = self.mask.sum(1).tolist()
        return _row_keys("tokens", [self.states[i][:t] for i, t in enumerate(lengths)])

    def length_order(self) -> np.ndarray:
        return text.length_order(self.mask.sum(1).numpy())

    def batch_size_key(self) -> tuple:
        return tuple(self.states.shape[2:])


@dataclass
class ImageInputs(Inputs):
    """Images decoded, resized and cropped batch by batch from an ImageSource,
    normalised after augmentation: the one image adapter of every estimator."""

    source: ImageSource
    preprocessing: object
    kind: ClassVar[str] = "image"
    prefetch = True

    def __len__(self) -> int:
        return len(self.source)

    def load(self, idx):
        return self.source.load_resized(idx, self.preprocessing)

    def finish(self, batch):
        return self.preprocessing.normalize(batch)

    def subset(self, idx) -> ImageInputs:
        return replace(self, source=self.source.subset(idx))

    def sample_keys(self) -> list[str]:
        return self.source.sample_keys()

    def sample_positions(self) -> np.ndarray:
        return self.source.positions_of(slice(None))

    def unread(self, idx) -> np.ndarray:
        return self.source.unread(idx)

    def batch_size_key(self) -> tuple:
        # The size of each image is fixed by the crop.
        return (self.preprocessing.crop_size,)

    def materialize(self, batch_size: int = 64) -> Inputs:
        """Resized images in memory (an ImageTensorInputs) when small enough,
        else self.

        Decoding and resizing then happen once per ``fit`` instead of once
        per epoch; augmentation and normalisation still run per batch.
        """
        size = self.preprocessing.crop_size
        if len(self) * 3 * size * size * 4 > MATERIALIZE_BYTES:
            return self
        parts = [
            self.load(slice(i, i + batch_size)) for i in range(0, len(self), batch_size)
        ]
        return ImageTensorInputs(
            torch.cat(parts),
            self.sample_positions(),
            preprocessing=self.preprocessing,
        )


@dataclass
class TextInputs(Inputs):
    """Texts tokenised by the backbone's tokenizer (:func:`.text.tokenize_texts`,
    the one tokenisation of every estimator).

    Every text is tokenised once, on first need (length order, truncation,
    inference batches); a training batch is tokenised after its augmentation.
    Batches are padded on ``side`` ("left" or "right"; None: the
    tokenizer's side). ``x_positions`` are the texts' positions in ``X`` (None:
    ``0..n-1``), kept by :meth:`subset`. Without a ``backbone`` (word
    vectors), only the texts, their keys and positions are read.
    """

    texts: np.ndarray
    backbone: object = None
    max_length: int | None = None
    side: str | None = None
    x_positions: np.ndarray | None = field(default=None, repr=False)
    _tokens: TokenizedTexts | None = field(default=None, repr=False, compare=False)
    kind: ClassVar[str] = "text"

    def __len__(self) -> int:
        return len(self.texts)

    def load(self, idx):
        return self.texts[_rows(idx)].tolist()

    @property
    def limit(self) -> int:
        """Tokens kept per text, special tokens included."""
        return self.max_length or self.backbone.max_length

    def _tokenize(self, texts: list[str]) -> TokenizedTexts:
        return tokenize_texts(self.backbone.tokenizer, texts, self.limit)

    @property
    def tokens(self) -> TokenizedTexts:
        """Every text tokenised (once)."""
        if self._tokens is None:
            self._tokens = self._tokenize(self.texts.tolist())
        return self._tokens

    def _side(self) -> str:
        if self.side is not None:
            return self.side
        return getattr(self.backbone.tokenizer, "padding_side", "right")

    def to_model(self, raw, device, augment=None):
        if augment is not None:
            raw = list(augment(list(raw)))
        tokens = self._tokenize(list(raw))
        return to_device(tokens.batch(np.arange(len(raw)), self._side()), device)

    def prepare(self, idx):
        rows = np.arange(*idx.indices(len(self))) if isinstance(idx, slice) else idx
        return self.tokens.batch(rows, self._side())

    def subset(self, idx) -> TextInputs:
        positions = positions_in_x(self.x_positions, idx, len(self))
        return replace(
            self, texts=self.texts[_rows(idx)], x_positions=positions, _tokens=None
        )

    def lengths(self) -> np.ndarray:
        """Tokens per text, as ``to_model`` cuts them (special tokens included)."""
        return self.tokens.lengths

    def length_order(self) -> np.ndarray:
        return text.length_order(self.lengths())

    def sample_keys(self) -> list[str]:
        return text_keys(self.texts.tolist())

    def truncated(self) -> np.ndarray:
        return self.sample_positions()[self.tokens.truncated]

    def sample_positions(self) -> np.ndarray:
        return positions_in_x(self.x_positions, slice(None), len(self))

    def batch_size_key(self) -> tuple:
        return (self.limit,)
