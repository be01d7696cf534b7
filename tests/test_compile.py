"""Compiled forward passes (_compile.py): one per model, shared by clones; a
compiler failure warns once and runs uncompiled."""

import shutil
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

import skltransfer._compile as compile_module
from skltransfer import PretrainedImageFeatures
from skltransfer._compile import compiled_forward
from skltransfer._process_state import ProcessMemo
from skltransfer.exceptions import SkltransferWarning


@pytest.fixture
def fake_compile(monkeypatch):
    """torch.compile replaced by a counting stand-in that runs eagerly."""
    calls = []

    def compile_(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(compile_module.torch, "compile", compile_)
    monkeypatch.setattr(compile_module, "compiled_forwards", ProcessMemo(maxsize=4))
    return calls


def test_clones_on_the_same_model_share_one_compiled_forward(fake_compile):
    X = np.random.default_rng(0).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    est = PretrainedImageFeatures("test_tiny_cnn", compile=True, batch_size=4)
    first = est.fit(X).transform(X)
    again = clone(est).fit(X).transform(X)
    np.testing.assert_array_equal(first, again)
    assert fake_compile == [{"options": {"freezing": True}}]
    other_pooling = clone(est).set_params(compile=True, layer=None).fit(X)
    assert other_pooling.transform(X).shape == first.shape
    assert len(fake_compile) == 1
    with pytest.warns(SkltransferWarning, match="runs uncompiled") as rec:
        hooked = clone(est).set_params(layer=1).fit(X)
    assert rec[0].filename == __file__
    hooked.transform(X)
    assert len(fake_compile) == 1  # a hooked layer is not compiled


def test_a_compiler_failure_warns_once_and_runs_uncompiled(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(x):
            raise RuntimeError("InductorError: no working C++ compiler\nmore")

        return run

    monkeypatch.setattr(compile_module.torch, "compile", broken_compile)
    model = torch.nn.Linear(3, 2)
    forward = compiled_forward(model, "key", model)
    x = torch.ones(2, 3)
    with pytest.warns(SkltransferWarning, match="no working C\\+\\+ compiler") as rec:
        out = forward(x)
    assert rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(forward(x).detach(), out.detach())


def test_a_compiler_failure_in_a_pipeline_names_the_users_line(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(x):
            raise RuntimeError("InductorError: no working C++ compiler")

        return run

    monkeypatch.setattr(compile_module.torch, "compile", broken_compile)
    monkeypatch.setattr(compile_module, "compiled_forwards", ProcessMemo(maxsize=4))
    X = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3), dtype=np.uint8)
    pipe = make_pipeline(PretrainedImageFeatures("test_tiny_cnn", compile=True))
    with pytest.warns(SkltransferWarning, match="running the model uncompiled") as rec:
        pipe.fit_transform(X)
    assert rec[0].filename == __file__


@pytest.mark.slow  # compiles with inductor
@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
def test_compiled_features_match_eager():
    X = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    eager = PretrainedImageFeatures("test_tiny_cnn").fit(X).transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkltransferWarning)  # really compiled
        est = PretrainedImageFeatures("test_tiny_cnn", compile=True, batch_size=4)
        compiled = est.fit(X).transform(X)  # 4 + 4 + 2 padded to 4
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
