"""Centre crop or whole image: ``crop_fraction`` at the weights' convention
("auto", 224 of 256) against 1.0 (the whole shorter side), on the labelled
image data sets that install offline.

For each data set: frozen EfficientNet-Lite0 features at the defaults
(224 px), LogisticRegression on top, 5-fold stratified cross-validation on the
same folds for both settings; the table gives mean accuracy and the paired
difference (mean and standard error over the folds).

    python benchmarks/bench_crop.py [--n 1000]
"""

from __future__ import annotations

import argparse

import numpy as np
from bench_image_accuracy import load_fashion, load_mnist_5k
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from skltransfer import PretrainedImageFeatures

SETTINGS = ("auto", 1.0)


def datasets(n: int) -> dict:
    rng = np.random.default_rng(0)
    digits = load_digits()
    out = {"digits (8x8)": (digits.images, digits.target)}
    for name, (X, y) in {
        "MNIST-5k (28x28)": load_mnist_5k(),
        "Fashion-MNIST (28x28)": load_fashion("train"),
    }.items():
        keep = rng.choice(len(X), size=min(n, len(X)), replace=False)
        out[name] = (X[keep], y[keep])
    return out


def scores(X, y) -> dict:
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    out = {}
    for fraction in SETTINGS:
        features = PretrainedImageFeatures(crop_fraction=fraction).fit(X[:1])
        Z = features.transform(X)
        probe = LogisticRegression(max_iter=2000)
        out[fraction] = cross_val_score(probe, Z, y, cv=folds)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    print(
        f"{'data set':<24} {'n':>5} {'crop auto':>10} {'whole (1.0)':>12} "
        f"{'whole - auto':>16}"
    )
    wins = 0
    for name, (X, y) in datasets(args.n).items():
        s = scores(X, y)
        diff = s[1.0] - s["auto"]
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        wins += diff.mean() > 0
        print(
            f"{name:<24} {len(X):>5} {s['auto'].mean():>10.3f} "
            f"{s[1.0].mean():>12.3f} {diff.mean():>+9.3f} ± {se:.3f}",
            flush=True,
        )
    print(f"whole image better on {wins} of 3 data sets")


if __name__ == "__main__":
    main()
