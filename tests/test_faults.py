"""Faults a hostile user meets: each case ends in a clear error or a faithful
result, never in a silent wrong answer or lost work."""

import os
import warnings

import numpy as np
import pytest
import torch
from _common_finetune import mlp
from PIL import Image
from sklearn.exceptions import NotFittedError

from skltransfer import FineTuneClassifier, FineTuneRegressor, PretrainedImageFeatures
from skltransfer.backbones import ImagePreprocessing
from skltransfer.exceptions import SkltransferWarning
from skltransfer.inputs.images import as_image_source

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"unfreeze": "all", "max_epochs": 3, "random_state": 0}


def _state(clf):
    return {k: v.clone() for k, v in clf.module_.state_dict().items()}


def _same_fit(clf, before_state, before_proba, X):
    after = clf.module_.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before_state.items())
    np.testing.assert_array_equal(clf.predict_proba(X), before_proba)


# -- a fit completes or leaves the estimator as it was -----------------------------


def test_failed_refit_leaves_the_previous_fit(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST).fit(X[:60], y[:60] % 2)
    state, proba = _state(clf), clf.predict_proba(X[:10])
    attributes = set(vars(clf))
    with pytest.raises(ValueError, match="unfreeze"):
        clf.set_params(unfreeze=99).fit(X[:60], y[:60] % 4)
    assert set(vars(clf)) == attributes
    assert clf.classes_.tolist() == [0, 1]
    _same_fit(clf, state, proba, X[:10])


def test_interrupted_fit_leaves_the_previous_fit(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST).fit(X[:60], y[:60])
    state, proba = _state(clf), clf.predict_proba(X[:10])
    n_iter, best = clf.n_iter_, clf.best_epoch_

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    clf._run_epoch = interrupt
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[:80], y[:80])
    del clf._run_epoch
    assert (clf.n_iter_, clf.best_epoch_) == (n_iter, best)
    _same_fit(clf, state, proba, X[:10])


def test_interrupted_first_fit_leaves_nothing(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    clf._run_epoch = interrupt
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[:60], y[:60])
    assert not [k for k in vars(clf) if k.endswith("_") and not k.startswith("_")]
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])


def test_warm_start_refit_that_diverges_keeps_the_previous_model(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST, warm_start=True).fit(X[:60], y[:60])
    state, proba = _state(clf), clf.predict_proba(X[:10])
    history = list(clf.history_)
    with pytest.raises(FloatingPointError, match="diverged at epoch 4"):
        clf.set_params(lr=1e12).fit(X[:60], y[:60])
    assert clf.history_ == history and clf.n_iter_ == 3
    _same_fit(clf, state, proba, X[:10])


@pytest.mark.parametrize("Estimator", [FineTuneClassifier, FineTuneRegressor])
def test_huge_learning_rate_never_keeps_non_finite_weights(small_digits, Estimator):
    X, y = small_digits
    est = Estimator(mlp(), unfreeze="all", lr=1e6, max_epochs=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkltransferWarning)
        try:
            est.fit(X[:100], y[:100].astype(float))
        except FloatingPointError:
            assert not hasattr(est, "module_")  # nothing was fitted before
            return
    params = est.module_.state_dict().values()
    assert all(torch.isfinite(p).all() for p in params)
    out = est.predict_proba(X[:20]) if hasattr(est, "predict_proba") else None
    assert out is None or np.isfinite(out).all()


def test_unknown_class_in_class_weight_is_named(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **FAST, class_weight={0: 2.0, 42: 1.0})
    with pytest.raises(ValueError, match=r"not in y: \[42\]"):
        clf.fit(X[:60], y[:60])


class PoisonAfter(torch.nn.Module):
    """A linear layer whose weights turn to NaN right after its ``after``-th
    training forward pass: the loss of that step is still finite."""

    def __init__(self, after: int):
        super().__init__()
        self.linear = torch.nn.Linear(64, 16)
        self.after = after
        self.calls = 0

    def forward(self, x):
        out = self.linear(x)
        self.calls += self.training
        if self.training and self.calls == self.after:
            with torch.no_grad():
                self.linear.weight.fill_(float("nan"))
        return out


def test_weights_that_turn_non_finite_with_a_finite_loss_are_not_kept(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        PoisonAfter(4), unfreeze="all", batch_size=20, max_epochs=5, random_state=0
    )
    with pytest.warns(SkltransferWarning, match="non-finite.*weights of epoch 1"):
        clf.fit(X[:40], y[:40])
    assert clf.best_epoch_ == 1
    assert all(torch.isfinite(p).all() for p in clf.module_.state_dict().values())
    assert np.isfinite(clf.predict_proba(X[:40])).all()


