"""Reading images from every accepted input form, and rejecting bad ones."""

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from skltransfer import PretrainedImageFeatures
from skltransfer.backbones import ImagePreprocessing
from skltransfer.exceptions import SkltransferWarning
from skltransfer.inputs.images import (
    WHITE,
    as_image_source,
    background_rgb,
    fit_value_range,
)

PRE = ImagePreprocessing(crop_size=16, resize_size=None)


def _load(X, **kw):
    source = as_image_source(X, **kw)
    return source.load_resized(slice(0, len(source)), PRE)


@pytest.fixture()
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8) for i in range(3)]
    paths = []
    for i, arr in enumerate(arrays):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(arr).save(path)
        paths.append(str(path))
    return paths, arrays


def test_paths_pil_and_arrays_give_the_same_pixels(image_files):
    paths, arrays = image_files
    from_paths = _load(paths)
    from_pil = _load([Image.open(p) for p in paths])
    from_arrays = _load(arrays)
    assert from_paths.shape == (3, 3, 16, 16)
    assert torch.equal(from_paths, from_pil)
    assert torch.equal(from_paths, from_arrays)


def test_pandas_series_and_one_column_frame_of_paths(image_files):
    pd = pytest.importorskip("pandas")
    paths, _ = image_files
    expected = _load(paths)
    assert torch.equal(_load(pd.Series(paths)), expected)
    assert torch.equal(_load(pd.DataFrame({"file": paths})), expected)


