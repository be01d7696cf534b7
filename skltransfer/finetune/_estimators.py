"""FineTuneClassifier and FineTuneRegressor: the scikit-learn face of fine-tuning."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d

from .._validation import StrOptions
from ..backbones._registry import spec_input_kind
from ._base import BaseFineTune

__all__ = ["FineTuneClassifier", "FineTuneRegressor"]

_PARAMS = """backbone : str, BackboneSpec, Module or fitted estimator, \
default="efficientnet_lite0"
        The pretrained model. A registered image model or text encoder
        (:func:`skltransfer.backbones.list_backbones`), ``"torchvision:NAME"``,
        ``"timm:NAME"``, ``"hf:HUB_ID"``, a spec such as
        :class:`~skltransfer.backbones.HFTextBackbone`, a ``torch.nn.Module``
        taking numeric arrays (e.g. an MLP for tabular data), or a fitted
        FineTuneClassifier/FineTuneRegressor (a *source model*), best wrapped
        as ``sklearn.frozen.FrozenEstimator(source)`` so that it survives
        ``clone`` in ``GridSearchCV`` and ``cross_val_score``
        (``source.to_backbone_spec()`` does too). What ``X`` holds follows
        from it: images, strings or numeric arrays.
    unfreeze : int, "all" or "auto", default="auto"
        How many of the backbone's last layer groups train along with the new
        head: 0 trains the head alone on a frozen body, ``"all"`` fine-tunes
        everything. Values above the number of groups raise a ValueError
        naming the maximum. ``"auto"`` depends on what ``X`` holds: 1 for
        image backbones; 0 for text encoders (on a few hundred to a few
        thousand texts, training the top layer of a sentence encoder lost to
        its frozen embedding out of domain, at about 50 times the cost);
        ``"all"`` for a module on numeric arrays (typically a small source
        network, whose layers all adapt at layer-wise rates). See
        ``benchmarks/bench_small_data.py``.
    head : "linear" or tuple of int, default="linear"
        The new head: one linear layer, or an MLP with these hidden sizes
        (ReLU between layers). With ``unfreeze=0`` an MLP head trained on a
        frozen body combines a pretrained model with a new network.
    head_dropout : float, default=0.0
        Dropout before each layer of the head.
    lr : float, default=1e-3
        Peak learning rate of the head (AdamW).
    lr_decay : float, default=0.5
        Layer-wise decay: the group at depth ``d`` below the head learns at
        ``lr * lr_decay**d`` (discriminative learning rates); 1.0 disables it.
    weight_decay : float, default=0.01
        AdamW weight decay of weight matrices and kernels (not of biases and
        normalisation parameters).
    unfreeze_schedule : int or None, default=None
        Gradual unfreezing: train the head alone for this many epochs, then
        unfreeze one more group (top first) every this many epochs, up to
        ``unfreeze``. None unfreezes them all from the start.
    freeze_batchnorm : bool, default=True
        Frozen groups run in inference mode, so their BatchNorm running
        statistics stay as pretrained. False lets them adapt to the new data
        (their weights stay frozen).
    head_init : {"probe", "random"}, default="probe"
        How the head's output layer starts. ``"probe"`` fits it first as a
        convex linear model on the frozen features of the training split
        (multinomial logistic regression for classes, one logistic regression
        per label for multi-label targets, ridge for regression), with the
        regularisation chosen by cross-validation, then fine-tunes from there
        (LP-FT). An MLP head's output layer is probed on its last hidden layer
        at initialisation. ``"random"`` starts from PyTorch's random
        initialisation.
    max_epochs : int or "auto", default="auto"
        Number of passes over the training data (fewer with early stopping).
        ``"auto"`` trains for at least 300 optimiser steps and at least 10
        epochs: many epochs on small data, 10 on large data. 0 (with
        ``head_init="probe"``) keeps the head start alone, a linear probe.
    batch_size : int, default=32
        Samples per training step and per prediction batch.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        After the warm-up, decay the learning rates to zero along a cosine, or
        keep them constant.
    warmup_fraction : float, default=0.1
        Fraction of the training steps over which learning rates rise
        linearly from near zero.
    max_grad_norm : float or None, default=1.0
        Clip the gradient norm of the trainable parameters; None disables it.
    early_stopping : bool or "auto", default="auto"
        Hold out ``validation_fraction`` of the training data (stratified for
        classifiers), stop when the validation loss has not improved for
        ``n_iter_no_change`` epochs and restore the best weights. ``"auto"``
        enables it from 10,000 training samples.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=5
        Epochs without a better validation loss before training stops.
    augmentation : None, "light", "strong", "noise", GaussianNoise or callable, \
