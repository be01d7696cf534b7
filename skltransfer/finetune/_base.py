"""What FineTuneClassifier and FineTuneRegressor share: fit, initialise, predict.

``fit`` validates the parameters and the data, then (inside a forked, seeded
torch RNG) builds a new :class:`~._network.FittedNetwork` (or continues the
fitted one, for a warm start) and ``criterion_``, splits off the validation
data and runs the training loop of :mod:`._loop` on it. The estimator takes
the new network only when the fit succeeds; ``module_``, ``optimizer_`` and
``history_`` read it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from torch import nn

from .._device import (
    SMALL_STEP,
    module_device,
    on_module_device,
    resolve_precision,
    step_threads,
)
from .._engines import check_engine, engine_spec
from .._inference import check_finite_rows, n_steps_per_epoch, run_inputs
from .._malloc import release_freed_memory
from .._validation import (
    FittedState,
    Interval,
    StrOptions,
    check_is_fitted,
    check_sample_weight,
    engine_constraints,
    fit_context,
    image_input_constraints,
    runtime_constraints,
    text_input_constraints,
)
from ..augmentation import make_augmentation
from ..backbones import ModuleBackbone, TextBackbone, TrainedBackbone, get_spec
from ..base import TorchModelMixin, WeightsReference, cpu_copy
from ..caching import CACHE_CONSTRAINT
from ..freezing import (
    freeze,
    layerwise_param_groups,
    resolve_unfreeze,
    trainable_groups,
)
from ..inputs.batches import TensorInputs
from ..inputs.validation import InputsMixin
from ._contrastive import CONTRASTIVE_LR, train_on_pairs
from ._frozen_activations import FrozenActivationsConfig, frozen_activations
from ._heads import FineTuneNetwork, build_head, check_head
from ._interpolation import choose_interpolation, interpolate, may_cross_fit
from ._loop import FitContext, TrainingLoopMixin
from ._network import FittedNetwork, load_fresh
from ._probe import adapt_batchnorm, fit_probe, head_features, set_output_layer

__all__ = ["BaseFineTune"]

# Early stopping is switched on by "auto" from this many training samples.
AUTO_EARLY_STOPPING = 10_000
# unfreeze="auto", by input kind: text encoders keep their embedding (training
# their top layer lost out of domain on a few thousand texts); image backbones
# train their top stage, and their top two from AUTO_DEEPER_IMAGES training
# images (see the docstring's figures); a user's own module on numeric arrays,
# typically a small source network, trains every layer (discriminative rates).
AUTO_UNFREEZE = {"text": 0, "image": 1, "tensor": "all"}
# unfreeze="auto" with the contrastive stage: every layer group but the
# first (the token embeddings of a text encoder). Training only the top two
# blocks of MiniLM on pairs left it level with its probe on movie snippets at
# 8 per class; the whole stack of blocks gained 1.5 points.
AUTO_DEEPER_IMAGES = 1_000
# max_epochs="auto": at least this many optimiser steps and this many epochs.
MIN_STEPS = 300
MIN_EPOCHS = 10


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed torch inside a fork of its random state, restored on exit."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class BaseFineTune(InputsMixin, TrainingLoopMixin, TorchModelMixin, BaseEstimator):
    """Fit/predict machinery of the fine-tuning estimators (not public)."""

    _parameter_constraints: dict = {
        "backbone": "no_validation",  # resolved by get_spec in fit
        "unfreeze": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"all", "auto"}),
        ],
        "head": [StrOptions({"linear"}), tuple, list],
        "head_dropout": [Interval(Real, 0, 1, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "unfreeze_schedule": [Interval(Integral, 1, None, closed="left"), None],
        "freeze_batchnorm": ["boolean"],
        "max_epochs": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "head_init": [StrOptions({"probe", "random"})],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "warmup_fraction": [Interval(Real, 0, 1, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "augmentation": "no_validation",  # checked by make_augmentation
        **image_input_constraints(),
        **text_input_constraints(),
        "cache_frozen": ["boolean", StrOptions({"auto"})],
        "cache": CACHE_CONSTRAINT,
        "interpolation": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "random_state": ["random_state"],
        **runtime_constraints(measured_batch_size=False),
        **engine_constraints(),
        "warm_start": ["boolean"],
    }

    # -- fit -------------------------------------------------------------------

    @fit_context
    def fit(self, X, y, sample_weight=None):
        """Fine-tune the backbone and a new head on ``(X, y)``.

        Parameters
        ----------
        X : array-like, images or texts
            What the backbone takes: a numeric array for a module backbone,
            images for an image backbone, strings for a text encoder.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the training and validation losses and
            in the probe head start (multiplying ``class_weight``). Only their
            ratios count: they are rescaled to a mean of 1. None weighs every
            sample 1.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        check_head(self.head)
        check_engine(self.engine, self.device, self.precision)
        if self.max_epochs == 0 and self.head_init != "probe":
            raise ValueError(
                "max_epochs=0 trains nothing; it is only meaningful with "
                "head_init='probe' (the head start alone, a linear probe)."
            )
        # Errors, divergence and KeyboardInterrupt alike: a fit completes or
        # leaves the estimator as it was (fit_context restores _fitted_state()).
        warm = bool(self.warm_start) and hasattr(self, "module_")
        try:
            self._fit(X, y, sample_weight)
        except FloatingPointError as exc:
            if not warm:
                self._check_pretrained_outputs(X, exc)
            raise
        finally:
            # The fit's peak is freed but stays in the C heaps: give it back,
            # or every fit in a worker process raises its size (see _malloc).
            release_freed_memory()
        return self

    def _fit(self, X, y, sample_weight=None):
        warm = bool(self.warm_start) and hasattr(self, "module_")
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        device = self._device()
        with _seeded(seed, device):
            # Inside the seeded block: a backbone may be randomly initialised.
            backbone, reference = (None, None) if warm else self._load_pretrained()
            inputs, y = self._validate_inputs(X, y, reset=not warm, backbone=backbone)
            targets = self._encode_targets(y, reset=not warm)
            if len(targets) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 training samples; got "
                    f"n_samples = {len(targets)}."
                )
            data = (inputs, targets, check_sample_weight(sample_weight, len(targets)))
            if warm:
                self._fitting = self._network.continued()
                if self._fitting.optimizer is None:
                    # Unpickled without optimiser state (pickled with
                    # warm_start=False).
                    self._fitting.optimizer = self._make_optimizer(self.module_, device)
                self._fit_network(data, device, seed, head_start=False)
            else:
                self._fit_from_scratch(backbone, reference, data, device, seed)
        self._adopt(self.__dict__.pop("_fitting"))

    def _fit_from_scratch(self, backbone, reference, data, device, seed):
        inputs, targets, _ = data
        self._initialize(backbone, inputs, targets, device, reference=reference)
        # The folds of the cross-fit start from the pretrained weights too
        # (building the network changed none of them). A body that does not
        # train has nothing to choose, and is not copied.
        trains = self.n_trainable_groups_ or self.contrastive_
        cross = trains and may_cross_fit(self, len(targets))
        pristine = copy.deepcopy(self.module_.backbone).cpu() if cross else None
        alpha, self.cross_fit_ = choose_interpolation(
            self, pristine, data, device, seed
        )
        start = self._fit_network(
            data, device, seed, head_start=self.head_init == "probe"
        )
        interpolate(self.module_, start, alpha)
        self.interpolation_ = alpha

    def _adopt(self, network: FittedNetwork) -> None:
        """Take ``network`` as the fitted one: the end of a successful fit.
        A network pickled by reference and not loaded since is replaced too."""
        self.__dict__.pop("_module_ref", None)
        self._network = network

    # -- the fitted network, read through the usual attributes ------------------

    def _live_network(self) -> FittedNetwork:
        """The network being fitted during a fit, else the fitted one."""
        fitting = self.__dict__.get("_fitting")
        return self._network if fitting is None else fitting

    @property
    def module_(self):
        return self._live_network().module

    @property
    def optimizer_(self):
        optimizer = self._live_network().optimizer
        if optimizer is None:  # unpickled without it: never kept
            raise AttributeError("optimizer_")
        return optimizer

    @property
    def history_(self):
        return self._live_network().history

    def _fit_network(self, data, device, seed, *, head_start: bool) -> dict:
        """Train ``module_`` on ``data`` (inputs, targets, weights); returns
        the state training started from (see :meth:`_train`)."""
        ctx = self._initialize_fit(data[0], device, seed, head_start=head_start)
        train, valid = self._split(*data, seed)
        return self._train(ctx, train, valid)

    def _head_start_is_final(self) -> bool:
        """Whether the probe head start is the end of the fit (``max_epochs``
        "auto"): a linear head on a body that stays frozen while the head
        trains (none of it trains, or the contrastive stage trained it), on
        inputs that training would not change (no augmentation). The probe
        then already is the regularised optimum of the loss that training
        would minimise, with the regularisation chosen by cross-validation;
        more epochs only move the head away from it (on few-shot texts they
        lost 0.3 to 0.9 point)."""
        return (
            self.max_epochs == "auto"
            and self.head == "linear"
            and self.augmentation is None
            and (self.n_trainable_groups_ == 0 or self.contrastive_)
        )

    def _fold_labels(self, targets):
        """Class indices to stratify the cross-fit by, or None."""
        return None

    def _resolve_contrastive(self, targets) -> bool:
        """Whether the contrastive stage runs (classifiers only)."""
        return False

    def _load_pretrained(self) -> tuple:
        """A fresh copy of the pretrained backbone and the reference of its
        weights: pickles hold what training changed and that reference for
        the rest."""
        spec = get_spec(self.backbone)
        backbone = load_fresh(spec)
        return backbone, WeightsReference.of(spec, backbone)

    def _load_backbone(self):
        """A fresh copy of the pretrained backbone."""
        return self._load_pretrained()[0]

    def _initialize(self, backbone, inputs, targets, device, *, reference=None):
        """Build the network to fit (module and optimiser, an empty history)
        and ``criterion_``."""
        module = self._initialize_module(backbone, inputs, targets).to(device)
        self._fitting = FittedNetwork(
            module,
            self._make_optimizer(module, device),
            reference=reference,
        )
        self.criterion_ = self._make_criterion(targets)
        self.n_iter_ = 0
        self.n_steps_ = 0
        self.pair_stage_ = None

    def _initialize_module(self, backbone, inputs, targets) -> FineTuneNetwork:
        example = inputs.example()
        if isinstance(backbone, TextBackbone):
            # Every text runs; the width is the encoder's (a pass over two
            # texts cost a sixth of a frozen fit on 16).
            n_features = backbone.hidden_size
        else:
            with torch.no_grad():  # first, so that lazy modules get their shapes
                try:
                    probe = on_module_device(backbone, example)
                    n_features = backbone.forward_features(probe).shape[1]
                except RuntimeError as exc:
                    raise ValueError(
                        f"The backbone {backbone.name!r} cannot run on X: {exc} "
                        f"(a batch of X has shape {_shape(example)})."
                    ) from exc
        groups = backbone.layer_groups(example)
        self.layer_groups_ = [g.name for g in groups]
        self.contrastive_ = self._resolve_contrastive(targets)
        self.n_trainable_groups_ = self._resolve_unfreeze(
            len(groups), backbone, len(inputs)
        )
        if self.contrastive_ and self.n_trainable_groups_ == 0:
            if self.contrastive is True:
                raise ValueError(
                    "contrastive=True trains the body on pairs, but unfreeze=0 "
                    "freezes all of it: set unfreeze to 1 or more."
                )
            self.contrastive_ = False
        head = build_head(
            self.head,
            n_features,
            self._n_outputs(targets),
            self.head_dropout,
            unit_length=self.input_kind_ == "text",
        )
        return FineTuneNetwork(backbone, head)

    def _make_optimizer(self, module, device) -> torch.optim.Optimizer:
        """AdamW over the head and the trainable layer groups of ``module``."""
        backbone = module.backbone
        groups = layerwise_param_groups(
            module.head.parameters(),
            backbone.group_parameters(),
            self.n_trainable_groups_,
            lr=self.lr,
            lr_decay=self.lr_decay,
            weight_decay=self.weight_decay,
        )
        kwargs = {"fused": True} if device.type in ("cpu", "cuda") else {}
        return torch.optim.AdamW(groups, lr=self.lr, **kwargs)

    def _initialize_fit(self, inputs, device, seed, *, head_start) -> FitContext:
        """The per-fit context: freezing, precision, schedule."""
        backbone = self.module_.backbone
        self._fitting.to(device)
        self.criterion_.to(device)
        self._check_warm_start_unfreeze(backbone, len(inputs))
        for group in self.optimizer_.param_groups:
            group["base_lr"] = self.lr * self.lr_decay ** group["depth"]
        group_params = backbone.group_parameters()
        freeze(group_params, self.n_trainable_groups_)
        self._remember_trained(backbone, group_params)
        dtype = resolve_precision(self.precision, device)
        # fp16 needs loss scaling against underflowing gradients; bf16 does not.
        scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        n_train = len(inputs) - self._n_validation(len(inputs))
        n_epochs = self._n_epochs(n_train)
        if head_start and self._head_start_is_final():
            n_epochs = 0
        steps = n_epochs * n_steps_per_epoch(n_train, self.batch_size)
        return FitContext(
            device=device,
            dtype=dtype,
            groups=backbone.layer_groups(),
            group_params=group_params,
            n_trainable=self.n_trainable_groups_,
            n_epochs=n_epochs,
            total_steps=steps,
            warmup_steps=int(self.warmup_fraction * steps),
            head_start=head_start,
            scaler=scaler,
            rng=np.random.default_rng(seed),
            verbose=self.verbose,
        )

    def _remember_trained(self, backbone, group_params) -> None:
        """Record the backbone entries this fit trains, adding to those of
        earlier fits: a pickle by reference carries all of them, also after a
        warm start that trains fewer groups than an earlier fit did."""
        names = {id(p): name for name, p in backbone.named_parameters()}
        top = trainable_groups(group_params, self.n_trainable_groups_)
        network = self._fitting
        network.trained |= {names[id(p)] for ps in top for p in ps}

    def _n_epochs(self, n_train: int) -> int:
        """Epochs of this fit: ``max_epochs``, or with "auto" enough epochs for
        ``MIN_STEPS`` optimiser steps and at least ``MIN_EPOCHS``."""
        if self.max_epochs != "auto":
            return int(self.max_epochs)
        per_epoch = n_steps_per_epoch(n_train, self.batch_size)
        return max(MIN_EPOCHS, math.ceil(MIN_STEPS / per_epoch))

    def _resolve_unfreeze(self, n_groups: int, backbone, n_samples: int) -> int:
        """``unfreeze`` as a number of groups; "auto" depends on the input kind
        and, for images, on the number of training samples (see the class
        docstring)."""
        unfreeze = self.unfreeze
        if unfreeze == "auto":
            # A kind without its own default trains every layer, as arrays do.
            unfreeze = AUTO_UNFREEZE.get(self.input_kind_, "all")
            if self.contrastive_:
                unfreeze = max(1, n_groups - 1)
            if self.input_kind_ == "image" and n_samples >= AUTO_DEEPER_IMAGES:
                unfreeze = 2
            unfreeze = n_groups if unfreeze == "all" else min(unfreeze, n_groups)
        return resolve_unfreeze(unfreeze, n_groups, name=f"backbone {backbone.name!r}")

    def _check_warm_start_unfreeze(self, backbone, n_samples: int) -> None:
        n = self._resolve_unfreeze(len(self.layer_groups_), backbone, n_samples)
        if n != self.n_trainable_groups_:
            # More (or fewer) groups train than the optimiser was built for.
            self.n_trainable_groups_ = n
            device = module_device(self.module_)
            self._fitting.optimizer = self._make_optimizer(self.module_, device)

    # -- data split and training ------------------------------------------------

    def _early_stopping_on(self, n: int) -> bool:
        if self.early_stopping == "auto":
            return n >= AUTO_EARLY_STOPPING
        return bool(self.early_stopping) and n >= 2

    def _n_validation(self, n: int) -> int:
        if not self._early_stopping_on(n) or n < 4:
            return 0
        return min(n - 2, max(1, math.ceil(self.validation_fraction * n)))

    def _split(self, inputs, targets, weights, seed):
        """(inputs, targets, weights) for training and validation (None
        without early stopping); ``weights`` may be None."""
        n = len(inputs)
        n_valid = self._n_validation(n)
        if n_valid == 0:
            return (inputs, targets, weights), None
        stratify = self._stratify(targets, n_valid)
        train_idx, valid_idx = train_test_split(
            np.arange(n), test_size=n_valid, random_state=seed, stratify=stratify
        )

        def part(idx):
            rows = torch.from_numpy(idx)
            w = None if weights is None else weights[rows]
            return inputs.subset(idx), targets[rows], w

        return part(train_idx), part(valid_idx)

    def _stratify(self, targets, n_valid):
        return None

    def _train(self, ctx: FitContext, train, valid):
        inputs, y, weights = (_on(ctx.device, part) for part in train)
        valid_weights = None
        if valid is not None:
            *valid, valid_weights = (_on(ctx.device, part) for part in valid)
        ctx = dataclasses.replace(
            ctx,
            weights=weights,
            valid_weights=valid_weights,
            augment=self._augmentation(inputs),
        )
        # Stored activations read images once, so they are decoded into
        # memory for the whole fit only when the activations are not stored.
        config = FrozenActivationsConfig(
            self.cache_frozen,
            self.batch_size,
            self.freeze_batchnorm,
            self.cache,
            self._frozen_engine(ctx),
        )
        stored = frozen_activations(self.module_, config, ctx, inputs, valid)
        with stored as (inputs, valid, frozen):
            self.cached_groups_ = frozen.cached_groups
            self.cache_status_ = frozen.status
            inputs = self._prepare_for_training(inputs, ctx.device)
            if valid is not None:
                valid = (self._prepare_for_training(valid[0], ctx.device), valid[1])
            if ctx.head_start:
                self._head_start(ctx, inputs, y)
            start = self._changed_state_copy()
            if self.contrastive_ and ctx.head_start:
                self._pair_stage(ctx, inputs, y)
                self._head_start(ctx, inputs, y)
            with step_threads(self._step_work(ctx), ctx.device):
                self._fit_loop(ctx, inputs, y, *(valid or (None, None)))
        self.n_steps_ += ctx.progress.step
        return start

    def _frozen_engine(self, ctx):
        """The engine of the pass over the frozen layer groups (see
        :mod:`skltransfer._engines`), or None for torch. ``"auto"`` takes one
        for images, where the pass ran 4.5 times faster on OpenVINO
        (EfficientNet-Lite0, benchmarks/bench_search_cache.py), and for texts
        when the whole encoder is frozen: a fit of all-MiniLM-L6-v2 with a
        frozen body took 0.68 s with OpenVINO against 0.86 s on torch on 32
        texts, 1.77 against 2.00 s on 128 (medians of seven, alternating; on
        another machine ONNX Runtime had been 3 to 9 % slower than torch).
        Where text layers train (the contrastive stage trains all but the
        token embeddings) the frozen part is too small to pay for an export,
        and a user's module on numeric arrays was never measured: torch.
        A named engine runs any of them."""
        kind = self.input_kind_
        if self.engine == "auto" and not (
            kind == "image" or (kind == "text" and self.n_trainable_groups_ == 0)
        ):
            return None
        return engine_spec(
            self.engine,
            ctx.device,
            ctx.dtype,
            kind="text" if kind == "text" else "image",
            key=("fine-tuning",),
        )

    def _step_work(self, ctx) -> int:
        """Multiply-adds of one optimiser step, where that is known: a batch
        through the head, when only the head runs at each step (every body
        group's output is stored). A body group that runs repeats its weights
        over every position of its input (pixels of a feature map, tokens),
        which its parameter count does not show: such a step is never taken
        for small (the top stage of EfficientNet-Lite0 at 224 px counts 0.4 M
        weights but 20 M multiply-adds per image, and on one thread its
        epochs took twice as long)."""
        if any(ps for ps in ctx.group_params[self.cached_groups_ :]):
            return SMALL_STEP
        head = sum(p.numel() for p in self.module_.head.parameters())
        return self.batch_size * head

    def _changed_state_copy(self) -> dict:
        """A copy of the entries training may change (the head start, for the
        interpolation of :meth:`_interpolate`)."""
        keys = set(self._changing_state_keys())
        state = self.module_.state_dict()
        return {k: v.detach().clone() for k, v in state.items() if k in keys}

    def _pair_stage(self, ctx, inputs, y) -> None:
        """Train the trainable groups of the body on pairs of samples (see
        :mod:`._contrastive`), then freeze them for the head."""
        self._unfreeze_for_epoch(ctx)
        groups = layerwise_param_groups(
            [],
            ctx.group_params,
            self.n_trainable_groups_,
            lr=CONTRASTIVE_LR,
            lr_decay=1.0,  # one rate for the body, as SetFit trains it
            weight_decay=self.weight_decay,
        )
        self.pair_stage_ = train_on_pairs(
            self.module_,
            inputs,
            y,
            ctx,
            batch_size=self.batch_size,
            param_groups=[g for g in groups if g["params"]],
            seed=int(ctx.rng.integers(2**31 - 1)),
        )
        self.n_steps_ += self.pair_stage_["steps"]

    def _head_start(self, ctx, inputs, y) -> None:
        """Set the head's output layer from a convex probe on the frozen
        features of the training split (see :mod:`._probe`)."""
        self._unfreeze_for_epoch(ctx)  # the modes of the first epoch
        adapt_batchnorm(self.module_, inputs, ctx, self.batch_size)
        F = head_features(self.module_, inputs, ctx, self.batch_size)
        check_head_features(F, self.module_.backbone)
        W, b, info = fit_probe(
            F,
            y.cpu().numpy(),
            task=self._probe_task(),
            n_outputs=self._n_outputs(None),
            class_weight=self._probe_class_weight(),
            sample_weight=None if ctx.weights is None else ctx.weights.cpu().numpy(),
            seed=int(ctx.rng.integers(2**31 - 1)),
        )
        set_output_layer(self.module_.head, W, b)
        self.head_start_ = info

    def _probe_class_weight(self):
        """The class weights of the training loss, by class index, for the probe."""
        weight = getattr(self.criterion_, "weight", None)
        return None if weight is None else dict(enumerate(weight.tolist()))

    def _augmentation(self, inputs):
        size = getattr(getattr(self, "preprocessing_", None), "crop_size", None)
        return make_augmentation(
            self.augmentation, kind=inputs.kind, image_size=size, X=inputs.values()
        )

    def _prepare_for_training(self, inputs, device):
        """Decode images once per fit when they fit in memory; move tensors once."""
        return inputs.materialize(self.batch_size).to(device)

    # -- predict ---------------------------------------------------------------

    def _forward_all(self, X, activation=None) -> np.ndarray:
        """Network outputs for every sample of ``X`` as float32 numpy; an
        output with NaN or infinity is an error naming its sample."""
        check_is_fitted(self, "module_")
        inputs, _ = self._validate_inputs(X, None, reset=False)
        outputs = self._network_outputs(inputs, activation)
        check_finite_rows(outputs, "The fitted network")
        return outputs

    def _network_outputs(self, inputs, activation=None, module=None) -> np.ndarray:
        """Outputs of ``module`` (by default ``module_``) for validated inputs,
        as float32 numpy (texts run longest first, see :func:`run_inputs`)."""
        module = self.module_ if module is None else module

        def forward(batch):
            out = module(batch).float()
            return out if activation is None else activation(out)

        return run_inputs(
            inputs,
            forward,
            device=self._device(),
            precision=self.precision,
            batch_size=self.batch_size,
            model=module.eval(),
            verbose=self.verbose,
            desc="Predicting",
        )

    def _check_pretrained_outputs(self, X, cause: FloatingPointError) -> None:
        """After a fit from scratch failed on non-finite values, find out
        whether the pretrained backbone's own outputs on ``X`` are non-finite
        and, if so, raise naming those samples (rather than blaming the data
        or the learning rate). The check runs only on failure: a fresh copy
        of the backbone over ``X``, as at prediction."""
        if "_fitting" not in self.__dict__:
            return  # failed before X was validated
        try:
            with _seeded(0, self._device()):  # a random init must not move the RNG
                backbone = load_fresh(get_spec(self.backbone))
            network = FineTuneNetwork(backbone, nn.Identity())
            inputs, _ = self._validate_inputs(X, None, reset=False)
            features = self._network_outputs(inputs, module=network)
        except Exception:  # a failed diagnosis must not hide what failed the fit
            return
        try:
            check_finite_rows(features, f"The backbone {backbone.name!r}")
        except ValueError as exc:
            raise exc from cause

    # -- reuse as a source model ---------------------------------------------------

    def to_backbone_spec(self):
        """The trained body as a backbone for another estimator.

        This makes a fitted estimator a *source model*: pass it (or this
        spec) as the ``backbone`` of a new estimator to fine-tune it on a
        target task, or to embed with it. Pass the spec itself to model
        selection tools, since ``clone`` makes unfitted copies of estimators.

        Returns
        -------
        spec : skltransfer.backbones.BackboneSpec
            A :class:`~skltransfer.backbones.ModuleBackbone` holding a CPU copy
            of the trained body (with the image preprocessing it was trained
            with), or, for text encoders, the trained encoder with its
            tokenizer.
        """
        if not hasattr(self, "module_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted, so it cannot serve as a "
                "source model. clone (in GridSearchCV, cross_val_score, ...) makes "
                "unfitted copies of a fitted estimator passed as the backbone: pass "
                "backbone=FrozenEstimator(source) (from sklearn.frozen import "
                "FrozenEstimator) or backbone=source.to_backbone_spec() instead, "
                "after fitting the source."
            )
        backbone = cpu_copy(self.module_.backbone).eval()
        backbone.requires_grad_(True)
        if self.input_kind_ == "text":
            return TrainedBackbone(backbone)
        preprocessing = getattr(self, "preprocessing_", None)
        return ModuleBackbone(backbone.body, preprocessing=preprocessing)

    # -- a failed fit leaves the estimator as it was ------------------------------

    def _fitted_state(self) -> FittedState:
        """The state that ``fit_context`` restores if a fit fails."""
        return _FittedState(self)

    # -- pickling: the hooks of TorchModelMixin ----------------------------------

    # What may hold tensors. The backbone parameter may hold a user's module
    # or a fitted source estimator; the last is the network by reference.
    _device_state = ("backbone", "criterion_", "_network", "_module_ref")
    _by_reference = ("_network", "_module_ref")

    def _state_to_pickle(self, state: dict) -> None:
        """Drop the optimiser state unless a warm start would continue from it."""
        if not self.warm_start and "_network" in state:
            state["_network"] = state["_network"].without_optimizer()

    def _reference(self, value):
        return value.light()

    def _dereference(self, light):
        return FittedNetwork.from_light(light, self._make_optimizer)


