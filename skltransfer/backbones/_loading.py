"""What every loader shares: reproducible random weights, quiet and clear loading.

It imports only :mod:`._spec` from :mod:`skltransfer.backbones`, so that
every source module can use it.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..exceptions import WeightsUnavailableError, missing_dependency
from ._spec import BackboneSpec

__all__ = [
    "HuggingFaceSpec",
    "check_local_folder",
    "close_matches",
    "fetching_weights",
    "quiet_weight_loading",
    "seeded",
]


def check_local_folder(path) -> None:
    """Raise FileNotFoundError for a path-like model reference that is missing.

    A Hugging Face hub id has the form ``name`` or ``org/name``; a reference
    that starts like a path (``/``, ``./``, ``../``, ``~``) or holds more than
    one ``/`` can only be a local folder, and when there is none the user
    should hear that, not the hub's rules for repository names.
    """
    text = os.fspath(path)
    looks_local = (
        text.startswith(("/", "./", "../", "~"))
        or text.count("/") > 1
        or (os.sep != "/" and os.sep in text)
    )
    if looks_local and not os.path.isdir(os.path.expanduser(text)):
        raise FileNotFoundError(
            f"No model folder at {text!r}. A local model is a folder saved by "
            "save_pretrained (or a sentence-transformers folder); a Hugging Face "
            "hub id has the form 'org/name'."
        )


# Errors of the Hugging Face hub that mean "not cached and not downloadable";
# by name, so that torchvision-only installs need no huggingface_hub.
_HUB_OFFLINE_ERRORS = ("LocalEntryNotFoundError", "OfflineModeIsEnabled")


def _offline_cause(err: BaseException) -> BaseException | None:
    """The error in ``err``'s chain saying that weights could not be fetched (no
    network, the hub's offline mode, a file missing from the local cache)."""
    from urllib.error import URLError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        network = (URLError, ConnectionError, TimeoutError, socket.gaierror)
        if isinstance(err, network) or type(err).__name__ in _HUB_OFFLINE_ERRORS:
            return err
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def fetching_weights(what: str, remedy: str):
    """Turn a model library's failure to download ``what`` into one clear error.

    torchvision, timm and transformers each fail in their own way offline (a
    URLError, the hub's LocalEntryNotFoundError, an OSError about connecting);
    all become a :class:`WeightsUnavailableError` that names ``remedy``.
    """
    try:
        yield
    except Exception as err:
        cause = _offline_cause(err)
        if cause is None:
            raise
        hub_offline = type(cause).__name__ in _HUB_OFFLINE_ERRORS and os.environ.get(
            "HF_HUB_OFFLINE", ""
        ).lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if hub_offline else "no network"
        raise WeightsUnavailableError(
            f"The pretrained weights of {what} are not on this machine and cannot "
            f"be downloaded ({why}). {remedy}"
        ) from err


@contextlib.contextmanager
def seeded(seed: int = 0):
    """Build randomly initialised models reproducibly without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def quiet_weight_loading():
    """Hide transformers' per-load "Loading weights" bar (downloads keep theirs).

    Estimators load a model in every ``fit`` of a cross-validation; a bar per
    load would bury the user's own output. The process-wide switch is put
    back as it was.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    if enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def close_matches(name: str, options, cutoff: float = 0.6) -> str:
    """A " Did you mean: ...?" hint naming the options closest to ``name``."""
    close = difflib.get_close_matches(name, list(options), n=5, cutoff=cutoff)
    return f" Did you mean: {', '.join(close)}?" if close else ""


@dataclass(frozen=True)
class HuggingFaceSpec(BackboneSpec):
    """What the Hugging Face specs share: a hub id or local folder, checked and
    loaded offline-first with a clear message when the weights are missing.

    Subclasses set ``_remedy`` (what to do when the weights are not here) and
    implement ``_load(transformers, path, kwargs)``.
    """

    reloadable: ClassVar[bool] = True
    _remedy: ClassVar[str] = (
        "Run once with network access (the model is then cached), or pass a "
        "local folder saved by save_pretrained."
    )

    path: str
    trust_remote_code: bool = False

    def load(self):
        try:
            import transformers
        except ImportError:
            raise missing_dependency(
                "transformers", f"The Hugging Face model {self.path!r}"
            ) from None
        path = os.fspath(self.path)
        check_local_folder(path)
        with fetching_weights(f"'hf:{path}'", self._remedy):
            return self._load(
                transformers, path, {"trust_remote_code": self.trust_remote_code}
            )

    def _load(self, transformers, path: str, kwargs: dict):  # pragma: no cover
        raise NotImplementedError
