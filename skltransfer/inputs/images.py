"""Image inputs: file paths, PIL images and arrays -> float batches for a backbone.

Accepted inputs (see :func:`as_image_source`):

- a list, tuple or 1-D array of file paths, a pandas Series or a one-column
  DataFrame of paths;
- a list of PIL images, or of arrays, possibly of different sizes;
- an array of images shaped (N, H, W), (N, H, W, C) or (N, C, H, W) with
  C in {1, 3, 4} (channels-last is assumed when the last axis has 1, 3 or 4
  entries);
- a 2-D array (N, H*W*C) of flattened images, with ``image_shape``.

Grey images are repeated to RGB. Transparent images (files, PIL images and
arrays with an alpha channel) are composited onto a background, white unless
``background`` says otherwise (see :func:`background_rgb`). 16-bit
and float images keep their precision (see :func:`_pil_pixels`).
``uint8`` arrays are read as 0-255. Other arrays are scaled by a value range:
(0, 1) when the training data lie in [0, 1], else (min(0, lowest), highest) of
the training data (e.g. (0, 16) for ``load_digits``); values outside it are
clipped. Pass ``value_range`` to fix it explicitly.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..caching import file_digest, hash_bytes
from ._positions import index_labels, sample_name

__all__ = ["ImageSource", "as_image_source", "background_rgb", "fit_value_range"]

_CHANNELS = (1, 3, 4)
WHITE = (255, 255, 255)


def background_rgb(background) -> tuple[int, int, int]:
    """The (R, G, B) colour, 0-255, that transparent pixels are composited onto.

    A colour name or hex string as Pillow reads them (``"white"``,
    ``"black"``, ``"#808080"``), or three integers in 0..255.

    >>> background_rgb("white"), background_rgb("#808080"), background_rgb((0, 0, 0))
    ((255, 255, 255), (128, 128, 128), (0, 0, 0))
    """
    if isinstance(background, str):
        from PIL import ImageColor

        try:
            return tuple(ImageColor.getrgb(background)[:3])
        except ValueError:
            pass
    elif (
        isinstance(background, tuple | list)
        and len(background) == 3
        and all(isinstance(v, numbers.Integral) and 0 <= v <= 255 for v in background)
    ):
        return tuple(int(v) for v in background)
    raise ValueError(
        "background must be a colour name or hex string ('white', '#808080') or "
        f"three integers in 0..255, got {background!r}."
    )


def _is_path(x) -> bool:
    return isinstance(x, str | os.PathLike)


def _is_pil(x) -> bool:
    return hasattr(x, "getbands") and hasattr(x, "convert")


def _unwrap_pandas(X):
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2 and X.shape[1] == 1:
        column = X.iloc[:, 0]
        if column.dtype == object or str(column.dtype) in ("string", "str"):
            return column.to_numpy()
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 1:
        return X.to_numpy()
    return X


def _as_array_if_numeric(X):
    """Array-likes of numbers (lists of rows, array wrappers) become arrays."""
    if isinstance(X, np.ndarray):
        # An array of strings holds paths (or texts), not pixels.
        return X.astype(object) if X.dtype.kind == "U" and X.ndim == 1 else X
    if isinstance(X, list | tuple) and any(_is_path(x) or _is_pil(x) for x in X):
        # Never np.asarray: it would decode every PIL image of a mixed list.
        return X
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError):  # ragged: images of different sizes
        return X
    return arr if arr.dtype != object and arr.ndim >= 2 else X


def _reshape_flat(X: np.ndarray, image_shape) -> np.ndarray:
    if image_shape is None:
        raise ValueError(
            f"Got a 2-D array of shape {X.shape}: flattened images need "
            "image_shape=(H, W) or (H, W, C), e.g. image_shape=(8, 8) for "
            "sklearn's load_digits().data. Image arrays are (N, H, W), (N, H, W, C) "
            "or (N, C, H, W)."
        )
    try:
        return X.reshape((X.shape[0], *image_shape))
    except ValueError:
        raise ValueError(
            f"Cannot reshape samples of {X.shape[1]} values into image_shape="
            f"{tuple(image_shape)}."
        ) from None


def _to_nchw(X: np.ndarray) -> np.ndarray:
    """View an (N, H, W), (N, H, W, C) or (N, C, H, W) array as (N, C, H, W)."""
    if X.ndim == 3:
        return X[:, None]
    if X.ndim == 4 and X.shape[-1] in _CHANNELS:
        return X.transpose(0, 3, 1, 2)
    if X.ndim == 4 and X.shape[1] in _CHANNELS:
        return X
    raise ValueError(
        f"Cannot read an image array of shape {X.shape}: expected (N, H, W), "
        "(N, H, W, C) or (N, C, H, W) with C in (1, 3, 4)."
    )


def _check_numeric(X: np.ndarray, *, one: bool = False) -> np.ndarray:
    """``X`` (an array of images, or ``one`` image) checked: real and finite."""
    if X.dtype == bool:
        return X.astype(np.float32)
    if np.iscomplexobj(X):
        raise ValueError("Complex data not supported: pixel values must be real.")
    if not np.issubdtype(X.dtype, np.number):
        raise TypeError(f"Image arrays must be numeric, got dtype {X.dtype}.")
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        if one:  # the caller names the sample
            raise ValueError("the image contains NaN or infinity")
        bad = np.flatnonzero(~np.isfinite(X.reshape(len(X), -1)).all(axis=1))
        raise ValueError(
            f"Input contains NaN or infinity (first at sample {bad[0]}); "
            "impute or drop those images first."
        )
    return X


def fit_value_range(X) -> tuple[float, float]:
    """The (low, high) range that maps a numeric image array to [0, 1]."""
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return (0.0, 255.0)
    lo, hi = float(X.min()), float(X.max())
    if lo >= 0.0 and hi <= 1.0:
        return (0.0, 1.0)
    lo = min(0.0, lo)
    return (lo, hi if hi > lo else lo + 1.0)


def _tensor(x: np.ndarray) -> torch.Tensor:
    """``x`` as a tensor sharing its memory (and strides) where torch can."""
    if not x.flags.writeable:
        # torch cannot share read-only memory (np.frombuffer, memory maps)
        # without a warning; one batch is cheap to copy.
        x = x.copy()
    try:
        return torch.from_numpy(x)
    except ValueError:  # negative strides
        return torch.from_numpy(np.ascontiguousarray(x))


def _scale(x: np.ndarray, value_range, background=WHITE) -> torch.Tensor:
    """A numeric (..., C, H, W) array as float RGB in [0, 1]; an alpha channel
    composites the colours onto ``background``."""
    t = _tensor(np.ascontiguousarray(x))
    if t.dtype == torch.uint8 and value_range is None:
        t = t.float().div_(255.0)
    else:
        lo, hi = value_range if value_range is not None else (0.0, 1.0)
        # Out of place first: t may share memory with the caller's float32 array.
        t = t.float().sub(lo).div_(hi - lo).clamp_(0.0, 1.0)
    if t.shape[-3] == 1:
        t = t.expand(*t.shape[:-3], 3, *t.shape[-2:])
    if t.shape[-3] == 4:
        rgb, alpha = t[..., :3, :, :], t[..., 3:, :, :]
        colour = torch.tensor(background, dtype=t.dtype).div_(255.0)[:, None, None]
        return rgb * alpha + colour * (1.0 - alpha)
    return t


def _composite_uint8(t: torch.Tensor, background) -> torch.Tensor:
    """uint8 (..., 4, H, W) RGBA composited onto ``background``: uint8 RGB."""
    rgb, alpha = t[..., :3, :, :].int(), t[..., 3:, :, :].int()
    colour = torch.tensor(background, dtype=torch.int32)[:, None, None]
    # Rounded division by 255, exact in integers.
    return ((rgb * alpha + colour * (255 - alpha) + 127) // 255).to(torch.uint8)


def _draft(img, side: int | None):
    """Decode ``img`` reduced, keeping its shorter side well above ``side``.

    The margins follow Pillow's "reducing gap" (``Image.thumbnail``): closer
    to ``side``, the reduction's own filter shows through the final resize.

    - JPEG decodes at 1/2 or 1/4 scale in the DCT domain (``draft``), 2-4x
      faster than a full decode of a multi-megapixel photo, down to ``side``
      (never 1/8: at that scale chroma subsampling smeared colour edges by
      tens of grey levels);
    - other formats are decoded in full, then reduced by an integer box
      filter down to three times ``side``.

    After the resize, both stay within a few grey levels of the full decode
    (tested).
    """
    if side is None:
        return img
    if img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
        least = max(side, min(img.size) // 4)  # 1/4 scale at most
        img.draft(img.mode, (least, least))
        return img
    factor = min(img.size) // (3 * side)
    if factor >= 2 and img.mode in ("RGB", "RGBA", "L", "LA"):
        return img.reduce(factor)
    return img


def _open(path, side: int | None = None, background=WHITE) -> np.ndarray:
    """The image file at ``path`` as (H, W, C) pixels, upright (EXIF): see
    :func:`_pil_pixels`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            upright = ImageOps.exif_transpose(_draft(img, side))
            return _pil_pixels(upright, background)
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"Image file {os.fspath(path)!r} is too large to decode safely: {exc} "
            "If the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS."
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"Cannot read image file {os.fspath(path)!r}: {exc}") from exc


