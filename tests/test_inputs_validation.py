"""Validation of X and y (inputs/validation.py): what each backbone takes."""

import numpy as np
import pytest
from _common_finetune import IMAGE, mlp

from skltransfer import FineTuneClassifier, FineTuneRegressor
from skltransfer.inputs.validation import check_missing_targets

pytestmark = pytest.mark.usefixtures("one_thread")


def test_strings_for_a_numeric_backbone_say_so(small_digits):
    _, y = small_digits
    with pytest.raises(ValueError, match="X holds strings .* text encoder"):
        FineTuneClassifier(mlp(), max_epochs=1).fit(["a", "b"] * 10, y[:20])


@pytest.mark.parametrize("backbone", ["image", "tabular"])
def test_mismatched_lengths(small_digits, backbone):
    X, y = small_digits
    kw = IMAGE if backbone == "image" else {"backbone": mlp()}
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FineTuneClassifier(**kw).fit(X[:10], y[:9])
    images = list(X[:10].reshape(10, 8, 8))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FineTuneClassifier(**IMAGE).fit(images, y[:9])


@pytest.mark.parametrize("backbone", ["image", "tabular"])
def test_nan_in_X(small_digits, backbone):
    X, y = small_digits
    X = X[:20].copy()
    X[3, 5] = np.nan
    kw = IMAGE if backbone == "image" else {"backbone": mlp()}
    with pytest.raises(ValueError, match="NaN"):
        FineTuneClassifier(**kw).fit(X, y[:20])


def _with_missing(labels, missing):
    y = np.array(labels * 6, dtype=object)
    y[[2, 7]] = missing
    return y


@pytest.mark.parametrize(
    ("y", "shown"),
    [
        (_with_missing(["cat", "dog"], None), "None"),
        (_with_missing(["cat", "dog"], np.nan), "NaN"),
        (_with_missing([0, 1], None), "None"),
    ],
)
def test_missing_labels_are_named_with_their_positions(small_digits, y, shown):
    X = small_digits[0][:12]
    expected = rf"y has 2 missing values \({shown}\) at position 2, position 7\."
    with pytest.raises(ValueError, match=expected):
        FineTuneClassifier(mlp(), max_epochs=1).fit(X, y)


def test_missing_labels_of_images_and_in_pandas(rgb_images):
    pd = pytest.importorskip("pandas")
    X, _ = rgb_images
    y = pd.Series(["cat", "dog"] * 6, index=range(100, 112), dtype="string")
    y[105] = pd.NA
    clf = FineTuneClassifier("test_tiny_cnn", max_epochs=1)
    with pytest.raises(
        ValueError, match=r"\(pd.NA\) at position 5 \(index label 105\)"
    ):
        clf.fit(X, y)


def test_missing_targets_of_regressors_and_multi_label_rows(small_digits):
    X = small_digits[0][:12]
    y = np.arange(12.0)
    y[4] = np.nan
    with pytest.raises(ValueError, match=r"a missing value \(NaN\) at position 4\."):
        FineTuneRegressor(mlp(), max_epochs=1).fit(X, y)
    Y = np.tile([[0.0, 1.0], [1.0, 0.0]], (6, 1))
    Y[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"\(NaN\) at position 3\."):
        FineTuneClassifier(mlp(), max_epochs=1).fit(X, Y)


def test_many_missing_labels_are_counted():
    y = np.array([None] * 8 + ["a", "b"], dtype=object)
    with pytest.raises(ValueError, match=r"position 4 and 3 more\."):
        check_missing_targets(y)
    check_missing_targets(np.array(["a", "b"]))  # nothing missing: no error


def test_floats_outside_0_1_for_a_model_fitted_on_files_warn(rgb_images, tmp_path):
    """A model fitted on files learned no numeric range: float pixels are read
    as 0-1, so 0-255 floats would clip to white without a word."""
    import warnings

    from PIL import Image

    from skltransfer import PretrainedImageFeatures
    from skltransfer.exceptions import SkltransferWarning

    X, _ = rgb_images
    paths = []
    for i, image in enumerate(X[:3]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    features = PretrainedImageFeatures("test_tiny_cnn").fit(paths)
    assert features.value_range_ is None
    with pytest.warns(SkltransferWarning, match="span 0 to 255.*read as 0-1"):
        features.transform(X[:3].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features.transform(X[:3])  # uint8: always 0-255
        features.transform(X[:3] / np.float32(255))  # floats in [0, 1]
        features.transform(paths)


def _twelve_bit_pngs(tmp_path, n=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 4096, (n, 20, 20)).astype(np.uint16)
    paths = [str(tmp_path / f"{i}.png") for i in range(n)]
    for array, path in zip(arrays, paths):
        Image.fromarray(array).save(path)
    return arrays, paths


def test_an_explicit_value_range_applies_to_16_bit_files_and_pil_images(tmp_path):
    from PIL import Image

    from skltransfer import PretrainedImageFeatures
    from skltransfer.exceptions import SkltransferWarning

    arrays, paths = _twelve_bit_pngs(tmp_path)
    est = PretrainedImageFeatures("test_tiny_cnn", value_range=(0, 4095))
    expected = est.fit(arrays).transform(arrays)
    np.testing.assert_allclose(est.fit(paths).transform(paths), expected, atol=1e-5)
    opened = [Image.open(p) for p in paths]
    np.testing.assert_allclose(est.transform(opened), expected, atol=1e-5)
    auto = PretrainedImageFeatures("test_tiny_cnn").fit(paths)
    with pytest.warns(SkltransferWarning, match=r"value_range=\(0, 4095\)"):
        auto.transform(paths)


def test_paths_as_numpy_strings_fit_and_transform(rgb_images, tmp_path):
    from PIL import Image

    from skltransfer import PretrainedImageFeatures

    paths = [str(tmp_path / f"{i}.png") for i in range(3)]
    for image, path in zip(rgb_images[0], paths):
        Image.fromarray(image).save(path)
    est = PretrainedImageFeatures("test_tiny_cnn")
    expected = est.fit(paths).transform(paths)
    for X in (list(np.array(paths)), np.array(paths)[:, None], np.array(paths)):
        np.testing.assert_array_equal(est.fit(X).transform(X), expected)
        assert est.value_range_ is None  # files: no numeric range learned


def test_urls_for_an_image_estimator_say_to_download_first():
    from skltransfer import PretrainedImageFeatures

    urls = ["https://example.com/a.jpg", "https://example.com/b.jpg"]
    with pytest.raises(ValueError, match="is a URL.*Download remote images first"):
        PretrainedImageFeatures("test_tiny_cnn").fit(urls)
