"""Fine-tuning cost as the training set grows past what fits decoded in memory.

``FineTuneClassifier(unfreeze=1)`` on Fashion-MNIST at 224 px
(EfficientNet-Lite0: the top group trains, the rest is frozen and cached;
the default, two groups, caches one group less and behaves the same way).
At 1,700 images the resized inputs (1,700 x 3 x 224 x 224 floats) fit the
1 GiB kept decoded in memory; at 1,900 they do not, and the images are
decoded batch by batch. The cache holds the activations at the
freeze boundary either way, so an epoch should cost the same per image at
both sizes. A third run forces the activations to a memory-mapped file.

Printed: per size, the cache status, the seconds of the one-off pass that
fills the cache, the seconds per training epoch and per image, and the ratio
of the per-image epoch cost (target: about 1, no cliff).

The text part fine-tunes all-MiniLM-L6-v2 on 500 VADER tweets: with
``unfreeze=0`` and an MLP head (the frozen encoder should run once: about
one embedding pass plus the head's training, against
``PretrainedTextEmbeddings`` + ``LogisticRegression``), and with
``unfreeze=1``, cached (token states at the boundary) and plain.

    python benchmarks/bench_cache_cliff.py [--sizes 1700,1900] [--epochs 2]
        [--parts images,text]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import torch
from bench_image_accuracy import load_fashion

from skltransfer import FineTuneClassifier
from skltransfer.finetune import _frozen_activations


def run(X, y, epochs: int, *, disk: bool = False) -> dict:
    clf = FineTuneClassifier(
        image_size=224, unfreeze=1, max_epochs=epochs, random_state=0
    )
    budget = (lambda: 0) if disk else _frozen_activations.memory_budget
    start = time.perf_counter()
    with mock.patch.object(_frozen_activations, "memory_budget", budget):
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


def text_part(epochs: int) -> None:
    from _vader import load
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skltransfer import PretrainedTextEmbeddings

    texts, labels = load("tweets")
    X, y = list(texts[:500]), labels[:500]
    rows = []

    def timed(name, model):
        start = time.perf_counter()
        model.fit(X, y)
        total = time.perf_counter() - start
        last = model[-1] if hasattr(model, "steps") else model
        status = getattr(last, "cache_status_", "-")
        epochs_s = sum(r["seconds"] for r in getattr(last, "history_", []))
        rows.append((name, status, total, epochs_s))

    embed = make_pipeline(PretrainedTextEmbeddings(), LogisticRegression(max_iter=1000))
    timed("embed once + LogisticRegression", embed)
    kw = {"max_epochs": epochs, "random_state": 0}
    timed(
        "unfreeze=0, MLP head (256,)",
        FineTuneClassifier("all-MiniLM-L6-v2", unfreeze=0, head=(256,), **kw),
    )
    for cache in ("auto", False):
        timed(
            f"unfreeze=1, cache_frozen={cache}",
            FineTuneClassifier(
                "all-MiniLM-L6-v2", unfreeze=1, cache_frozen=cache, **kw
            ),
        )
    print(f"\nall-MiniLM-L6-v2, 500 tweets, {epochs} epochs")
    print(f"{'':<34} {'cache':>8} {'fit s':>7} {'epochs s':>9}")
    for name, status, total, epochs_s in rows:
        print(f"{name:<34} {status:>8} {total:>7.1f} {epochs_s:>9.1f}")
    print(
        f"unfreeze=0 + MLP head / embed + LR: {rows[1][2] / rows[0][2]:.2f}; "
        f"unfreeze=1 plain / cached: {rows[3][2] / rows[2][2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1700,1900")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--parts", default="images,text")
    args = parser.parse_args()
    if "text" in args.parts:
        text_part(max(args.epochs, 10))
    if "images" not in args.parts:
        return
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
