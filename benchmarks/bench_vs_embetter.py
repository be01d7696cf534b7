"""PretrainedImageFeatures vs embetter's TimmEncoder on the same model and weights.

embetter's ``TimmEncoder`` asks timm for pretrained weights, which needs a model
hub; here its ``timm.create_model`` is pointed at the same EfficientNet-Lite0
weights skltransfer loads offline, so both run the same network on the same PIL
images. Figures from one run, each side timed ``--repeats`` times (best kept).

    pip install --no-deps embetter
    python benchmarks/bench_vs_embetter.py [--n 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from skltransfer import PretrainedImageFeatures


def _best(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _embetter_encoder(timm_model):
    import embetter.vision._torchvis as embetter_timm

    real = embetter_timm.timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        model = real(name, pretrained=False, **kwargs)
        model.load_state_dict(timm_model.state_dict(), strict=False)
        return model

    embetter_timm.timm.create_model = create_model
    try:
        return embetter_timm.TimmEncoder(name="tf_efficientnet_lite0")
    finally:
        embetter_timm.timm.create_model = real


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        for _ in range(args.n)
    ]
    ours = PretrainedImageFeatures("efficientnet_lite0").fit(images[:1])
    # The same weights, as a plain timm model (body and head together).
    import timm

    timm_model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    body = ours.backbone_.body
    state = dict(body.state_dict())
    state.update(
        {f"classifier.{k}": v for k, v in ours.backbone_.head.state_dict().items()}
    )
    timm_model.load_state_dict(state)
    theirs = _embetter_encoder(timm_model)

    t_ours, z_ours = _best(lambda: ours.transform(images), args.repeats)
    with torch.no_grad():
        t_theirs, z_theirs = _best(lambda: theirs.transform(images), args.repeats)
    cos = (z_ours * z_theirs).sum(1) / (
        np.linalg.norm(z_ours, axis=1) * np.linalg.norm(z_theirs, axis=1)
    )
    print(
        f"EfficientNet-Lite0, {args.n} PIL images of 256x256, fp32, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"skltransfer PretrainedImageFeatures  {args.n / t_ours:7.1f} img/s")
    print(f"embetter TimmEncoder                 {args.n / t_theirs:7.1f} img/s")
    print(f"speed-up: {t_theirs / t_ours:.2f}x (target >= 1.5x)")
    print(
        f"cosine between their features and ours: min {cos.min():.4f}, "
        f"median {np.median(cos):.4f} (embetter leaves the model in training "
        "mode, so BatchNorm uses each single image's statistics)"
    )


if __name__ == "__main__":
    main()
