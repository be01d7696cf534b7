"""Image paths checked before any is read: each names a local file.

A path that is no file raises naming the sample by its position in the
user's ``X`` (see :mod:`._positions`), or with ``on_error="nan"`` is left to
be read as an unreadable image. Two mistakes raise in every case, with what
to pass instead: URLs (skltransfer reads local files only), and strings that
read as texts, not file names, given to an image model.
"""

from __future__ import annotations

import os

from .._files import url_error
from ._positions import sample_name

__all__ = ["check_paths", "is_path"]


def is_path(x) -> bool:
    """A file path: a ``str`` (``np.str_`` too) or an ``os.PathLike``."""
    return isinstance(x, str | os.PathLike)


def _file_like(text: str) -> bool:
    """Whether ``text`` reads as a file name: it ends with an extension."""
    ext = os.path.splitext(text)[1][1:]
    return 0 < len(ext) <= 5 and ext.isalnum()


def _looks_like_texts(paths) -> bool:
    """Strings none of which exists, most not even file names: texts."""
    if not all(isinstance(p, str) for p in paths):
        return False
    if any(os.path.exists(p) for p in paths):
        return False
    return 2 * sum(map(_file_like, paths)) < len(paths)


def _texts_for_images(paths, first: int) -> str:
    from ..backbones import list_backbones

    names = list_backbones(pretrained=True, modality="text")
    return (
        f"X looks like text, not images: none of its {len(paths)} strings is an "
        f"existing file (sample {first}: {paths[0]!r}). This backbone takes images. "
        "For texts, use a text encoder: "
        + " or ".join(f"backbone={n!r}" for n in names)
        + " to fine-tune (FineTuneClassifier, FineTuneRegressor), or "
        f"PretrainedTextEmbeddings({names[0]!r}) for embeddings."
    )


_REMOTE_IMAGES = (
    "Download remote images first (with fsspec, requests or your storage's "
    "client) and pass their local paths, or pass them opened as PIL images, "
    "e.g. PIL.Image.open(io.BytesIO(requests.get(url).content))."
)


def check_paths(items, labels=None, *, unreadable_ok: bool = False) -> None:
    """Raise on a path that is no file, naming its position among ``items``.

    With ``unreadable_ok``, such paths are left to be read as unreadable
    images; URLs, and strings that all read as texts, raise in every case.
    """
    at = [i for i, x in enumerate(items) if is_path(x)]
    paths = [items[i] for i in at]
    for i, p in zip(at, paths, strict=True):
        if os.path.isfile(p):
            continue
        where = sample_name(i, labels)
        remote = url_error(p, f"{where}:", _REMOTE_IMAGES)
        if remote is not None:
            raise remote
        if _looks_like_texts(paths):
            raise ValueError(_texts_for_images(paths, at[0]))
        if unreadable_ok:
            continue
        if os.path.isdir(p):
            raise ValueError(f"{where}: {os.fspath(p)!r} is a directory, not an image.")
        raise ValueError(f"{where}: image file {os.fspath(p)!r} does not exist.")
