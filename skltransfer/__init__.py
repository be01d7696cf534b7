"""skltransfer: transfer learning as ordinary scikit-learn estimators.

Importing the package is cheap: the estimators (and torch, torchvision,
transformers) load on first use of a name.

A process remembers a few things between estimators (the last frozen model
loaded, measured batch sizes, compiled forward passes, estimators a worker
loaded); :func:`clear_process_state` forgets them all.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "PretrainedImageFeatures": "skltransfer.features.image",
    "PretrainedImageClassifier": "skltransfer.direct",
    "PretrainedTextEmbeddings": "skltransfer.features.text",
    "PretrainedWordVectors": "skltransfer.features.word_vectors",
    "FineTuneClassifier": "skltransfer.finetune",
    "FineTuneRegressor": "skltransfer.finetune",
    "clear_process_state": "skltransfer._process_state",
    "config_context": "skltransfer._config",
    "get_config": "skltransfer._config",
    "set_config": "skltransfer._config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skltransfer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
