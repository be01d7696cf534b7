"""What the feature transformers share (features/_base.py): output names,
pandas output, cached rows, and the tags of text transformers."""

import numpy as np
import pytest
import torch
from _common_image import images_white_at, nan_backbone

from skltransfer import (
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
    PretrainedWordVectors,
)

IMAGES = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
TEXTS = ["a good film", "an awful film", "the cat sat", "good"]
WORDS = (np.eye(4, dtype=np.float32), ["good", "awful", "film", "cat"])
CASES = [
    (lambda **kw: PretrainedImageFeatures("test_tiny_cnn", **kw), IMAGES, False),
    (lambda **kw: PretrainedTextEmbeddings("test_tiny_bert", **kw), TEXTS, True),
    (lambda **kw: PretrainedWordVectors(WORDS, **kw), TEXTS, True),
]


@pytest.mark.parametrize(("make", "X", "text"), CASES)
def test_names_pandas_output_and_tags(make, X, text):
    est = make().fit(X)
    out = est.transform(X)
    prefix = type(est).__name__.lower()
    names = est.get_feature_names_out()
    assert list(names) == [f"{prefix}{i}" for i in range(out.shape[1])]
    frame = make().set_output(transform="pandas").fit(X).transform(X)
    assert list(frame.columns) == list(names)
    np.testing.assert_allclose(frame.to_numpy(), out, rtol=1e-5, atol=1e-6)
    tags = est.__sklearn_tags__()
    assert tags.input_tags.string is text
    assert tags.input_tags.two_d_array is not text


@pytest.mark.parametrize(("make", "X", "text"), CASES)
def test_cached_rows_are_read_back_instead_of_computed(make, X, text, tmp_path):
    est = make(cache=tmp_path).fit(X)
    first = est.transform(X)
    computed, calls = [], []
    original = est._cached_rows

    def spy(keys, compute, *args):
        calls.append(keys)
        return original(keys, lambda idx: computed.append(idx) or compute(idx), *args)

    est._cached_rows = spy
    np.testing.assert_array_equal(est.transform(X), first)
    assert calls and computed == []  # every row came from the cache
    est.set_params(cache=None)
    est.transform(X)
    assert computed  # without a cache, every row is computed


# -- non-finite rows ----------------------------------------------------------------


def test_non_finite_rows_name_their_samples(tmp_path):
    X = images_white_at([1, 4])
    est = PretrainedImageFeatures(nan_backbone(), cache=tmp_path).fit(X[[0]])
    expected = "'NaNForBright' produced non-finite outputs .* 2 of 6 samples, at "
    with pytest.raises(ValueError, match=expected + "positions 1, 4 of X"):
        est.transform(X)
    assert np.isfinite(est.transform(X[[0, 2]])).all()
    # Rows read from the cache are skipped; positions stay those of X.
    with pytest.raises(ValueError, match="1 of 1 samples, at position 2 of X"):
        est.transform(X[[0, 2, 4]])


def test_non_finite_word_vectors_and_text_embeddings_are_refused():
    matrix = WORDS[0].copy()
    matrix[3] = np.nan  # "cat"
    words = PretrainedWordVectors((matrix, WORDS[1])).fit(TEXTS)
    with pytest.raises(ValueError, match="at position 2 of X"):
        words.transform(TEXTS)
    emb = PretrainedTextEmbeddings("test_tiny_bert").fit(TEXTS)
    emb._embed = lambda batch: torch.full((len(batch["input_ids"]), 32), torch.nan)
    with pytest.raises(ValueError, match="'test_tiny_bert' .* 4 of 4 samples"):
        emb.transform(TEXTS)
