"""What the feature transformers share (features/_base.py): output names,
pandas output, cached rows, and the tags of text transformers."""

import numpy as np
import pytest

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

    def spy(keys, compute):
        calls.append(keys)
        return original(keys, lambda idx: computed.append(idx) or compute(idx))

    est._cached_rows = spy
    np.testing.assert_array_equal(est.transform(X), first)
    assert calls and computed == []  # every row came from the cache
    est.set_params(cache=None)
    est.transform(X)
    assert computed  # without a cache, every row is computed
