"""On a CUDA device: every estimator fits, predicts and pickles there, at the
default precision (bf16 where the GPU supports it, fp16 elsewhere) and in fp16
(a loss scaler keeps small gradients from vanishing), and agrees with the CPU
where the arithmetic is the same. Skipped without CUDA."""

import pickle

import numpy as np
import pytest
import torch
from _common_finetune import IMAGE, SENTIMENT_LABELS, SENTIMENT_TEXTS, mlp
from _common_text import TEXTS

from skltransfer import (
    FineTuneClassifier,
    FineTuneRegressor,
    PretrainedImageClassifier,
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
)
from skltransfer.finetune import _contrastive

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _on_cuda(module) -> bool:
    return {p.device.type for p in module.parameters()} == {"cuda"}


def test_default_device_and_precision_on_a_gpu(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, random_state=0).fit(X[:120], y[:120])
    assert _on_cuda(clf.module_)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    seen = []

    def record(module, args, output):
        seen.append(output.dtype)

    hook = clf.module_.head.register_forward_hook(record)
    try:
        proba = clf.predict_proba(X[120:180])
    finally:
        hook.remove()
    assert seen and set(seen) == {expected}
    # The outputs come back as float32 numpy, each row a distribution.
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-3)
    assert set(clf.predict(X[120:180])) <= set(clf.classes_)


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_fine_tuning_learns_in_every_precision(small_digits, precision):
    X, y = small_digits
    clf = FineTuneClassifier(
        mlp(), unfreeze="all", max_epochs=15, lr=1e-2, lr_decay=1.0,
        precision=precision, random_state=0,
    )  # fmt: skip
    clf.fit(X[:600], y[:600])
    assert np.isfinite(clf.history_[-1]["train_loss"])
    assert clf.score(X[600:900], y[600:900]) > 0.85


def test_gpu_and_cpu_fits_agree_in_fp32(small_digits):
    """Same seed, same data, fp32 on both: the fitted networks predict alike
    (kernels differ in summation order, so not bit for bit)."""
    X, y = small_digits
    params = dict(
        unfreeze="all", max_epochs=5, lr=1e-2, lr_decay=1.0, precision="fp32",
        random_state=0,
    )  # fmt: skip
    cpu = FineTuneClassifier(mlp(), device="cpu", **params).fit(X[:300], y[:300])
    gpu = FineTuneClassifier(mlp(), device="cuda", **params).fit(X[:300], y[:300])
    agree = np.mean(cpu.predict(X[300:600]) == gpu.predict(X[300:600]))
    assert agree > 0.97


def test_regressor_on_a_gpu(small_digits):
    X, y = small_digits
    target = y.astype(np.float32)
    reg = FineTuneRegressor(
        mlp(), unfreeze="all", max_epochs=20, lr=1e-2, lr_decay=1.0, random_state=0
    ).fit(X[:600], target[:600])
    assert _on_cuda(reg.module_)
    pred = reg.predict(X[600:900])
    assert pred.shape == (300,) and np.isfinite(pred).all()
    assert reg.score(X[600:900], target[600:900]) > 0.5


def test_frozen_activations_are_stored_on_the_gpu_fit(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze=1, random_state=0)
    clf.fit(X[:120], y[:120])
    assert clf.cached_groups_ == len(clf.layer_groups_) - 1
    plain = FineTuneClassifier(
        **IMAGE, unfreeze=1, cache_frozen=False, random_state=0
    ).fit(X[:120], y[:120])
    agree = np.mean(clf.predict(X[120:240]) == plain.predict(X[120:240]))
    assert agree > 0.9


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_contrastive_text_fine_tuning_on_a_gpu(precision):
    clf = FineTuneClassifier("test_tiny_bert", precision=precision, random_state=0).fit(
        SENTIMENT_TEXTS, SENTIMENT_LABELS
    )
    assert clf.contrastive_ and _on_cuda(clf.module_)
    assert clf.pair_stage_["steps"] >= _contrastive.MIN_STEPS
    assert np.isfinite(clf.pair_stage_["pair_loss"])
    assert set(clf.predict(SENTIMENT_TEXTS)) <= set(clf.classes_)