default=None
        Random transformations of the training batches only (never of
        validation or prediction batches); see :mod:`skltransfer.augmentation`.
    image_size : int or None, default=None
        Side of the square image crop; None uses the size the weights were
        trained at. Image backbones only.
    crop_fraction : "auto" or float in (0, 1], default="auto"
        The share of each image's shorter side that the centre crop keeps;
        ``"auto"`` follows the weights' convention (0.875 for most ImageNet
        models), 1.0 keeps the whole shorter side. Image backbones only.
    background : str or (int, int, int), default="white"
        The colour transparent pixels are composited onto (a colour name, a
        hex string or an RGB triple in 0..255). Image backbones only.
    image_shape : tuple of int or None, default=None
        Shape (H, W) or (H, W, C) of each row when ``X`` is a 2-D array of
        flattened images, e.g. ``(8, 8)`` for ``load_digits().data``.
    value_range : "auto" or (float, float), default="auto"
        How numeric, non-uint8 pixel values map to [0, 1]; ``"auto"`` learns
        it from the training images.
    max_length : int or None, default=None
        Tokens kept per text; None uses the encoder's default. Text only.
    cache_frozen : bool or "auto", default="auto"
        When the first layer groups stay frozen for the whole fit, there is no
        augmentation and ``freeze_batchnorm`` is True, compute their outputs
        once per fit and train the rest on them (with ``unfreeze=0``, the
        backbone's features; for texts, the token states at the boundary and
        their attention masks); the results equal those of the plain path.
        The activations stay in memory up to a quarter of the available
        memory and go to a memory-mapped temporary file beyond.
        ``"auto"`` caches whenever it can and warns
        (:class:`~skltransfer.exceptions.FrozenCacheWarning`) with the reason
        when frozen groups must run at every epoch; True raises instead;
        False never caches.
    random_state : int, RandomState instance or None, default=None
        Seeds the head's initialisation, the validation split, shuffling,
        dropout and augmentation. The same seed gives the same predictions on
        the CPU. The global torch and numpy random states are left untouched.
    device : str or torch.device, default="auto"
        Where training and prediction run; ``"auto"`` picks CUDA, then MPS,
        then the CPU.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Autocast precision of the forward passes; ``"auto"`` is bf16 (or fp16
        with gradient scaling) on a GPU and fp32 on the CPU.
    verbose : int, default=0
        Show a progress bar over epochs with the losses when positive.
    warm_start : bool, default=False
        Continue training the fitted network (and optimiser state) for
        ``max_epochs`` more epochs instead of starting again; ``history_``
        grows. Parameters that define the network (backbone, head) are then
        ignored. Only a fit with ``warm_start=True`` keeps the optimiser
        state; otherwise a later warm start begins with fresh moments."""

_ATTRIBUTES = """module_ : FineTuneNetwork
        The trained network: ``module_.backbone`` (a
        :class:`~skltransfer.backbones.Backbone`) and ``module_.head``.
    optimizer_ : torch.optim.AdamW
        The optimiser; its state (the moments) is kept only with
        ``warm_start=True``.
    criterion_ : torch.nn.Module
        The loss.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_loss``, ``valid_loss`` and
        ``valid_score`` (with early stopping), ``lr`` (of the head, at the end
        of the epoch), ``n_unfrozen`` and ``seconds``.
    n_iter_ : int
        Epochs trained (over all calls to ``fit`` with ``warm_start``).
    n_steps_ : int
        Optimiser steps taken (over all calls to ``fit`` with ``warm_start``).
    head_start_ : dict
        With ``head_init="probe"``: the regularisation the probe chose
        (``{"C": ...}`` for classifiers, ``{"alpha": ...}`` for regressors).
    best_epoch_ : int
        The epoch whose weights were kept (0: the head start, when training
        did not improve the validation loss).
    layer_groups_ : list of str
        The backbone's layer groups, stem first.
    n_trainable_groups_ : int
        How many of them trained (``unfreeze`` resolved, "auto" included).
    cached_groups_ : int
        How many frozen groups ran once per fit instead of at every epoch
        (see ``cache_frozen``); 0 when the last fit took the plain path.
    cache_status_ : str
        Where the last fit kept the frozen groups' outputs: ``"memory"``,
        ``"disk"`` (a memory-mapped file), ``"off"`` (``cache_frozen=False``),
        ``"nothing frozen"``, or ``"plain: "`` followed by the reason the
        frozen groups ran at every epoch.
    input_kind_ : {"tensor", "image", "text"}
        What ``X`` holds, as decided by the backbone.
    preprocessing_ : ImagePreprocessing
        Image backbones only: resize, crop and normalisation.
    value_range_ : tuple of float or None
        Image backbones only: pixel value range learned from numeric images.
    n_features_in_ : int
        Number of columns of a 2-D numeric ``X``.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame ``X``."""


def _document(cls):
    cls.__doc__ = cls.__doc__.replace("{params}", _PARAMS).replace(
        "{attributes}", _ATTRIBUTES
    )
    return cls


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


@_document
class FineTuneClassifier(_FineTuneTags, ClassifierMixin, BaseFineTune):
    """Fine-tune a pretrained backbone with a new classification head.

    The head is trained with the backbone's last ``unfreeze`` layer groups
    (AdamW, warm-up then cosine learning rates, layer-wise learning-rate
    decay, gradient clipping, optional gradual unfreezing and early stopping
    with the best weights restored). Labels may be of any type; a 2-D binary
    indicator ``y`` trains a multi-label classifier (one sigmoid per label).

    Parameters
    ----------
    {params}
    class_weight : "balanced", dict or None, default=None
        Weights of the classes in the loss: ``"balanced"`` weighs them
        inversely to their frequency; a dict maps labels to weights (others
        weigh 1). Not for multi-label ``y``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (``arange(n_labels)`` for multi-label ``y``).
    {attributes}

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
        random_state=None,
        device="auto",
        precision="auto",
        verbose=0,
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
        self.random_state = random_state
        self.device = device
        self.precision = precision
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
        if self._multilabel:
            return float(((out > 0).float() == y).all(dim=1).float().mean())
        return float((out.argmax(dim=1) == y).float().mean())

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


@_document
class FineTuneRegressor(_FineTuneTags, RegressorMixin, BaseFineTune):
    """Fine-tune a pretrained backbone with a new regression head.

    The same training as :class:`FineTuneClassifier`, for continuous single-
    or multi-output targets (mean squared error on standardised targets;
    :meth:`score` is R²).

    Parameters
    ----------
    {params}

    Attributes
    ----------
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        The targets are standardised with these for training.
    {attributes}

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
        random_state=None,
        device="auto",
        precision="auto",
        verbose=0,
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
        self.random_state = random_state
        self.device = device
        self.precision = precision
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
