"""Text inputs: validation into a list of str, and length-sorted batching.

Accepted inputs (see :func:`as_texts`): a list or tuple of str, a 1-D numpy
array (or an (N, 1) array) of str, a pandas Series or a one-column DataFrame.
Empty strings are valid texts. A bare string is refused (it would otherwise be
read as a sequence of characters), as are non-string entries. Missing values
(None, NaN, ``pd.NA``) are refused with their position unless
``missing="empty"``, which reads them as empty strings. Lone surrogates
(half of a UTF-16 pair, which ``json.loads`` returns for an escaped
``"\\ud800"``) cannot be encoded, hashed or tokenised: they are replaced by
U+FFFD, with one warning naming the texts' positions; a pair of surrogates
becomes the character it encodes.

Batching (:func:`tokenize_texts`) tokenises every text once, sorts the texts
by token count, longest first, and pads each batch on the right to its own
longest text only; :func:`in_length_order` runs batches in that order and
puts the results back in input order.
"""

from __future__ import annotations

import itertools
import numbers
import re
from dataclasses import dataclass

import numpy as np

from .._inference import restore_order
from ..backbones._text import tokenizer_lock
from ..exceptions import SkltransferWarning, warn_at_caller

__all__ = [
    "MISSING_OPTIONS",
    "TokenizedTexts",
    "as_texts",
    "check_max_length",
    "in_length_order",
    "is_missing",
    "length_order",
    "restore_order",
    "tokenize_texts",
    "where",
]

MISSING_OPTIONS = ("error", "empty")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Positions named in the warning about lone surrogates; the rest are counted.
_NAMED = 5


def is_missing(value) -> bool:
    """Whether ``value`` is None, NaN, ``pd.NA`` or ``pd.NaT``."""
    if value is None:
        return True
    if isinstance(value, numbers.Real) and value != value:  # NaN
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def _column(X):
    """``X`` as a 1-D sequence plus its labels (pandas index) for messages."""
    if hasattr(X, "iloc"):
        if X.ndim == 2:
            if X.shape[1] != 1:
                raise ValueError(
                    "Expected one column of texts, got a DataFrame with "
                    f"{X.shape[1]} columns; select the text column first."
                )
            X = X.iloc[:, 0]
        return X.tolist(), list(X.index)
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"Expected a 1-D sequence of texts, got an array of shape {X.shape}."
            )
        return X.tolist(), None
    if isinstance(X, list | tuple):
        return list(X), None
    raise TypeError(
        "Expected texts as a list, tuple, 1-D numpy array, pandas Series or "
        f"one-column DataFrame of str, got {type(X).__name__}."
    )


def where(i: int, labels) -> str:
    """Position ``i`` in messages, with its index label when it has another."""
    if labels is None or labels[i] == i:
        return f"position {i}"
    return f"position {i} (index label {labels[i]!r})"


def as_texts(X, *, missing: str = "error") -> list[str]:
    """Validate ``X`` and return its texts as a list of str.

    Parameters
    ----------
    X : list, tuple, ndarray, pandas Series or one-column DataFrame of str
        The texts.
    missing : {"error", "empty"}, default="error"
        What to do with None/NaN entries: raise, or read them as ``""``.

    Returns
    -------
    texts : list of str

    Examples
    --------
    >>> from skltransfer.inputs.text import as_texts
    >>> as_texts(["a film", ""])
    ['a film', '']
    >>> as_texts(["a film", None], missing="empty")
    ['a film', '']
    """
    if missing not in MISSING_OPTIONS:
        raise ValueError(f"missing must be one of {MISSING_OPTIONS}, got {missing!r}.")
    if isinstance(X, str | bytes):
        raise TypeError(
            "Expected a sequence of texts, got a single string; wrap it in a "
            "list: [text]."
        )
    values, labels = _column(X)
    texts = []
    for i, value in enumerate(values):
        if isinstance(value, str):
            texts.append(value)
        elif is_missing(value):
            if missing == "error":
                raise ValueError(
                    f"Missing text (None/NaN) at {where(i, labels)}. Fill it, drop "
                    "it, or pass missing='empty' to embed it as an empty string."
                )
            texts.append("")
        else:
            raise TypeError(
                f"Expected str at {where(i, labels)}, got {type(value).__name__}: "
                f"{value!r:.50}."
            )
    if not texts:
        raise ValueError("Found 0 texts, while a minimum of 1 is required.")
    _replace_lone_surrogates(texts, labels)
    return texts


def _replace_lone_surrogates(texts: list[str], labels) -> None:
    """Replace, in place, lone surrogates by U+FFFD and surrogate pairs by the
    character they encode, warning once with the positions of lone ones.

    Before tokenising and before hashing: the cache key and the tokenizer
    then see the same, valid text (UTF-8 has no encoding for a surrogate).
    """
    lone = []
    for i, text in enumerate(texts):
        if _SURROGATE.search(text):
            utf16 = text.encode("utf-16-le", "surrogatepass")
            texts[i] = utf16.decode("utf-16-le", "replace")
            if texts[i].count("\ufffd") > text.count("\ufffd"):
                lone.append(i)
    if lone:
        named = ", ".join(where(i, labels) for i in lone[:_NAMED])
        more = f" and {len(lone) - _NAMED} more" if len(lone) > _NAMED else ""
        warn_at_caller(
            f"{len(lone)} of {len(texts)} texts contain lone surrogates (half of "
            f"a UTF-16 pair, not a character): at {named}{more}. Each was "
            "replaced by U+FFFD, the replacement character.",
            SkltransferWarning,
        )


