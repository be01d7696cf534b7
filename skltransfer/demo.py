"""Demo: three ways to reuse a pretrained model, on data that ships offline.

Run with ``python -m skltransfer.demo`` (under a minute on two CPU cores; no
download). Every estimator runs at its defaults. Three experiments:

1. **Direct use.** EfficientNet-Lite0, pretrained on ImageNet, names what is
   in scikit-image's and scikit-learn's sample photos with its own head: a
   1000-way classifier that needs no labelled example at all.
2. **Fixed features.** scikit-learn's 1797 bundled 8x8 digits: logistic
   regression on raw pixels against logistic regression on frozen pretrained
   features (the last layer, and a middle stage), 5-fold cross-validated, on
   all digits and on 200 of them. ImageNet photos and 8x8 digits are about as
   far apart as two image domains get, and the result says so honestly.
3. **Fine-tuning a source model.** A small torch network trained on the digits
   0-4 is fine-tuned on only 50 digits 5-9 (``FineTuneClassifier`` with the
   frozen source as ``backbone=``), with and without augmentation, against the
   same network trained from scratch, a linear probe on the source features
   and logistic regression on raw pixels.

It prints a table per experiment and writes ``skltransfer_demo.png`` (needs
matplotlib; ``--figure`` chooses the path).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits, load_sample_images
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltransfer import (
    FineTuneClassifier,
    PretrainedImageClassifier,
    PretrainedImageFeatures,
)


def _progress(iterable, desc: str, total: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False)


# -- 1. direct use -----------------------------------------------------------


def sample_photos() -> dict:
    """Named photos that ship with scikit-learn (and scikit-image, if there)."""
    names = ("china", "flower")
    photos = dict(zip(names, load_sample_images().images, strict=True))
    try:
        from skimage import data
    except ImportError:
        return photos
    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        photos[name] = getattr(data, name)()
    return photos


def direct_use(backbone: str) -> list[tuple]:
    photos = sample_photos()
    clf = PretrainedImageClassifier(backbone).fit(list(photos.values()))
    labels, probas = clf.predict_top_k(list(photos.values()), k=1)
    rows = [
        (name, photo, label[0], proba[0])
        for (name, photo), label, proba in zip(
            photos.items(), labels, probas, strict=True
        )
    ]
    print("\n1. Direct use: ImageNet's own head, no training, no labels")
    for name, _, label, proba in rows:
        print(f"  {name:<10} -> {label} ({proba:.2f})")
    return rows


# -- 2. fixed features ---------------------------------------------------------


def _cv_score(X, y) -> tuple[float, float]:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    scores = cross_val_score(model, X, y, cv=folds)
    return scores.mean(), scores.std()


def _embed(X, backbone, image_size, layer):
    features = PretrainedImageFeatures(
        backbone, layer=layer, image_shape=(8, 8), image_size=image_size, verbose=1
    )
    start = time.perf_counter()
    # The backbone is frozen and learns nothing from the data, so embedding the
    # whole set once and cross-validating the classifier on top is equivalent
    # to cross-validating the full pipeline.
    Z = features.fit_transform(X)
    rate = len(X) / (time.perf_counter() - start)
    where = "last layer" if layer is None else f"layer {layer!r}"
    print(f"  {where}: {Z.shape[1]} features per image, {rate:.0f} images/s")
    return Z


def fixed_features(args) -> dict:
    X, y = load_digits(return_X_y=True)
    print(f"\n2. Fixed features: {X.shape[0]} digits of 8x8 pixels, 10 classes")
    inputs = {
        "raw pixels": X,
        "pretrained, last layer": _embed(X, args.backbone, args.image_size, None),
        f"pretrained, {args.middle_layer}": _embed(
            X, args.backbone, args.image_size, args.middle_layer
        ),
    }
    subset = np.random.default_rng(0).permutation(len(X))[: args.subset]
    print("  logistic regression, 5-fold cross-validated accuracy (mean ± std)")
    print(f"  {'input':<28}{len(X):>16}{args.subset:>16}")
    table = {}
    for name, Z in inputs.items():
        table[name] = (_cv_score(Z, y), _cv_score(Z[subset], y[subset]))
        (m_all, s_all), (m_sub, s_sub) = table[name]
        print(f"  {name:<28}{m_all:>9.3f} ± {s_all:.3f}{m_sub:>9.3f} ± {s_sub:.3f}")
    return table


# -- 3. fine-tuning a source model ---------------------------------------------


def source_network(seed: int) -> torch.nn.Module:
    """The source experiment's small MLP on 8x8 digits (64 -> 128 -> 64),
    initialised from ``seed``."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 64),
        torch.nn.ReLU(),
    )