# 16-bit greyscale modes; their full range maps to [0, 1].
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_TRANSPARENT = ("RGBA", "LA", "PA", "RGBa", "La")


def _pil_pixels(img, background=WHITE) -> np.ndarray:
    """Pixels of a PIL image, read as they are.

    - 8-bit modes give uint8 (H, W, 3) RGB. Transparent images (an alpha
      channel, or a palette or grey image with a transparent colour) are
      composited onto ``background`` (white by default), so that whatever
      colour hides under transparent pixels never reaches the model.
    - 16-bit greyscale (``I;16*``) gives float32 (H, W, 1) in [0, 1] over the
      full 16-bit range; 32-bit integers (``I``) the same when they lie in
      0..65535, else over their own range; floats (``F``) as they are when in
      [0, 1], else over their own range.
    """
    mode = img.mode
    if mode in _MODES_16 or mode in ("I", "F"):
        return _high_depth(img)[..., None]
    if "transparency" in img.info or mode in _TRANSPARENT:
        from PIL import Image

        rgba = img.convert("RGBA")
        under = Image.new("RGBA", rgba.size, (*background, 255))
        img = Image.alpha_composite(under, rgba)
    return np.asarray(img.convert("RGB"))


def _high_depth(img) -> np.ndarray:
    arr = np.asarray(img)
    if img.mode in _MODES_16:
        return arr.astype(np.float32) / 65535.0
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("the image contains NaN or infinity")
    if img.mode == "I" and arr.min() >= 0 and arr.max() <= 65535:
        low, high = 0.0, 65535.0
    elif img.mode == "F" and arr.min() >= 0 and arr.max() <= 1:
        low, high = 0.0, 1.0
    else:
        low, high = float(arr.min()), float(arr.max())
    return ((arr - low) / (high - low if high > low else 1.0)).astype(np.float32)


