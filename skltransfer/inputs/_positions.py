"""Naming a sample by its position in the user's ``X``.

Batches, cache chunks, validation splits and training orders all read parts
of ``X``; an error or a warning about one sample names where it sits in the
``X`` the user passed (counting from 0), never where it sits in the part.
For a pandas ``X`` whose index is not ``0..n-1``, the message says that the
number is a position and gives the sample's index label too: ``df.iloc``,
not ``df.loc``, finds it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ON_ERROR_OPTIONS",
    "index_labels",
    "positions_in_x",
    "sample_name",
    "unreadable_summary",
]

#: What an estimator may do with an image it cannot read.
ON_ERROR_OPTIONS = ("raise", "nan")
# Samples listed by name in the summary of unreadable images.
_LISTED = 5


def positions_in_x(positions, idx, n: int) -> np.ndarray:
    """The positions in ``X`` of the samples ``idx`` (a slice or positions) of
    a part of ``X`` whose samples sit at ``positions`` (None: ``0..n-1``)."""
    if positions is not None:
        return np.asarray(positions)[idx if isinstance(idx, slice) else np.asarray(idx)]
    if isinstance(idx, slice):
        return np.arange(*idx.indices(n))
    return np.asarray(idx, dtype=np.int64)


def index_labels(X) -> np.ndarray | None:
    """The index labels of a pandas ``X``, or None where they are its positions."""
    if not hasattr(X, "iloc"):
        return None
    labels = np.asarray(X.index)
    if labels.dtype.kind in "iu" and np.array_equal(labels, np.arange(len(labels))):
        return None
    return labels


def sample_name(position: int, labels: np.ndarray | None = None) -> str:
    """``"Sample 7"``, or with index labels ``"Sample at position 7 (index
    label 'b')"``.

    >>> sample_name(7), sample_name(1, np.array(["a", "b"]))
    ('Sample 7', "Sample at position 1 (index label 'b')")
    """
    if labels is None:
        return f"Sample {position}"
    label = labels[position]
    label = label.item() if isinstance(label, np.generic) else label
    return f"Sample at position {position} (index label {label!r})"


def unreadable_summary(unreadable: dict, n: int, labels=None) -> str:
    """One message for the images of an input of ``n`` that could not be read.

    ``unreadable`` maps each one's position to the reason; the first few are
    listed with theirs.
    """
    positions = sorted(unreadable)
    listed = "; ".join(
        f"{sample_name(p, labels)}: {unreadable[p]}" for p in positions[:_LISTED]
    )
    more = len(positions) - _LISTED
    return (
        f"{len(positions)} of {n} images could not be read; their rows are NaN "
        "(on_error='nan'). Keep the others with ~np.isnan(Z).any(axis=1). "
        + listed
        + (f"; and {more} more." if more > 0 else ".")
    )
