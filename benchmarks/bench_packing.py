"""Packed text batches against padded ones in the training steps of fine-tuning.

    python benchmarks/bench_packing.py [--sizes 8,16,64] [--draws 1] [--setfit]

Two parts, on VADER movie snippets and all-MiniLM-L6-v2:

- one training step (forward and backward through the encoder's blocks, the
  token embeddings frozen, as the contrastive stage trains them) on batches
  of 16 and 32 random snippets, padded and packed, median of 7 batches each;
- ``FineTuneClassifier("all-MiniLM-L6-v2")`` at its defaults on ``--sizes``
  training snippets per class, packed (the default) and padded (packing
  switched off), the two alternating, with the accuracy on 500 held-out
  snippets (dropout draws its masks over differently shaped tensors, so the
  two fits are not identical); with ``--setfit``, SetFit 1.2 at its defaults
  on the same draws, in the same run. The draws are those of
  ``bench_few_shot.py``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _vader import load as load_vader
from bench_few_shot import _draw, _SetFit

from skltransfer import FineTuneClassifier
from skltransfer.backbones import _packing, get_spec
from skltransfer.finetune._network import load_fresh

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEST = 500


class _Padded:
    """Inside the block, packing is switched off (every check answers no)."""

    def __enter__(self):
        self.check = _packing._packs_alike
        _packing._packs_alike = lambda backbone, batch: False
        _packing._VERIFIED.clear()

    def __exit__(self, *exc):
        _packing._packs_alike = self.check
        _packing._VERIFIED.clear()


def steps(texts) -> None:
    backbone = load_fresh(get_spec("all-MiniLM-L6-v2"))
    for name, p in backbone.named_parameters():
        p.requires_grad_(not name.startswith("body.model.embeddings"))
    backbone.train()
    rng = np.random.default_rng(0)
    print("one training step, median of 7 batches (s):")
    for size in (16, 32):
        times = {"padded": [], "packed": []}
        for _ in range(8):
            batch = backbone.tokenize(list(rng.choice(texts, size, replace=False)))
            for how in times:
                x = batch if how == "padded" else _packing.pack_texts(batch)
                start = time.perf_counter()
                backbone.forward_features(x).pow(2).mean().backward()
                times[how].append(time.perf_counter() - start)
            backbone.zero_grad()
        padded, packed = (float(np.median(times[h][1:])) for h in times)
        useful = float(batch["attention_mask"].float().mean())
        print(
            f"  {size} snippets: padded {padded:.3f}, packed {packed:.3f} "
            f"({padded / packed:.2f}x; last batch {useful:.0%} text, rest padding)"
        )


def fits(texts, y, sizes, draws, with_setfit) -> None:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    test, pool = order[:TEST], order[TEST:]
    X_te, y_te = [texts[i] for i in test], y[test]
    print("\nFineTuneClassifier() fit seconds (accuracy on held-out movies):")
    for per_class in sizes:
        for draw in range(draws):
            rng = np.random.default_rng(1000 * per_class + draw)
            idx = _draw(y, per_class, rng, pool)
            X, yy = [texts[i] for i in idx], y[idx]
            cells = []
            for how in ("packed", "padded"):
                clf = FineTuneClassifier("all-MiniLM-L6-v2", random_state=draw)
                with _Padded() if how == "padded" else _nothing():
                    start = time.perf_counter()
                    clf.fit(X, yy)
                    seconds = time.perf_counter() - start
                cells.append((how, seconds, clf.score(X_te, y_te)))
            if with_setfit:
                model = _SetFit(draw)
                start = time.perf_counter()
                model.fit(X, yy)
                cells.append(
                    ("setfit", time.perf_counter() - start, model.score(X_te, y_te))
                )
            text = ", ".join(f"{h} {s:.1f} s ({a:.3f})" for h, s, a in cells)
            ratio = cells[1][1] / cells[0][1]
            print(
                f"  {per_class}/class draw {draw}: {text}; padded/packed {ratio:.2f}x"
            )


class _nothing:
    def __enter__(self):
        _packing._VERIFIED.clear()

    def __exit__(self, *exc):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,16,64")
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--setfit", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    texts, y = load_vader("movies")
    if not args.skip_steps:
        steps(texts)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fits(texts, y, sizes, args.draws, args.setfit)


if __name__ == "__main__":
    main()
