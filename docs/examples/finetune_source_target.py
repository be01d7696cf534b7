"""Fine-tuning a source model: digits 0-4 to 50 samples of digits 5-9.

A small torch MLP is trained on the digits 0-4 (the *source* task), then
fine-tuned on only 50 labelled digits 5-9 (the *target* task), every model at
the estimator's defaults. It is compared with the linear probe alone (the
head start, ``max_epochs=0``), with the same network trained from scratch on
those 50 digits, with only its top layer fine-tuned (``unfreeze=1``; the
default for a module on numeric arrays trains every layer), and with
fine-tuning plus Gaussian-noise augmentation (0.1 of each pixel's standard
deviation). Mean ± std over seeds (each seed draws a new 50-digit training
set and initialisation).

Run: ``python docs/examples/finetune_source_target.py`` (offline, a few
minutes on two CPU cores). Writes ``docs/figures/digits_source_target.png``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import save
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skltransfer import FineTuneClassifier

SEEDS = range(10)
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
    names = ["from scratch", "probe only", "top layer only", "fine-tuned", "+ noise"]
    scores = {name: [] for name in names}
    for seed in SEEDS:
        pretrained = FineTuneClassifier(
            mlp(seed), unfreeze="all", random_state=seed
        ).fit(X[source], y[source])
        frozen = FrozenEstimator(pretrained)
        X_tr, X_te, y_tr, y_te = target_split(X, y, seed)
        models = {
            "from scratch": FineTuneClassifier(mlp(seed + 100), unfreeze="all"),
            "probe only": FineTuneClassifier(frozen, max_epochs=0),
            "fine-tuned": FineTuneClassifier(frozen),
            "top layer only": FineTuneClassifier(frozen, unfreeze=1),
            "+ noise": FineTuneClassifier(frozen, augmentation="noise"),
        }
        for name, model in models.items():
            model.set_params(random_state=seed).fit(X_tr, y_tr)
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
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    colours = ["tab:gray", "tab:purple", "tab:blue", "tab:cyan", "tab:green"]
    means = [np.mean(scores[n]) for n in names]
    errors = [np.std(scores[n]) for n in names]
    ax.bar(names, means, yerr=errors, capsize=4, color=colours)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel(f"accuracy on digits 5-9 ({N_TARGET} training digits)")
    ax.set_title("Reusing a network trained on digits 0-4")
    save(fig, "digits_source_target.png")


if __name__ == "__main__":
    main()
