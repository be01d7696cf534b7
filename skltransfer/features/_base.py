"""What the feature transformers share: output names, cached rows, text inputs."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin

from .._inference import check_finite_rows
from ..caching import cached_rows
from ..inputs.batches import TextInputs, text_array
from ..inputs.text import as_texts

__all__ = ["FeaturesMixin", "TextFeaturesMixin"]


class FeaturesMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin):
    """A transformer with ``n_features_out_`` output columns and a ``cache``.

    Output names are the lower-cased class name followed by the column index.
    Subclasses define ``_cache_key()``: everything besides the sample that
    changes its row.
    """

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def _cached_rows(self, sample_keys, compute, unreadable=None) -> np.ndarray:
        """Rows of the samples, read from ``cache`` where present; see
        :func:`skltransfer.caching.cached_rows`. A computed row with NaN or
        infinity is an error naming its sample: the next estimator would
        take it silently, or fail without saying where it came from. The
        exception are the samples that ``unreadable()`` names (positions
        whose NaN rows stand for inputs that could not be read)."""

        def check(rows, positions):
            skipped = list(unreadable() if unreadable is not None else ())
            if skipped:
                keep = ~np.isin(positions, skipped)
                rows, positions = rows[keep], positions[keep]
            if len(rows):
                check_finite_rows(rows, self._source_name(), positions=positions)

        def checked(indices):
            rows = compute(indices)
            if indices is None:
                indices = np.arange(len(rows))
            if isinstance(rows, np.ndarray):
                check(rows, np.asarray(indices))
                return rows
            return _checked_blocks(rows, np.asarray(indices), check)

        return cached_rows(
            self.cache, self._cache_key, sample_keys, checked, self.n_features_out_
        )

    def _source_name(self) -> str:
        """What computes the rows, for messages."""
        backbone = getattr(self, "backbone_", None)
        name = getattr(backbone, "name", None)
        return f"The model {name!r}" if name else f"This {type(self).__name__}"


class TextFeaturesMixin(FeaturesMixin):
    """A transformer of texts into one row each.

    Subclasses have the ``missing`` and ``cache`` parameters and define
    ``_encode(inputs) -> ndarray``, the rows of
    :class:`~skltransfer.inputs.batches.TextInputs` in their order (all the
    texts of ``X``, or those the cache lacks, with their positions in ``X``).
    A subclass with a tokenizer gives the inputs its backbone in
    ``_text_inputs``.
    """

    def _text_inputs(self, texts: list[str]) -> TextInputs:
        return TextInputs(text_array(texts))

    def _transform_texts(self, X) -> np.ndarray:
        inputs = self._text_inputs(as_texts(X, missing=self.missing))
        return self._cached_rows(
            inputs.sample_keys,
            lambda idx: self._encode(inputs if idx is None else inputs.subset(idx)),
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = []
        return tags


def _checked_blocks(blocks, indices: np.ndarray, check):
    """The blocks of rows of the samples ``indices``, each checked as it comes."""
    done = 0
    for block in blocks:
        check(block, indices[done : done + len(block)])
        done += len(block)
        yield block
