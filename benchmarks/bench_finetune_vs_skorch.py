"""Time per epoch of full fine-tuning: FineTuneClassifier vs skorch.

    python benchmarks/bench_finetune_vs_skorch.py [--threads N] [--epochs E]

The same module (a small CNN on scikit-learn's 8x8 digits, plus a linear
head), the same data (all 1797 digits, 20 % held out for validation, scored
every epoch), the same batch size (32), AdamW at lr 1e-3 with weight decay
0.01, on the CPU. Two settings:

- *matched*: constant learning rate and no gradient clipping in both;
- *defaults*: FineTuneClassifier's own extras switched on (warm-up then
  cosine schedule, gradient clipping at 1.0, copies of the best weights) against
  skorch's plain loop.

Each estimator fits ``--epochs`` epochs three times, alternating with the
other; the figure is the median over the three runs of the fit's wall time
divided by the number of epochs (setup included). The ratio is ours / skorch
(below 1: ours is faster). Needs ``pip install skorch``.

On a CPU shared with other work, OpenMP threads that spin while waiting make
multi-threaded timings erratic; run with ``--threads 1`` or with
``OMP_WAIT_POLICY=PASSIVE`` in the environment.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from skltransfer import FineTuneClassifier


class DigitsCNN(nn.Module):
    """Two convolutions and a dense layer on flattened 8x8 digits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU())

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x.view(-1, 1, 8, 8))))


def fit_ours(X, y, epochs: int, matched: bool) -> float:
    torch.manual_seed(0)
    extras = {"max_grad_norm": None, "lr_schedule": "constant", "warmup_fraction": 0}
    clf = FineTuneClassifier(
        DigitsCNN(),
        unfreeze="all",
        lr=1e-3,
        lr_decay=1.0,
        weight_decay=0.01,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=epochs + 1,
        max_epochs=epochs,
        batch_size=32,
        device="cpu",
        precision="fp32",
        random_state=0,
        **(extras if matched else {}),
    )
    start = time.perf_counter()
    clf.fit(X, y)
    assert clf.n_iter_ == epochs
    return (time.perf_counter() - start) / epochs


def fit_skorch(X, y, epochs: int) -> float:
    from skorch import NeuralNetClassifier
    from skorch.dataset import ValidSplit

    torch.manual_seed(0)
    net = NeuralNetClassifier(
        nn.Sequential(DigitsCNN(), nn.Linear(64, 10)),
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=1e-3,
        optimizer__weight_decay=0.01,
        max_epochs=epochs,
        batch_size=32,
        train_split=ValidSplit(5, stratified=True),
        iterator_train__shuffle=True,
        device="cpu",
        verbose=0,
    )
    start = time.perf_counter()
    net.fit(X, y)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import skorch

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    print(
        f"digits {X.shape}, batch 32, {args.epochs} epochs, torch "
        f"{torch.__version__}, skorch {skorch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    for setting in ("matched", "defaults"):
        ours, theirs = [], []
        for _ in range(3):
            ours.append(fit_ours(X, y, args.epochs, matched=setting == "matched"))
            theirs.append(fit_skorch(X, y, args.epochs))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(
            f"{setting:<9} seconds/epoch: FineTuneClassifier {a:.4f}, "
            f"skorch NeuralNetClassifier {b:.4f}, ratio {a / b:.3f}"
        )


if __name__ == "__main__":
    main()