def length_order(lengths) -> np.ndarray:
    """Indices that sort ``lengths`` longest first (stable among equal lengths)."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def in_length_order(lengths, run) -> np.ndarray:
    """``run(order)`` over the texts sorted longest first, rows back in input order.

    ``run`` receives the positions of the texts in sorted order and returns
    one row per text in that order. Neighbouring texts then have similar
    lengths, so each batch pads little. ``lengths`` are counted in tokens,
    not characters: padding is counted in tokens, and the number of
    characters per token varies (rare words split into several pieces,
    digits, other scripts), so an order by characters puts texts of quite
    different token counts in one batch.
    """
    order = length_order(lengths)
    return restore_order(run(order), order)


@dataclass
class TokenizedTexts:
    """Token ids of every text, unpadded and packed, ready to batch in any order.

    Attributes
    ----------
    values : dict of str to ndarray
        Each tokenizer output (``input_ids``, ``attention_mask``, ...) of all
        texts, concatenated into one int32 array.
    offsets : ndarray of shape (n_texts + 1,)
        Text ``i`` is ``values[key][offsets[i]:offsets[i + 1]]``.
    pad_values : dict of str to int
        The value each output is padded with.
    truncated : ndarray of int
        The texts (by their index in the tokenised list) that were longer than
        the length limit and were cut.
    """

    values: dict
    offsets: np.ndarray
    pad_values: dict
    truncated: np.ndarray

    @property
    def n_truncated(self) -> int:
        """How many texts were longer than the length limit and were cut."""
        return len(self.truncated)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, rows, side: str = "right") -> dict:
        """Rows ``rows``, padded to their longest on ``side``, as ``torch.long``
        tensors."""
        import torch  # here, so that word-vector models never import it

        rows = np.asarray(rows)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        width = int((ends - starts).max())
        out = {}
        for key, flat in self.values.items():
            arr = np.full((len(rows), width), self.pad_values.get(key, 0), np.int64)
            for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
                cols = (
                    slice(0, b - a)
                    if side == "right"
                    else slice(width - (b - a), width)
                )
                arr[j, cols] = flat[a:b]
            out[key] = torch.from_numpy(arr)
        return out


def _pad_values(tokenizer) -> dict:
    return {
        "input_ids": tokenizer.pad_token_id or 0,
        "attention_mask": 0,
        "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
        "special_tokens_mask": 1,
    }


def _tokenize_chunk(tokenizer, texts: list[str], max_length: int):
    """Tokenise with one token of slack: it tells which texts are too long
    without materialising their full token sequences; only those are redone.
    """
    kw = {"truncation": True, "return_tensors": None}
    with tokenizer_lock(tokenizer):
        encoded = dict(tokenizer(texts, max_length=max_length + 1, **kw))
    long = [i for i, seq in enumerate(encoded["input_ids"]) if len(seq) > max_length]
    if long:
        with tokenizer_lock(tokenizer):
            cut = tokenizer([texts[i] for i in long], max_length=max_length, **kw)
        for key, seqs in encoded.items():
            for i, seq in zip(long, cut[key], strict=True):
                seqs[i] = seq
    return encoded, long


def _flatten(seqs: list, total: int) -> np.ndarray:
    return np.fromiter(itertools.chain.from_iterable(seqs), np.int32, count=total)


def tokenize_texts(
    tokenizer, texts: list[str], max_length: int, chunk_size: int = 8192
) -> TokenizedTexts:
    """Tokenise ``texts`` once, keeping at most ``max_length`` tokens per text.

    Texts are tokenised ``chunk_size`` at a time and packed into int32 arrays,
    so memory stays a few bytes per token for any number of texts.
    """
    parts: dict[str, list] = {}
    lengths, truncated = [], []
    for start in range(0, len(texts), chunk_size):
        encoded, cut = _tokenize_chunk(
            tokenizer, texts[start : start + chunk_size], max_length
        )
        truncated.extend(start + i for i in cut)
        chunk_lengths = np.fromiter(map(len, encoded["input_ids"]), np.int64)
        lengths.append(chunk_lengths)
        for key, seqs in encoded.items():
            parts.setdefault(key, []).append(_flatten(seqs, chunk_lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
    values = {key: np.concatenate(arrays) for key, arrays in parts.items()}
    truncated = np.asarray(truncated, dtype=np.int64)
    return TokenizedTexts(values, offsets, _pad_values(tokenizer), truncated)


def check_max_length(max_length: int | None, limit: int, model: str) -> None:
    """Refuse a ``max_length`` above the ``limit`` of tokens that ``model`` takes.

    None (the model's own default) always passes.
    """
    if max_length is not None and max_length > limit:
        raise ValueError(
            f"max_length={max_length} exceeds what {model!r} accepts ({limit} tokens)."
        )
