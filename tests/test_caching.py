"""The per-sample embedding cache."""

import os

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from skltransfer import PretrainedImageFeatures
from skltransfer.backbones import ImagePreprocessing
from skltransfer.caching import EmbeddingCache
from skltransfer.exceptions import SkltransferWarning

TINY = "test_tiny_cnn"


def _count_forward_samples(est):
    """Wrap the estimator's forward to count how many images reach the model."""
    seen = {"n": 0}
    embedder = est._embedder

    def counting_embedder():
        embed = embedder()

        def counting(x):
            seen["n"] += len(x)
            return embed(x)

        return counting

    est._embedder = counting_embedder
    return seen


def test_cached_rows_equal_uncached_and_are_reused(rgb_images, tmp_path):
    X, _ = rgb_images
    plain = PretrainedImageFeatures(TINY).fit(X).transform(X)
    est = PretrainedImageFeatures(TINY, cache=tmp_path).fit(X)
    seen = _count_forward_samples(est)
    np.testing.assert_array_equal(est.transform(X[:8]), plain[:8])
    assert seen["n"] == 8
    np.testing.assert_array_equal(est.transform(X), plain)
    assert seen["n"] == 12  # only the 4 new images were embedded


def test_key_changes_with_settings_that_change_the_output(rgb_images, tmp_path):
    X, _ = rgb_images
    keys = {
        PretrainedImageFeatures(TINY, cache=tmp_path, **kw).fit(X)._cache_key()
        for kw in [{}, {"layer": "stem"}, {"pooling": "max"}, {"image_size": 24}]
    }
    assert len(keys) == 4
    again = PretrainedImageFeatures(TINY, cache=tmp_path).fit(X[:3])._cache_key()
    assert again in keys  # same settings, other fit data: same model key


def test_cache_survives_clone_and_grid_search(rgb_images, tmp_path):
    X, y = rgb_images
    memory = joblib.Memory(tmp_path, verbose=0)
    pipe = make_pipeline(
        PretrainedImageFeatures(TINY, cache=memory), LogisticRegression()
    )
    grid = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0]}, cv=3)
    grid.fit(X, y)
    stored = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".row")]
    assert len(stored) == len(X)  # every image embedded once, for all folds
    assert grid.best_estimator_[0].cache.location == memory.location


def test_cross_val_score_with_cache_matches_without(rgb_images, tmp_path):
    X, y = rgb_images
    make = lambda cache: make_pipeline(  # noqa: E731
        PretrainedImageFeatures(TINY, cache=cache), LogisticRegression()
    )
    np.testing.assert_allclose(
        cross_val_score(make(tmp_path), X, y, cv=3),
        cross_val_score(make(None), X, y, cv=3),
    )


def test_corrupt_entries_are_recomputed(rgb_images, tmp_path):
    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY, cache=tmp_path).fit(X)
    expected = est.transform(X)
    files = [
        os.path.join(d, f)
        for d, _, fs in os.walk(tmp_path)
        for f in fs
        if f.endswith(".row")
    ]
    with open(files[0], "wb") as f:
        f.write(b"garbage")
    with open(files[1], "r+b") as f:  # a valid header, a shorter row
        f.truncate(os.path.getsize(files[1]) - 4)
    # Recomputed in a batch of other companions: equal within float rounding.
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-5, atol=1e-6)


def test_files_are_keyed_on_their_content(tmp_path):
    from PIL import Image

    path = tmp_path / "a.bmp"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    stat = os.stat(path)
    est = PretrainedImageFeatures(TINY, cache=tmp_path / "c").fit([str(path)])
    first = est.transform([str(path)])
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(path)
    # Rewritten with the same size and modification time: a new key still.
    assert os.path.getsize(path) == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not np.allclose(est.transform([str(path)]), first)
    # The same bytes at another path share the row.
    copy = tmp_path / "elsewhere.bmp"
    copy.write_bytes(path.read_bytes())
    calls = []
    est._run_source = lambda *a: calls.append(1)
    est.transform([str(copy)])
    assert calls == []