@pytest.mark.parametrize(
    "shape", [(4, 9, 7), (4, 9, 7, 1), (4, 9, 7, 3), (4, 3, 9, 7), (4, 9, 7, 4)]
)
def test_array_layouts(shape):
    X = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = _load(X)
    assert out.shape == (4, 3, 16, 16)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_grey_is_repeated_and_opaque_rgba_keeps_its_colour():
    grey = np.full((1, 4, 4), 128, dtype=np.uint8)
    out = _load(grey)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    rgba = np.zeros((1, 4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    assert _load(rgba).max() == 0.0


def _half_transparent_red(dtype=np.uint8):
    """Red everywhere; opaque on the left half, transparent on the right."""
    rgba = np.zeros((1, 16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :, :8, 3] = 255
    return rgba if dtype == np.uint8 else (rgba / 255.0).astype(dtype)


@pytest.mark.parametrize("form", ["uint8", "float", "list", "pil", "file"])
@pytest.mark.parametrize(
    ("background", "rgb"),
    [(WHITE, (1.0, 1.0, 1.0)), ((0, 0, 0), (0.0, 0.0, 0.0)), ((0, 0, 255), (0, 0, 1))],
)
def test_rgba_is_composited_onto_the_background(form, background, rgb, tmp_path):
    rgba = _half_transparent_red()
    X = {
        "uint8": rgba,
        "float": _half_transparent_red(np.float32),
        "list": [rgba[0]],
        "pil": [Image.fromarray(rgba[0], "RGBA")],
    }.get(form)
    if form == "file":
        Image.fromarray(rgba[0], "RGBA").save(tmp_path / "cut.png")
        X = [str(tmp_path / "cut.png")]
    out = _load(X, background=background)[0]
    left, right = out[:, :, :6], out[:, :, 10:]  # away from the resampled edge
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(left, red.expand_as(left), atol=1e-6)
    colour = torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1)
    assert torch.allclose(right, colour.expand_as(right), atol=1e-6)


def test_background_colours_are_read_or_refused():
    assert background_rgb("white") == WHITE
    assert background_rgb("#808080") == (128, 128, 128)
    assert background_rgb([1, 2, 3]) == (1, 2, 3)
    for bad in ("no-such-colour", (0, 0), (0, 0, 256), (0.5, 0, 0)):
        with pytest.raises(ValueError, match="background must be"):
            background_rgb(bad)


def test_channels_first_and_last_agree():
    X = np.random.default_rng(1).integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    assert torch.equal(_load(X), _load(X.transpose(0, 3, 1, 2)))


def test_flattened_rows_need_image_shape():
    X = np.random.default_rng(0).random((3, 64))
    with pytest.raises(ValueError, match="image_shape=\\(8, 8\\)"):
        as_image_source(X)
    assert _load(X, image_shape=(8, 8)).shape == (3, 3, 16, 16)
    assert _load(X, image_shape=(1, -1)).shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="Cannot reshape samples of 64 values"):
        as_image_source(X, image_shape=(7, 7))


def test_images_of_different_sizes_in_one_call():
    X = [np.zeros((5, 9), dtype=np.uint8), np.full((20, 11, 3), 255, np.uint8)]
    out = _load(X)
    assert out.shape == (2, 3, 16, 16)
    assert out[0].max() == 0.0 and out[1].min() > 0.999


def test_value_ranges():
    assert fit_value_range(np.zeros(3, dtype=np.uint8)) == (0.0, 255.0)
    assert fit_value_range(np.array([0.0, 0.5, 1.0])) == (0.0, 1.0)
    assert fit_value_range(np.array([0.0, 16.0])) == (0.0, 16.0)
    assert fit_value_range(np.array([-1.0, 1.0])) == (-1.0, 1.0)
    digits_like = np.array([[[0.0, 8.0], [16.0, 20.0]]])
    out = _load(digits_like, value_range=(0.0, 16.0))
    assert torch.allclose(out[0, 0, 0, :2].sort().values, torch.tensor([0.0, 0.0]))
    assert out.max() == 1.0  # 20 is clipped to the fitted range


@pytest.mark.parametrize(
    "X, error, match",
    [
        ("img.png", TypeError, "wrap it in a list"),
        ([], ValueError, "empty input"),
        (np.zeros((0, 4, 4)), ValueError, "empty input"),
        (np.zeros((2, 5, 4, 5)), ValueError, "Cannot read an image array"),
        (np.zeros((2, 3, 4, 5, 6)), ValueError, "Cannot read an image array"),
        (np.zeros((2, 4)), ValueError, "image_shape"),
        ([1, 2], TypeError, "Sample 0 is a int"),
        (np.array([[[np.nan]]]), ValueError, "NaN or infinity"),
        (5, TypeError, "Expected a list or array"),
    ],
)
def test_bad_inputs_are_named(X, error, match):
    with pytest.raises(error, match=match):
        as_image_source(X)


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        as_image_source([str(tmp_path)])
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(ValueError, match="nope.jpg' does not exist"):
        as_image_source([missing])


TEXTS = ["a wonderful, moving film", "dull"]
TEXT_HINT = r"looks like text.*backbone='all-MiniLM-L6-v2'.*PretrainedTextEmbeddings"


@pytest.mark.parametrize("X", [TEXTS, np.array(TEXTS), np.array(TEXTS, dtype=object)])
def test_strings_that_are_no_files_are_read_as_texts(X):
    with pytest.raises(ValueError, match=TEXT_HINT):
        as_image_source(X)


def test_missing_file_names_are_not_mistaken_for_texts(image_files, tmp_path):
    missing = [str(tmp_path / "a.jpg"), str(tmp_path / "b.png"), "dull"]
    with pytest.raises(ValueError, match="a.jpg' does not exist"):
        as_image_source(missing)
    paths, _ = image_files
    assert torch.equal(_load(np.array(paths)), _load(paths))  # an array of paths


@pytest.mark.parametrize(
    "name",
    ["FineTuneClassifier", "PretrainedImageFeatures", "PretrainedImageClassifier"],
)
def test_image_estimators_given_texts_name_the_text_encoders(name):
    import skltransfer

    estimator = getattr(skltransfer, name)(backbone="test_tiny_cnn")
    with pytest.raises(ValueError, match=TEXT_HINT):
        estimator.fit(TEXTS, [1, 0])


def test_corrupt_image_names_its_path(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    source = as_image_source([str(bad)])
    with pytest.raises(ValueError, match="broken.png"):
        source.load(slice(0, 1), PRE)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=100)
    out = as_image_source([str(path)]).load_resized(
        slice(0, 1), ImagePreprocessing(crop_size=8, resize_size=None)
    )
    assert out[0, 0, :4].mean() > 0.9  # displayed upright: white half on top
    assert out[0, 0, -4:].mean() < 0.1


# -- large photos: decoded at the size the model needs --------------------------------


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory):
    """Two real photos (scikit-learn's samples) enlarged to 3840x2562 (10
    megapixels), as JPEG and as PNG, with their full decodes."""
    from sklearn.datasets import load_sample_images

    folder = tmp_path_factory.mktemp("photos")
    out = {"jpg": [], "png": [], "full jpg": [], "full png": []}
    for i, photo in enumerate(load_sample_images().images):
        big = Image.fromarray(photo).resize((3840, 2562), Image.BICUBIC)
        for ext in ("jpg", "png"):
            path = folder / f"photo{i}.{ext}"
            big.save(path, quality=92) if ext == "jpg" else big.save(path)
            out[ext].append(str(path))
            out[f"full {ext}"].append(np.asarray(Image.open(path).convert("RGB")))
    return out