def test_huge_learning_rate_on_an_image_backbone(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        "test_tiny_cnn", image_shape=(8, 8), lr=1e6, max_epochs=3, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkltransferWarning)
        try:
            clf.fit(X[:60], y[:60])
        except FloatingPointError:
            assert not hasattr(clf, "module_")
            return
    assert all(torch.isfinite(p).all() for p in clf.module_.state_dict().values())
    assert np.isfinite(clf.predict_proba(X[:20])).all()


# -- images are read as they are ----------------------------------------------------

PRE = ImagePreprocessing(crop_size=8, resize_size=None)


def _pixels(items):
    return as_image_source(items).load_resized(slice(0, len(items)), PRE)


def _save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return str(path)


def test_16_bit_images_keep_their_values(tmp_path):
    noise = np.random.default_rng(0).integers(0, 65536, (16, 16)).astype(np.uint16)
    arrays = [np.full((16, 16), 4000, np.uint16), np.full((16, 16), 60000, np.uint16)]
    paths = [
        _save(tmp_path, f"{i}.png", Image.fromarray(a))
        for i, a in enumerate([*arrays, noise])
    ]
    assert Image.open(paths[0]).mode.startswith("I")
    out = _pixels(paths)
    np.testing.assert_allclose(out[0], 4000 / 65535, atol=1e-6)
    np.testing.assert_allclose(out[1], 60000 / 65535, atol=1e-6)
    assert 0.4 < float(out[2].mean()) < 0.6  # noise stays noise, not saturated white
    features = PretrainedImageFeatures("test_tiny_cnn").fit(paths).transform(paths)
    assert not np.allclose(features[0], features[1])


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


def test_32_bit_integer_images(tmp_path):
    arr = np.full((16, 16), 30000, np.int32)
    path = _save(tmp_path, "i.tiff", Image.fromarray(arr, mode="I"))
    np.testing.assert_allclose(_pixels([path])[0], 30000 / 65535, atol=1e-6)


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


def test_cmyk_jpeg_is_read(tmp_path):
    path = _save(tmp_path, "c.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)))
    out = _pixels([path])[0]
    assert out[0].mean() > 0.9 and out[1].mean() < 0.1  # red


def test_decompression_bomb_names_the_path(tmp_path, monkeypatch):
    path = _save(tmp_path, "bomb.png", Image.new("L", (200, 200)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"Sample 0: .*bomb\.png.*too large"):
        _pixels([path])


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


def test_one_pixel_image_is_an_image():
    out = _pixels([np.full((1, 1, 3), 255, np.uint8)])
    assert torch.allclose(out, torch.ones_like(out))


# -- the embedding cache never serves a wrong row and never loses work ------------


def _row_path(cache, key):
    return cache._path(key)


def _pooled(pool):
    from skltransfer.backbones import ModuleBackbone

    body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), pool(1), torch.nn.Flatten())
    torch.manual_seed(0)
    return ModuleBackbone(body, preprocessing=ImagePreprocessing(16, None))


def test_module_keys_see_structure_attributes_and_all_buffers():
    from skltransfer.caching import module_fingerprint

    avg = _pooled(torch.nn.AdaptiveAvgPool2d).load()
    mx = _pooled(torch.nn.AdaptiveMaxPool2d).load()
    assert module_fingerprint(avg) != module_fingerprint(mx)
    a, b = torch.nn.Dropout(0.1), torch.nn.Dropout(0.5)  # no tensors at all
    assert module_fingerprint(a) != module_fingerprint(b)
    m = torch.nn.Linear(2, 2)
    key = module_fingerprint(m)
    m.register_buffer("scale", torch.ones(1), persistent=False)
    with_buffer = module_fingerprint(m)
    assert with_buffer != key
    m.scale.mul_(2)  # changed in place: the remembered key is not reused
    assert module_fingerprint(m) != with_buffer


def test_in_place_change_of_a_shared_backbone_changes_the_key(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), np.uint8)
    est = PretrainedImageFeatures("test_tiny_cnn", cache=tmp_path).fit(X)
    first = est.transform(X)
    with torch.no_grad():
        next(est.backbone_.parameters()).mul_(3)
    assert not np.allclose(est.transform(X), first)


