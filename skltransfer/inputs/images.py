"""Image inputs: file paths, PIL images and arrays -> float batches for a backbone.

Accepted inputs (see :func:`as_image_source`):

- a list, tuple or 1-D array of file paths, a pandas Series or a one-column
  DataFrame of paths;
- a list of PIL images, or of arrays, possibly of different sizes;
- an array of images shaped (N, H, W), (N, H, W, C) or (N, C, H, W) with
  C in {1, 3, 4} (channels-last is assumed when the last axis has 1, 3 or 4
  entries);
- a 2-D array (N, H*W*C) of flattened images, with ``image_shape``.

Files and PIL images go through one decoding (:func:`_pil_pixels`), so an
image gives the same pixels whether passed by path or opened: turned upright
by its EXIF orientation, grey repeated to RGB, transparent pixels composited
onto a background, white unless ``background`` says otherwise (see
:func:`background_rgb`), as for arrays with an alpha channel.

8-bit images (files, PIL images, ``uint8`` arrays) are read as 0-255. Other
arrays are scaled by a value range: (0, 1) when the training data lie in
[0, 1], else (min(0, lowest), highest) of the training data (e.g. (0, 16) for
``load_digits``); values outside it are clipped. An explicit ``value_range``
applies to every image that is not 8-bit: arrays, and 16-bit, 32-bit integer
and float files and PIL images alike. Without one, those are read by the rule
of their mode (see :func:`_mode_range`), with a warning when a 16-bit image
holds values of fewer bits.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..caching import file_digest, hash_bytes
from ..exceptions import SkltransferWarning, warn_at_caller
from ._paths import check_paths, is_path
from ._positions import index_labels, positions_in_x, sample_name

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


def _is_pil(x) -> bool:
    return hasattr(x, "getbands") and hasattr(x, "convert")


def _is_array(x) -> bool:
    """An image given as numbers (``np.str_`` paths have ``__array__`` too)."""
    return hasattr(x, "__array__") and not (is_path(x) or _is_pil(x))


def _unwrap_pandas(X):
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2 and X.shape[1] == 1:
        column = X.iloc[:, 0]
        if column.dtype == object or str(column.dtype) in ("string", "str"):
            return column.to_numpy()
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 1:
        return X.to_numpy()
    return X


def _holds_items(X: np.ndarray) -> bool:
    """Whether an array holds strings (paths or texts) or, as a mixed list
    does, any path or PIL image: images one by one, not pixels."""
    return X.dtype.kind == "U" or (
        X.dtype == object and any(is_path(x) or _is_pil(x) for x in X.flat)
    )


def _as_array_if_numeric(X):
    """Array-likes of numbers (lists of rows, array wrappers) become arrays;
    arrays of paths or PIL images, or one column of them
    (``df[["path"]].to_numpy()``), a 1-D object array."""
    if isinstance(X, np.ndarray):
        one_column = X.ndim == 1 or (X.ndim == 2 and X.shape[1] == 1)
        return X.reshape(-1).astype(object) if one_column and _holds_items(X) else X
    if isinstance(X, list | tuple) and any(is_path(x) or _is_pil(x) for x in X):
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


def _open(
    path, side: int | None = None, background=WHITE, value_range=None
) -> np.ndarray:
    """The image file at ``path`` as (H, W, C) pixels: see :func:`_pil_pixels`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return _pil_pixels(_draft(img, side), background, value_range)
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"Image file {os.fspath(path)!r} is too large to decode safely: {exc} "
            "If the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS."
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"Cannot read image file {os.fspath(path)!r}: {exc}") from exc


# 16-bit greyscale modes; their full range maps to [0, 1].
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_HIGH_DEPTH = (*_MODES_16, "I", "F")
_TRANSPARENT = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = 0x0112  # the EXIF tag


def _upright(img):
    """``img`` as it is displayed: turned as its EXIF orientation says."""
    img.load()  # a PNG's EXIF may follow its pixels
    if img.getexif().get(_ORIENTATION, 1) == 1:
        return img  # no copy
    from PIL import ImageOps

    return ImageOps.exif_transpose(img)


def _pil_content(img, background=WHITE) -> np.ndarray:
    """What the model sees of a PIL image, before any value range.

    Upright (:func:`_upright`). 8-bit modes as uint8 (H, W, 3) RGB;
    transparent images (an alpha channel, or a palette or grey image with a
    transparent colour) are composited onto ``background``, so that whatever
    colour hides under transparent pixels never reaches the model. 16-bit,
    32-bit integer and float images as their values, (H, W).
    """
    img = _upright(img)
    if img.mode in _HIGH_DEPTH:
        values = np.asarray(img)
        return values.astype(values.dtype.newbyteorder("="), copy=False)  # I;16B
    if "transparency" in img.info or img.mode in _TRANSPARENT:
        from PIL import Image

        rgba = img.convert("RGBA")
        under = Image.new("RGBA", rgba.size, (*background, 255))
        img = Image.alpha_composite(under, rgba)
    return np.asarray(img.convert("RGB"))


