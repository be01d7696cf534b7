"""The learning curve on Fashion-MNIST: when does a pretrained model pay?

Accuracy on 1000 held-out test images (100 per class) against the number of
training images per class, for logistic regression on raw pixels, logistic
regression on frozen EfficientNet-Lite0 features (ImageNet-pretrained), and
``FineTuneClassifier`` at its defaults (the backbone's top layer group, its
top two from 1,000 training images, and a new head that starts as a linear
probe). Images are upscaled to 112 px.

For each draw (seed), a pool of the largest training size is drawn per class
and every smaller training set is taken from its start, so the sets of one
draw are nested. The pools are embedded once; the embedding cache then serves
every subset without running the backbone again. Fine-tuning runs the frozen
layer groups once per fit (``cache_frozen``, on by default) and trains the
rest.

Run: ``python docs/examples/fashion_learning_curve.py`` (offline, about 20
minutes on two CPU cores; needs the ``dataset-fashion-mnist`` Debian
package). Writes ``docs/figures/fashion_learning_curve.png``.
"""

from __future__ import annotations

import os
import time

# Idle OpenMP threads sleep instead of spinning: on a small CPU shared with
# other work, spinning threads made epoch times jump tenfold. Set before torch
# loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from _common import CACHE, load_fashion_mnist, per_class_subset, plot_learning_curve  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skltransfer import FineTuneClassifier, PretrainedImageFeatures  # noqa: E402

IMAGE_SIZE = 112
PER_CLASS = [5, 10, 20, 50, 100, 200, 500]
SEEDS = [0, 1, 2]
FINETUNE_SEEDS = [0, 1]
N_TEST = 100  # per class


def linear():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))


def finetune(seed):
    # The defaults: unfreeze="auto" (the top layer group, or two from 1,000
    # training images), a linear-probe head start, max_epochs="auto".
    return FineTuneClassifier(image_size=IMAGE_SIZE, random_state=seed)


def first_per_class(y, pool, n):
    """The first ``n`` indices of each class in ``pool``, in pool order."""
    return np.concatenate([pool[y[pool] == c][:n] for c in np.unique(y)])


def learning_curve(X, y, X_te, y_te):
    features = PretrainedImageFeatures(image_size=IMAGE_SIZE, cache=CACHE)
    pools = {seed: per_class_subset(y, max(PER_CLASS), seed) for seed in SEEDS}
    start = time.perf_counter()
    everything = np.unique(np.concatenate(list(pools.values())))
    features.fit(X[everything]).transform(X[everything])
    Z_te = features.transform(X_te)
    print(
        f"Embedded {len(everything)} training and {len(X_te)} test images at "
        f"{IMAGE_SIZE} px ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    flat_te = X_te.reshape(len(X_te), -1)
    curves = {"raw pixels": [], "frozen features": [], "fine-tuning": []}
    for n in PER_CLASS:
        start = time.perf_counter()
        runs = {name: [] for name in curves}
        for seed in SEEDS:
            tr = first_per_class(y, pools[seed], n)
            flat = X[tr].reshape(len(tr), -1)
            runs["raw pixels"].append(linear().fit(flat, y[tr]).score(flat_te, y_te))
            Z = features.transform(X[tr])  # served by the cache
            runs["frozen features"].append(linear().fit(Z, y[tr]).score(Z_te, y_te))
            if seed in FINETUNE_SEEDS:  # the costly one
                model = finetune(seed).fit(X[tr], y[tr])
                runs["fine-tuning"].append(model.score(X_te, y_te))
        line = f"  {n:>4} per class"
        for name, scores in runs.items():
            curves[name].append((np.mean(scores), np.std(scores)))
            line += f"   {name} {np.mean(scores):.3f} ± {np.std(scores):.3f}"
        print(line + f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    return curves


def plot(curves):
    plot_learning_curve(
        curves,
        PER_CLASS,
        unit="images",
        ylabel=f"test accuracy ({10 * N_TEST} held-out images)",
        title=f"Fashion-MNIST at {IMAGE_SIZE} px: when does a pretrained model pay?",
        name="fashion_learning_curve.png",
    )


def main():
    start = time.perf_counter()
    X, y = load_fashion_mnist("train")
    X_te, y_te = load_fashion_mnist("test")
    test = per_class_subset(y_te, N_TEST, 0)
    print(
        f"Fashion-MNIST learning curve: {len(test)} test images; raw and frozen "
        f"mean ± std of {len(SEEDS)} draws, fine-tuning {len(FINETUNE_SEEDS)} draw(s)"
    )
    plot(learning_curve(X, y, X_te[test], y_te[test]))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
