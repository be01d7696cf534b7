"""Texts: TF-IDF, word vectors, a sentence encoder, and fine-tuning that encoder.

Binary sentiment on the VADER ground truth (Hutto & Gilbert, 2014): train on
200 or 2000 movie-review snippets, test on 2000 other movie snippets (in
domain) and on 2000 tweets (another domain). Every model is at its defaults:

- TF-IDF (``TfidfVectorizer``) + ``LogisticRegression(max_iter=1000)``;
- ``PretrainedWordVectors()`` (GloVe 6B 50-d, mean) + the same;
- ``PretrainedTextEmbeddings()`` (all-MiniLM-L6-v2) + the same;
- ``FineTuneClassifier("all-MiniLM-L6-v2")``: for a text encoder the default
  ``unfreeze="auto"`` trains a new linear head on the frozen encoder, starting
  from a linear probe;
- ``FineTuneClassifier("all-MiniLM-L6-v2", unfreeze=1)``: the encoder's top
  transformer layer trains too (first draw only: it is the costly one).

The test sets are fixed; each draw takes a new training set from the other
movie snippets. The frozen features do not depend on the training set, so
each text is embedded once (and cached on disk) and the draws reuse the rows;
the fine-tuned models see the raw texts. Fit seconds are those of one fit, on
two CPU cores (shared with other work: upper bounds).

Accuracy and balanced accuracy (the mean of the recall of each class) are
printed for both test sets. 69 % of the tweets are positive against half of
the movie snippets, so on tweets "always positive" already scores 0.689 in
accuracy; balanced accuracy, where any constant answer scores 0.5, tells
whether a model learnt something that carries over.

Run: ``python docs/examples/text_strategies.py`` (offline once the VADER data
are under ``benchmarks/_data/``; the first call fetches them with ``pip
download``). Writes ``docs/figures/text_strategies.png``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _common import CACHE, save
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import make_pipeline

from skltransfer import (
    FineTuneClassifier,
    PretrainedTextEmbeddings,
    PretrainedWordVectors,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _vader import load  # noqa: E402

SIZES = (200, 2000)
SEEDS = range(3)
N_TEST = 2000
POOL = 6000  # movie snippets the training sets are drawn from


def data():
    """(pool texts, pool labels), movie test set, tweet test set."""
    texts, labels = load("movies")
    order = np.random.default_rng(0).permutation(len(texts))
    test, pool = order[:N_TEST], order[N_TEST : N_TEST + POOL]
    tweets, tweet_labels = load("tweets")
    picked = np.random.default_rng(0).permutation(len(tweets))[:N_TEST]
    movies_test = [texts[i] for i in test], labels[test]
    tweets_test = [tweets[i] for i in picked], tweet_labels[picked]
    return ([texts[i] for i in pool], labels[pool]), movies_test, tweets_test


def classifier():
    return LogisticRegression(max_iter=1000)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def embed_all(transformer, pool, tests):
    """Each text embedded once: the pool's rows and each test set's rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # snippets without a known GloVe word
        transformer.fit(pool)
        return transformer.transform(pool), [transformer.transform(x) for x, _ in tests]


def scores(predictions, tests):
    """(accuracy, balanced accuracy) on each test set, flattened."""
    return [
        metric(y, p)
        for p, (_, y) in zip(predictions, tests)
        for metric in (accuracy_score, balanced_accuracy_score)
    ]


def run():
    (pool_x, pool_y), movies_test, tweets_test = data()
    tests = [movies_test, tweets_test]
    print(
        f"VADER: training drawn from {len(pool_x)} movie snippets; tests: "
        f"{len(movies_test[0])} other movie snippets, {len(tweets_test[0])} tweets "
        f"({tweets_test[1].mean():.3f} of them positive)"
    )
    embedded = {}
    for name, transformer in [
        ("GloVe mean + LR", PretrainedWordVectors()),
        ("MiniLM + LR", PretrainedTextEmbeddings(cache=CACHE / "text")),
    ]:
        embedded[name], seconds = timed(embed_all, transformer, pool_x, tests)
        n = len(pool_x) + sum(len(x) for x, _ in tests)
        print(f"  {name}: {n} texts embedded in {seconds:.0f} s", flush=True)
    results = {}  # (method, n) -> rows of (4 scores, fit seconds)
    for n in SIZES:
        for seed in SEEDS:
            train = np.random.default_rng(seed).permutation(len(pool_x))[:n]
            x_tr, y_tr = [pool_x[i] for i in train], pool_y[train]
            models = {"TF-IDF + LR": make_pipeline(TfidfVectorizer(), classifier())}
            models["fine-tuned (defaults)"] = FineTuneClassifier(
                "all-MiniLM-L6-v2", random_state=seed
            )
            if seed == SEEDS[0]:
                models["fine-tuned, unfreeze=1"] = FineTuneClassifier(
                    "all-MiniLM-L6-v2", unfreeze=1, random_state=seed
                )
            for name, model in models.items():
                _, seconds = timed(model.fit, x_tr, y_tr)
                row = scores([model.predict(x) for x, _ in tests], tests)
                results.setdefault((name, n), []).append((*row, seconds))
                print(
                    f"  n={n} seed {seed} {name}: {np.round(row, 3)} ({seconds:.1f} s)"
                )
            for name, (pool_z, test_z) in embedded.items():
                model = classifier()
                _, seconds = timed(model.fit, pool_z[train], y_tr)
                row = scores([model.predict(z) for z in test_z], tests)
                results.setdefault((name, n), []).append((*row, seconds))
                print(
                    f"  n={n} seed {seed} {name}: {np.round(row, 3)} ({seconds:.1f} s)"
                )
    return results


NAMES = [
    "TF-IDF + LR", "GloVe mean + LR", "MiniLM + LR",
    "fine-tuned (defaults)", "fine-tuned, unfreeze=1",
]  # fmt: skip
COLUMNS = ["movies acc", "movies bal", "tweets acc", "tweets bal"]


def cell(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def report(results):
    print(
        "\nmean ± std over draws (one draw for unfreeze=1); acc: accuracy, "
        "bal: balanced accuracy; fit seconds"
    )
    for n in SIZES:
        print(f"\n{n} training movie snippets")
        print(f"  {'':<24}" + "".join(f"{c:>16}" for c in COLUMNS) + f"{'fit':>9}")
        for name in NAMES:
            rows = np.array(results[(name, n)])
            cells = "".join(f"{cell(rows[:, i]):>16}" for i in range(4))
            print(f"  {name:<24}{cells}{rows[:, 4].mean():>8.1f}s")
    plot(results)


def plot(results):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    width = 0.8 / len(NAMES)
    panels = [(0, "movie snippets: accuracy"), (3, "tweets: balanced accuracy")]
    for ax, (column, title) in zip(axes, panels):
        for i, name in enumerate(NAMES):
            means = [np.array(results[(name, n)])[:, column].mean() for n in SIZES]
            ax.bar(np.arange(len(SIZES)) + i * width, means, width, label=name)
        ticks = np.arange(len(SIZES)) + 0.4 - width / 2
        ax.set_xticks(ticks, [f"{n} training texts" for n in SIZES])
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(f"tested on {title}")
        ax.set_ylim(0.45, 0.85)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("trained on movie snippets")
    axes[0].legend(fontsize=7, loc="upper left")
    save(fig, "text_strategies.png")


if __name__ == "__main__":
    report(run())