def _pil_pixels(img, background=WHITE, value_range=None) -> np.ndarray:
    """Pixels of a PIL image: uint8 (H, W, 3) for 8-bit modes, else float32
    (H, W, 1) in [0, 1] scaled by ``value_range`` as arrays are, or without
    one by the rule of the image's mode (:func:`_mode_range`)."""
    content = _pil_content(img, background)
    if content.dtype == np.uint8:
        return content
    if not np.isfinite(content).all():
        raise ValueError("the image contains NaN or infinity")
    value_range = value_range or _mode_range(content)
    return _scale(content[None], value_range)[0].numpy()[..., None]


def _mode_range(values: np.ndarray) -> tuple[float, float]:
    """The value range of a 16-bit (uint16), 32-bit integer (int32) or float
    image read without an explicit ``value_range``.

    16-bit images map their full range, 0-65535, to [0, 1]; 32-bit integers
    the same when they lie in it, else their own range; floats are taken as
    they are when in [0, 1], else over their own range.
    """
    low, high = float(values.min()), float(values.max())
    if values.dtype == np.uint16 or (values.dtype.kind in "iu" and low >= 0):
        if high <= 65535:
            _warn_fewer_bits(high)
            return (0.0, 65535.0)
    elif low >= 0 and high <= 1:
        return (0.0, 1.0)
    return (low, high if high > low else low + 1.0)


def _warn_fewer_bits(high: float) -> None:
    """Values that fit in 14 bits or fewer, in a 16-bit container, are dark
    over 0-65535: 8-bit data saved as 16-bit, or a 10-, 12- or 14-bit camera.
    Which one cannot be told from one image, so the reading stays and a
    warning says how to choose."""
    bits = next((b for b in (8, 10, 12, 14) if high < 2**b), None)
    if bits is None or high == 0:
        return
    warn_at_caller(
        "An integer image read over the 16-bit range (0-65535) holds only values "
        f"of {bits} bits or fewer, so it looks dark. If the images hold {bits}-bit "
        f"data, pass value_range=(0, {2**bits - 1}); value_range=(0, 65535) keeps "
        "this reading without this warning.",
        SkltransferWarning,
    )


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
    item, value_range, side: int | None = None, background=WHITE, explicit=None
) -> torch.Tensor:
    """One path, PIL image or array as a (C, H, W) tensor: uint8 (0-255) for
    8-bit files, PIL images and uint8 arrays, else float RGB in [0, 1].
    ``value_range`` scales arrays; ``explicit`` (the user's value range, or
    None) the files and PIL images that are not 8-bit."""
    if is_path(item):
        return _pixels_to_chw(_open(item, side, background, explicit))
    if _is_pil(item):
        return _pixels_to_chw(_pil_pixels(item, background, explicit))
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


def _item_key(item, background=WHITE) -> str:
    if is_path(item):
        # The file's bytes, not its path or modification time: a file rewritten
        # within the clock's resolution gets a new key, and workers that see
        # the same files at other paths share rows. Hashing reads the file at
        # a fraction of the cost of decoding it.
        return hash_bytes("file", file_digest(item))
    if _is_pil(item):
        # What the model sees, not the image's raw bytes: a palette, a
        # transparent colour or an EXIF orientation changes the pixels but
        # not the bytes. (The value range is part of the model's key.)
        content = np.ascontiguousarray(_pil_content(item, background))
        return hash_bytes(f"pil:{content.dtype}:{content.shape}", _bytes(content))
    arr = np.ascontiguousarray(np.asarray(item))
    return hash_bytes(f"array:{arr.dtype}:{arr.shape}", _bytes(arr))


def _bytes(arr: np.ndarray) -> memoryview:
    """The bytes of a contiguous array, without copying them."""
    return memoryview(arr).cast("B") if arr.size else memoryview(b"")