@pytest.mark.slow  # writes and decodes 10-megapixel files
def test_large_files_decode_reduced_but_never_below_the_model_size(large_photos):
    from skltransfer.inputs.images import _open

    for ext in ("jpg", "png"):
        reduced = _open(large_photos[ext][0], 256)
        assert min(reduced.shape[:2]) >= 256
        assert reduced.shape[0] * 3 <= 2562  # JPEG draft: 1/4; PNG: reduce(3)
    assert _open(large_photos["jpg"][0]).shape == (2562, 3840, 3)


@pytest.mark.slow
def test_large_files_never_reach_numpy_at_full_size(large_photos):
    """Reduced by Pillow before any array is made: three 10-megapixel PNGs in one
    call allocate less than one full 8-bit decode (and a float one is 4x that)."""
    import tracemalloc

    full = large_photos["full png"][0].nbytes
    pre = ImagePreprocessing()
    as_image_source(large_photos["png"][:1]).load_resized(slice(0, 1), pre)  # imports
    three = large_photos["png"] + large_photos["png"][:1]
    tracemalloc.start()
    try:
        as_image_source(three).load_resized(slice(0, 3), pre)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < full


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_reduced_decode_stays_close_to_the_full_decode(large_photos, ext):
    pre = ImagePreprocessing()  # 256 then 224, bilinear
    reduced = as_image_source(large_photos[ext]).load_resized(slice(0, 2), pre)
    full = as_image_source(large_photos[f"full {ext}"]).load_resized(slice(0, 2), pre)
    assert reduced.shape == full.shape == (2, 3, 224, 224)
    difference = (reduced - full).abs()
    # In grey levels: about 1 on average, about 10 at the sharpest edges.
    assert difference.mean() < 2 / 255 and np.percentile(difference, 99) < 16 / 255


def test_uint8_resampling_is_within_rounding_of_the_float_pipeline():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (3, 300, 280, 3), dtype=np.uint8)
    pre = ImagePreprocessing(crop_size=64, resize_size=72)
    as_uint8 = as_image_source(X).load_resized(slice(0, 3), pre)
    as_float = pre.resize_crop(torch.from_numpy(X).permute(0, 3, 1, 2) / 255.0)
    assert as_uint8.dtype == torch.float32
    assert (as_uint8 - as_float).abs().max() <= 1 / 255 + 1e-6
    # An image already at the resize size is cropped, not resampled.
    at_size = rng.integers(0, 256, (2, 72, 72, 3), dtype=np.uint8)
    cropped = as_image_source(at_size).load_resized(slice(0, 2), pre)
    expected = torch.from_numpy(at_size[:, 4:68, 4:68]).permute(0, 3, 1, 2) / 255.0
    assert torch.equal(cropped, expected)


# -- images are read as they are ---------------------------------------------------


SMALL_PRE = ImagePreprocessing(crop_size=8, resize_size=None)


def _pixels(items):
    return as_image_source(items).load_resized(slice(0, len(items)), SMALL_PRE)


def _save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return str(path)