def _check_pixels(chw: torch.Tensor | np.ndarray) -> None:
    if chw.shape[-1] == 0 or chw.shape[-2] == 0:
        raise ValueError(f"the image has no pixels (shape {tuple(chw.shape)})")


def _pixels_to_chw(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, C) pixels from :func:`_pil_pixels` as a (C, H, W) tensor."""
    _check_pixels(pixels.transpose(2, 0, 1))
    if pixels.dtype == np.uint8:
        return _tensor(pixels.transpose(2, 0, 1))
    return _scale(pixels.transpose(2, 0, 1), (0.0, 1.0))


def _single_to_chw(
    item, value_range, side: int | None = None, background=WHITE
) -> torch.Tensor:
    """One path, PIL image or array as a (C, H, W) tensor: uint8 (0-255) for
    8-bit files, PIL images and uint8 arrays, else float RGB in [0, 1]."""
    if _is_path(item):
        return _pixels_to_chw(_open(item, side, background))
    if _is_pil(item):
        return _pixels_to_chw(_pil_pixels(item, background))
    arr = _check_numeric(np.asarray(item), one=True)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"expected one image of shape (H, W) or (H, W, C), got {arr.shape}"
        )
    chw = _to_nchw(arr[None])[0]
    _check_pixels(chw)
    if arr.dtype == np.uint8:
        t = _tensor(chw)
        return _composite_uint8(t, background) if len(t) == 4 else t
    return _scale(chw, value_range, background)


def _resize_crop(images: torch.Tensor, preprocessing) -> torch.Tensor:
    """Float (N, 3, S, S) in [0, 1] from uint8 or float (N, C, H, W) images."""
    if images.dtype == torch.uint8:
        return preprocessing.resize_crop_uint8(images)
    return preprocessing.resize_crop(images)


def _item_key(item) -> str:
    if _is_path(item):
        # The file's bytes, not its path or modification time: a file rewritten
        # within the clock's resolution gets a new key, and workers that see
        # the same files at other paths share rows. Hashing reads the file at
        # a fraction of the cost of decoding it.
        return hash_bytes("file", file_digest(item))
    if _is_pil(item):
        return hash_bytes("pil", item.mode, str(item.size), item.tobytes())
    arr = np.ascontiguousarray(np.asarray(item))
    return hash_bytes(f"array:{arr.dtype}:{arr.shape}", _bytes(arr))


def _bytes(arr: np.ndarray) -> memoryview:
    """The bytes of a contiguous array, without copying them."""
    return memoryview(arr).cast("B") if arr.size else memoryview(b"")


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


def _check_paths(items, labels=None, *, unreadable_ok: bool = False) -> None:
    """Raise on a path that is no file, naming its position among ``items``.

    With ``unreadable_ok``, such paths are left to be read as unreadable
    images; strings that all read as texts raise in every case.
    """
    at = [i for i, x in enumerate(items) if _is_path(x)]
    paths = [items[i] for i in at]
    for i, p in zip(at, paths, strict=True):
        if os.path.isfile(p):
            continue
        if _looks_like_texts(paths):
            raise ValueError(_texts_for_images(paths, at[0]))
        if unreadable_ok:
            continue
        where = sample_name(i, labels)
        if os.path.isdir(p):
            raise ValueError(f"{where}: {os.fspath(p)!r} is a directory, not an image.")
        raise ValueError(f"{where}: image file {os.fspath(p)!r} does not exist.")


@dataclass
class ImageSource:
    """Validated images that load batch by batch as float (B, 3, H, W) in [0, 1].

    ``array`` holds an (N, C, H, W) array of same-size images; otherwise
    ``items`` holds paths, PIL images or per-image arrays.

    ``positions`` are the images' positions in the user's ``X`` (None:
    ``0..n-1``), kept by :meth:`subset`, and ``labels`` the index labels of
    a pandas ``X`` by position (see :mod:`._positions`): errors name a sample
    by them. ``unreadable`` None makes an image that cannot be read raise;
    a dict (shared by subsets) instead collects ``{position: reason}`` and
    a blank image takes its place (see :meth:`unread`).
    """

    array: np.ndarray | None = None
    items: list | None = None
    value_range: tuple[float, float] | None = None
    background: tuple[int, int, int] = WHITE
    positions: np.ndarray | None = None
    labels: np.ndarray | None = None
    unreadable: dict | None = None

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.items)

    def fit_value_range(self) -> tuple[float, float] | None:
        """The value range of the numeric images (None when all are files/PIL/uint8)."""
        if self.array is not None:
            return fit_value_range(self.array)
        arrays = [np.asarray(x) for x in self.items if hasattr(x, "__array__")]
        arrays = [a for a in arrays if a.dtype != np.uint8]
        if not arrays:
            return None
        lows, highs = zip(*(fit_value_range(a) for a in arrays), strict=True)
        return (min(lows), max(highs))

    def sample_keys(self) -> list[str]:
        """A content hash per image, for caching (files: their bytes)."""
        if self.array is not None:
            prefix = f"array:{self.array.dtype}:{self.array.shape[1:]}"
            return [
                hash_bytes(prefix, _bytes(np.ascontiguousarray(a))) for a in self.array
            ]
        return [self._key(i, x) for i, x in enumerate(self.items)]

    def _key(self, i: int, item) -> str:
        try:
            return _item_key(item)
        except OSError as exc:  # unreadable, even for hashing (or a truncated PIL)
            what = f"image file {os.fspath(item)!r}" if _is_path(item) else "image"
            self._failed(i, f"Cannot read {what}: {exc}", exc)
            # Never stored: the row of an unreadable image is NaN.
            return hash_bytes("unreadable", str(i))

    def _position(self, i: int) -> int:
        return i if self.positions is None else int(self.positions[i])

    def _positions_of(self, idx) -> np.ndarray:
        """The positions in ``X`` of the images at ``idx`` (a slice or positions)."""
        if self.positions is not None:
            return self.positions[idx]
        if isinstance(idx, slice):
            return np.arange(*idx.indices(len(self)))
        return np.asarray(idx, dtype=np.int64)

    def _failed(self, i: int, reason, cause: Exception) -> None:
        """Image ``i`` cannot be read: raise naming its position in ``X``, or
        record it (see the class)."""
        position = self._position(i)
        if self.unreadable is None:
            name = sample_name(position, self.labels)
            raise ValueError(f"{name}: {reason}") from cause
        self.unreadable[position] = str(reason)

    def unread(self, sl: slice) -> np.ndarray:
        """Which images of ``sl`` could not be read (after loading them)."""
        if not self.unreadable:
            return np.zeros(len(range(*sl.indices(len(self)))), dtype=bool)
        return np.isin(self._positions_of(sl), list(self.unreadable))

    def subset(self, indices) -> ImageSource:
        """The images at ``indices`` (positions), with the same conventions."""
        indices = np.asarray(indices)
        positions = self._positions_of(indices)
        if self.array is not None:
            return replace(self, array=self.array[indices], positions=positions)
        items = [self.items[i] for i in indices]
        return replace(self, items=items, positions=positions)

    def load_resized(self, sl: slice, preprocessing) -> torch.Tensor:
        """Decode, resize and crop the images in ``sl``: float (B, 3, S, S) in [0, 1].

        Augmentations apply here, between cropping and normalisation.
        """
        if self.array is not None:
            batch = self.array[sl]
            if batch.dtype == np.uint8:
                t = _tensor(batch)
                if t.shape[1] == 4:
                    t = _composite_uint8(t, self.background)
                return _resize_crop(t, preprocessing)
            scaled = _scale(batch, self.value_range, self.background)
            return preprocessing.resize_crop(scaled)
        resized = []
        for i, item in enumerate(self.items[sl], start=sl.start or 0):
            resized.append(self._load_one(i, item, preprocessing))
        return torch.cat(resized)

    def _load_one(self, i: int, item, preprocessing) -> torch.Tensor:
        """Image ``i`` resized and cropped: (1, 3, S, S); a blank one where it
        cannot be read and ``unreadable`` collects the failures."""
        if self.unreadable is None or self._position(i) not in self.unreadable:
            side = preprocessing.decode_side
            try:
                image = _single_to_chw(item, self.value_range, side, self.background)
                return _resize_crop(image[None], preprocessing)
            except (ValueError, OSError) as exc:  # OSError: a truncated PIL image
                self._failed(i, exc, exc)
        size = preprocessing.crop_size
        return torch.zeros(1, 3, size, size)

    def load(self, sl: slice, preprocessing) -> torch.Tensor:
        """Decode, resize, crop and normalise the images in ``sl``."""
        return preprocessing.normalize(self.load_resized(sl, preprocessing))


def as_image_source(
    X, *, image_shape=None, value_range=None, background=WHITE, on_error="raise"
) -> ImageSource:
    """Validate ``X`` and wrap it as an :class:`ImageSource` (see module docs).

    ``on_error="nan"`` lets the images of a list that cannot be read (a
    missing, corrupt or empty file, an image without pixels) through: they
    are collected in the source's ``unreadable`` instead of raising.
    """
    labels = index_labels(X)
    if isinstance(X, str | bytes) or _is_pil(X):
        raise TypeError(
            "Expected a collection of images, got a single "
            f"{type(X).__name__}; wrap it in a list: [X]."
        )
    X = _as_array_if_numeric(_unwrap_pandas(X))
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 2:
            X = _reshape_flat(X, image_shape)
        if len(X) == 0:
            raise ValueError("Got an empty input: at least one image is required.")
        X = _to_nchw(_check_numeric(X))
        if X.shape[-1] == 0 or X.shape[-2] == 0:
            raise ValueError(f"The images have no pixels: shape {X.shape}.")
        return ImageSource(array=X, value_range=value_range, background=background)
    if isinstance(X, numbers.Number) or not hasattr(X, "__len__"):
        raise TypeError(f"Expected a list or array of images, got {type(X).__name__}.")
    items = list(X)
    if not items:
        raise ValueError("Got an empty input: at least one image is required.")
    for i, item in enumerate(items):
        if not (_is_path(item) or _is_pil(item) or hasattr(item, "__array__")):
            raise TypeError(
                f"{sample_name(i, labels)} is a {type(item).__name__}; expected a "
                "file path, a PIL image or an array."
            )
    _check_paths(items, labels, unreadable_ok=on_error == "nan")
    return ImageSource(
        items=items,
        value_range=value_range,
        background=background,
        labels=labels,
        unreadable={} if on_error == "nan" else None,
    )
