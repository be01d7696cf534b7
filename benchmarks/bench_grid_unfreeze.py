"""What does the frozen-prefix cache save in a grid search over freezing depth?

``GridSearchCV`` over ``unfreeze`` in {0, 1, 2} (3-fold, then the refit) of
``FineTuneClassifier`` on EfficientNet-Lite0, run twice on the same data and
seeds: with ``cache_frozen="auto"`` (the frozen layer groups run once per fit;
the epochs train the top groups on their stored outputs) and with
``cache_frozen=False`` (every epoch runs the whole network). The two searches
must agree on every score; the target is >= 2x faster with the cache.
The two searches alternate ``--repeats`` times and the best time of each is
kept, so that a burst of load on a shared machine hits both alike.

    python benchmarks/bench_grid_unfreeze.py [--n 300] [--image-size 64] [--epochs 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skltransfer import FineTuneClassifier


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    X, y = X[: args.n], y[: args.n]

    def search(cache_frozen):
        model = FineTuneClassifier(
            backbone=args.backbone,
            image_shape=(8, 8),
            image_size=args.image_size,
            max_epochs=args.epochs,
            early_stopping=False,
            lr=1e-3,
            cache_frozen=cache_frozen,
            random_state=0,
        )
        cv = StratifiedKFold(3, shuffle=True, random_state=0)
        grid = GridSearchCV(model, {"unfreeze": [0, 1, 2]}, cv=cv)
        start = time.perf_counter()
        grid.fit(X, y)
        return grid, time.perf_counter() - start

    times = {"auto": [], False: []}
    grids = {}
    for _ in range(args.repeats):
        for setting in ("auto", False):
            grids[setting], seconds = search(setting)
            times[setting].append(seconds)
    cached, plain = grids["auto"], grids[False]
    scores = cached.cv_results_["mean_test_score"]
    np.testing.assert_allclose(scores, plain.cv_results_["mean_test_score"], atol=0.01)
    assert cached.best_params_ == plain.best_params_

    best_cached, best_plain = min(times["auto"]), min(times[False])
    print(
        f"{args.backbone} at {args.image_size} px, {len(X)} digits, "
        f"{args.epochs} epochs, unfreeze in (0, 1, 2), 3-fold + refit"
    )
    print(f"{'cache_frozen':<16}{'best of':>8}{'seconds':>10}")
    print(f"{'auto':<16}{args.repeats:>8}{best_cached:>10.1f}")
    print(f"{'False':<16}{args.repeats:>8}{best_plain:>10.1f}")
    print(f"speed-up with the cache: {best_plain / best_cached:.2f}x (target >= 2x)")
    print(
        "mean CV accuracy by unfreeze: "
        + ", ".join(f"{u}: {s:.3f}" for u, s in zip((0, 1, 2), scores, strict=True))
        + f"; best {cached.best_params_}"
    )
    print(
        "frozen layer groups cached per fit (auto): "
        f"{cached.best_estimator_.cached_groups_}"
    )


if __name__ == "__main__":
    main()
