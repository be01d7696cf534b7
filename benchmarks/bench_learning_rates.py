"""The default learning rates of fine-tuning, against lower, higher and flat ones.

    python benchmarks/bench_learning_rates.py [--seeds N]

``FineTuneClassifier`` trains the new head at ``lr`` (1e-3) and each layer
group below it at ``lr_decay`` (0.5) times the rate of the group above. This
script refits the defaults of ``bench_small_data.py`` with one of the two
changed at a time, on the tasks where the body trains at the defaults:

- Fashion-MNIST and MNIST-5k at 100 images per class (EfficientNet-Lite0 at
  112 px; the top two layer groups train), tested on 1000 images;
- digits 0-4 -> 5-9 with 50 target digits (every layer of the source MLP
  trains), tested on the other digits 5-9.

Means ± std over ``--seeds`` draws, and the mean fit time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_image_accuracy import load_fashion, load_mnist_5k
from bench_small_data import IMAGE_SIZE, _per_class
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skltransfer import FineTuneClassifier
from skltransfer.demo import source_network

SETTINGS = {
    "defaults (lr=1e-3, lr_decay=0.5)": {},
    "lr=3e-4": {"lr": 3e-4},
    "lr=3e-3": {"lr": 3e-3},
    "lr_decay=1 (one rate)": {"lr_decay": 1.0},
    "lr_decay=0.25": {"lr_decay": 0.25},
}


def image_draws(name: str, seeds):
    """(X_train, y_train, X_test, y_test, params) per seed, 100 per class."""
    if name == "fashion":
        X, y = load_fashion("train")
        X_te, y_te = (a[:1000] for a in load_fashion("test"))
    else:
        X, y = load_mnist_5k()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        idx = _per_class(y, 100, rng)
        if name != "fashion":
            test = rng.choice(np.setdiff1d(np.arange(len(y)), idx), 1000, replace=False)
            X_te, y_te = X[test], y[test]
        yield X[idx], y[idx], X_te, y_te, {"image_size": IMAGE_SIZE}


def digits_draws(seeds):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    source_rows = y < 5
    for seed in seeds:
        source = FineTuneClassifier(
            source_network(seed), unfreeze="all", random_state=seed
        ).fit(X[source_rows], y[source_rows])
        X_tr, X_te, y_tr, y_te = train_test_split(
            X[~source_rows], y[~source_rows], train_size=50,
            stratify=y[~source_rows], random_state=seed,
        )  # fmt: skip
        yield X_tr, y_tr, X_te, y_te, {"backbone": source}


def run(task: str, draws, seeds) -> dict:
    results = {setting: ([], []) for setting in SETTINGS}
    for seed, (X_tr, y_tr, X_te, y_te, base) in zip(seeds, draws, strict=True):
        for setting, params in SETTINGS.items():
            model = FineTuneClassifier(**base, **params, random_state=seed)
            start = time.perf_counter()
            model.fit(X_tr, y_tr)
            seconds = time.perf_counter() - start
            score = model.score(X_te, y_te)
            results[setting][0].append(score)
            results[setting][1].append(seconds)
            print(f"  {task} seed {seed} {setting}: {score:.3f} ({seconds:.1f} s)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--digits-seeds", type=int, default=10)
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    digit_seeds = list(range(args.digits_seeds))
    tables = {
        "Fashion 100/class": run("fashion", image_draws("fashion", seeds), seeds),
        "MNIST-5k 100/class": run("mnist", image_draws("mnist", seeds), seeds),
        "digits 0-4 -> 5-9 (50)": run("digits", digits_draws(digit_seeds), digit_seeds),
    }
    print(
        f"\naccuracy, mean ± std over seeds ({args.seeds}; digits {args.digits_seeds})"
    )
    print(f"{'':<34}" + "".join(f"{task:>26}" for task in tables))
    for setting in SETTINGS:
        cells = []
        for results in tables.values():
            scores, seconds = results[setting]
            mean, std, fit = np.mean(scores), np.std(scores), np.mean(seconds)
            cells.append(f"{mean:.3f} ± {std:.3f} ({fit:.0f}s)")
        print(f"{setting:<34}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
