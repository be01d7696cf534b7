"""Feature extraction on scikit-learn's digits, and the learning curve.

The three feature-extraction scenarios — raw pixels, frozen pretrained
features, and frozen features from only 200 digits — then accuracy against the
number of training digits per class for raw pixels, frozen features and
fine-tuning. The backbone is EfficientNet-Lite0 pretrained on ImageNet photos,
a domain far from 8x8 digits.

Run: ``python docs/examples/feature_extraction_digits.py`` (offline, a few
minutes on two CPU cores). Writes ``docs/figures/digits_learning_curve.png``.
"""

from __future__ import annotations

import time

import numpy as np
from _common import CACHE, per_class_subset, plot_learning_curve
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltransfer import FineTuneClassifier, PretrainedImageFeatures

IMAGE_SIZE = 64
LAYER = "blocks.5"
PER_CLASS = [5, 10, 20, 50, 100]
SEEDS = [0, 1, 2]
# Fine-tuning at the defaults, and two layer groups deep (a grid-searchable
# parameter; the input domain is far from ImageNet's photos).
FINETUNED = {"fine-tuning": {}, "fine-tuning, unfreeze=2": {"unfreeze": 2}}


def linear():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))


def scenarios(X, Z, y):
    """The three scenarios, 5-fold cross-validated."""
    subset = np.random.default_rng(0).permutation(len(X))[:200]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    rows = [
        ("raw pixels, 1797 digits", X, y),
        ("pretrained features, 1797 digits", Z, y),
        ("raw pixels, 200 digits", X[subset], y[subset]),
        ("pretrained features, 200 digits", Z[subset], y[subset]),
    ]
    print("\nLogistic regression, 5-fold cross-validated accuracy")
    for name, inputs, labels in rows:
        scores = cross_val_score(linear(), inputs, labels, cv=cv)
        print(f"  {name:<34} {scores.mean():.3f} ± {scores.std():.3f}")


def finetune(seed, **params):
    # The defaults (the top layer group trains, two from 1,000 training digits,
    # with a linear-probe head start and max_epochs="auto"), or with ``params``
    # changed.
    return FineTuneClassifier(
        image_shape=(8, 8), image_size=IMAGE_SIZE, random_state=seed, **params
    )


def learning_curve(X, Z, y):
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=500, stratify=y, random_state=0
    )
    curves = {
        "raw pixels": [],
        "frozen features": [],
        "fine-tuning": [],
        "fine-tuning, unfreeze=2": [],
    }
    for n in PER_CLASS:
        runs = {name: [] for name in curves}
        for seed in SEEDS:
            tr = idx_train[per_class_subset(y[idx_train], n, seed)]
            runs["raw pixels"].append(
                linear().fit(X[tr], y[tr]).score(X[idx_test], y[idx_test])
            )
            runs["frozen features"].append(
                linear().fit(Z[tr], y[tr]).score(Z[idx_test], y[idx_test])
            )
            for name, params in FINETUNED.items():
                model = finetune(seed, **params).fit(X[tr], y[tr])
                runs[name].append(model.score(X[idx_test], y[idx_test]))
        line = f"  {n:>4} per class"
        for name, scores in runs.items():
            curves[name].append((np.mean(scores), np.std(scores)))
            line += f"   {name} {np.mean(scores):.3f}"
        print(line, flush=True)
    return curves


def plot(curves):
    plot_learning_curve(
        curves,
        PER_CLASS,
        unit="digits",
        ylabel="test accuracy (500 held-out digits)",
        title="Digits: when does a pretrained model pay?",
        name="digits_learning_curve.png",
    )


def main():
    X, y = load_digits(return_X_y=True)
    start = time.perf_counter()
    features = PretrainedImageFeatures(
        layer=LAYER, image_shape=(8, 8), image_size=IMAGE_SIZE, cache=CACHE
    )
    Z = features.fit_transform(X)
    print(
        f"Embedded {len(X)} digits at {IMAGE_SIZE} px, layer {LAYER!r}: "
        f"{Z.shape[1]} features ({time.perf_counter() - start:.0f} s)"
    )
    scenarios(X, Z, y)
    print(
        f"\nLearning curve: 500 test digits; raw and frozen mean of {len(SEEDS)} "
        "draws each"
    )
    plot(learning_curve(X, Z, y))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
