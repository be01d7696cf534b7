"""Shared fixtures: offline mode, seeds, and the data and tiny models several
test files use."""

import atexit
import gc
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a small shared CPU, OpenMP threads that spin while waiting make torch's
# run times erratic (one fit from 0.15 s to 20 s); passive waiting does not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Models exported for the inference engines go to a folder of this process,
# not the user's cache (subprocesses of the tests share it).
if "SKLTRANSFER_ENGINE_CACHE" not in os.environ:
    _ENGINE_CACHE = tempfile.mkdtemp(prefix="skltransfer-engines-")
    os.environ["SKLTRANSFER_ENGINE_CACHE"] = _ENGINE_CACHE
    atexit.register(shutil.rmtree, _ENGINE_CACHE, ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# torch is imported where it is used, not here: with pytest -n the process that
# hands out the tests reads this file too, and importing torch there delays
# every worker's start by seconds.


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        # Parallel test workers (pytest -n) share the cores: one torch thread
        # each, rather than each worker's threads competing for all of them.
        torch.set_num_threads(1)


def pytest_collection_finish(session):
    # The modules imported so far (torch, scikit-learn, ...) live until the
    # end: frozen, the collector stops walking them on every full collection
    # (about 0.15 s each, 0.7 s before freezing). Building models allocates
    # objects by the hundred thousand, so collections run less often too:
    # measured over the quick loop, 3.6 s of one worker's time went to the
    # collector with the default thresholds, 0.7 s with these.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def pytest_unconfigure(config):
    # Registered last, so it runs first at exit: the interpreter's final
    # collections then skip those objects too (seconds per process with torch,
    # torchvision and transformers loaded; pytest -n waits for every worker).
    atexit.register(gc.freeze)


@pytest.fixture(scope="session", autouse=True)
def _cpu_by_default():
    """The suite runs on the CPU, as CI does, on a machine with a GPU too:
    ``torch.cuda.is_available()`` is False, so ``device="auto"`` resolves to
    the CPU, except in the tests marked ``gpu`` (see :func:`_gpu_when_marked`).
    Session-scoped, so that the fitted fixtures of modules and of the
    session are CPU fits as well. Yields the real ``is_available``."""
    import torch

    real = torch.cuda.is_available
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        yield real


@pytest.fixture(autouse=True)
def _gpu_when_marked(request, _cpu_by_default, monkeypatch):
    """Tests marked ``gpu`` see the machine's CUDA devices."""
    if request.node.get_closest_marker("gpu") is not None:
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", _cpu_by_default)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    import torch

    np.random.seed(0)  # noqa: NPY002  (code under test may use the legacy RNG)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def short_probe_grid(monkeypatch):
    """Three values of C for the fine-tuners' head start instead of thirteen.

    On the tiny data of these tests the probe's cross-validation over C is
    most of a fit's time (a multi-label check fits 5 labels x 3 folds x 13 Cs
    logistic regressions per fit). Its code path is the same with any grid;
    the test of the choice of C restores the full grid (``full_probe_grid``).
    Returns the full grid.
    """
    from skltransfer.finetune import _probe

    full = _probe.PROBE_CS
    monkeypatch.setattr(_probe, "PROBE_CS", (1e-2, 1.0, 1e2))
    return full


@pytest.fixture
def full_probe_grid(short_probe_grid, monkeypatch):
    """The probe's own grid of C: for the test of the choice of C, and for fits
    compared with fits in other processes (which never see the short grid)."""
    from skltransfer.finetune import _probe

    monkeypatch.setattr(_probe, "PROBE_CS", short_probe_grid)


@pytest.fixture
def no_progress_delay(monkeypatch):
    """Bars of ``verbose="auto"`` that do not wait: only the decision whether
    to show one keeps them away."""
    from skltransfer import _progress

    monkeypatch.setattr(_progress, "AUTO_DELAY", 0.0)


@pytest.fixture
def watched_terminal(no_progress_delay, monkeypatch):
    """A session a person watches: a terminal, no CI, the main process."""
    from skltransfer import _progress

    monkeypatch.setattr(_progress, "_interactive", lambda: True)
    monkeypatch.setattr(_progress, "_in_worker", lambda: False)
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture(autouse=True)
def no_cross_fit(monkeypatch):
    """No cross-fit of the interpolation weight (``interpolation="auto"``).

    It fits the network three more times on small data, where these tests
    fit most; its code path is tested on its own (``cross_fit``). Returns the
    library's threshold.
    """
    from skltransfer.finetune import _interpolation

    threshold = _interpolation.AUTO_CROSS_FIT
    monkeypatch.setattr(_interpolation, "AUTO_CROSS_FIT", 0)
    return threshold


@pytest.fixture
def cross_fit(no_cross_fit, monkeypatch):
    """The library's cross-fit of the interpolation weight."""
    from skltransfer.finetune import _interpolation

    monkeypatch.setattr(_interpolation, "AUTO_CROSS_FIT", no_cross_fit)


@pytest.fixture
def own_defaults(full_probe_grid, cross_fit):
    """The library's defaults as a user gets them: for the docs' examples, the
    demo, and fits compared with fits in other processes (which never see the
    patches of these fixtures)."""


@pytest.fixture
def hide_package(monkeypatch):
    """``hide_package(name)``: ``importlib.import_module(name)`` raises ImportError."""
    import importlib

    real = importlib.import_module
    hidden = set()

    def fake(name, *args):
        if name in hidden:
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    return hidden.add


@pytest.fixture
def frozen_pass(monkeypatch):
    """The samples each fine-tuning fit's frozen pass runs (its
    ``map_batches`` calls), in a list the test may clear."""
    from skltransfer.finetune import _frozen_activations

    samples = []
    real = _frozen_activations.map_batches

    def counting(inputs, *args, **kwargs):
        samples.append(len(inputs))
        return real(inputs, *args, **kwargs)

    monkeypatch.setattr(_frozen_activations, "map_batches", counting)
    return samples


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.fixture(scope="session")
def rgb_images():
    """Twelve small uint8 RGB images (N, H, W, C) with a learnable label."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(12, 20, 24, 3), dtype=np.uint8)
    y = np.array([0, 1] * 6)
    X[y == 1, :, :12] = 255  # class 1: bright left half
    return X, y


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks train fastest on one thread, more so on a shared machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_digits(digits):
    """The 8x8 digits scaled to [0, 1], float32."""
    X, y = digits
    return (X / 16.0).astype(np.float32), y


# -- models several test files share, loaded once per file (or process) ---------


@pytest.fixture(scope="session")
def source(small_digits):
    """An MLP fine-tuned on the digits 0 to 4: a source model to transfer from.

    Fitted once per test process: no test may change it (the fine-tuning
    tests check that transferring from it leaves its weights as they were).
    """
    from _common_finetune import mlp

    from skltransfer import FineTuneClassifier

    X, y = small_digits
    return FineTuneClassifier(mlp(), unfreeze="all", random_state=0).fit(
        X[y < 5][:300], y[y < 5][:300]
    )


@pytest.fixture(scope="module")
def fitted_image(small_digits):
    """The tiny CNN fine-tuned on 8x8 digits, its top layer group trained."""
    from _common_finetune import IMAGE

    from skltransfer import FineTuneClassifier

    X, y = small_digits
    return FineTuneClassifier(**IMAGE, unfreeze=1, random_state=0).fit(X[:90], y[:90])


@pytest.fixture(scope="module")
def tiny_bert():
    """The tiny BERT text backbone."""
    from skltransfer.backbones import load_text_backbone

    return load_text_backbone("test_tiny_bert")


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory, tiny_bert):
    """The tiny BERT saved as a local Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    tiny_bert.body.model.save_pretrained(folder)
    tiny_bert.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text_embeddings():
    """PretrainedTextEmbeddings on the tiny BERT, fitted on ``_common_text.TEXTS``."""
    from _common_text import TEXTS

    from skltransfer import PretrainedTextEmbeddings

    return PretrainedTextEmbeddings("test_tiny_bert").fit(TEXTS)


@pytest.fixture(scope="module")
def tiny_hf_vit(tmp_path_factory):
    """A tiny ViT with an image-classification head saved as a local folder."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        id2label={0: "ant", 1: "bee", 2: "cat"},
        label2id={"ant": 0, "bee": 1, "cat": 2},
    )
    path = tmp_path_factory.mktemp("hf_vit")
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, the hub in offline mode, and empty weight caches."""
    import socket

    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
