"""Fine-tuning cost as the training set grows past what fits decoded in memory.

``FineTuneClassifier()`` at its defaults on Fashion-MNIST at 224 px
(EfficientNet-Lite0, ``unfreeze="auto"``: the top group trains, the rest is
frozen and cached). At 1,700 images the resized inputs (1,700 x 3 x 224 x 224
floats) fit the 1 GiB kept decoded in memory; at 1,900 they do not, and the
images are decoded batch by batch. The cache holds the activations at the
freeze boundary either way, so an epoch should cost the same per image at
both sizes. A third run forces the activations to a memory-mapped file.

Printed: per size, the cache status, the seconds of the one-off pass that
fills the cache, the seconds per training epoch and per image, and the ratio
of the per-image epoch cost (target: about 1, no cliff).

    python benchmarks/bench_cache_cliff.py [--sizes 1700,1900] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import torch
from bench_image_accuracy import load_fashion

from skltransfer import FineTuneClassifier
from skltransfer.finetune import _cache


def run(X, y, epochs: int, *, disk: bool = False) -> dict:
    clf = FineTuneClassifier(image_size=224, max_epochs=epochs, random_state=0)
    budget = (lambda: 0) if disk else _cache.memory_budget
    start = time.perf_counter()
    with mock.patch.object(_cache, "memory_budget", budget):
        clf.fit(X, y)
    total = time.perf_counter() - start
    epoch = float(np.mean([r["seconds"] for r in clf.history_]))
    return {
        "n": len(X),
        "status": clf.cache_status_,
        "epoch": epoch,
        "per_image_ms": 1000 * epoch / len(X),
        "before_training": total - sum(r["seconds"] for r in clf.history_),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1700,1900")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    X, y = load_fashion("train")
    print(f"EfficientNet-Lite0, 224 px, {torch.get_num_threads()} threads")
    results = []
    for n in map(int, args.sizes.split(",")):
        results.append(run(X[:n], y[:n], args.epochs))
    results.append(run(X[:n], y[:n], args.epochs, disk=True))
    header = ("n", "cache", "fill + probe s", "epoch s", "ms/image")
    print("{:>6} {:>8} {:>15} {:>9} {:>9}".format(*header))
    for r in results:
        print(
            f"{r['n']:>6} {r['status']:>8} {r['before_training']:>15.1f} "
            f"{r['epoch']:>9.2f} {r['per_image_ms']:>9.2f}"
        )
    base = results[0]["per_image_ms"]
    for r in results[1:]:
        print(
            f"per-image epoch cost, n={r['n']} ({r['status']}) / n={results[0]['n']}: "
            f"{r['per_image_ms'] / base:.2f} (target: about 1)"
        )


if __name__ == "__main__":
    main()