@dataclass
class ImageSource:
    """Validated images that load batch by batch as float (B, 3, H, W) in [0, 1].

    ``array`` holds an (N, C, H, W) array of same-size images; otherwise
    ``items`` holds paths, PIL images or per-image arrays. ``value_range``
    scales arrays that are not uint8; ``explicit_range``, the value range the
    user gave (None: each by the rule of its mode), the files and PIL images
    that are not 8-bit.

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
    explicit_range: tuple[float, float] | None = None
    positions: np.ndarray | None = None
    labels: np.ndarray | None = None
    unreadable: dict | None = None

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.items)

    def fit_value_range(self) -> tuple[float, float] | None:
        """The value range of the numeric images (None when all are files/PIL/uint8)."""
        if self.array is not None:
            return fit_value_range(self.array)
        arrays = [np.asarray(x) for x in self.items if _is_array(x)]
        arrays = [a for a in arrays if a.dtype != np.uint8]
        if not arrays:
            return None
        lows, highs = zip(*(fit_value_range(a) for a in arrays), strict=True)
        return (min(lows), max(highs))

    def sample_keys(self) -> list[str]:
        """A content hash per image, for caching: of a file's bytes, of what
        the model sees of a PIL image, of an array's values."""
        if self.array is not None:
            prefix = f"array:{self.array.dtype}:{self.array.shape[1:]}"
            return [
                hash_bytes(prefix, _bytes(np.ascontiguousarray(a))) for a in self.array
            ]
        return [self._key(i, x) for i, x in enumerate(self.items)]

    def _key(self, i: int, item) -> str:
        try:
            return _item_key(item, self.background)
        except OSError as exc:  # unreadable, even for hashing (or a truncated PIL)
            what = f"image file {os.fspath(item)!r}" if is_path(item) else "image"
            self._failed(i, f"Cannot read {what}: {exc}", exc)
            # Never stored: the row of an unreadable image is NaN.
            return hash_bytes("unreadable", str(i))

    def _position(self, i: int) -> int:
        return i if self.positions is None else int(self.positions[i])

    def positions_of(self, idx) -> np.ndarray:
        """The positions in ``X`` of the images at ``idx`` (a slice or positions)."""
        return positions_in_x(self.positions, idx, len(self))

    def _failed(self, i: int, reason, cause: Exception) -> None:
        """Image ``i`` cannot be read: raise naming its position in ``X``, or
        record it (see the class)."""
        position = self._position(i)
        if self.unreadable is None:
            name = sample_name(position, self.labels)
            raise ValueError(f"{name}: {reason}") from cause
        self.unreadable[position] = str(reason)

    def unread(self, idx) -> np.ndarray:
        """Which images of ``idx`` (a slice or positions) could not be read
        (after loading them)."""
        if not self.unreadable:
            return np.zeros(len(self.positions_of(idx)), dtype=bool)
        return np.isin(self.positions_of(idx), list(self.unreadable))

    def subset(self, indices) -> ImageSource:
        """The images at ``indices`` (positions), with the same conventions."""
        indices = np.asarray(indices)
        positions = self.positions_of(indices)
        if self.array is not None:
            return replace(self, array=self.array[indices], positions=positions)
        items = [self.items[i] for i in indices]
        return replace(self, items=items, positions=positions)

    def load_resized(self, idx, preprocessing) -> torch.Tensor:
        """Decode, resize and crop the images ``idx`` (a slice or positions):
        float (B, 3, S, S) in [0, 1].

        Augmentations apply here, between cropping and normalisation.
        """
        if not isinstance(idx, slice):
            part = self.subset(idx)
            return part.load_resized(slice(0, len(part)), preprocessing)
        sl = idx
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
                image = _single_to_chw(
                    item, self.value_range, side, self.background, self.explicit_range
                )
                return _resize_crop(image[None], preprocessing)
            except (ValueError, OSError) as exc:  # OSError: a truncated PIL image
                self._failed(i, exc, exc)
        size = preprocessing.crop_size
        return torch.zeros(1, 3, size, size)

    def load(self, sl: slice, preprocessing) -> torch.Tensor:
        """Decode, resize, crop and normalise the images in ``sl``: the batch
        a network takes (estimators read images through
        :class:`~skltransfer.inputs.batches.ImageInputs`, which adds
        augmentation before the normalisation)."""
        return preprocessing.normalize(self.load_resized(sl, preprocessing))


def as_image_source(
    X,
    *,
    image_shape=None,
    value_range=None,
    background=WHITE,
    explicit_range=None,
    on_error="raise",
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
        if not (is_path(item) or _is_pil(item) or hasattr(item, "__array__")):
            raise TypeError(
                f"{sample_name(i, labels)} is a {type(item).__name__}; expected a "
                "file path, a PIL image or an array."
            )
    check_paths(items, labels, unreadable_ok=on_error == "nan")
    return ImageSource(
        items=items,
        value_range=value_range,
        background=background,
        explicit_range=explicit_range,
        labels=labels,
        unreadable={} if on_error == "nan" else None,
    )
