"""Texts as inputs (inputs/text.py): containers, missing texts, the length
limit, tokenisation and length order."""

import json

import numpy as np
import pytest
import torch
from _common_finetune import SENTIMENT_LABELS, SENTIMENT_TEXTS
from _common_text import MATRIX, TEXTS, WORDS
from sklearn.base import clone

from skltransfer import (
    FineTuneClassifier,
    PretrainedTextEmbeddings,
    PretrainedWordVectors,
)
from skltransfer.exceptions import SkltransferWarning
from skltransfer.inputs.text import (
    as_texts,
    check_max_length,
    in_length_order,
    length_order,
    restore_order,
    tokenize_texts,
)


def test_input_containers_agree(text_embeddings):
    pd = pytest.importorskip("pandas")
    reference = text_embeddings.transform(TEXTS)
    for X in (
        tuple(TEXTS),
        np.array(TEXTS),
        np.array(TEXTS, dtype=object).reshape(-1, 1),
        pd.Series(TEXTS, index=range(10, 16)),
        pd.DataFrame({"text": TEXTS}),
    ):
        np.testing.assert_allclose(text_embeddings.transform(X), reference, atol=1e-6)


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
def test_bad_inputs(text_embeddings, X, error, match):
    with pytest.raises(error, match=match):
        text_embeddings.transform(X)


def test_bad_inputs_pandas(text_embeddings):
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="index label 'b'"):
        text_embeddings.transform(pd.Series(["ok", None], index=["a", "b"]))
    with pytest.raises(ValueError, match="2 columns"):
        text_embeddings.transform(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(ValueError, match="position 1"):
        text_embeddings.transform(pd.Series(["ok", pd.NA], dtype="string"))


def test_missing_as_empty(text_embeddings):
    emb = clone(text_embeddings).set_params(missing="empty").fit(TEXTS)
    X = emb.transform(["a good film", None, float("nan")])
    np.testing.assert_allclose(X[1], emb.transform([""])[0], atol=1e-6)
    np.testing.assert_allclose(X[2], X[1])


LONE = json.loads('"\\ud800 a good film"')  # what a JSON file may hold


def test_lone_surrogates_become_replacement_characters_with_one_warning():
    texts = ["ok", LONE, "\ud83d\ude00 pair", "\udc00\ud800", "\ufffd as it is"]
    with pytest.warns(SkltransferWarning) as record:
        out = as_texts(texts)
    assert out == ["ok", "\ufffd a good film", "\U0001f600 pair", "\ufffd\ufffd"] + [
        "\ufffd as it is"
    ]
    assert len(record) == 1
    assert "2 of 5 texts contain lone surrogates" in str(record[0].message)
    assert "at position 1, position 3." in str(record[0].message)
    assert texts[1] == LONE  # the caller's list is left as it was


def test_lone_surrogates_name_the_index_label():
    pd = pytest.importorskip("pandas")
    with pytest.warns(SkltransferWarning, match="index label 'b'"):
        # object dtype: pandas' Arrow-backed strings cannot hold a surrogate.
        as_texts(pd.Series(["ok", LONE], index=["a", "b"], dtype=object))


def test_lone_surrogates_are_embedded_and_cached_as_replaced(text_embeddings, tmp_path):
    emb = clone(text_embeddings).set_params(cache=str(tmp_path)).fit(TEXTS)
    with pytest.warns(SkltransferWarning, match="position 0"):
        X = emb.transform([LONE, "a film"])
    np.testing.assert_array_equal(X[0], emb.transform(["\ufffd a good film"])[0])
    words = PretrainedWordVectors((MATRIX, WORDS), cache=str(tmp_path)).fit(TEXTS)
    with pytest.warns(SkltransferWarning, match="position 1"):
        Z = words.transform(["a film", LONE])
    np.testing.assert_array_equal(Z[1], words.transform(["\ufffd a good film"])[0])


def test_max_length_above_the_model_limit():
    with pytest.raises(ValueError, match="exceeds"):
        PretrainedTextEmbeddings("test_tiny_bert", max_length=65).fit(TEXTS)


def test_max_length_above_the_limit_names_both():
    check_max_length(None, 64, "tiny")
    check_max_length(64, 64, "tiny")
    with pytest.raises(ValueError, match=r"max_length=65 exceeds .*'tiny'.*64 tokens"):
        check_max_length(65, 64, "tiny")


# -- tokenisation and length order -------------------------------------------------


def test_tokenize_texts_packs_chunks_and_pads_like_the_tokenizer(tiny_bert):
    texts = [*TEXTS, "good " * 100]
    whole = tokenize_texts(tiny_bert.tokenizer, texts, 10)
    chunked = tokenize_texts(tiny_bert.tokenizer, texts, 10, chunk_size=2)
    full = [len(ids) for ids in tiny_bert.tokenizer(texts)["input_ids"]]
    assert whole.n_truncated == chunked.n_truncated == sum(n > 10 for n in full)
    np.testing.assert_array_equal(whole.lengths, np.minimum(full, 10))
    np.testing.assert_array_equal(whole.offsets, chunked.offsets)
    rows = [6, 0, 2]
    expected = tiny_bert.tokenizer(
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


@pytest.mark.usefixtures("one_thread")
def test_text_predictions_run_in_token_length_order(monkeypatch):
    from skltransfer.inputs import text

    clf = FineTuneClassifier("test_tiny_bert", max_epochs=1).fit(
        SENTIMENT_TEXTS, SENTIMENT_LABELS
    )
    # The unknown word is fewer characters but more tokens than the film.
    texts = ["a", "film film film film", "xqzvkwjpy", "cat"]
    tokens = clf.module_.backbone.tokenize(texts)["attention_mask"].sum(1)
    assert tokens[2] > tokens[1]
    orders = []
    order_of = text.length_order
    monkeypatch.setattr(text, "length_order", lambda n: orders.append(n) or order_of(n))
    proba = clf.predict_proba(texts)
    np.testing.assert_array_equal(orders[0], tokens.numpy())
    for i, t in enumerate(texts):
        np.testing.assert_allclose(proba[i], clf.predict_proba([t])[0], atol=1e-6)