def test_pil_images_are_keyed_on_what_the_model_sees(tmp_path):
    from PIL import Image

    def palette_image(colour):
        image = Image.new("P", (8, 8))
        image.putpalette([*colour, 0, 0, 0] + [0] * 762)
        return image  # index 0 everywhere: same bytes, other colour

    red, green = palette_image((255, 0, 0)), palette_image((0, 255, 0))
    plain = PretrainedImageFeatures(TINY).fit([red])
    cached = PretrainedImageFeatures(TINY, cache=tmp_path).fit([red])
    cached.transform([red])
    np.testing.assert_allclose(
        cached.transform([green]), plain.transform([green]), rtol=1e-5, atol=1e-6
    )
    clear = palette_image((255, 0, 0))
    clear.info["transparency"] = 0  # composited onto white
    np.testing.assert_allclose(
        cached.transform([clear]), plain.transform([clear]), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("url", ["s3://bucket/cache", "https://example.com/c"])
def test_a_url_as_cache_says_it_must_be_local(rgb_images, url, tmp_path, monkeypatch):
    X, _ = rgb_images
    monkeypatch.chdir(tmp_path)  # where a folder named "s3:" would appear
    est = PretrainedImageFeatures(TINY, cache=url).fit(X[:2])
    with pytest.raises(ValueError, match="is a URL.*local directory"):
        est.transform(X[:2])
    assert os.listdir(tmp_path) == []


def test_bad_cache_parameter(rgb_images):
    X, _ = rgb_images
    with pytest.raises(ValueError, match="cache"):
        PretrainedImageFeatures(TINY, cache=3).fit(X)


@pytest.mark.slow  # starts two worker processes
def test_parallel_writers_leave_only_complete_files(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    keys = ["aa01", "aa02", "bb03"]
    joblib.Parallel(n_jobs=2)(
        joblib.delayed(EmbeddingCache(str(tmp_path), "m").transform)(
            keys, lambda idx: rows[idx], 4
        )
        for _ in range(4)
    )
    out = EmbeddingCache(str(tmp_path), "m").transform(keys, lambda idx: 1 / 0, 4)
    np.testing.assert_array_equal(out, rows)
    leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".tmp")]
    assert not leftovers


def test_rows_of_any_length_are_stored_and_read_back(tmp_path):
    cache = EmbeddingCache(str(tmp_path), "m")
    rows = [np.arange(3, dtype=np.float32), np.arange(5, dtype=np.float32)]
    cache.store(["aa01", "bb02", "cc03"], iter([*rows, np.full(2, np.nan)]))
    np.testing.assert_array_equal(cache.read("aa01", 3), rows[0])
    np.testing.assert_array_equal(cache.read("bb02", 5), rows[1])
    assert cache.read("bb02", 3) is None  # another length is another row
    assert cache.read("cc03", 2) is None  # rows with NaN are never stored
    assert EmbeddingCache(str(tmp_path), "other").read("aa01", 3) is None


TEXTS = ["a good film", "an awful film", "the cat sat", "", "good good good"]


def test_text_embeddings_cache_equals_plain_and_reuses_rows(tmp_path):
    from skltransfer import PretrainedTextEmbeddings

    plain = PretrainedTextEmbeddings("test_tiny_bert").fit(TEXTS).transform(TEXTS)
    est = PretrainedTextEmbeddings("test_tiny_bert", cache=tmp_path).fit(TEXTS)
    calls = []
    encode = est._encode
    est._encode = lambda texts: calls.append(len(texts)) or encode(texts)
    np.testing.assert_allclose(est.transform(TEXTS[:3]), plain[:3], atol=1e-6)
    np.testing.assert_allclose(est.transform(TEXTS), plain, atol=1e-6)
    assert calls == [3, 2]  # the second call embedded only the two new texts
    other = PretrainedTextEmbeddings("test_tiny_bert", pooling="cls", cache=tmp_path)
    assert other.fit(TEXTS)._cache_key() != est._cache_key()