@pytest.mark.usefixtures("one_thread")
def test_16_bit_images_keep_their_values(tmp_path):
    noise = np.random.default_rng(0).integers(0, 65536, (16, 16)).astype(np.uint16)
    arrays = [np.full((16, 16), 4000, np.uint16), np.full((16, 16), 60000, np.uint16)]
    paths = [
        _save(tmp_path, f"{i}.png", Image.fromarray(a))
        for i, a in enumerate([*arrays, noise])
    ]
    assert Image.open(paths[0]).mode.startswith("I")
    # 4000 fits in 12 bits: read over 16 bits all the same, with a warning.
    with pytest.warns(SkltransferWarning, match="12 bits or fewer"):
        out = _pixels(paths)
    np.testing.assert_allclose(out[0], 4000 / 65535, atol=1e-6)
    np.testing.assert_allclose(out[1], 60000 / 65535, atol=1e-6)
    assert 0.4 < float(out[2].mean()) < 0.6  # noise stays noise, not saturated white
    est = PretrainedImageFeatures("test_tiny_cnn", value_range=(0, 65535))
    features = est.fit(paths).transform(paths)
    assert not np.allclose(features[0], features[1])


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("values", "expected"),
    [(0.25, 0.25), (1000.0, None)],  # in [0, 1]: as is; else over its own range
)
def test_float_images(tmp_path, values, expected):
    arr = np.full((16, 16), values, np.float32)
    arr[0, 0] = 0.0
    path = _save(tmp_path, "f.tiff", Image.fromarray(arr, mode="F"))
    out = _pixels([path])[0]
    if expected is not None:
        assert abs(float(out.max()) - expected) < 1e-6
    else:
        assert float(out.max()) == pytest.approx(1.0) and float(out.min()) >= 0


@pytest.mark.usefixtures("one_thread")
def test_32_bit_integer_images(tmp_path):
    arr = np.full((16, 16), 30000, np.int32)
    path = _save(tmp_path, "i.tiff", Image.fromarray(arr, mode="I"))
    np.testing.assert_allclose(_pixels([path])[0], 30000 / 65535, atol=1e-6)


@pytest.mark.usefixtures("one_thread")
def test_transparency_is_composited_on_white_without_warnings(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255  # red under ...
    rgba[:8, :, 3] = 255  # ... opaque top half, transparent bottom half
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 1  # the whole image is transparent
    la = Image.fromarray(
        np.stack([np.zeros((16, 16)), rgba[..., 3]], -1).astype(np.uint8), "LA"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _pixels(
            [
                _save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")),
                _save(tmp_path, "p.png", palette),
                la,
            ]
        )
    top, bottom = out[0][:, :3], out[0][:, 5:]  # away from the blurred edge
    assert torch.allclose(top, torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand_as(top))
    assert torch.allclose(bottom, torch.ones_like(bottom))  # white, not red
    assert torch.allclose(out[1], torch.ones_like(out[1]))
    assert torch.allclose(out[2][:, :3], torch.zeros_like(out[2][:, :3]))
    assert torch.allclose(out[2][:, 5:], torch.ones_like(out[2][:, 5:]))


@pytest.mark.usefixtures("one_thread")
def test_cmyk_jpeg_is_read(tmp_path):
    path = _save(tmp_path, "c.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)))
    out = _pixels([path])[0]
    assert out[0].mean() > 0.9 and out[1].mean() < 0.1  # red


@pytest.mark.usefixtures("one_thread")
def test_decompression_bomb_names_the_path(tmp_path, monkeypatch):
    path = _save(tmp_path, "bomb.png", Image.new("L", (200, 200)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"Sample 0: .*bomb\.png.*too large"):
        _pixels([path])


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("items", "match"),
    [
        (
            [np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4, 3), np.uint8)],
            "Sample 1: .*no pixels",
        ),
        ([np.zeros((4, 4, 3)), np.zeros((2, 4, 4, 3))], "Sample 1: expected one image"),
        (np.zeros((2, 0, 4, 3), np.uint8), "no pixels"),
    ],
)
def test_degenerate_images_are_named(items, match):
    with pytest.raises(ValueError, match=match):
        _pixels(items)


@pytest.mark.usefixtures("one_thread")
def test_one_pixel_image_is_an_image():
    out = _pixels([np.full((1, 1, 3), 255, np.uint8)])
    assert torch.allclose(out, torch.ones_like(out))


# -- paths in every form, and URLs ---------------------------------------------------


def _path_forms(paths):
    from pathlib import Path

    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"path": paths})
    return {
        "array": np.array(paths),
        "list of np.str_": list(np.array(paths)),
        "object array": np.array(paths, dtype=object),
        "column array": np.array(paths)[:, None],
        "column of objects": frame[["path"]].to_numpy(),
        "Series.to_numpy": frame["path"].to_numpy(),
        "pathlib": [Path(p) for p in paths],
    }


