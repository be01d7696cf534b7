"""Sentiment accuracy of frozen text features + LogisticRegression on VADER data.

Three feature sets, each followed by ``LogisticRegression(max_iter=1000)``:
TF-IDF (scikit-learn's ``TfidfVectorizer``, the baseline), GloVe 6B 50-d mean
vectors (``PretrainedWordVectors()``) and all-MiniLM-L6-v2 sentence embeddings
(``PretrainedTextEmbeddings()``), all with the library's defaults.

Protocols: 5-fold cross-validation on movie review snippets and on tweets
(``cross_val_score(..., cv=5)``: stratified folds in file order), and the
domain transfer "train on all movie snippets, test on all tweets". Labels are
the sign of the mean human rating (see ``_vader.py``).

The pretrained features do not depend on the training data, so each text is
embedded once and the folds reuse the embeddings; this gives the same scores
as refitting the whole pipeline per fold.

Run: ``python benchmarks/bench_text_accuracy.py`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _vader import load  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from skltransfer import PretrainedTextEmbeddings, PretrainedWordVectors  # noqa: E402

# Frozen MiniLM or GloVe features + LogisticRegression, measured for the library's
# specification (movies 5-fold, tweets 5-fold, movies -> tweets).
REFERENCE = {
    "TF-IDF": (0.776, 0.799, 0.573),
    "GloVe mean": (0.703, 0.829, 0.466),
    "MiniLM": (0.776, 0.881, 0.719),
}


def _classifier():
    return LogisticRegression(max_iter=1000)


def _scores_pretrained(embedder, movies, tweets) -> tuple[float, float, float]:
    (mx, my), (tx, ty) = movies, tweets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # texts without a known word (GloVe)
        Xm = embedder.fit(mx).transform(mx)
        Xt = embedder.transform(tx)
    return (
        cross_val_score(_classifier(), Xm, my, cv=5).mean(),
        cross_val_score(_classifier(), Xt, ty, cv=5).mean(),
        _classifier().fit(Xm, my).score(Xt, ty),
    )


def _scores_tfidf(movies, tweets) -> tuple[float, float, float]:
    (mx, my), (tx, ty) = movies, tweets

    def pipe():
        return make_pipeline(TfidfVectorizer(), _classifier())

    return (
        cross_val_score(pipe(), mx, my, cv=5).mean(),
        cross_val_score(pipe(), tx, ty, cv=5).mean(),
        pipe().fit(mx, my).score(tx, ty),
    )


def main() -> None:
    movies, tweets = load("movies"), load("tweets")
    print(f"VADER movie snippets: {len(movies[0])}, tweets: {len(tweets[0])}")
    runs = {
        "TF-IDF": lambda: _scores_tfidf(movies, tweets),
        "GloVe mean": lambda: _scores_pretrained(
            PretrainedWordVectors(), movies, tweets
        ),
        "MiniLM": lambda: _scores_pretrained(
            PretrainedTextEmbeddings(), movies, tweets
        ),
    }
    header = f"{'features':<12}{'movies 5-fold':>22}{'tweets 5-fold':>22}"
    print(header + f"{'movies -> tweets':>22}{'time':>8}")
    print(f"{'':<12}" + f"{'ours (reference)':>22}" * 3)
    for name, run in runs.items():
        start = time.perf_counter()
        scores = run()
        cells = [
            f"{s:.3f} ({r:.3f}){' ok' if s >= r else ' LOW'}"
            for s, r in zip(scores, REFERENCE[name], strict=True)
        ]
        elapsed = time.perf_counter() - start
        print(f"{name:<12}" + "".join(f"{c:>22}" for c in cells) + f"{elapsed:7.0f}s")


if __name__ == "__main__":
    main()
