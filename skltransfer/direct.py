"""PretrainedImageClassifier: a pretrained model used as it is, with its own head."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin

from ._docstring import fill_doc
from ._image_base import PretrainedImageBase
from ._inference import check_finite_rows
from ._validation import check_is_fitted, check_positive_int, fit_context

__all__ = ["PretrainedImageClassifier"]


@fill_doc
class PretrainedImageClassifier(ClassifierMixin, PretrainedImageBase):
    """Classify images into the pretrained head's own classes (direct use).

    The first strategy of transfer learning: when the target classes are among
    the source classes (ImageNet's 1000 for the default model), the pretrained
    model needs no training. ``fit`` only loads the weights; ``y`` is ignored
    and ``classes_`` are the head's class names.

    Parameters
    ----------
    {backbone}
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

    Attributes
    ----------
    classes_ : ndarray of str
        The pretrained head's class names, in output order.
    backbone_ : skltransfer.backbones.Backbone
        The loaded, frozen model.
    preprocessing_ : skltransfer.backbones.ImagePreprocessing
        Resize, crop and normalisation applied to every image.

    Examples
    --------
    >>> import numpy as np
    >>> from skltransfer import PretrainedImageClassifier
    >>> images = np.zeros((2, 40, 40, 3), dtype=np.uint8)
    >>> clf = PretrainedImageClassifier("test_tiny_cnn").fit(images)
    >>> clf.predict(images).shape
    (2,)
    >>> labels, probas = clf.predict_top_k(images, k=3)
    >>> labels.shape, probas.shape
    ((2, 3), (2, 3))
    """

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
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
    ):
        self.backbone = backbone
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

    @fit_context
    def fit(self, X=None, y=None):
        """Load the pretrained model; learn how numeric pixels scale from ``X``.

        Parameters
        ----------
        X : array-like of images or None
            Optional; only used to learn input conventions (see
            ``value_range``). No training happens.
        y : ignored
            The classes are the pretrained head's.

        Returns
        -------
        self : PretrainedImageClassifier
        """
        self._fit_backbone(X)
        names = self.backbone_.class_names
        if self.backbone_.head is None or names is None:
            raise ValueError(
                f"Backbone {self.backbone_.name!r} has no named pretrained head to "
                "classify with; use PretrainedImageFeatures or FineTuneClassifier."
            )
        self.classes_ = np.asarray(names, dtype=object)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Logits of the pretrained head, shape (n_samples, n_classes)."""
        check_is_fitted(self, "backbone_")
        logits = self._run(X, self.backbone_, desc="Classifying images")
        # NaN logits would become the first class for predict, silently.
        check_finite_rows(logits, f"The backbone {self.backbone_.name!r}")
        return logits

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the logits), float32."""
        check_is_fitted(self, "backbone_")
        logits = torch.from_numpy(self.decision_function(X))
        return logits.softmax(dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class name of each image."""
        check_is_fitted(self, "backbone_")
        return self.classes_[self.decision_function(X).argmax(axis=1)]

    def predict_top_k(self, X, k: int = 5):
        """The ``k`` most probable classes of each image.

        Returns
        -------
        labels : ndarray of shape (n_samples, k)
            Class names, most probable first.
        probabilities : ndarray of shape (n_samples, k), float32
        """
        check_is_fitted(self, "backbone_")
        k = min(check_positive_int(k, "k"), len(self.classes_))
        top = torch.from_numpy(self.predict_proba(X)).topk(k, dim=1)
        return self.classes_[top.indices.numpy()], top.values.numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        return tags
