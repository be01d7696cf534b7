"""Helpers shared by the example scripts: paths, data loading, plotting style."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "figures"
CACHE = Path(os.environ.get("SKLTRANSFER_EXAMPLE_CACHE", ".cache/examples"))
FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def save(fig, name: str) -> None:
    """Write a figure as a small PNG under docs/figures/."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / name
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"wrote {path} ({path.stat().st_size // 1024} kB)")


def plot_learning_curve(curves, per_class, *, unit, ylabel, title, name) -> None:
    """Accuracy (mean ± std per point) against samples per class, log x axis."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        mean, std = np.array(points).T
        ax.errorbar(per_class, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(per_class, [str(n) for n in per_class])
    ax.set_xlabel(f"training {unit} per class")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, name)


def per_class_subset(y, n_per_class: int, seed: int) -> np.ndarray:
    """Indices of ``n_per_class`` random samples of each class."""
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(y == c), n_per_class, replace=False)
        for c in np.unique(y)
    ]
    return rng.permutation(np.concatenate(picks))


def load_fashion_mnist(split: str = "train"):
    """Fashion-MNIST images (N, 28, 28) uint8 and labels, from the Debian package."""
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(FASHION / f"{prefix}-images-idx3-ubyte.gz") as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(int)
    return X, y