def test_the_frozen_pass_of_a_gpu_fit_runs_on_torch():
    """engine="auto" takes ONNX Runtime or OpenVINO on the CPU only."""
    from skltransfer._engines import engine_spec

    assert engine_spec("auto", torch.device("cuda"), None, kind="image") is None


def test_text_embeddings_match_the_cpu_in_fp32():
    cpu = PretrainedTextEmbeddings("test_tiny_bert", device="cpu").fit(TEXTS)
    gpu = PretrainedTextEmbeddings("test_tiny_bert", device="cuda").fit(TEXTS)
    np.testing.assert_allclose(gpu.transform(TEXTS), cpu.transform(TEXTS), atol=1e-4)
    # In bf16 the directions agree closely.
    half = PretrainedTextEmbeddings(
        "test_tiny_bert", device="cuda", precision="bf16"
    ).fit(TEXTS)
    a, b = half.transform(TEXTS), cpu.transform(TEXTS)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99


def test_image_classifier_on_a_gpu(rgb_images):
    X, _ = rgb_images
    cpu = PretrainedImageClassifier("test_tiny_cnn", device="cpu").fit(X)
    gpu = PretrainedImageClassifier("test_tiny_cnn", device="cuda").fit(X)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-4)


def test_a_gpu_fine_tuner_pickles_and_predicts_the_same(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, random_state=0).fit(X[:120], y[:120])
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(
        loaded.predict_proba(X[120:180]), clf.predict_proba(X[120:180]), atol=1e-6
    )


def test_measured_batch_size_on_a_gpu_gives_the_same_features():
    """batch_size=None measures batch sizes from 256 images on a GPU; the
    features are those of a fixed batch size."""
    X = np.random.default_rng(0).integers(0, 256, (300, 20, 24, 3), dtype=np.uint8)
    auto = PretrainedImageFeatures("test_tiny_cnn", device="cuda")
    fixed = PretrainedImageFeatures("test_tiny_cnn", device="cuda", batch_size=4)
    # cuDNN picks its convolution algorithm by batch size (TF32 among them).
    np.testing.assert_allclose(
        auto.fit(X).transform(X), fixed.fit(X).transform(X), atol=1e-4
    )


def test_the_cross_fit_runs_its_folds_on_the_gpu(small_digits, cross_fit):
    """Each fold trains the same working copy of the pretrained body, which
    the first fold leaves on the GPU."""
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, random_state=0).fit(X[:90], y[:90])
    assert clf.cross_fit_["folds"] == 3 and _on_cuda(clf.module_)
    assert clf.interpolation_ in clf.cross_fit_["interpolations"]


def test_a_users_module_on_the_gpu_is_fine_tuned_and_left_there(small_digits):
    X, y = small_digits
    module = mlp().cuda()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    clf = FineTuneClassifier(module, unfreeze="all", max_epochs=2, random_state=0)
    clf.fit(X[:200], y[:200])
    assert _on_cuda(clf.module_) and _on_cuda(module)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key
    # On the CPU too: the probe of its output width runs where it lives.
    cpu = FineTuneClassifier(module, unfreeze="all", max_epochs=2, device="cpu")
    assert cpu.fit(X[:200], y[:200]).score(X[200:400], y[200:400]) > 0.3


def test_a_cpu_estimator_after_a_gpu_pass_on_the_same_backbone(rgb_images):
    """The process shares one frozen copy of a backbone between estimators: a
    pass on the GPU leaves it there, and a CPU fit that probes it (an
    intermediate layer) runs where it is."""
    X, _ = rgb_images
    PretrainedImageFeatures("test_tiny_cnn", device="cuda").fit(X).transform(X)
    cpu = PretrainedImageFeatures("test_tiny_cnn", layer="stages.0", device="cpu")
    Z = cpu.fit(X).transform(X)
    gpu = PretrainedImageFeatures("test_tiny_cnn", layer="stages.0", device="cuda")
    np.testing.assert_allclose(gpu.fit(X).transform(X), Z, atol=1e-4)
