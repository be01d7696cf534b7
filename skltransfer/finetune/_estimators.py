"""FineTuneClassifier and FineTuneRegressor: the scikit-learn face of fine-tuning."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d

from .._docstring import fill_doc
from .._validation import StrOptions
from ..backbones._registry import spec_input_kind
from ._base import BaseFineTune

__all__ = ["FineTuneClassifier", "FineTuneRegressor"]

# contrastive="auto": the contrastive stage runs on texts up to this many
# training samples per class (see benchmarks/bench_few_shot.py).
AUTO_CONTRASTIVE_PER_CLASS = 64


class _FineTuneTags:
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        kind = getattr(self, "input_kind_", None) or spec_input_kind(self.backbone)
        tags.target_tags.multi_output = True
        if kind == "image":
            tags.input_tags.three_d_array = True
        elif kind == "text":
            tags.input_tags.two_d_array = False
            tags.input_tags.string = True
        return tags


@fill_doc
class FineTuneClassifier(_FineTuneTags, ClassifierMixin, BaseFineTune):
    """Fine-tune a pretrained backbone with a new classification head.

    The head is trained with the backbone's last ``unfreeze`` layer groups
    (AdamW, warm-up then cosine learning rates, layer-wise learning-rate
    decay, gradient clipping, optional gradual unfreezing and early stopping
    with the best weights restored). Labels may be of any type; a 2-D binary
    indicator ``y`` trains a multi-label classifier (one sigmoid per label).

    Parameters
    ----------
    {finetune_params}
    class_weight : "balanced", dict or None, default=None
        Weights of the classes in the loss: ``"balanced"`` weighs them
        inversely to their frequency; a dict maps labels to weights (others
        weigh 1). Not for multi-label ``y``.
    contrastive : bool or "auto", default="auto"
        Before the head is fit, train the body's trainable groups on pairs
        of training samples: the cosine similarity of their embeddings is
        regressed on 1 for the same class and 0 for different ones, every
        pair of a batch at once (the idea of SetFit; Tunstall et al., 2022).
        The probe head is then fit on the adapted body. ``"auto"`` does it
        for texts with at most 64 training samples per class, where it
        beats both the probe and SetFit (see
        ``benchmarks/bench_few_shot.py``); ``unfreeze="auto"`` then trains
        every layer group but the token embeddings, all at one learning
        rate (5e-5). Single-label ``y`` only.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (``arange(n_labels)`` for multi-label ``y``).
    contrastive_ : bool
        Whether the contrastive stage ran.
    pair_stage_ : dict or None
        The contrastive stage's ``epochs``, ``steps`` and mean ``pair_loss``;
        None when it did not run.
    {finetune_attributes}

    See Also
    --------
    FineTuneRegressor : The same for continuous targets.
    skltransfer.PretrainedImageFeatures : Frozen features for any estimator.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skltransfer import FineTuneClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = FineTuneClassifier(
    ...     "test_tiny_cnn", image_shape=(8, 8), unfreeze=2, max_epochs=2,
    ...     random_state=0,
    ... )
    >>> clf.fit(X[:100], y[:100]).predict(X[:3]).shape
    (3,)
    >>> clf.predict_proba(X[:3]).shape
    (3, 10)
    >>> len(clf.history_), clf.layer_groups_
    (2, ['stem', 'stages.0', 'stages.1', 'stages.2'])

    A user's module on tabular data (trained from scratch here, so every
    group learns at the same rate), with a two-layer head, in a pipeline:

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32))
    >>> clf = FineTuneClassifier(
    ...     mlp, unfreeze="all", head=(16,), lr=1e-2, lr_decay=1.0, random_state=0
    ... )
    >>> pipe = make_pipeline(StandardScaler(), clf).fit(X[:400], y[:400])
    >>> pipe.score(X[400:600], y[400:600]) > 0.8
    True
    """

    _parameter_constraints = {
        **BaseFineTune._parameter_constraints,
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "contrastive": ["boolean", StrOptions({"auto"})],
    }

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        unfreeze="auto",
        head="linear",
        head_dropout=0.0,
        head_init="probe",
        lr=1e-3,
        lr_decay=0.5,
        weight_decay=0.01,
        unfreeze_schedule=None,
        freeze_batchnorm=True,
        max_epochs="auto",
        batch_size=32,
        lr_schedule="cosine",
        warmup_fraction=0.1,
        max_grad_norm=1.0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=5,
        augmentation=None,
        class_weight=None,
        image_size=None,
        crop_fraction="auto",
        background="white",
        image_shape=None,
        value_range="auto",
        max_length=None,
        cache_frozen="auto",
        cache=None,
        contrastive="auto",
        interpolation="auto",
        random_state=None,
        device="auto",
        precision="auto",
        engine="auto",
        verbose="auto",
        warm_start=False,
    ):
        self.backbone = backbone
        self.unfreeze = unfreeze
        self.head = head
        self.head_dropout = head_dropout
        self.head_init = head_init
        self.lr = lr
        self.lr_decay = lr_decay
        self.weight_decay = weight_decay
        self.unfreeze_schedule = unfreeze_schedule
        self.freeze_batchnorm = freeze_batchnorm
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.warmup_fraction = warmup_fraction
        self.max_grad_norm = max_grad_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augmentation = augmentation
        self.class_weight = class_weight
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.background = background
        self.image_shape = image_shape
        self.value_range = value_range
        self.max_length = max_length
        self.cache_frozen = cache_frozen
        self.cache = cache
        self.contrastive = contrastive
        self.interpolation = interpolation
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.engine = engine
        self.verbose = verbose
        self.warm_start = warm_start

    # -- targets ---------------------------------------------------------------

    def _encode_targets(self, y, reset: bool) -> torch.Tensor:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y) == "multilabel-indicator"
        if y.ndim == 2 and not multilabel:
            raise ValueError(
                "FineTuneClassifier supports 1-D labels and 2-D binary indicator "
                f"matrices (multi-label), not {type_of_target(y)} targets."
            )
        classes = np.arange(y.shape[1]) if multilabel else np.unique(y)
        if not multilabel and len(classes) < 2:
            raise ValueError(
                "FineTuneClassifier needs at least two classes in y; got one "
                f"class: {classes.tolist()}."
            )
        if reset:
            self.classes_, self._multilabel = classes, multilabel
        elif multilabel != self._multilabel or not np.array_equal(
            classes, self.classes_
        ):
            raise ValueError(
                "warm_start can only be used where y has the same classes as in "
                f"the previous call to fit: {self.classes_.tolist()}, got "
                f"{classes.tolist()}."
            )
        if multilabel:
            # A copy: y may be read-only (a pandas DataFrame's values), which
            # torch can only wrap with a warning.
            return torch.from_numpy(np.array(y, dtype=np.float32))
        return torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.long)

    def _n_outputs(self, targets) -> int:
        return len(self.classes_)

    def _class_weights(self, targets):
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            weights = compute_class_weight(
                "balanced", classes=np.arange(len(self.classes_)), y=targets.numpy()
            )
        else:
            known = set(self.classes_.tolist())
            unknown = [c for c in self.class_weight if c not in known]
            if unknown:
                raise ValueError(
                    f"class_weight names classes that are not in y: {unknown}; "
                    f"the classes are {sorted(known, key=str)}."
                )
            weights = [self.class_weight.get(c, 1.0) for c in self.classes_.tolist()]
        return torch.as_tensor(np.asarray(weights, dtype=np.float32))

    def _probe_task(self) -> str:
        return "multilabel" if self._multilabel else "multiclass"

    def _fold_labels(self, targets):
        return None if self._multilabel else targets.numpy()

    def _resolve_contrastive(self, targets) -> bool:
        """The contrastive stage runs on texts with at most
        ``AUTO_CONTRASTIVE_PER_CLASS`` training samples per class on average
        ("auto"), or when asked for; never for multi-label ``y``."""
        if self._multilabel:
            if self.contrastive is True:
                raise ValueError("contrastive=True needs single-label y.")
            return False
        if self.contrastive != "auto":
            return bool(self.contrastive)
        per_class = len(targets) / len(self.classes_)
        return self.input_kind_ == "text" and per_class <= AUTO_CONTRASTIVE_PER_CLASS

    def _make_criterion(self, targets) -> torch.nn.Module:
        if self._multilabel and self.class_weight is not None:
            raise ValueError("class_weight is not supported with multi-label y.")
        if self._multilabel:
            return torch.nn.BCEWithLogitsLoss()
        return torch.nn.CrossEntropyLoss(weight=self._class_weights(targets))

    def _stratify(self, targets, n_valid):
        if self._multilabel:
            return None
        counts = np.bincount(targets.numpy())
        counts = counts[counts > 0]
        if (
            counts.min() < 2
            or n_valid < len(counts)
            or len(targets) - n_valid < len(counts)
        ):
            return None
        return targets.numpy()

    def _score_outputs(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return float(self._sample_scores(out, y).mean())

    def _sample_scores(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """1 for each sample predicted right (every label, for multi-label)."""
        if self._multilabel:
            return ((out > 0).float() == y).all(dim=1).float()
        return (out.argmax(dim=1) == y).float()

    # -- predict ---------------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities (softmax; one sigmoid per label for multi-label).

        Parameters
        ----------
        X : array-like, images or texts
            As in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float32
        """
        activation = torch.sigmoid if self._is_multilabel() else _softmax
        return self._forward_all(X, activation)

    def predict(self, X):
        """Predicted labels (from ``classes_``; an indicator matrix for multi-label).

        Parameters
        ----------
        X : array-like, images or texts
            As in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        proba = self.predict_proba(X)
        if self._multilabel:
            return (proba >= 0.5).astype(int)
        return self.classes_[proba.argmax(axis=1)]

    def _is_multilabel(self) -> bool:
        return getattr(self, "_multilabel", False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


@fill_doc
class FineTuneRegressor(_FineTuneTags, RegressorMixin, BaseFineTune):
    """Fine-tune a pretrained backbone with a new regression head.

    The same training as :class:`FineTuneClassifier`, for continuous single-
    or multi-output targets (mean squared error on standardised targets;
    :meth:`score` is R²).

    Parameters
    ----------
    {finetune_params}

    Attributes
    ----------
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        The targets are standardised with these for training.
    {finetune_attributes}

    See Also
    --------
    FineTuneClassifier : The same for class labels.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from skltransfer import FineTuneRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)).astype("float32")
    >>> y = X @ np.arange(5.0) + 3.0
    >>> mlp = nn.Sequential(nn.Linear(5, 32), nn.ReLU())
    >>> reg = FineTuneRegressor(mlp, unfreeze="all", lr=1e-2, max_epochs=30,
    ...                         random_state=0)
    >>> reg.fit(X, y).score(X, y) > 0.9
    True
    """

    _y_numeric = True

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        unfreeze="auto",
        head="linear",
        head_dropout=0.0,
        head_init="probe",
        lr=1e-3,
        lr_decay=0.5,
        weight_decay=0.01,
        unfreeze_schedule=None,
        freeze_batchnorm=True,
        max_epochs="auto",
        batch_size=32,
        lr_schedule="cosine",
        warmup_fraction=0.1,
        max_grad_norm=1.0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=5,
        augmentation=None,
        image_size=None,
        crop_fraction="auto",
        background="white",
        image_shape=None,
        value_range="auto",
        max_length=None,
        cache_frozen="auto",
        cache=None,
        interpolation="auto",
        random_state=None,
        device="auto",
        precision="auto",
        engine="auto",
        verbose="auto",
        warm_start=False,
    ):
        self.backbone = backbone
        self.unfreeze = unfreeze
        self.head = head
        self.head_dropout = head_dropout
        self.head_init = head_init
        self.lr = lr
        self.lr_decay = lr_decay
        self.weight_decay = weight_decay
        self.unfreeze_schedule = unfreeze_schedule
        self.freeze_batchnorm = freeze_batchnorm
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.warmup_fraction = warmup_fraction
        self.max_grad_norm = max_grad_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augmentation = augmentation
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.background = background
        self.image_shape = image_shape
        self.value_range = value_range
        self.max_length = max_length
        self.cache_frozen = cache_frozen
        self.cache = cache
        self.interpolation = interpolation
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.engine = engine
        self.verbose = verbose
        self.warm_start = warm_start

    def _encode_targets(self, y, reset: bool) -> torch.Tensor:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y2 = y.reshape(len(y), -1)
        if reset:
            self.n_outputs_ = y2.shape[1]
            self._single_output = y.ndim == 1
            self.y_mean_ = y2.mean(axis=0)
            scale = y2.std(axis=0)
            self.y_scale_ = np.where(scale > 0, scale, 1.0)
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(
                f"warm_start needs y with {self.n_outputs_} outputs as in the "
                f"previous call to fit, got {y2.shape[1]}."
            )
        return torch.as_tensor((y2 - self.y_mean_) / self.y_scale_, dtype=torch.float32)

    def _n_outputs(self, targets) -> int:
        return self.n_outputs_

    def _probe_task(self) -> str:
        return "regression"

    def _make_criterion(self, targets) -> torch.nn.Module:
        return torch.nn.MSELoss()

    def _sample_scores(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Minus the squared error of each sample (standardised targets)."""
        return -self._sample_losses(out, y)

    def _score_outputs(self, out: torch.Tensor, y: torch.Tensor) -> float:
        residual = ((y - out) ** 2).sum(dim=0)
        total = ((y - y.mean(dim=0)) ** 2).sum(dim=0)
        r2 = torch.where(total > 0, 1 - residual / total.clamp_min(1e-12), 0.0)
        return float(r2.mean())

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like, images or texts
            As in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        out = self._forward_all(X).astype(np.float64) * self.y_scale_ + self.y_mean_
        return out.ravel() if self._single_output else out