def test_tokenizer_and_word_order_are_part_of_the_key():
    from skltransfer import PretrainedTextEmbeddings, PretrainedWordVectors
    from skltransfer.features.word_vectors import WordVectors

    est = PretrainedTextEmbeddings("test_tiny_bert", cache="unused").fit(["a b"])
    key = est._cache_key()
    est.backbone_.tokenizer.add_tokens(["zzzzword"])
    assert est._cache_key() != key
    vectors = np.eye(3, dtype=np.float32)
    keys = [
        PretrainedWordVectors(WordVectors(vectors, words), cache="unused")
        .fit(["good bad"])
        ._cache_key()
        for words in (["good", "bad", "film"], ["bad", "good", "film"])
    ]
    assert keys[0] != keys[1]


def _entries(tmp_path):
    from skltransfer.caching import EmbeddingCache

    cache = EmbeddingCache(str(tmp_path), "model")
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    cache.transform(["k1" * 16, "k2" * 16], lambda idx: rows[idx], 4)
    return cache, rows


def _forbidden(idx):
    raise AssertionError("recomputed")


def test_entries_of_another_sample_nan_or_a_huge_header_are_recomputed(tmp_path):
    import shutil
    import struct

    cache, rows = _entries(tmp_path)
    k1, k2 = "k1" * 16, "k2" * 16
    shutil.copy(_row_path(cache, k1), _row_path(cache, k2))  # a valid foreign row
    fresh = np.full((1, 4), 7.0, np.float32)
    np.testing.assert_array_equal(cache.transform([k2], lambda idx: fresh, 4), fresh)
    with open(_row_path(cache, k1), "r+b") as f:  # NaN in place of the values
        f.seek(struct.calcsize("<8s32sQ"))
        f.write(np.full(4, np.nan, np.float32).tobytes())
    np.testing.assert_array_equal(cache.transform([k1], lambda idx: fresh, 4), fresh)
    with open(_row_path(cache, k1), "r+b") as f:  # a header claiming 2**40 values
        f.write(struct.pack("<8s32sQ", b"SKLTROW1", k1.encode(), 2**40))
    np.testing.assert_array_equal(cache.transform([k1], lambda idx: fresh, 4), fresh)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_and_links_in_the_cache_are_never_followed(tmp_path):
    cache, rows = _entries(tmp_path / "c")
    k1, k2 = "k1" * 16, "k2" * 16
    os.remove(_row_path(cache, k1))
    os.mkfifo(_row_path(cache, k1))  # reading it would block forever
    outside = tmp_path / "outside.row"
    os.replace(_row_path(cache, k2), outside)
    os.symlink(outside, _row_path(cache, k2))
    fresh = np.full((2, 4), 3.0, np.float32)
    np.testing.assert_array_equal(
        cache.transform([k1, k2], lambda idx: fresh[idx], 4), fresh
    )


def test_a_failure_late_in_the_input_keeps_the_rows_before(tmp_path, monkeypatch):
    from skltransfer import caching

    monkeypatch.setattr(caching, "CHUNK", 2)
    cache = caching.EmbeddingCache(str(tmp_path), "model")
    keys = [f"{i:032d}" for i in range(5)]

    def compute(idx):
        if 4 in idx:
            raise ValueError("Sample 4: cannot read")
        return np.ones((len(idx), 3), np.float32) * idx[:, None]

    with pytest.raises(ValueError, match="Sample 4"):
        cache.transform(keys, compute, 3)
    kept = cache.transform(keys[:4], _forbidden, 3)
    np.testing.assert_array_equal(kept[:, 0], [0, 1, 2, 3])


def test_unwritable_cache_warns_once_and_goes_on(tmp_path, monkeypatch):
    from skltransfer import caching

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(caching.tempfile, "mkstemp", full_disk)
    with pytest.warns(SkltransferWarning, match="No space left") as record:
        out = caching.EmbeddingCache(str(tmp_path), "m").transform(
            ["a" * 32, "b" * 32], lambda idx: np.ones((len(idx), 2), np.float32), 2
        )
    assert len(record) == 1 and out.shape == (2, 2)
    assert record[0].filename == __file__


def test_orphaned_temporary_files_are_cleaned(tmp_path):
    cache, _ = _entries(tmp_path)
    folder = os.path.dirname(_row_path(cache, "k3" * 16))
    os.makedirs(folder)
    old, new = os.path.join(folder, "x.tmp"), os.path.join(folder, "y.tmp")
    for path in (old, new):
        open(path, "wb").close()
    os.utime(old, (0, 0))
    from skltransfer.caching import EmbeddingCache

    EmbeddingCache(str(tmp_path), "model").transform(
        ["k3" * 16], lambda idx: np.zeros((1, 4), np.float32), 4
    )
    assert not os.path.exists(old) and os.path.exists(new)  # a live writer's file stays


