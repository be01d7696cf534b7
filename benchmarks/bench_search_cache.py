"""What does a grid search over ``lr`` cost with the frozen activations cached?

``GridSearchCV(FineTuneClassifier(unfreeze=1, cache=folder), {"lr": [3
values]}, cv=3)`` on 500 Fashion-MNIST training images (EfficientNet-Lite0,
``--image-size`` px), and the same search with ``cache=None``. The frozen
pass of every fit is timed (the calls of ``map_batches`` in
``finetune/_frozen_activations.py``), so that each search splits into:

- the frozen pass: with the cache, the 500 images once (the first two folds
  compute them, every later fit reads them); without, the training images of
  each of the ten fits;
- training: the rest of the fits (the probe head start, the epochs);
- scoring: the predictions on each held-out fold, which run the whole network.

The frozen pass runs on the default engine (``engine="auto"``: OpenVINO or
ONNX Runtime where installed); a third search, without the cache, runs it on
torch. The ideal is one frozen pass over the 500 images plus the training time of the
ten fits (of the search without the cache, whose fits read nothing); the
target is a cached search of at most 1.3 times that, scoring left out. The
ratios come from one run.

    python benchmarks/bench_search_cache.py [--n 500] [--image-size 112] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402

from skltransfer import FineTuneClassifier  # noqa: E402
from skltransfer.finetune import _frozen_activations  # noqa: E402

LRS = [3e-4, 1e-3, 3e-3]


def _load(n: int):
    """The first ``n`` Fashion-MNIST training images, else the digits."""
    try:
        from bench_image_accuracy import load_fashion

        X, y = load_fashion("train")
    except (ImportError, OSError):
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = (X.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8)
    return X[:n], y[:n]


class _FrozenPassTimer:
    """Seconds and samples of the frozen passes (``map_batches`` there)."""

    def __init__(self):
        self.seconds, self.samples = 0.0, 0
        self._real = _frozen_activations.map_batches
        _frozen_activations.map_batches = self._timed

    def _timed(self, inputs, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._real(inputs, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.samples += len(inputs)


def _search(X, y, args, cache, engine="auto") -> dict:
    model = FineTuneClassifier(
        "efficientnet_lite0",
        unfreeze=1,
        image_size=args.image_size,
        max_epochs=args.epochs,
        interpolation=1.0,
        early_stopping=False,
        random_state=0,
        cache=cache,
        engine=engine,
    )
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    grid = GridSearchCV(model, {"lr": LRS}, cv=cv)
    timer = _FrozenPassTimer()
    start = time.perf_counter()
    grid.fit(X, y)
    total = time.perf_counter() - start
    _frozen_activations.map_batches = timer._real
    results = grid.cv_results_
    fits = 3 * float(np.sum(results["mean_fit_time"])) + grid.refit_time_
    return {
        "total": total,
        "frozen": timer.seconds,
        "frozen_samples": timer.samples,
        "training": fits - timer.seconds,
        "scoring": 3 * float(np.sum(results["mean_score_time"])),
        "scores": results["mean_test_score"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    X, y = _load(args.n)
    with tempfile.TemporaryDirectory() as folder:
        cached = _search(X, y, args, folder)
    print(
        f"cache=dir: {cached['total']:.1f} s (frozen pass {cached['frozen']:.1f} s "
        f"over {cached['frozen_samples']} images, training "
        f"{cached['training']:.1f} s, scoring {cached['scoring']:.1f} s)",
        flush=True,
    )
    plain = _search(X, y, args, None)
    np.testing.assert_array_equal(cached["scores"], plain["scores"])
    # The frozen pass on torch: what the engine gains (scores equal to float32
    # rounding of the stored activations).
    on_torch = _search(X, y, args, None, engine="torch")
    one_pass = plain["frozen"] / plain["frozen_samples"] * len(X)
    ideal = one_pass + plain["training"]
    print(
        f"efficientnet_lite0 at {args.image_size} px, {len(X)} images, unfreeze=1, "
        f"{args.epochs} epochs, lr in {LRS}, 3-fold + refit (10 fits)"
    )
    print(
        f"{'search':<12}{'total':>8}{'frozen':>8}{'(samples)':>11}"
        f"{'training':>10}{'scoring':>9}"
    )
    rows = (("cache=None", plain), ("cache=dir", cached), ("torch, None", on_torch))
    for name, r in rows:
        print(
            f"{name:<12}{r['total']:>8.1f}{r['frozen']:>8.1f}{r['frozen_samples']:>11}"
            f"{r['training']:>10.1f}{r['scoring']:>9.1f}"
        )
    print(
        f"one frozen pass over {len(X)} images: {one_pass:.1f} s; "
        f"ideal (one pass + training): {ideal:.1f} s"
    )
    fit_part = cached["total"] - cached["scoring"]
    print(
        f"cached search without scoring / ideal: {fit_part / ideal:.2f} (target <= 1.3)"
    )
    print(f"cached search with scoring / ideal:    {cached['total'] / ideal:.2f}")
    print(f"speed-up over cache=None: {plain['total'] / cached['total']:.2f}x")
    per_sample = on_torch["frozen"] / on_torch["frozen_samples"]
    engine_rate = plain["frozen"] / plain["frozen_samples"]
    print(
        f"frozen pass, default engine against torch: {per_sample / engine_rate:.2f}x "
        f"faster; whole search without cache: "
        f"{on_torch['total'] / plain['total']:.2f}x"
    )


if __name__ == "__main__":
    main()
