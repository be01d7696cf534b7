"""Inference engines (_engines.py): which engine a pass takes, the fallback to
torch of a model that does not export, and the disk cache of exported models."""

import os
import pickle
import threading
import warnings

import numpy as np
import pytest
import torch
from _common_finetune import mlp
from sklearn.base import clone
from torch import nn

import skltransfer
import skltransfer._engines as engines
from skltransfer import FineTuneClassifier, PretrainedImageFeatures
from skltransfer._engines import (
    EngineSpec,
    check_engine,
    engine_cache_dir,
    engine_spec,
    exported_model,
)
from skltransfer.backbones import ImagePreprocessing, ModuleBackbone
from skltransfer.exceptions import EngineFallbackWarning, MissingDependencyError

CPU = torch.device("cpu")
ENGINE_NAMES = ["onnxruntime", "openvino"]


@pytest.fixture
def engine_cache(tmp_path, monkeypatch):
    """An empty engine cache, and an empty memo of started engines."""
    monkeypatch.setenv("SKLTRANSFER_ENGINE_CACHE", str(tmp_path / "engines"))
    skltransfer.clear_process_state()
    yield tmp_path / "engines"
    skltransfer.clear_process_state()


@pytest.fixture(params=ENGINE_NAMES)
def engine(request):
    pytest.importorskip(request.param, reason=f"{request.param} is not installed")
    return request.param


def _images(n=5, size=20):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), np.uint8)


# -- which engine -----------------------------------------------------------------


def test_auto_takes_an_installed_engine_on_the_cpu_and_torch_elsewhere(monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: name == "onnxruntime")
    spec = engine_spec("auto", CPU, None, kind="image", key=("k",))
    assert spec == EngineSpec("onnxruntime", ("k",), None)
    assert spec.min_samples == engines.AUTO_MIN_SAMPLES  # small passes: torch
    assert engine_spec("auto", CPU, torch.bfloat16, kind="image") is None  # fp32 only
    assert engine_spec("auto", CPU, None, kind="text", compile=True) is None
    assert engine_spec("auto", torch.device("cuda"), None, kind="text") is None
    assert engine_spec("torch", CPU, None, kind="text") is None
    monkeypatch.setattr(engines, "installed", lambda name: True)
    assert engine_spec("auto", CPU, None, kind="image").name == "openvino"
    assert engine_spec("auto", CPU, None, kind="text").name == "openvino"
    monkeypatch.setattr(engines, "installed", lambda name: name == "onnxruntime")
    assert engine_spec("auto", CPU, None, kind="text").name == "onnxruntime"
    monkeypatch.setattr(engines, "installed", lambda name: True)
    assert engine_spec("auto", CPU, torch.bfloat16, kind="text").name == "openvino"
    monkeypatch.setattr(engines, "installed", lambda name: False)
    assert engine_spec("auto", CPU, None, kind="image") is None


def test_an_engine_named_explicitly_must_be_able_to_run(monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: False)
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime"):
        check_engine("onnxruntime", "cpu", "fp32")
    check_engine("auto", "cpu", "fp32")  # auto falls back to torch without a word
    monkeypatch.setattr(engines, "installed", lambda name: True)
    with pytest.raises(ValueError, match="runs on the CPU"):
        engines._check_engine("openvino", torch.device("cuda"), None, False)
    with pytest.raises(ValueError, match="does not run precision bfloat16"):
        check_engine("onnxruntime", "cpu", "bf16")
    with pytest.raises(ValueError, match="compile=True"):
        check_engine("openvino", "cpu", "fp32", compile=True)


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SKLTRANSFER_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert engine_cache_dir() == str(tmp_path / "skltransfer" / "engines")
    monkeypatch.setenv("SKLTRANSFER_ENGINE_CACHE", str(tmp_path / "here"))
    assert engine_cache_dir() == str(tmp_path / "here")


# -- falling back to torch --------------------------------------------------------


class Branchy(nn.Module):
    """A forward whose Python control flow depends on the data: a trace would
    keep the branch of its example only."""

    def forward(self, x):
        colour = x.mean(dim=(2, 3))
        if colour.mean() > 0:
            return colour
        return -colour


def _branchy():
    pre = ImagePreprocessing(crop_size=16, resize_size=None)
    return ModuleBackbone(Branchy(), preprocessing=pre)


def test_a_model_that_does_not_trace_runs_on_torch_and_says_so_once(
    engine, engine_cache
):
    X = _images()
    est = PretrainedImageFeatures(_branchy(), engine=engine, batch_size=2).fit(X)
    with pytest.warns(EngineFallbackWarning, match="runs on torch") as record:
        Z = est.transform(X)
    assert len(record) == 1 and record[0].filename == __file__
    assert "differ from torch's" in str(record[0].message)
    assert "Python boolean" in str(record[0].message)  # what tracing warned
    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineFallbackWarning)
        again = est.transform(X)
    reference = clone(est).set_params(engine="torch").fit(X).transform(X)
    np.testing.assert_array_equal(Z, reference)
    np.testing.assert_array_equal(again, reference)


