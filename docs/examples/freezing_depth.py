"""How many layers to fine-tune? A grid search over ``unfreeze`` and ``lr``.

A three-layer MLP pretrained on the digits 0-4 is fine-tuned on the digits
5-9 with ``GridSearchCV`` choosing the freezing depth (``unfreeze``: 0 = new
head on the frozen body ... 3 = everything) and the learning rate, for a
small and a larger training set, and reports the cross-validated accuracy of
each depth (at its best learning rate).

Run: ``python docs/examples/freezing_depth.py`` (offline, a few minutes on two
CPU cores). Writes ``docs/figures/freezing_depth.png``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import per_class_subset, save
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skltransfer import FineTuneClassifier

PER_CLASS = [5, 100]
UNFREEZE = [0, 1, 2, 3]
LRS = [1e-3, 1e-2]


def pretrained_source(X, y):
    torch.manual_seed(0)
    body = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 32), torch.nn.ReLU(),
    )  # fmt: skip
    source = y < 5
    model = FineTuneClassifier(body, unfreeze="all", random_state=0)
    return model.fit(X[source], y[source])


def main():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    source = FrozenEstimator(pretrained_source(X, y))  # clone keeps it fitted
    target = np.flatnonzero(y >= 5)
    test = target[per_class_subset(y[target], 60, 0)]
    pool = np.setdiff1d(target, test)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    print(
        f"Digits 5-9, {len(test)} test digits; 3-fold GridSearchCV over "
        f"unfreeze {UNFREEZE} x lr {LRS}"
    )
    for n in PER_CLASS:
        train = pool[per_class_subset(y[pool], n, 0)]
        search = GridSearchCV(
            FineTuneClassifier(source, random_state=0),
            {"unfreeze": UNFREEZE, "lr": LRS},
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
        ).fit(X[train], y[train])  # fmt: skip
        cv = search.cv_results_
        best_per_depth = [
            max(s for u, s in zip(cv["param_unfreeze"], cv["mean_test_score"])
                if u == depth)
            for depth in UNFREEZE
        ]  # fmt: skip
        print(
            f"  {n:>3} per class: CV accuracy by unfreeze (best lr) "
            + ", ".join(f"{d}: {s:.3f}" for d, s in zip(UNFREEZE, best_per_depth))
            + f"; chosen {search.best_params_}, test accuracy "
            f"{search.score(X[test], y[test]):.3f}",
            flush=True,
        )
        ax.plot(UNFREEZE, best_per_depth, marker="o",
                label=f"{n} training digits per class")  # fmt: skip
    ax.set_xticks(UNFREEZE, ["0\n(head only)", "1", "2", "3\n(all)"])
    ax.set_xlabel("unfreeze: layer groups fine-tuned")
    ax.set_ylabel("3-fold CV accuracy (best lr)")
    ax.set_title("Freezing depth vs training set size")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "freezing_depth.png")


if __name__ == "__main__":
    main()
