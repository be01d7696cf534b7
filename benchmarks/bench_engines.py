"""Frozen passes on torch, ONNX Runtime and OpenVINO, end to end and model alone.

For each engine (torch and each one installed), in one run:

- ``transform`` end to end with ``engine=...``: from uint8 photos (128 crops
  of 256 px, the photo set of ``bench_image_features.py``) through
  PretrainedImageFeatures (EfficientNet-Lite0), and from 1,000 VADER
  sentences through PretrainedTextEmbeddings (all-MiniLM-L6-v2), the batch
  size as by default (measured on torch, 32 on an engine);
- the model alone, from ready tensors (images preprocessed, texts tokenised
  in length order), at the best batch size of a sweep: torch's forward under
  ``inference_mode``, and the started engine (the same runner ``transform``
  uses).

Every configuration runs once to warm up (exports happen there), then
``--rounds`` times, interleaved; the best round counts, and the median
round's rate follows in brackets (on a shared machine a short run can catch a
quiet moment that a longer one does not, so the two can disagree). Ratios
are to ``transform`` with ``engine="torch"``; the last column is our
``transform`` against the fastest engine alone.

    python benchmarks/bench_engines.py [--images 128] [--texts 1000]
        [--precision fp32] [--rounds 2] [--parts images,texts]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _vader import DOMAINS, load  # noqa: E402
from bench_image_features import photo_crops  # noqa: E402

from skltransfer import PretrainedImageFeatures, PretrainedTextEmbeddings  # noqa: E402
from skltransfer._device import resolve_precision  # noqa: E402
from skltransfer._engines import EngineSpec, engine_forward, installed  # noqa: E402
from skltransfer.inputs.batches import ImageInputs  # noqa: E402

ENGINES = ["torch"] + [e for e in ("onnxruntime", "openvino") if installed(e)]
SWEEP = (8, 16, 32)


def _texts(n: int) -> list[str]:
    texts = [t for domain in DOMAINS for t in load(domain)[0]]
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.choice(len(texts), size=n, replace=False)]


def _best(fn, rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _model_only(est, engine, batches, forward, dtype):
    """A function running the model alone over ready ``batches``."""
    if engine == "torch":
        if torch.is_tensor(batches[0]) and batches[0].ndim == 4:
            batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]

        def run():
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype, dtype is not None),
            ):
                for b in batches:
                    forward(b)

        return run
    spec = EngineSpec(engine, ("bench",), dtype)
    runner = engine_forward(spec, est.backbone_, forward, lambda: batches[0])

    def run():
        for b in batches:
            runner(b)

    return run


def _image_batches(est, X, size):
    inputs = ImageInputs(est._image_source(X, reset=False), est.preprocessing_)
    ready = inputs.prepare(slice(0, len(X)))
    return [ready[i : i + size] for i in range(0, len(X), size)]


def _text_batches(est, texts, size):
    inputs = est._text_inputs(texts)
    order = inputs.length_order()
    return [
        inputs.prepare(inputs.positions(order[i : i + size]))
        for i in range(0, len(texts), size)
    ]


def bench(kind: str, n: int, precision: str, rounds: int) -> list[tuple]:
    if kind == "images":
        X = photo_crops(n)
        make = lambda e: PretrainedImageFeatures(engine=e, precision=precision)  # noqa: E731
        batches_of, forward_of = _image_batches, lambda est: est._embedder()
    else:
        X = _texts(n)
        make = lambda e: PretrainedTextEmbeddings(engine=e, precision=precision)  # noqa: E731
        batches_of, forward_of = _text_batches, lambda est: est._embed
    dtype = resolve_precision(precision, torch.device("cpu"))
    fitted = {e: make(e).fit(X[:2]) for e in ENGINES}
    ends = {e: [] for e in ENGINES}
    alone = {(e, b): [] for e in ENGINES for b in SWEEP}
    runs = {}
    for e, est in fitted.items():
        runs[e] = lambda est=est: est.transform(X)
        for b in SWEEP:
            batches = batches_of(est, X, b)
            runs[e, b] = _model_only(est, e, batches, forward_of(est), dtype)
    for run in runs.values():
        run()  # warm-up: batch sizes measured, engines exported and started
    for _ in range(rounds):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            (ends if key in ends else alone)[key].append(time.perf_counter() - start)
    rows = []
    base = n / min(ends["torch"])
    engines = [key for key in alone if key[0] != "torch"]
    fastest = max((n / min(alone[key]) for key in engines), default=np.nan)
    fastest_median = max((n / np.median(alone[key]) for key in engines), default=np.nan)
    for e in ENGINES:
        ours, ours_median = n / min(ends[e]), n / np.median(ends[e])
        best_b = min(SWEEP, key=lambda b: min(alone[e, b]))
        model = n / min(alone[e, best_b])
        model_median = n / np.median(alone[e, best_b])
        rows.append(
            (
                kind,
                e,
                f"{ours:.0f} ({ours_median:.0f})",
                ours / base,
                f"{model:.0f} ({model_median:.0f}), batch {best_b}",
                model / base,
                f"{ours / fastest:.2f}x ({ours_median / fastest_median:.2f}x)",
            )
        )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parts", default="images,texts")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {ENGINES}")
    parts = args.parts.split(",")
    rows = []
    for kind, n in (("images", args.images), ("texts", args.texts)):
        if kind in parts:
            rows += bench(kind, n, args.precision, args.rounds)
    print(f"\n{args.precision}; per second, best round (median round)")
    print(
        "| input | engine | transform | ratio to torch | model alone (median),"
        " batch | ratio to torch | transform / fastest engine alone |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, e, ours, r1, model, r2, against in rows:
        cells = [kind, e, ours, f"{r1:.2f}x", model, f"{r2:.2f}x", against]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