def test_outputs_that_differ_from_torch_fall_back(engine, engine_cache, monkeypatch):
    start = engines._Runner.__call__

    def wrong(self, batch):
        return start(self, batch) + 1.0

    monkeypatch.setattr(engines._Runner, "__call__", wrong)
    X = _images()
    est = PretrainedImageFeatures("test_tiny_cnn", engine=engine).fit(X)
    with pytest.warns(EngineFallbackWarning, match="differ from torch"):
        Z = est.transform(X)
    torch_est = clone(est).set_params(engine="torch").fit(X)
    np.testing.assert_array_equal(Z, torch_est.transform(X))


def test_one_backbone_at_two_image_sizes_runs_each_size_on_its_own_export(
    engine, engine_cache
):
    # Estimators of one process share the loaded backbone; the exported graph
    # takes one image size, so each size has its own.
    X = _images(n=6, size=40)
    small = PretrainedImageFeatures("test_tiny_cnn", engine=engine, image_size=16)
    large = clone(small).set_params(image_size=32)
    small.fit(X), large.fit(X)
    assert small.backbone_ is large.backbone_
    for est in (small, large, small):
        reference = clone(est).set_params(engine="torch").fit(X).transform(X)
        np.testing.assert_allclose(est.transform(X), reference, atol=1e-5)
    assert len(list(engine_cache.glob("*/model.onnx"))) == 2


def test_copies_of_the_same_weights_share_one_started_engine(engine_cache):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    spec, model, example = _spec_and_model()
    first = engines.engine_forward(spec, model, model, lambda: example, (3, 2, 2))
    copy = pickle.loads(pickle.dumps(model))
    assert engines.engine_forward(spec, copy, copy, pytest.fail, (3, 2, 2)) is first
    with torch.no_grad():
        copy[1].bias += 1.0  # other weights: another export
    other = engines.engine_forward(spec, copy, copy, lambda: example, (3, 2, 2))
    assert other is not first
    np.testing.assert_allclose(other(example), copy(example).detach(), atol=1e-6)


# -- the frozen layers of a fine-tuner ----------------------------------------------


def _counting_runs(monkeypatch) -> list:
    """Patch the engines' runner to count the batches it runs."""
    calls = []
    run = engines._Runner.__call__

    def counted(self, batch):
        calls.append(
            len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
        )
        return run(self, batch)

    monkeypatch.setattr(engines._Runner, "__call__", counted)
    return calls


_TEXTS = [f"word{i % 7} thing {i % 5} " + "more " * (i % 9) for i in range(40)]