def test_word_vectors_cache_equals_plain(tmp_path):
    from skltransfer import PretrainedWordVectors

    rng = np.random.default_rng(0)
    words = ["a", "good", "film", "an", "awful", "the", "cat", "sat"]
    vectors = (rng.normal(size=(len(words), 4)).astype(np.float32), words)
    for weighting in (None, "tfidf"):
        kw = {"vectors": vectors, "weighting": weighting}
        plain = PretrainedWordVectors(**kw).fit(TEXTS).transform(TEXTS)
        est = PretrainedWordVectors(**kw, cache=tmp_path).fit(TEXTS)
        np.testing.assert_array_equal(est.transform(TEXTS), plain)
        np.testing.assert_array_equal(est.transform(TEXTS), plain)  # from disk


def test_no_cache_means_no_hashing(rgb_images, monkeypatch):
    """Without a cache, transform neither fingerprints weights nor hashes inputs."""
    import skltransfer.caching as caching
    import skltransfer.features.image as image_module

    X, _ = rgb_images
    est = PretrainedImageFeatures(TINY).fit(X)

    def forbidden(*args, **kwargs):
        raise AssertionError("hashing without a cache")

    monkeypatch.setattr(image_module, "module_fingerprint", forbidden)
    monkeypatch.setattr(caching, "hash_bytes", forbidden)
    assert est.transform(X).shape == (12, 32)


# -- a wrong row is never served, work is never lost -------------------------------


def _row_path(cache, key):
    return cache._path(key)


def _pooled(pool):
    from skltransfer.backbones import ModuleBackbone

    body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), pool(1), torch.nn.Flatten())
    torch.manual_seed(0)
    return ModuleBackbone(body, preprocessing=ImagePreprocessing(16, None))


@pytest.mark.usefixtures("one_thread")
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


@pytest.mark.usefixtures("one_thread")
def test_in_place_change_of_a_shared_backbone_changes_the_key(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), np.uint8)
    est = PretrainedImageFeatures("test_tiny_cnn", cache=tmp_path).fit(X)
    first = est.transform(X)
    with torch.no_grad():
        next(est.backbone_.parameters()).mul_(3)
    assert not np.allclose(est.transform(X), first)


@pytest.mark.usefixtures("one_thread")
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


@pytest.mark.usefixtures("one_thread")
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


@pytest.mark.usefixtures("one_thread")
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


@pytest.mark.usefixtures("one_thread")
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


def test_blocks_of_rows_are_stored_as_they_come(tmp_path):
    """A compute that hands out blocks (image batches) keeps every block
    computed before it fails, within one chunk."""
    cache = EmbeddingCache(str(tmp_path), "model")
    keys = [f"{i:032d}" for i in range(5)]

    def compute(idx):
        yield np.ones((2, 3), np.float32) * idx[:2, None]
        yield np.ones((2, 3), np.float32) * idx[2:4, None]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.transform(keys, compute, 3)
    kept = cache.transform(keys[:4], _forbidden, 3)
    np.testing.assert_array_equal(kept[:, 0], [0, 1, 2, 3])


def test_nan_rows_are_returned_but_never_stored(tmp_path):
    cache = EmbeddingCache(str(tmp_path), "model")
    keys = [f"{i:032d}" for i in range(3)]
    rows = np.ones((3, 2), np.float32)
    rows[1, 0] = np.nan  # the row of an image that could not be read
    out = cache.transform(keys, lambda idx: rows[idx], 2)
    np.testing.assert_array_equal(out, rows)
    assert [os.path.exists(_row_path(cache, k)) for k in keys] == [True, False, True]


@pytest.mark.usefixtures("one_thread")
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


@pytest.mark.usefixtures("one_thread")
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
