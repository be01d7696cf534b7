"""Does ``compile=True`` pay for frozen image features?

``PretrainedImageFeatures.transform`` over the same images, eager and with
``compile=True`` (torch.compile with inductor, weights frozen into the graph),
at the model's last layer (the layer compile applies to). The first
compiled call pays the compilation and is reported on its own; steady-state
throughput is the best of ``--repeats`` later calls, eager and compiled
alternating. Inductor's on-disk cache points at a fresh folder, so the
compile time is that of a first run on a new machine.

    python benchmarks/bench_compile.py [--n 512] [--image-size 112]
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _timing import seconds  # noqa: E402

from skltransfer import PretrainedImageFeatures  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--layers", default="last")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.n, args.image_size, args.image_size, 3), np.uint8)
    print(
        f"{args.backbone} at {args.image_size} px, {args.n} images, batch 32, "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(f"{'layer':<10}{'eager':>10}{'compiled':>10}{'ratio':>8}{'compile s':>11}")
    for name in args.layers.split(","):
        layer = None if name == "last" else name

        def features(compile_, layer=layer):
            return PretrainedImageFeatures(
                args.backbone,
                layer=layer,
                image_size=args.image_size,
                batch_size=32,
                compile=compile_,
            ).fit(X[:1])

        eager, compiled = features(False), features(True)
        eager.transform(X[:32])
        first = seconds(lambda c=compiled: c.transform(X[:32]))
        reference = eager.transform(X[:64])
        difference = np.abs(compiled.transform(X[:64]) - reference).max()
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for compile_, est in ((False, eager), (True, compiled)):
                times[compile_].append(seconds(lambda e=est: e.transform(X)))
        rate_e, rate_c = args.n / min(times[False]), args.n / min(times[True])
        print(
            f"{name:<10}{rate_e:>8.1f}/s{rate_c:>8.1f}/s{rate_c / rate_e:>8.2f}"
            f"{first:>11.1f}   max |diff| {difference:.1e}"
        )


if __name__ == "__main__":
    main()