def check_head_features(F: np.ndarray, backbone) -> None:
    """The probe's features of the training split, refused with a
    ``FloatingPointError`` when the backbone made any of them non-finite;
    ``fit`` then names the samples of ``X`` (see
    ``BaseFineTune._check_pretrained_outputs``)."""
    check_finite_rows(
        F,
        f"The backbone {backbone.name!r}",
        of="the training split",
        error=FloatingPointError,
    )


class _FittedState(FittedState):
    """The state before a fit, to put back if the fit fails.

    Every attribute that is not a parameter (see
    :class:`~skltransfer._validation.FittedState`): a fit builds a new
    :class:`~._network.FittedNetwork` and the estimator takes it only at the
    end, so a reference to the old one suffices, except that a warm start
    trains the fitted module and optimiser in place: a checkpoint of them
    is put back.
    """

    def __init__(self, estimator):
        # getattr first: a network pickled by reference loads on first
        # access, and is then part of the state taken here.
        warm = bool(estimator.warm_start)
        network = getattr(estimator, "_network", None) if warm else None
        super().__init__(estimator)
        self.network = network
        self.checkpoint = None if network is None else network.checkpoint()

    def restore(self) -> None:
        super().restore()
        if self.network is not None:
            self.network.restore(self.checkpoint)


def _shape(batch) -> tuple | dict:
    if isinstance(batch, dict):
        return {k: tuple(v.shape) for k, v in batch.items()}
    return tuple(batch.shape)


def _on(device, value):
    """Inputs held in a tensor, targets or sample weights moved to ``device``
    once; other inputs (decoded batch by batch) and None as they are."""
    return value.to(device) if isinstance(value, TensorInputs | torch.Tensor) else value
