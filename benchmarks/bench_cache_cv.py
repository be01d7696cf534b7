"""What does cross-validating a frozen-feature pipeline cost, with and without cache?

By default the data are 64 crops of 256x256 from real photos (see
``bench_image_features.py``) at the model's own size, labelled by the photo
each crop came from; with ``--data digits``, scikit-learn's digits at
``--image-size``. ``--labels random`` gives the crops 4 labels that carry no
signal, as earlier versions of this script did: the logistic regression then
fits noise, and at 512 crops its own cross-validation took 0.43x of a pass
(0.03x with the photo labels), a cost of the classifier, not of the features.

Compares, in one run and on the same data:
  1. one ``transform`` pass of PretrainedImageFeatures over all images;
  2. ``cross_val_score(cv=5)`` of Pipeline(features with cache, LogisticRegression);
  3. the same without the cache (every fold embeds its train and test images);
and how long hashing the inputs for the cache keys takes next to the backbone.
Target: (2) <= 1.3x (1). The classifier's own cross-validation cost (on
precomputed features) is timed too, and the feature side of (2) and (3) is
reported net of it.

    python benchmarks/bench_cache_cv.py [--data photos|digits] [--n 64]
        [--image-size 112] [--labels photo|random]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltransfer import PretrainedImageFeatures
from skltransfer._batch_size import forget_batch_sizes


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="photos")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--labels", default="photo", choices=["photo", "random"])
    args = parser.parse_args(argv)
    # 64 crops of 7 photos: the rarest photo may have fewer crops than folds.
    warnings.filterwarnings("ignore", message="The least populated class")
    if args.data == "digits":
        X, y = load_digits(return_X_y=True)
        X, y = X[: args.n], y[: args.n]
        shape = (8, 8)
    else:
        from bench_image_features import photo_crops

        X, y = photo_crops(args.n, sources=True)
        if args.labels == "random":
            y = np.arange(args.n) % 4
        shape = None

    def classifier():
        return LogisticRegression(max_iter=2000)

    def features(cache=None):
        return PretrainedImageFeatures(
            args.backbone, image_shape=shape, image_size=args.image_size, cache=cache
        )

    def pipeline(cache=None):
        return make_pipeline(features(cache), StandardScaler(), classifier())

    # Steady state for both sides: the weights are loaded once beforehand, and
    # each timed part measures its own batch size.
    features().fit(X[:1]).transform(X[:2])
    forget_batch_sizes()
    Z, one_pass = _timed(lambda: features().fit(X).transform(X))
    forget_batch_sizes()
    _, classifier_only = _timed(
        lambda: cross_val_score(make_pipeline(StandardScaler(), classifier()), Z, y)
    )
    with tempfile.TemporaryDirectory() as cache:
        cached_scores, cached = _timed(
            lambda: cross_val_score(pipeline(cache), X, y, cv=5)
        )
        est = features(cache).fit(X)
        source = est._image_source(X, reset=False)
        _, hashing = _timed(source.sample_keys)
        _, warm = _timed(lambda: est.transform(X))
    plain_scores, plain = _timed(lambda: cross_val_score(pipeline(), X, y, cv=5))
    assert np.allclose(cached_scores, plain_scores)

    rows = [
        ("one transform pass", one_pass),
        ("classifier alone, cross_val_score(cv=5)", classifier_only),
        ("pipeline cross_val_score(cv=5), cache", cached),
        ("pipeline cross_val_score(cv=5), no cache", plain),
        ("  feature side (minus classifier), cache", cached - classifier_only),
        ("  feature side (minus classifier), no cache", plain - classifier_only),
        ("transform, all rows cached", warm),
        ("hashing the inputs for cache keys", hashing),
    ]
    size = args.image_size or "its own"
    print(f"{args.backbone} at {size} px, {len(X)} {args.data}")
    for name, seconds in rows:
        print(f"{name:<44}{seconds:8.2f} s  {seconds / one_pass:6.3f}x one pass")
    print("target: pipeline with cache <= 1.3x one pass (classifier included)")
    print(f"accuracy {cached_scores.mean():.3f} (identical with and without cache)")


if __name__ == "__main__":
    main()
