"""PretrainedImageFeatures: a frozen image backbone as a scikit-learn transformer."""

from __future__ import annotations

from numbers import Integral

import torch

from .._device import on_module_device
from .._docstring import fill_doc
from .._image_base import PretrainedImageBase
from .._validation import StrOptions, check_is_fitted, fit_context
from ..caching import CACHE_CONSTRAINT, hash_bytes, module_fingerprint
from ..exceptions import SkltransferWarning, warn_at_caller
from ..inputs._positions import ON_ERROR_OPTIONS
from ..inputs.images import background_rgb
from ._base import FeaturesMixin
from ._pooling import POOLINGS, pool

__all__ = ["PretrainedImageFeatures"]

# Part of every cache key: changes to how pixels are read (8-bit resampling,
# reduced decoding of large files) move the features slightly, and cached
# rows computed the old way must not mix with new ones.
_PIXEL_PIPELINE = "pixels-v3"


@fill_doc
class PretrainedImageFeatures(FeaturesMixin, PretrainedImageBase):
    """Embed images with a frozen pretrained backbone.

    The "fixed features" strategy of transfer learning: the backbone is never
    trained; its features feed any scikit-learn estimator. ``fit`` loads the
    weights (and learns how numeric pixel values are scaled); ``transform``
    runs the backbone in eval mode under ``torch.inference_mode`` batch by
    batch, so a sample's features never depend on the rest of its batch.

    Parameters
    ----------
    {backbone}
    layer : str, int or None, default=None
        None takes the embedding the pretrained head sees (the pooled
        penultimate features). A layer-group name (see
        ``backbone_.layer_names()``), a negative or positive group index, or
        any module name of the body takes that layer's output instead.
    pooling : {{"auto", "avg", "max", "avgmax", "none"}}, default="auto"
        How a feature map (N, C, H, W) or token sequence (N, T, D) becomes one
        vector: mean, max, both concatenated, or flattened (``"none"``).
        ``"auto"`` is the backbone's own pooling when ``layer`` is None and
        ``"avg"`` otherwise; an explicit pooling with ``layer=None`` pools the
        output of the last layer group.
    {image_size}
    {crop_fraction}
    {background}
    {image_shape}
    {value_range}
    {batch_size}
    {engine}
    {device}
    {precision}
    {compile}
    {verbose}
    {cache}
    {on_error}

    Attributes
    ----------
    backbone_ : skltransfer.backbones.Backbone
        The loaded, frozen model.
    preprocessing_ : skltransfer.backbones.ImagePreprocessing
        Resize, crop and normalisation applied to every image.
    value_range_ : tuple of float or None
        The pixel value range learned from numeric training images.
    n_features_out_ : int
        Length of each output vector.
    n_features_in_ : int
        Number of columns when fitted on a 2-D array of flattened images.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skltransfer import PretrainedImageFeatures
    >>> X, y = load_digits(return_X_y=True)
    >>> features = PretrainedImageFeatures("test_tiny_cnn", image_shape=(8, 8))
    >>> features.fit_transform(X[:10]).shape
    (10, 32)
    >>> features.get_feature_names_out()[:2].tolist()
    ['pretrainedimagefeatures0', 'pretrainedimagefeatures1']
    """

    _parameter_constraints = {
        **PretrainedImageBase._parameter_constraints,
        "layer": [str, Integral, None],
        "pooling": [StrOptions(set(POOLINGS))],
        "cache": CACHE_CONSTRAINT,
        "on_error": [StrOptions(set(ON_ERROR_OPTIONS))],
    }

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        layer=None,
        pooling="auto",
        image_size=None,
        crop_fraction="auto",
        background="white",
        image_shape=None,
        value_range="auto",
        batch_size=None,
        engine="auto",
        device="auto",
        precision="fp32",
        compile=False,
        verbose="auto",
        cache=None,
        on_error="raise",
    ):
        self.backbone = backbone
        self.layer = layer
        self.pooling = pooling
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.background = background
        self.image_shape = image_shape
        self.value_range = value_range
        self.batch_size = batch_size
        self.engine = engine
        self.device = device
        self.precision = precision
        self.compile = compile
        self.verbose = verbose
        self.cache = cache
        self.on_error = on_error

    @fit_context
    def fit(self, X, y=None):
        """Load the backbone and learn the input conventions of ``X``.

        Parameters
        ----------
        X : array-like of images
            File paths, PIL images, an image array, a list of arrays of
            different sizes, or flattened rows with ``image_shape``; see
            :mod:`skltransfer.inputs.images`.
        y : ignored

        Returns
        -------
        self : PretrainedImageFeatures
        """
        self._fit_backbone(X)
        self.layer_module_ = self._resolve_layer()
        if self.compile and not self._compilable():
            warn_at_caller(
                f"compile=True applies to the model's last layer; layer="
                f"{self.layer!r} is read with a forward hook that ends the pass "
                "early, which does not compile, so this model runs uncompiled.",
                SkltransferWarning,
            )
        self.n_features_out_ = self._output_size()
        return self

    def transform(self, X):
        """Embed each image.

        Parameters
        ----------
        X : array-like of images
            As in :meth:`fit`.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out_), float32
            With ``on_error="nan"``, the rows of images that could not be
            read are NaN.
        """
        check_is_fitted(self, "backbone_")
        source = self._image_source(X, reset=False)
        desc = "Embedding images"

        def embed(indices):
            if indices is None:
                return self._run_source(source, self._embedder(), desc)
            # Blocks of rows, which the cache stores batch by batch.
            return self._iter_source(source.subset(indices), self._embedder(), desc)

        rows = self._cached_rows(
            source.sample_keys, embed, lambda: source.unreadable or ()
        )
        self._warn_unreadable(source)
        return rows

    def _on_error(self) -> str:
        return self.on_error

    def _cache_key(self) -> str:
        check_is_fitted(self, "backbone_")
        # Remembered on the backbone and checked against its tensors' versions,
        # so a backbone changed in place gets a new key.
        weights_key = module_fingerprint(self.backbone_)
        settings = (self.layer_module_, self.pooling, self.preprocessing_)
        return hash_bytes(
            type(self).__name__,
            _PIXEL_PIPELINE,
            weights_key,
            repr(settings),
            repr(self.value_range_),
            repr(background_rgb(self.background)),
            self.precision,
        )

    def _output_size(self) -> int:
        head = self.backbone_.head
        if self.layer_module_ is None and isinstance(head, torch.nn.Linear):
            # The embedding is the head's input. Reading its size spares a
            # forward pass, whose one-off set-up costs a second on the CPU.
            return head.in_features
        with torch.inference_mode():
            # On the device of the shared backbone, which a pass of another
            # estimator may have left on the GPU.
            example = on_module_device(self.backbone_, self._example())
            return self._embed(example).shape[1]

    def _resolve_layer(self) -> str | None:
        if self.layer is None and self.pooling == "auto":
            return None
        layer = -1 if self.layer is None else self.layer
        return self.backbone_.resolve_layer(layer)

    def _compilable(self) -> bool:
        return self.layer_module_ is None

    def _forward_key(self) -> tuple:
        return (self.layer_module_, self.pooling)

    def _embedder(self):
        """The forward pass as a function of the backbone alone.

        It holds no reference to the estimator, so that a compiled version
        can be shared by clones (see ``_compile.py``).
        """
        backbone, layer, pooling = self.backbone_, self.layer_module_, self.pooling
        if layer is None:
            return backbone.forward_features

        def embed(x: torch.Tensor) -> torch.Tensor:
            return pool(backbone.forward_layer(x, layer), pooling)

        return embed

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._embedder()(x)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
