"""Does the measured batch size (``batch_size=None``) match the best fixed one?

``PretrainedImageFeatures.transform`` over the same images with every fixed
batch size of the measured range, then with ``batch_size=None``: the first
call measures (its first batches try doubling sizes, and are part of the
output), the second uses the size it chose. Fixed sizes and the measured
runs alternate ``--repeats`` times; the best time of each is kept.
Target: the measured size within 0.95x of the best fixed size's throughput.

    python benchmarks/bench_batch_size.py [--n 1200] [--image-size 112]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import seconds

from skltransfer import PretrainedImageFeatures
from skltransfer._batch_size import chosen_batch_sizes, forget_batch_sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", default="8,16,32,64,128")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.n, args.image_size, args.image_size, 3), np.uint8)
    sizes = [int(s) for s in args.sizes.split(",")]

    def features(batch_size):
        est = PretrainedImageFeatures(
            args.backbone, image_size=args.image_size, batch_size=batch_size
        )
        return est.fit(X[:1])

    fixed = {b: [] for b in sizes}
    measuring, remembered = [], []
    features(None).transform(X[:64])  # load the model and warm up once
    for _ in range(args.repeats):
        for b in sizes:
            est = features(b)
            fixed[b].append(seconds(lambda est=est: est.transform(X)))
        forget_batch_sizes()
        est = features(None)
        measuring.append(seconds(lambda est=est: est.transform(X)))
        remembered.append(seconds(lambda est=est: est.transform(X)))
    # None when the input ran out before the measurement settled.
    chosen = next(iter(chosen_batch_sizes().values()), None)

    rate = {b: args.n / min(t) for b, t in fixed.items()}
    best = max(rate, key=rate.get)
    print(
        f"{args.backbone} at {args.image_size} px, {args.n} images, "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )
    for b in sizes:
        print(f"  batch_size={b:<4}             {rate[b]:7.1f} img/s")
    first, later = args.n / min(measuring), args.n / min(remembered)
    print(f"  batch_size=None, measuring    {first:7.1f} img/s")
    print(f"  batch_size=None, chose {chosen!s:<6} {later:7.1f} img/s")
    print(f"best fixed: {best}")
    print(f"measuring call / best fixed: {first / rate[best]:.2f}")
    print(f"later calls / best fixed: {later / rate[best]:.2f} (target >= 0.95)")


if __name__ == "__main__":
    main()
