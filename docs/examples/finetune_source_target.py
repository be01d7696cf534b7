"""Fine-tuning a source model: digits 0-4 to 50 samples of digits 5-9.

A small torch MLP is trained on the digits 0-4 (the *source* task), then
fine-tuned on only 50 labelled digits 5-9 (the *target* task). It is compared
with the same network trained from scratch on those 50 digits, and with
fine-tuning plus Gaussian-noise augmentation at the default scale (0.1 of
each pixel's standard deviation) and at a stronger one (0.5). Mean ± std
over seeds (each seed draws a new 50-digit training set and initialisation).

Run: ``python docs/examples/finetune_source_target.py`` (offline, a few
minutes on two CPU cores). Writes ``docs/figures/digits_source_target.png``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import save
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skltransfer import FineTuneClassifier
from skltransfer.augmentation import GaussianNoise

SEEDS = range(5)
N_TARGET = 50


def mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 64), torch.nn.ReLU(),
    )  # fmt: skip


def target_split(X, y, seed):
    target = y >= 5
    return train_test_split(
        X[target], y[target], train_size=N_TARGET, stratify=y[target],
        random_state=seed,
    )  # fmt: skip


def main():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    source = y < 5
    common = dict(max_epochs=100, lr=3e-3, lr_decay=1.0, early_stopping=False)
    names = ["from scratch", "fine-tuned", "+ noise 0.1", "+ noise 0.5"]
    scores = {name: [] for name in names}
    for seed in SEEDS:
        pretrained = FineTuneClassifier(
            mlp(seed), unfreeze="all", max_epochs=30, random_state=seed
        ).fit(X[source], y[source])
        X_tr, X_te, y_tr, y_te = target_split(X, y, seed)
        models = {
            "from scratch": FineTuneClassifier(mlp(seed + 100), unfreeze="all"),
            "fine-tuned": FineTuneClassifier(pretrained, unfreeze="all"),
            "+ noise 0.1": FineTuneClassifier(
                pretrained, unfreeze="all", augmentation="noise"
            ),
            "+ noise 0.5": FineTuneClassifier(
                pretrained, unfreeze="all", augmentation=GaussianNoise(std=0.5)
            ),
        }
        for name, model in models.items():
            model.set_params(random_state=seed, **common).fit(X_tr, y_tr)
            scores[name].append(model.score(X_te, y_te))
        print(
            f"seed {seed}: source accuracy on its own training digits "
            f"{pretrained.score(X[source], y[source]):.3f}; target: "
            + ", ".join(f"{k} {v[-1]:.3f}" for k, v in scores.items()),
            flush=True,
        )
    print(
        f"\nTarget accuracy on {len(X_te)} held-out digits 5-9, trained on "
        f"{N_TARGET}, mean ± std over {len(SEEDS)} seeds"
    )
    for name, values in scores.items():
        print(f"  {name:<20} {np.mean(values):.3f} ± {np.std(values):.3f}")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(names, [np.mean(scores[n]) for n in names],
           yerr=[np.std(scores[n]) for n in names], capsize=4,
           color=["tab:gray", "tab:blue", "tab:green", "tab:olive"])  # fmt: skip
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel(f"accuracy on digits 5-9 ({N_TARGET} training digits)")
    ax.set_title("Reusing a network trained on digits 0-4")
    save(fig, "digits_source_target.png")


if __name__ == "__main__":
    main()