@pytest.mark.parametrize(
    ("backbone", "unfreeze"),
    [
        ("test_tiny_cnn", 0),
        ("test_tiny_cnn", 1),
        ("test_tiny_bert", 0),
        ("test_tiny_bert", 1),
    ],
)
def test_a_fine_tuner_runs_its_frozen_layers_on_the_engine(
    engine, engine_cache, monkeypatch, backbone, unfreeze
):
    # unfreeze=0 stores the features; 1 the top stage's input (feature maps,
    # or the token states of texts, as long as each batch's longest text).
    X = _images(n=40, size=24) if backbone == "test_tiny_cnn" else _TEXTS
    y = np.arange(40) % 3
    calls = _counting_runs(monkeypatch)
    est = FineTuneClassifier(
        backbone, unfreeze=unfreeze, max_epochs=2, engine=engine, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.fit(X, y)
    # Started (checked on a few rows), then the pass in batches of 32.
    assert est.cache_status_ == "memory" and calls[-2:] == [32, 8]
    reference = clone(est).set_params(engine="torch").fit(X, y)
    np.testing.assert_allclose(
        est.predict_proba(X), reference.predict_proba(X), atol=1e-4
    )


def test_the_folds_of_a_search_start_the_engine_once(engine_cache, monkeypatch):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    X, y = _images(n=40, size=24), np.arange(40) % 2
    est = FineTuneClassifier(
        "test_tiny_cnn", unfreeze=0, max_epochs=1, engine="onnxruntime"
    )
    est.fit(X, y)
    calls = _counting_runs(monkeypatch)
    monkeypatch.setattr(engines, "_start", pytest.fail)  # started: no export
    clone(est).fit(X[::-1], y[::-1])  # a fresh copy of the same weights
    assert sum(calls) == 40


def test_auto_runs_small_passes_trained_texts_and_arrays_on_torch(
    engine_cache, monkeypatch
):
    monkeypatch.setattr(engines, "_start", pytest.fail)
    X, y = _images(n=12, size=24), np.arange(12) % 2
    FineTuneClassifier("test_tiny_cnn", unfreeze=0, max_epochs=1).fit(X, y)
    FineTuneClassifier("test_tiny_bert", unfreeze=0, max_epochs=1).fit(
        _TEXTS[:12], np.arange(12) % 2
    )
    texts = FineTuneClassifier("test_tiny_bert", unfreeze=1, max_epochs=1)
    assert texts.fit(_TEXTS, np.arange(40) % 2).cache_status_ == "memory"
    rng = np.random.default_rng(0)
    Xa, ya = rng.normal(size=(60, 64)).astype(np.float32), np.arange(60) % 2
    clf = FineTuneClassifier(mlp(), unfreeze=1, max_epochs=1).fit(Xa, ya)
    assert clf.cache_status_ == "memory"  # stored, by torch


def test_auto_runs_a_frozen_text_encoder_on_the_engine(engine_cache, monkeypatch):
    pytest.importorskip("openvino", reason="openvino is not installed")
    calls = _counting_runs(monkeypatch)
    est = FineTuneClassifier("test_tiny_bert", unfreeze=0, max_epochs=1)
    est.fit(_TEXTS, np.arange(40) % 2)
    assert est.n_trainable_groups_ == 0 and calls[-2:] == [32, 8]


# -- the disk cache ---------------------------------------------------------------


def _spec_and_model(engine="onnxruntime"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    return EngineSpec(engine, ("test",)), model, torch.zeros(2, 3, 2, 2)


def test_an_export_is_kept_and_found_again(engine_cache, monkeypatch):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    spec, model, example = _spec_and_model()
    path, _ = exported_model(spec, model, model, example)
    assert os.path.dirname(os.path.dirname(path)) == str(engine_cache)
    monkeypatch.setattr(engines, "_export", pytest.fail)  # never exported again
    assert exported_model(spec, model, model, example)[0] == path
    other = EngineSpec("onnxruntime", ("other settings",))
    monkeypatch.undo()
    assert exported_model(other, model, model, example)[0] != path


def test_concurrent_writers_leave_one_whole_model(engine_cache):
    folder = str(engine_cache / "key")
    barrier = threading.Barrier(4)

    def write(i):
        def fill(path):
            barrier.wait()
            with open(path, "wb") as f:
                f.write(bytes([i]) * 100_000)

        engines._write_folder(folder, fill)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    content = (engine_cache / "key" / "model.onnx").read_bytes()
    assert len(content) == 100_000 and len(set(content)) == 1
    assert sorted(p.name for p in engine_cache.iterdir()) == ["key"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_killed_writer_leaves_no_model_to_read(engine_cache):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    spec, model, example = _spec_and_model()
    engine_cache.mkdir()
    pid = os.fork()
    if pid == 0:  # the child dies half way through writing the model

        def half(path):
            with open(path, "wb") as f:
                f.write(b"\x08\x07" * 1000)
                f.flush()
                os._exit(9)

        engines._write_folder(str(engine_cache / "key"), half)
        os._exit(0)
    os.waitpid(pid, 0)
    partial = list(engine_cache.iterdir())
    assert [p.name[:9] for p in partial] == [".partial-"]
    path, _ = exported_model(spec, model, model, example)  # exports afresh
    runner = engines._Runner(spec, path)
    expected = model(example).detach().numpy()
    np.testing.assert_allclose(runner(example).numpy(), expected, atol=1e-6)


def test_a_light_pickle_holds_no_exported_model_and_reloads_with_the_engine(
    engine, engine_cache, monkeypatch
):
    X = _images()
    est = PretrainedImageFeatures("test_tiny_cnn", engine=engine).fit(X)
    Z = est.transform(X)
    blob = pickle.dumps(est)
    assert len(blob) < 1_000_000
    exported = next(engine_cache.glob("*/model.onnx"))
    assert exported.read_bytes()[:64] not in blob
    skltransfer.clear_process_state()  # as in a new process
    monkeypatch.setattr(engines, "_export", pytest.fail)  # found on disk
    loaded = pickle.loads(blob)
    assert loaded.engine == engine
    np.testing.assert_array_equal(loaded.transform(X), Z)


def test_an_engine_runs_batches_of_a_fixed_size_without_measuring(
    engine, engine_cache, monkeypatch
):
    # One timed batch per size is noise on an engine's flat curve (a
    # measurement on 256 photos chose 2, 2 and 32 in three passes): engines
    # take _ENGINE_BATCH, and nothing is remembered as measured.
    from skltransfer._batch_size import _ENGINE_BATCH, chosen_batch_sizes

    X = _images(n=2 * _ENGINE_BATCH + 5)
    est = PretrainedImageFeatures("test_tiny_cnn", engine=engine).fit(X)
    calls = _counting_runs(monkeypatch)
    Z = est.transform(X)
    assert calls[-3:] == [_ENGINE_BATCH, _ENGINE_BATCH, 5]
    assert not any(engine in key for key in chosen_batch_sizes())
    reference = clone(est).set_params(engine="torch").fit(X).transform(X)
    np.testing.assert_allclose(Z, reference, atol=1e-5)
