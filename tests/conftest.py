"""Shared fixtures: offline mode, seeds, tiny models loaded once per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a small shared CPU, OpenMP threads that spin while waiting make torch's
# run times erratic (one fit from 0.15 s to 20 s); passive waiting does not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    np.random.seed(0)  # noqa: NPY002  (code under test may use the legacy RNG)
    torch.manual_seed(0)


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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_digits(digits):
    """The 8x8 digits scaled to [0, 1], float32."""
    X, y = digits
    return (X / 16.0).astype(np.float32), y
