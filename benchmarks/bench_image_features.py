"""Throughput of PretrainedImageFeatures.transform against hand-written loops.

The hand-written loops get every advantage: ready, preprocessed tensors in
memory and the best batch size and memory format of a sweep. ``transform``
starts from uint8 arrays, so it also pays for conversion, cropping and
normalisation, and it chooses its batch size by measurement on its first call
(``batch_size=None``). All figures come from one run, measured side by side
(each configuration timed ``--repeats`` times, best kept).

    python benchmarks/bench_image_features.py [--n 256] [--backbone NAME]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time

import numpy as np
import torch

from skltransfer import PretrainedImageFeatures
from skltransfer._batch_size import chosen_batch_sizes


def _best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hand_loop(model, batches, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    batches = [b.contiguous(memory_format=fmt) for b in batches]

    def run():
        with torch.inference_mode():
            for b in batches:
                model.forward_features(b)

    return run


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

    print(f"{args.backbone}, {args.n} images, fp32, {torch.get_num_threads()} threads")
    results = {}
    for bs, cl in itertools.product(map(int, args.batch_sizes.split(",")), (0, 1)):
        batches = list(ready.split(bs))
        seconds = _best_time(hand_loop(model, batches, bool(cl)), args.repeats)
        results[(bs, cl)] = args.n / seconds
        print(
            f"  hand loop  batch={bs:<3} channels_last={bool(cl)!s:<5} "
            f"{results[(bs, cl)]:7.1f} img/s"
        )
    best_cfg = max(results, key=results.get)
    for cl in (False, True):
        model.to(memory_format=torch.contiguous_format)
        features._channels_last = lambda cl=cl: cl  # noqa: B023 (timing only)
        seconds = _best_time(lambda: features.transform(X), args.repeats)
        print(
            f"  transform  batch=None channels_last={cl!s:<5} "
            f"{args.n / seconds:7.1f} img/s (from uint8 arrays)"
        )
    print(f"  batch sizes chosen by transform: {list(chosen_batch_sizes().values())}")
    del features._channels_last
    seconds = _best_time(lambda: features.transform(X), args.repeats)
    rate = args.n / seconds
    with tempfile.TemporaryDirectory() as folder:
        paths = _write_jpegs(X, folder)
        path_seconds = _best_time(lambda: features.transform(paths), args.repeats)
    print(
        f"  transform  from JPEG files (decoded in a worker thread) "
        f"{args.n / path_seconds:7.1f} img/s"
    )
    print(f"\ntransform (defaults): {rate:.1f} img/s")
    print(f"files / arrays: {(args.n / path_seconds) / rate:.2f}")
    print(f"best hand loop {best_cfg}: {results[best_cfg]:.1f} img/s")
    print(f"ratio transform / best hand loop: {rate / results[best_cfg]:.2f}")


if __name__ == "__main__":
    main()
