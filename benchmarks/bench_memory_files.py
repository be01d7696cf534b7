"""Peak memory of transform over image files: 2,000 files vs 200.

Each measurement runs in a fresh process (peak resident set size from
``resource.getrusage``), so imports and the model count the same in both.
Target: peak(2000) <= 1.2 x peak(200): memory is bounded by the batch.

    python benchmarks/bench_memory_files.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

CHILD = """
import resource, sys, glob
from skltransfer import PretrainedImageFeatures
paths = sorted(glob.glob(sys.argv[1] + "/*.png"))[: int(sys.argv[2])]
est = PretrainedImageFeatures(sys.argv[3], image_size=int(sys.argv[4])).fit(paths[:1])
Z = est.transform(paths)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, Z.shape[0])
"""


def _write_images(folder: str, n: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(folder, f"{i:05d}.png"))


def _peak_mb(folder, n, backbone, image_size) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, folder, str(n), backbone, str(image_size)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, rows = out.stdout.split()
    assert int(rows) == n
    return float(peak)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--file-size", type=int, default=256)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        _write_images(folder, 2000, args.file_size)
        small = _peak_mb(folder, 200, args.backbone, args.image_size)
        large = _peak_mb(folder, 2000, args.backbone, args.image_size)
    print(
        f"{args.backbone}, {args.file_size} px PNG files, model input "
        f"{args.image_size} px"
    )
    print(f"peak RSS, 200 files:   {small:8.1f} MiB")
    print(f"peak RSS, 2000 files:  {large:8.1f} MiB")
    print(f"ratio 2000 / 200:      {large / small:8.3f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