# -- word-vector files are parsed strictly ---------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (  # one number too many: not the word "film 0"
            "good 1 2\nbad 3 4\nfilm 0 1 2\n",
            r"line 3: expected a word and 2 numbers .*got 3 fields",
        ),
        (  # a short first line does not set the dimension
            "good 1\nbad 1 2 3\nfilm 1 2 3\n",
            r"line 1: expected a word and 3 numbers \(the most common",
        ),
        ("good 1 2\nbad nan 2\n", "line 2: the vector holds NaN"),
        ("good 1 2\nbad 1 inf\n", "line 2: the vector holds NaN or infinity"),
        ("good 1 2\nbad 1 x2\n", "line 2: 'x2' is not a number"),
        ("", "starts empty"),
        ("3 2\ngood 1 2\nbad 3 4\n", "header declares 3 words, the file holds 2"),
    ],
)
def test_malformed_vector_lines_name_file_and_line(tmp_path, content, match):
    from skltransfer.features.word_vectors import WordVectors

    path = tmp_path / "v.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        WordVectors.load(path)
    assert str(path) in str(info.value)


def test_binary_header_larger_than_the_file_is_refused(tmp_path):
    from skltransfer.features.word_vectors import WordVectors

    path = tmp_path / "v.bin"
    path.write_bytes(b"1000000000 300\n" + b"a " + np.zeros(300, "<f4").tobytes())
    with pytest.raises(ValueError, match="more than its .* bytes can hold"):
        WordVectors.load(path)


def test_duplicate_words_in_a_file_are_reported_once(tmp_path):
    from skltransfer.features.word_vectors import WordVectors

    path = tmp_path / "dup.txt"
    path.write_text("a 1 0\nb 0 1\na 5 5\nb 7 7\n")
    with pytest.warns(SkltransferWarning, match="2 words occur more than once") as rec:
        table = WordVectors.load(path)
    assert len(rec) == 1 and rec[0].filename == __file__
    np.testing.assert_array_equal(table["a"], [1, 0])


# -- every user-facing failure is clear ---------------------------------------------


@pytest.mark.parametrize("path", ["/no/such/folder", "./no_model_here", "~/none/x/y"])
def test_missing_local_model_folders_are_named(path):
    from skltransfer import PretrainedTextEmbeddings

    with pytest.raises(FileNotFoundError, match="No model folder at"):
        PretrainedTextEmbeddings(path).fit(["a text"])
    with pytest.raises(FileNotFoundError, match="No model folder at"):
        PretrainedImageFeatures(f"hf:{path}").fit(np.zeros((1, 8, 8, 3), np.uint8))


def test_backbone_that_cannot_run_on_x_says_so(small_digits):
    X, y = small_digits
    with pytest.raises(ValueError, match=r"cannot run on X: .* shape \(2, 10\)"):
        FineTuneClassifier(mlp(), max_epochs=1).fit(X[:20, :10], y[:20])


def test_strings_for_a_numeric_backbone_say_so(small_digits):
    _, y = small_digits
    with pytest.raises(ValueError, match="X holds strings .* text encoder"):
        FineTuneClassifier(mlp(), max_epochs=1).fit(["a", "b"] * 10, y[:20])


IMAGES = np.zeros((4, 16, 16, 3), np.uint8)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: (
                __import__("skltransfer")
                .PretrainedTextEmbeddings("test_tiny_bert", layer=99)
                .fit(["a"])
            ),
            ValueError,
            "layer=99 is out of range",
        ),
        (
            lambda: PretrainedImageFeatures("test_tiny_cnn", layer="nope").fit(IMAGES),
            ValueError,
            "Unknown layer 'nope'",
        ),
        (
            lambda: (
                PretrainedImageFeatures("test_tiny_cnn")
                .fit(IMAGES)
                .transform([None, None])
            ),
            TypeError,
            "Sample 0 is a NoneType",
        ),
        (
            lambda: (
                __import__("skltransfer")
                .PretrainedTextEmbeddings("test_tiny_bert")
                .fit(["a", None])
            ),
            ValueError,
            "Missing text .* at position 1",
        ),
        (
            lambda: (
                __import__("skltransfer")
                .PretrainedTextEmbeddings("test_tiny_bert", max_length=1)
                .fit(["a b"])
            ),
            ValueError,
            "room for the special tokens",
        ),
    ],
)
def test_entry_point_errors_name_the_argument_or_sample(make, error, match):
    with pytest.raises(error, match=match):
        make()
