"""Throughput of PretrainedImageFeatures.transform against hand-written loops.

The hand-written loops get every advantage: ready, preprocessed tensors in
memory and the best batch size and memory format of a sweep. ``transform``
starts from uint8 arrays, so it also pays for conversion, cropping and
normalisation, and it chooses its batch size by measurement on its first call
(``batch_size=None``; the warm-up round). All figures come from one run: every
configuration runs once per round, rounds repeat ``--repeats`` times and the
best time of each is kept, so that a change of machine load hits all alike.

    python benchmarks/bench_image_features.py [--n 256] [--backbone NAME]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile

import numpy as np
import torch
from _timing import seconds

from skltransfer import PretrainedImageFeatures
from skltransfer._batch_size import chosen_batch_sizes


def hand_loop(model, ready, batch_size: int, channels_last: bool):
    """A set-up function (memory format) and the timed loop over ready batches."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = [b.contiguous(memory_format=fmt) for b in ready.split(batch_size)]

    def setup():
        model.to(memory_format=fmt)

    def run():
        with torch.inference_mode():
            for b in batches:
                model.forward_features(b)

    return setup, run


def _write_jpegs(X, folder: str) -> list[str]:
    from PIL import Image

    paths = []
    for i, image in enumerate(X):
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-sizes", default="8,16,32,64")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    features = PretrainedImageFeatures(args.backbone)
    size = 256
    X = np.random.default_rng(0).integers(0, 256, (args.n, size, size, 3), np.uint8)
    features.fit(X[:1])
    ready = features.preprocessing_(torch.from_numpy(X).permute(0, 3, 1, 2) / 255.0)
    model = features.backbone_

    print(
        f"{args.backbone}, {args.n} images, fp32, {torch.get_num_threads()} threads, "
        f"best of {args.repeats} interleaved rounds"
    )
    configs = {}
    for bs, cl in itertools.product(map(int, args.batch_sizes.split(",")), (0, 1)):
        configs[("hand loop", bs, bool(cl))] = hand_loop(model, ready, bs, bool(cl))
    for cl in (False, True):

        def setup(cl=cl):
            features._channels_last = lambda: cl  # timing only

        configs[("transform", None, cl)] = (setup, lambda: features.transform(X))
    folder = tempfile.mkdtemp()
    paths = _write_jpegs(X, folder)

    def from_files():
        features.__dict__.pop("_channels_last", None)
        features.transform(paths)

    configs[("transform, JPEG files", None, True)] = (lambda: None, from_files)

    times = {name: [] for name in configs}
    for setup, run in configs.values():  # warm-up; transform measures
        setup()
        run()
    for _ in range(args.repeats):
        for name, (setup, run) in configs.items():
            setup()
            times[name].append(seconds(run))
    shutil.rmtree(folder)
    rate = {name: args.n / min(t) for name, t in times.items()}
    for (kind, bs, cl), r in rate.items():
        batch = "None" if bs is None else bs
        print(f"  {kind:<22} batch={batch!s:<5} channels_last={cl!s:<5} {r:7.1f} img/s")
    print(f"  batch sizes chosen by transform: {list(chosen_batch_sizes().values())}")
    hand = {k: r for k, r in rate.items() if k[0] == "hand loop"}
    best = max(hand, key=hand.get)
    ours = rate[("transform", None, True)]
    print(f"\ntransform (defaults, from uint8 arrays): {ours:.1f} img/s")
    print(f"files / arrays: {rate[('transform, JPEG files', None, True)] / ours:.2f}")
    _, batch, cl = best
    print(f"best hand loop (batch {batch}, channels_last={cl}): {hand[best]:.1f} img/s")
    print(f"ratio transform / best hand loop: {ours / hand[best]:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
