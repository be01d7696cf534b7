"""The four transfer strategies with EfficientNet-Lite0 (ImageNet-pretrained).

1. Direct use on scikit-image's photos, whose subjects are ImageNet classes.
2-4. On a Fashion-MNIST subset, whose classes are not: fixed features +
logistic regression, fine-tuning at the defaults (the top layer group on 500
images), and a frozen body with a new MLP head; raw pixels as the baseline.

Run: ``python docs/examples/four_strategies.py`` (offline, a few minutes on two
CPU cores; needs the ``dataset-fashion-mnist`` Debian package). Writes
``docs/figures/direct_use_photos.png`` and
``docs/figures/fashion_confusion.png``.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
from _common import CACHE, FASHION_CLASSES, load_fashion_mnist, per_class_subset, save
from skimage import data
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltransfer import (
    FineTuneClassifier,
    PretrainedImageClassifier,
    PretrainedImageFeatures,
)

IMAGE_SIZE = 64
N_TRAIN, N_TEST = 50, 50  # per class
PHOTOS = ["coffee", "chelsea", "astronaut", "rocket"]


def direct_use():
    images = [getattr(data, name)() for name in PHOTOS]
    clf = PretrainedImageClassifier().fit()
    labels, probas = clf.predict_top_k(images, k=3)
    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 3.2))
    print("1. Direct use, top-3 ImageNet classes")
    for ax, name, image, top, p in zip(axes, PHOTOS, images, labels, probas):
        ax.imshow(image, cmap="gray")
        ax.axis("off")
        ax.set_title("\n".join(f"{t} {q:.2f}" for t, q in zip(top, p)), fontsize=8)
        print(f"  {name:<18} " + ", ".join(f"{t} ({q:.2f})" for t, q in zip(top, p)))
    save(fig, "direct_use_photos.png")


def fashion_data():
    X, y = load_fashion_mnist("train")
    X_te, y_te = load_fashion_mnist("test")
    tr, te = per_class_subset(y, N_TRAIN, 0), per_class_subset(y_te, N_TEST, 0)
    return X[tr], y[tr], X_te[te], y_te[te]


def linear():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))


def strategies(X, y, X_te, y_te):
    common = dict(image_size=IMAGE_SIZE, random_state=0)  # otherwise the defaults
    features = PretrainedImageFeatures(image_size=IMAGE_SIZE, cache=CACHE)
    models = {
        "raw pixels + logistic regression": linear(),
        "2. fixed features + logistic regression": make_pipeline(features, linear()),
        "3. fine-tuning (defaults)": FineTuneClassifier(**common),
        "4. frozen body + MLP head": FineTuneClassifier(
            unfreeze=0, head=(256,), **common
        ),
    }
    flat = {"raw pixels + logistic regression"}
    results = {}
    for name, model in models.items():
        start = time.perf_counter()
        a, b = (
            (X.reshape(len(X), -1), X_te.reshape(len(X_te), -1))
            if name in flat
            else (X, X_te)
        )
        model.fit(a, y)
        results[name] = model.predict(b)
        acc = np.mean(results[name] == y_te)
        print(
            f"  {name:<42} {acc:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True
        )
    return results


def main():
    direct_use()
    X, y, X_te, y_te = fashion_data()
    print(
        f"\nFashion-MNIST: {len(X)} training / {len(X_te)} test images "
        f"({N_TRAIN} / {N_TEST} per class), {IMAGE_SIZE} px"
    )
    results = strategies(X, y, X_te, y_te)
    best = max(results, key=lambda k: np.mean(results[k] == y_te))
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ConfusionMatrixDisplay.from_predictions(
        y_te, results[best], display_labels=FASHION_CLASSES, ax=ax,
        xticks_rotation=60, colorbar=False,
    )  # fmt: skip
    ax.set_title(f"Fashion-MNIST, {best}")
    save(fig, "fashion_confusion.png")


if __name__ == "__main__":
    main()