SOURCE_TARGET = (
    "raw pixels, logistic regression",
    "network from scratch",
    "linear probe on the source",
    "fine-tuned source",
    "fine-tuned + augmentation",
)


def source_to_target(args) -> dict:
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    source, target = y < 5, y >= 5
    scores = {name: [] for name in SOURCE_TARGET}
    for seed in _progress(range(args.seeds), "source -> target seeds", args.seeds):
        pretrained = FineTuneClassifier(
            source_network(seed), unfreeze="all", random_state=seed
        )
        frozen = FrozenEstimator(pretrained.fit(X[source], y[source]))
        X_tr, X_te, y_tr, y_te = train_test_split(
            X[target],
            y[target],
            train_size=args.target_size,
            stratify=y[target],
            random_state=seed,
        )
        models = {
            SOURCE_TARGET[0]: LogisticRegression(max_iter=3000),
            SOURCE_TARGET[1]: FineTuneClassifier(
                source_network(seed + 100), unfreeze="all"
            ),
            SOURCE_TARGET[2]: FineTuneClassifier(frozen, max_epochs=0),
            SOURCE_TARGET[3]: FineTuneClassifier(frozen),
            SOURCE_TARGET[4]: FineTuneClassifier(frozen, augmentation="noise"),
        }
        for name, model in models.items():
            if isinstance(model, FineTuneClassifier):
                model.set_params(random_state=seed)
            scores[name].append(model.fit(X_tr, y_tr).score(X_te, y_te))
    print(
        f"\n3. Fine-tuning a network trained on digits 0-4 with {args.target_size} "
        f"digits 5-9; accuracy on the other {len(X_te)} digits 5-9, mean ± std "
        f"over {args.seeds} draws"
    )
    for name, values in scores.items():
        print(f"  {name:<34}{np.mean(values):.3f} ± {np.std(values):.3f}")
    return scores


# -- figure --------------------------------------------------------------------


def figure(path: str, photos, features: dict, transfer: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib is not installed: no figure written)")
        return
    fig = plt.figure(figsize=(13, 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.3])
    axes = top.subplots(1, len(photos))
    for ax, (name, photo, label, proba) in zip(axes, photos, strict=True):
        ax.imshow(photo)
        ax.set_title(f"{name}: {label}\n({proba:.2f})", fontsize=9)
        ax.set_axis_off()
    top.suptitle("1. Direct use: the pretrained head names the photos (no training)")
    left, right = bottom.subplots(1, 2)
    names = list(features)
    width = 0.38
    for offset, (which, colour) in enumerate(
        (("all 1797", "tab:blue"), ("200", "tab:orange"))
    ):
        means = [features[n][offset][0] for n in names]
        errors = [features[n][offset][1] for n in names]
        xs = np.arange(len(names)) + (offset - 0.5) * width
        left.bar(xs, means, width, yerr=errors, capsize=3, color=colour, label=which)
    left.set_xticks(np.arange(len(names)), names, fontsize=8)
    left.set_ylim(0.8, 1.0)
    left.set_ylabel("5-fold accuracy")
    left.legend(title="digits", fontsize=8)
    left.set_title("2. Fixed features on 8x8 digits")
    means = [np.mean(transfer[n]) for n in SOURCE_TARGET]
    errors = [np.std(transfer[n]) for n in SOURCE_TARGET]
    right.barh(SOURCE_TARGET, means, xerr=errors, capsize=3, color="tab:green")
    right.invert_yaxis()
    right.set_xlim(0.6, 1.0)
    right.set_xlabel("accuracy on held-out digits 5-9")
    right.set_title("3. Source 0-4 -> 50 labelled digits 5-9")
    for y, (m, e) in enumerate(zip(means, errors, strict=True)):
        right.text(m + e + 0.008, y, f"{m:.3f}", va="center", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nFigure written to {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--middle-layer", default="blocks.5")
    parser.add_argument(
        "--image-size", type=int, default=112, help="side of the digits' model input"
    )
    parser.add_argument("--subset", type=int, default=200)
    parser.add_argument("--target-size", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--figure", default="skltransfer_demo.png")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    photos = direct_use(args.backbone)
    features = fixed_features(args)
    transfer = source_to_target(args)
    figure(args.figure, photos, features, transfer)
    print(f"Done in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
