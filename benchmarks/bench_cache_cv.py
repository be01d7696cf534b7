"""What does cross-validating a frozen-feature pipeline cost, with and without cache?

Compares, in one run and on the same data:
  1. one ``transform`` pass of PretrainedImageFeatures over all images;
  2. ``cross_val_score(cv=5)`` of Pipeline(features with cache, LogisticRegression);
  3. the same without the cache (every fold embeds its train and test images);
and how long hashing the inputs for the cache keys takes next to the backbone.
Target: (2) <= 1.3x (1). Logistic regression on 1280 unscaled features is itself
slow to fit, so the classifier's own cross-validation cost (on precomputed
features) is timed too and the feature side of (2) and (3) is reported net of it.

    python benchmarks/bench_cache_cv.py [--n 600] [--image-size 112]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skltransfer import PretrainedImageFeatures


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    X, y = X[: args.n], y[: args.n]

    def features(cache=None):
        return PretrainedImageFeatures(
            args.backbone, image_shape=(8, 8), image_size=args.image_size, cache=cache
        )

    def pipeline(cache=None):
        return make_pipeline(features(cache), LogisticRegression(max_iter=2000))

    Z, one_pass = _timed(lambda: features().fit(X).transform(X))
    clf = LogisticRegression(max_iter=2000)
    _, classifier_only = _timed(lambda: cross_val_score(clf, Z, y, cv=5))
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

    print(f"{args.backbone} at {args.image_size} px, {len(X)} digits")
    print(f"one transform pass                 {one_pass:7.1f} s  1.00x")
    print(
        f"cross_val_score(cv=5), cache        {cached:7.1f} s  {cached / one_pass:.2f}x"
    )
    print(
        f"cross_val_score(cv=5), no cache     {plain:7.1f} s  {plain / one_pass:.2f}x"
    )
    print(f"transform, all rows cached          {warm:7.2f} s  {warm / one_pass:.3f}x")
    print(
        f"hashing the inputs for cache keys   {hashing * 1000:7.1f} ms "
        f"({hashing / one_pass:.2%} of one pass)"
    )
    print(f"accuracy {cached_scores.mean():.3f} (identical with and without cache)")


if __name__ == "__main__":
    main()
