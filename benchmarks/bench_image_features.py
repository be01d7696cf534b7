"""Throughput of PretrainedImageFeatures.transform against hand-written loops.

Inputs are 256x256 crops of real photos (scikit-learn's and scikit-image's
sample photos, at several scales and positions). The hand-written loops get
every advantage: ready, preprocessed tensors in memory, and the best batch
size (1 to 32) and memory format of a sweep, at fp32 and at bf16 (autocast).
``transform`` starts from the uint8 arrays, so it also pays for conversion,
cropping and normalisation, and it chooses its batch size by measurement
(``batch_size=None``; the warm-up round). Fixed batch sizes of ``transform``
are timed too, to show whether the measurement finds the best.

A second part compares inputs given as files with the same images as arrays,
on large JPEGs (3000x2000, as cameras write them): decode-only throughput
(PIL, the physical limit for file inputs, at full size and in draft mode)
beside ``transform`` from the files and from the decoded arrays.

All figures of a part come from one run: every configuration runs once per
round, rounds repeat ``--repeats`` times and the best time of each is kept,
so that a change of machine load hits all alike.

    python benchmarks/bench_image_features.py [--n 128] [--large 24]
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
from PIL import Image

from skltransfer import PretrainedImageFeatures
from skltransfer._batch_size import chosen_batch_sizes, forget_batch_sizes
from skltransfer.inputs.images import _open


def photos() -> list[np.ndarray]:
    """Real photos, as uint8 (H, W, 3)."""
    from sklearn.datasets import load_sample_images

    out = list(load_sample_images().images)
    try:
        from skimage import data

        for name in (
            "astronaut",
            "coffee",
            "chelsea",
            "rocket",
            "immunohistochemistry",
        ):
            out.append(getattr(data, name)())
    except ImportError:
        pass
    return [p for p in out if p.ndim == 3 and p.shape[2] == 3]


def photo_crops(n: int, size: int = 256, seed: int = 0, sources: bool = False):
    """``n`` crops of ``size`` x ``size`` from the photos, at random scales;
    with ``sources=True``, also the index of the photo each crop came from
    (labels a classifier can learn)."""
    rng = np.random.default_rng(seed)
    images = photos()
    out = np.empty((n, size, size, 3), np.uint8)
    source = np.empty(n, dtype=np.int64)
    for i in range(n):
        source[i] = rng.integers(len(images))
        img = Image.fromarray(images[source[i]])
        low = size / min(img.size)  # above 1: the photo is enlarged
        scale = rng.uniform(low, max(low, 1.0))
        w, h = (max(size, int(s * scale)) for s in img.size)
        img = img.resize((w, h), Image.BILINEAR)
        x, y = rng.integers(0, w - size + 1), rng.integers(0, h - size + 1)
        out[i] = np.asarray(img.crop((x, y, x + size, y + size)))
    return (out, source) if sources else out


def hand_loop(model, ready, batch_size: int, channels_last: bool, dtype):
    """A set-up function (memory format) and the timed loop over ready batches."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = [b.contiguous(memory_format=fmt) for b in ready.split(batch_size)]

    def setup():
        model.to(memory_format=fmt)

    def run():
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=dtype, enabled=dtype is not None),
        ):
            for b in batches:
                model.forward_features(b)

    return setup, run


def _best_of(configs: dict, repeats: int, n: int) -> dict:
    times = {name: [] for name in configs}
    for setup, run in configs.values():  # warm-up; transform measures here
        setup()
        run()
    for _ in range(repeats):
        for name, (setup, run) in configs.items():
            setup()
            times[name].append(seconds(run))
    return {name: n / min(t) for name, t in times.items()}


def arrays_part(args) -> None:
    X = photo_crops(args.n)
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        forget_batch_sizes()
        features = PretrainedImageFeatures(args.backbone, precision=precision).fit(
            X[:1]
        )
        ready = features.preprocessing_(torch.from_numpy(X).permute(0, 3, 1, 2) / 255.0)
        model = features.backbone_
        configs = {}
        for bs, cl in itertools.product((1, 2, 4, 8, 16, 32), (False, True)):
            configs[("hand loop", bs, cl)] = hand_loop(model, ready, bs, cl, dtype)
        configs[("transform", None, True)] = (
            lambda: None,
            lambda f=features: f.transform(X),
        )
        for bs in (4, 8, 16):
            fixed = PretrainedImageFeatures(
                args.backbone, precision=precision, batch_size=bs
            ).fit(X[:1])
            configs[("transform", bs, True)] = (
                lambda: None,
                lambda f=fixed: f.transform(X),
            )
        rate = _best_of(configs, args.repeats, len(X))
        threads = torch.get_num_threads()
        print(f"\n{precision}: {len(X)} photo crops of 256x256, {threads} threads")
        for (kind, bs, cl), r in rate.items():
            if kind == "hand loop" and not cl and bs not in (4, 8):
                continue  # contiguous is slower at every size; keep two for reference
            print(
                f"  {kind:<10} batch={bs!s:<5} channels_last={cl!s:<5} {r:7.1f} img/s"
            )
        chosen = list(chosen_batch_sizes().values())
        hand = {k: r for k, r in rate.items() if k[0] == "hand loop"}
        best = max(hand, key=hand.get)
        ours = rate[("transform", None, True)]
        print(f"  batch size chosen by transform: {chosen}")
        print(
            f"  {precision}: transform (defaults) {ours:.1f} img/s, best hand loop "
            f"(batch {best[1]}, channels_last={best[2]}) {hand[best]:.1f} img/s, "
            f"ratio {ours / hand[best]:.2f} (target >= 0.9)"
        )


def _write_jpegs(X, folder: str, size=(3000, 2000)) -> list[str]:
    paths = []
    for i, image in enumerate(X):
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(image).resize(size, Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def files_part(args) -> None:
    X = photo_crops(args.large, size=512, seed=1)
    folder = tempfile.mkdtemp()
    try:
        paths = _write_jpegs(X, folder)
        decoded = np.stack([_open(p) for p in paths])
        features = PretrainedImageFeatures(args.backbone).fit(decoded[:1])
        side = features.preprocessing_.decode_side
        configs = {
            "decode only, full size (PIL)": (
                lambda: None,
                lambda: [_open(p) for p in paths],
            ),
            "decode only, draft mode (PIL)": (
                lambda: None,
                lambda: [_open(p, side) for p in paths],
            ),
            "transform from JPEG files": (
                lambda: None,
                lambda: features.transform(paths),
            ),
            "transform from decoded arrays": (
                lambda: None,
                lambda: features.transform(decoded),
            ),
        }
        rate = _best_of(configs, args.repeats, len(paths))
        from_files = features.transform(paths[:4])
        from_full = features.transform(decoded[:4])
    finally:
        shutil.rmtree(folder)
    print(f"\n{len(paths)} JPEGs of 3000x2000 (6 megapixels), fp32")
    for name, r in rate.items():
        print(f"  {name:<32} {r:7.1f} img/s")
    ratio = rate["transform from JPEG files"] / rate["transform from decoded arrays"]
    print(f"  files / arrays: {ratio:.2f} (target >= 0.9)")
    cosine = np.sum(from_files * from_full, 1) / (
        np.linalg.norm(from_files, axis=1) * np.linalg.norm(from_full, axis=1)
    )
    print(
        f"  features from files vs the full decode's: cosine >= {cosine.min():.4f}, "
        f"max abs difference {np.abs(from_files - from_full).max():.4f}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--large", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default="arrays,files")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if "arrays" in args.parts:
        arrays_part(args)
    if "files" in args.parts:
        files_part(args)


if __name__ == "__main__":
    main()