@pytest.mark.parametrize(
    "form",
    [
        "array",
        "list of np.str_",
        "object array",
        "column array",
        "column of objects",
        "Series.to_numpy",
        "pathlib",
    ],
)
def test_paths_in_every_form_read_as_str(image_files, form):
    paths, _ = image_files
    source = as_image_source(_path_forms(paths)[form])
    assert source.fit_value_range() is None  # files: no numeric range to learn
    assert source.sample_keys() == as_image_source(paths).sample_keys()
    assert torch.equal(source.load_resized(slice(0, 3), PRE), _load(paths))


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cat.jpg",
        "https://example.com/cat.png",
        "s3://bucket/cat.jpg",
        "gs://bucket/cat",
        "HTTPS://EXAMPLE.COM/CAT.JPG",
    ],
)
def test_urls_say_to_download_the_images_first(url, image_files):
    paths, _ = image_files
    match = rf"Sample 1: '{url}' is a URL.*Download remote images first"
    for X in ([paths[0], url], [paths[0], url, "a film"], np.array([paths[0], url])):
        with pytest.raises(ValueError, match=match):
            as_image_source(X)


def test_file_urls_name_their_path(image_files):
    paths, _ = image_files
    with pytest.raises(ValueError, match=rf"file URL: pass its path, '{paths[0]}'"):
        as_image_source([f"file://{paths[0]}"])


# -- one image, one set of pixels, whatever its form ---------------------------------


def _turned_jpeg_and_png(tmp_path):
    """A JPEG and a PNG whose EXIF says: turn 90 degrees clockwise to display."""
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white: the top half once upright
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    paths = [str(tmp_path / "turned.jpg"), str(tmp_path / "turned.png")]
    img.save(paths[0], exif=exif, quality=100)
    img.save(paths[1], exif=exif)
    return paths


def test_pil_images_are_turned_upright_as_their_files_are(tmp_path):
    paths = _turned_jpeg_and_png(tmp_path)
    pre = ImagePreprocessing(crop_size=8, resize_size=None)
    from_paths = as_image_source(paths).load_resized(slice(0, 2), pre)
    opened = [Image.open(p) for p in paths]
    from_pil = as_image_source(opened).load_resized(slice(0, 2), pre)
    assert torch.equal(from_pil, from_paths)
    assert from_pil[:, :, :4].mean() > 0.9 and from_pil[:, :, -4:].mean() < 0.1
    assert opened[0].size == (20, 10)  # the caller's image is left as it was


def _palette_image(palette, transparency=None):
    image = Image.new("P", (8, 4))
    image.putdata([0, 1] * 16)
    image.putpalette(palette + [0] * (768 - len(palette)))
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def test_pil_keys_follow_the_pixels_the_model_sees():
    red_blue = _palette_image([255, 0, 0, 0, 0, 255])
    green_blue = _palette_image([0, 255, 0, 0, 0, 255])
    clear_blue = _palette_image([255, 0, 0, 0, 0, 255], transparency=0)
    turned = red_blue.copy()
    turned.getexif()[0x0112] = 6
    images = [red_blue, green_blue, clear_blue, turned]
    assert len({image.tobytes() for image in images}) == 1  # same index bytes
    keys = as_image_source(images).sample_keys()
    assert len(set(keys)) == 4
    pixels = _load(images)
    assert all(not torch.equal(pixels[0], pixels[i]) for i in (1, 2, 3))
    assert as_image_source([red_blue.copy()]).sample_keys() == keys[:1]


