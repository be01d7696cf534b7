"""Packed text batches (backbones/_packing.py): the texts of a training step
without their padding, giving the padded batch's embeddings and gradients."""

import pytest
import torch
from _common_finetune import SENTIMENT_LABELS, SENTIMENT_TEXTS

from skltransfer import FineTuneClassifier
from skltransfer.backbones import TextBackbone, _packing
from skltransfer.backbones._packing import (
    PACKED_KEY,
    pack_texts,
    packed_mean,
    without_padding,
)
from skltransfer.backbones._text import HFTextEncoder, tiny_tokenizer

TEXTS = [
    "a good film",
    "the cat is happy and the dog is sad but this movie was not good at all",
    "awful",
    "great acting in a film with a dog",
    "no",
    "this was a bad movie",
]


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch):
    monkeypatch.setattr(_packing, "_VERIFIED", {})


def _padded(backbone, side="right"):
    backbone.tokenizer.padding_side = side
    try:
        return backbone.tokenize(TEXTS)
    finally:
        backbone.tokenizer.padding_side = "right"


@pytest.mark.parametrize("side", ["right", "left"])
def test_every_token_is_placed_once_at_its_position(tiny_bert, side):
    batch = _padded(tiny_bert, side)
    mask = batch["attention_mask"].bool()
    packed = pack_texts(batch, width=24)
    segments = packed[PACKED_KEY]
    longest = int(mask.sum(1).max())
    # Rows as wide as the fullest one, within the width or the longest text.
    assert packed["input_ids"].shape[1] <= max(24, longest)
    # Fewer tokens than the padded batch, every text whole and in order.
    assert segments.numel() < mask.numel()
    for i in range(len(TEXTS)):
        ids = packed["input_ids"][segments == i]
        assert ids.tolist() == batch["input_ids"][i][mask[i]].tolist()
        # Each token keeps the position it had in the padded batch.
        columns = mask[i].nonzero().squeeze(1)
        assert packed["position_ids"][segments == i].tolist() == columns.tolist()
        # A text lies within one row.
        assert len((segments == i).any(1).nonzero()) == 1
    # No token attends to a token of another text.
    attend = packed["attention_mask"][:, 0]
    same = segments[:, :, None] == segments[:, None, :]
    assert torch.equal(attend, same)
    assert attend.shape == (len(segments), segments.shape[1], segments.shape[1])


def test_a_text_longer_than_the_width_takes_a_row_of_its_length(tiny_bert):
    batch = tiny_bert.tokenize(TEXTS)
    longest = int(batch["attention_mask"].sum(1).max())
    packed = pack_texts(batch, width=4)
    assert packed[PACKED_KEY].shape[1] == longest
    assert (packed[PACKED_KEY] >= 0).sum() == batch["attention_mask"].sum()


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("width", [8, 16, 64])
def test_packed_embeddings_equal_the_padded_ones(tiny_bert, side, width):
    batch = _padded(tiny_bert, side)
    with torch.no_grad():
        padded = tiny_bert.forward_features(batch)
        packed = tiny_bert.forward_features(pack_texts(batch, width))
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-6)


def test_packed_mean_averages_each_texts_tokens():
    hidden = torch.arange(12.0).reshape(1, 6, 2)
    segments = torch.tensor([[1, 1, 0, 0, 0, -1]])
    torch.testing.assert_close(
        packed_mean(hidden, segments), torch.tensor([[6.0, 7.0], [1.0, 2.0]])
    )


def test_a_packed_step_gives_the_padded_steps_gradients(tiny_bert):
    batch = tiny_bert.tokenize(TEXTS)
    packed = without_padding(tiny_bert, batch)
    assert PACKED_KEY in packed

    def gradients(x):
        tiny_bert.zero_grad()
        features = tiny_bert.forward_features(x)
        (features**2).sum().backward()
        # (the pooler, which the embeddings do not use, has none)
        return {
            n: p.grad.clone()
            for n, p in tiny_bert.body.named_parameters()
            if p.grad is not None
        }

    with torch.enable_grad():
        padded, packed = gradients(batch), gradients(packed)
    tiny_bert.zero_grad()
    assert len(padded) > 20 and padded.keys() == packed.keys()
    for name, grad in padded.items():
        torch.testing.assert_close(packed[name], grad, rtol=1e-4, atol=1e-6)


def _tiny_roberta() -> TextBackbone:
    from transformers import RobertaConfig, RobertaModel

    tokenizer = tiny_tokenizer()
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=70,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = RobertaModel(config).eval()
    return TextBackbone(
        HFTextEncoder(model), tokenizer, max_length=64, model_max_length=64
    )


def test_a_model_whose_packed_embeddings_differ_keeps_padded_batches():
    # RoBERTa numbers its positions from the padding index on: the columns
    # that a packed batch passes as positions are not its positions.
    roberta = _tiny_roberta()
    roberta.train()
    batch = roberta.tokenize(TEXTS)
    assert without_padding(roberta, batch) is batch
    assert list(_packing._VERIFIED.values()) == [False]
    # The check ran in eval mode and restored the modes.
    assert all(m.training for m in roberta.modules())


def test_non_text_batches_are_left_alone(tiny_bert):
    from skltransfer.backbones import load_backbone

    cnn = load_backbone("test_tiny_cnn")
    x = torch.zeros(2, 3, 8, 8)
    assert without_padding(cnn, x) is x
    one = tiny_bert.tokenize(["a single text"])
    assert without_padding(tiny_bert, one) is one
    # A text of no token (a tokenizer without special tokens) keeps the
    # padded batch, whose mean over no token is its own convention.
    empty = tiny_bert.tokenize(["a text", "another"])
    empty["attention_mask"][1] = 0
    assert without_padding(tiny_bert, empty) is empty


def test_the_pair_stage_the_training_steps_and_the_probe_run_packed(monkeypatch):
    calls = []
    original = TextBackbone.forward_features

    def spy(self, x):
        calls.append((torch.is_grad_enabled(), PACKED_KEY in x))
        return original(self, x)

    monkeypatch.setattr(TextBackbone, "forward_features", spy)
    clf = FineTuneClassifier("test_tiny_bert", random_state=0, interpolation=1.0)
    clf.fit(SENTIMENT_TEXTS, SENTIMENT_LABELS)
    assert clf.contrastive_ and clf.pair_stage_["steps"] > 0
    # The check runs the first batch both ways, once; from there on every
    # step and every pass of the probe is packed.
    check = calls.index((False, True))
    assert calls[check - 1] == (False, False)
    steps = [packed for grad, packed in calls[check:] if grad]
    assert steps == [True] * clf.pair_stage_["steps"]
    passes = [packed for grad, packed in calls[check:] if not grad]
    assert len(passes) >= 3 and all(passes)
    assert list(_packing._VERIFIED.values()) == [True]
    calls.clear()
    clf = FineTuneClassifier(
        "test_tiny_bert", unfreeze=1, contrastive=False, max_epochs=2, batch_size=4
    )
    clf.fit(SENTIMENT_TEXTS, SENTIMENT_LABELS)
    steps = [packed for grad, packed in calls if grad]
    assert steps == [True] * clf.n_steps_
