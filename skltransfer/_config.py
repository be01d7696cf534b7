"""Process-wide settings of skltransfer, in the manner of ``sklearn.config_context``.

- ``pickle_weights`` (default False): a fitted estimator whose frozen backbone
  comes from an installed or downloadable source (a registered name, a
  torchvision, timm or Hugging Face model, a local model folder) pickles a
  reference to it (the spec and a fingerprint of the weights) instead of the
  weights, and loads them again on first use after unpickling, refusing
  weights that differ. True keeps the weights inside the pickle, for a
  machine where the model is not installed.
"""

from __future__ import annotations

import contextlib
import threading

from ._docstring import fill_doc

__all__ = ["config_context", "get_config", "set_config"]

_DEFAULTS = {"pickle_weights": False}
_LOCAL = threading.local()


def _config() -> dict:
    if not hasattr(_LOCAL, "config"):
        _LOCAL.config = dict(_DEFAULTS)
    return _LOCAL.config


def get_config() -> dict:
    """The current settings (a copy).

    Returns
    -------
    config : dict
        ``{"pickle_weights": bool}``.
    """
    return dict(_config())


@fill_doc
def set_config(*, pickle_weights: bool | None = None) -> None:
    """Change settings for the current thread (None leaves one as it is).

    Parameters
    ----------
    {pickle_weights}
    """
    if pickle_weights is not None:
        _config()["pickle_weights"] = bool(pickle_weights)


@contextlib.contextmanager
@fill_doc  # inside: documentation tools read the unwrapped function
def config_context(*, pickle_weights: bool | None = None):
    """Change settings inside a ``with`` block only.

    Parameters
    ----------
    {pickle_weights}

    Examples
    --------
    >>> import pickle
    >>> import numpy as np
    >>> import skltransfer
    >>> est = skltransfer.PretrainedImageFeatures("test_tiny_cnn").fit(
    ...     np.zeros((1, 16, 16, 3), np.uint8)
    ... )
    >>> light = pickle.dumps(est)
    >>> with skltransfer.config_context(pickle_weights=True):
    ...     heavy = pickle.dumps(est)
    >>> len(light) < len(heavy)
    True
    """
    old = get_config()
    set_config(pickle_weights=pickle_weights)
    try:
        yield
    finally:
        _config().update(old)