@pytest.mark.usefixtures("one_thread")
def test_an_explicit_value_range_reads_files_and_pil_images_as_arrays(tmp_path):
    rng = np.random.default_rng(0)
    twelve_bit = rng.integers(0, 4096, (20, 24)).astype(np.uint16)
    path = _save(tmp_path, "12bit.png", Image.fromarray(twelve_bit))
    assert Image.open(path).mode == "I;16"
    expected = _load(twelve_bit[None], value_range=(0, 4095))
    forms = [[path], [Image.open(path)], [Image.fromarray(twelve_bit.astype(np.int32))]]
    for X in forms:
        assert torch.equal(_load(X, explicit_range=(0, 4095)), expected)
    # 8-bit values in 16- and 32-bit images, and a float image.
    eight_bit = rng.integers(0, 256, (20, 24)).astype(np.uint8)
    expected = _load(eight_bit[None].astype(np.float32), value_range=(0, 255))
    for dtype in (np.uint16, np.int32):
        pil = Image.fromarray(eight_bit.astype(dtype))
        assert torch.equal(_load([pil], explicit_range=(0, 255)), expected)
    # uint8 arrays resample in integers: within a grey level of the floats.
    assert (_load(eight_bit[None]) - expected).abs().max() <= 1 / 255 + 1e-6
    floats = rng.uniform(0, 1000, (20, 24)).astype(np.float32)
    float_file = _save(tmp_path, "f.tiff", Image.fromarray(floats))
    from_file = _load([float_file], explicit_range=(0, 1000))
    assert torch.equal(from_file, _load(floats[None], value_range=(0, 1000)))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("high", "dtype", "bits"),
    [
        (4095, np.uint16, 12),
        (255, np.uint16, 8),
        (255, np.int32, 8),
        (1000, np.uint16, 10),
    ],
)
def test_16_bit_images_of_fewer_bits_warn_and_keep_their_reading(high, dtype, bits):
    values = np.linspace(0, high, 16 * 16).reshape(16, 16).astype(dtype)
    image = Image.fromarray(values)
    with pytest.warns(
        SkltransferWarning, match=rf"only values of {bits} bits or fewer"
    ):
        out = _load([image])
    assert float(out.max()) == pytest.approx(high / 65535, abs=1e-3)  # as documented
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _load([image], explicit_range=(0, 65535))  # the reading chosen: no warning
        full = values.astype(np.uint16) * (65535 // high)
        _load([Image.fromarray(full)])  # values over all 16 bits: no guess to make


# -- errors name a sample by its position in X ----------------------------------


def _files(folder, n, empty=()):
    """``n`` small PNG files; those at the positions in ``empty`` have no bytes."""
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        if i in empty:
            path.write_bytes(b"")
        else:
            Image.fromarray(np.full((6, 6, 3), 15 * i, np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_a_path_after_arrays_is_named_by_its_position_in_x(tmp_path):
    arrays = [np.zeros((4, 4, 3), np.uint8)] * 2
    gone = str(tmp_path / "gone.png")
    with pytest.raises(ValueError, match=r"^Sample 2: image file .*gone\.png' does"):
        as_image_source([*arrays, gone])
    with pytest.raises(ValueError, match=r"^Sample 2: .* is a directory"):
        as_image_source([*arrays, str(tmp_path)])
    with pytest.raises(ValueError, match=r"\(sample 1: 'a wonderful film'\)"):
        as_image_source([arrays[0], "a wonderful film", "dull"])


@pytest.mark.usefixtures("one_thread")
def test_subsets_and_slices_name_samples_by_their_position_in_x(tmp_path):
    source = as_image_source(_files(tmp_path, 16, empty={11}))
    part = source.subset(np.arange(8, 16)).subset([1, 3, 0])  # samples 9, 11, 8
    with pytest.raises(ValueError, match=r"^Sample 11: Cannot read image .*11\.png"):
        part.load_resized(slice(0, 3), SMALL_PRE)
    with pytest.raises(ValueError, match=r"^Sample 11: Cannot read image .*11\.png"):
        source.subset(np.arange(8, 16)).load_resized(slice(2, 4), SMALL_PRE)


@pytest.mark.usefixtures("one_thread")
def test_a_pandas_index_is_named_by_label_beside_the_position(tmp_path):
    pd = pytest.importorskip("pandas")
    paths = _files(tmp_path, 4, empty={2})
    labelled = pd.Series(paths, index=[10, 11, 12, 13])
    with pytest.raises(ValueError, match=r"^Sample at position 2 \(index label 12\): "):
        _pixels(labelled)
    with pytest.raises(ValueError, match=r"^Sample 2: Cannot read image .*2\.png"):
        _pixels(pd.Series(paths))  # the default index: positions are the labels
    gone = pd.Series([paths[0], str(tmp_path / "gone.png")], index=["a", "b"])
    with pytest.raises(ValueError, match=r"^Sample at position 1 \(index label 'b'\)"):
        as_image_source(gone)
    with pytest.raises(TypeError, match=r"position 1 \(index label 'b'\) is a int"):
        as_image_source(pd.Series([paths[0], 3], index=["a", "b"]))


@pytest.mark.usefixtures("one_thread")
def test_nan_in_one_array_of_a_list_names_that_sample_only():
    images = [np.zeros((4, 4, 3)), np.zeros((5, 4, 3))]  # sizes differ: a list
    images[1][3, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^Sample 1: the image contains NaN") as info:
        _pixels(images)
    assert "sample 3" not in str(info.value)  # row 3 of the image is no sample


def test_a_file_gone_before_it_is_hashed_is_named(tmp_path):
    paths = _files(tmp_path, 3)
    source = as_image_source(paths).subset([2, 1])
    os.remove(paths[1])
    with pytest.raises(ValueError, match=r"^Sample 1: Cannot read image .*1\.png"):
        source.sample_keys()


@pytest.mark.usefixtures("one_thread")
def test_on_error_nan_collects_unreadable_images_by_position(tmp_path):
    paths = _files(tmp_path, 4, empty={1})
    paths[3] = str(tmp_path / "gone.png")
    source = as_image_source([*paths, np.zeros((0, 4, 3), np.uint8)], on_error="nan")
    assert len(source.sample_keys()) == 5  # hashing the missing file records it
    out = source.subset([4, 3, 2, 1, 0]).load_resized(slice(0, 5), SMALL_PRE)
    assert sorted(source.unreadable) == [1, 3, 4]
    assert "1.png" in source.unreadable[1] and "gone.png" in source.unreadable[3]
    assert "no pixels" in source.unreadable[4]
    np.testing.assert_array_equal(source.unread(slice(0, 5)), [0, 1, 0, 1, 1])
    assert out[[0, 1, 3]].eq(0).all()  # blank stand-ins
    torch.testing.assert_close(out[[2, 4]], _pixels([paths[2], paths[0]]))
    with pytest.raises(ValueError, match="looks like text"):
        as_image_source(["a wonderful film", "dull"], on_error="nan")


@pytest.mark.usefixtures("one_thread")
def test_a_truncated_pil_image_is_named_or_collected(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    path = _save(tmp_path, "cut.png", Image.fromarray(noise))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])  # the header is whole, the pixels not
    items = [np.zeros((4, 4, 3), np.uint8), Image.open(path)]  # opened lazily
    with pytest.raises(ValueError, match=r"^Sample 1: image file is truncated"):
        _pixels(items)
    source = as_image_source(items, on_error="nan")
    source.load_resized(slice(0, 2), SMALL_PRE)
    assert list(source.unreadable) == [1]


# -- every form of path, and mixed lists, named by their position in X --------------


def test_urls_are_named_by_their_position_in_x_whatever_on_error(image_files):
    pd = pytest.importorskip("pandas")
    paths, arrays = image_files
    url = "https://example.com/cat.jpg"
    match = rf"^Sample 2: '{url}' is a URL.*Download remote images first"
    with pytest.raises(ValueError, match=match):
        as_image_source([arrays[0], arrays[1], url])
    with pytest.raises(ValueError, match=match):
        as_image_source([*paths[:2], url], on_error="nan")  # no file: no NaN row
    labelled = pd.Series([paths[0], url], index=["a", "b"])
    with pytest.raises(ValueError, match=r"^Sample at position 1 \(index label 'b'\)"):
        as_image_source(labelled)


@pytest.mark.usefixtures("one_thread")
def test_one_column_path_arrays_name_and_collect_missing_files(image_files, tmp_path):
    paths, _ = image_files
    column = np.array([paths[0], str(tmp_path / "gone.png"), paths[2]])[:, None]
    with pytest.raises(ValueError, match=r"^Sample 1: image file .*gone\.png' does"):
        as_image_source(column)
    source = as_image_source(column, on_error="nan")
    out = source.load_resized(slice(0, 3), PRE)
    assert list(source.unreadable) == [1]
    assert torch.equal(out[[0, 2]], _load([paths[0], paths[2]]))


@pytest.mark.usefixtures("one_thread")
def test_mixed_lists_and_object_columns_are_read_image_by_image(image_files):
    paths, arrays = image_files
    mixed = [arrays[0], Image.open(paths[1]), np.str_(paths[2])]
    column = np.empty((3, 1), dtype=object)
    for i, item in enumerate(mixed):
        column[i, 0] = item
    expected = _load(paths)
    for X in (mixed, column, column[:, 0]):
        source = as_image_source(X)
        assert source.items is not None and len(source) == 3
        assert torch.equal(source.load_resized(slice(0, 3), PRE), expected)
    pil_column = np.empty((2, 1), dtype=object)
    pil_column[0, 0], pil_column[1, 0] = Image.open(paths[0]), Image.open(paths[1])
    torch.testing.assert_close(_load(pil_column), _load(paths[:2]))
