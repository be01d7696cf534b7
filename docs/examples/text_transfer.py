"""Text: MiniLM sentence embeddings vs GloVe word vectors vs TF-IDF.

Binary sentiment on the VADER ground-truth snippets (Hutto & Gilbert, 2014):
5-fold accuracy within each domain, and a classifier trained on movie reviews
tested on tweets. A random subset of each domain keeps it quick on a CPU;
``benchmarks/bench_text_accuracy.py`` runs the full sets.

Run: ``python docs/examples/text_transfer.py`` (offline once the VADER data are
under ``benchmarks/_data/``; the first call fetches them with ``pip download``).
Writes ``docs/figures/text_transfer.png``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _common import save
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skltransfer import PretrainedTextEmbeddings, PretrainedWordVectors

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _vader import load  # noqa: E402

SUBSET = {"movies": 3000, "tweets": 2000}


def subset(domain):
    texts, labels = load(domain)
    keep = np.random.default_rng(0).permutation(len(texts))[: SUBSET[domain]]
    return [texts[i] for i in keep], np.asarray(labels)[keep]


def scores(embed, movies, tweets):
    """(movies 5-fold, tweets 5-fold, movies -> tweets) accuracy."""
    (mx, my), (tx, ty) = movies, tweets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # snippets without a known word (GloVe)
        mz, tz = embed(mx, tx)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    clf = LogisticRegression(max_iter=1000)
    if embed is identity:
        clf = make_pipeline(TfidfVectorizer(), clf)
    return (
        cross_val_score(clf, mz, my, cv=cv).mean(),
        cross_val_score(clf, tz, ty, cv=cv).mean(),
        clf.fit(mz, my).score(tz, ty),
    )


def embedder(transformer):
    def embed(mx, tx):
        transformer.fit(mx)
        return transformer.transform(mx), transformer.transform(tx)

    return embed


def identity(mx, tx):
    # TF-IDF learns its vocabulary, so it is fitted inside each fold (below).
    return mx, tx


def main():
    movies, tweets = subset("movies"), subset("tweets")
    print(f"VADER subsets: {len(movies[0])} movie snippets, {len(tweets[0])} tweets")
    methods = {
        "TF-IDF": identity,
        "GloVe mean (50-d)": embedder(PretrainedWordVectors()),
        "MiniLM (384-d)": embedder(PretrainedTextEmbeddings()),
    }
    results = {}
    print(f"{'':<20}{'movies':>9}{'tweets':>9}{'movies->tweets':>16}")
    for name, embed in methods.items():
        start = time.perf_counter()
        results[name] = scores(embed, movies, tweets)
        cells = "".join(f"{s:>9.3f}" for s in results[name][:2])
        print(
            f"{name:<20}{cells}{results[name][2]:>16.3f}"
            f"   ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    columns = ["movies (5-fold)", "tweets (5-fold)", "movies → tweets"]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / len(results)
    for i, (name, values) in enumerate(results.items()):
        ax.bar(np.arange(3) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(3) + width, columns)
    ax.set_ylim(0.4, 0.95)
    ax.set_ylabel("accuracy")
    ax.set_title("Sentiment: in-domain and across domains")
    ax.legend(loc="lower left", fontsize=8)
    save(fig, "text_transfer.png")


if __name__ == "__main__":
    main()
