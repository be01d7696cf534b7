"""What does the fine-tuners' head start (the probe) cost as the data grow?

Every default fit of ``FineTuneClassifier`` starts its new head as a logistic
regression on the frozen features, with C chosen by 3-fold cross-validation
of the log loss over 13 values (``skltransfer/finetune/_probe.py``). This
times that step alone, ``fit_probe``, on real features: EfficientNet-Lite0
at ``--image-size`` px on scikit-learn's digits (10 classes, 1,280
features), at several training sizes, against what a user would write for
the same choice, ``make_pipeline(StandardScaler(),
LogisticRegressionCV(Cs=<the same 13>, cv=3, scoring="neg_log_loss"))``,
and against a plain ``LogisticRegression()`` on standardised features. Each
model is scored on the digits left out of its training set. One run, so the
ratios compare like with like.

    python benchmarks/bench_probe.py [--sizes 64,256,1024,1500] [--image-size 112]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skltransfer import PretrainedImageFeatures  # noqa: E402
from skltransfer.finetune._probe import PROBE_CS, fit_probe  # noqa: E402


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="64,256,1024,1500")
    parser.add_argument("--image-size", type=int, default=112)
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    features = PretrainedImageFeatures(image_shape=(8, 8), image_size=args.image_size)
    F, seconds = _timed(lambda: features.fit(X).transform(X).astype(np.float64))
    print(f"features: {F.shape[1]} per image, {seconds:.1f} s for {len(F)} digits")

    def ours(F_tr, y_tr):
        W, b, info = fit_probe(F_tr, y_tr, task="multiclass", n_outputs=10)
        return (lambda F: (F @ W.T + b).argmax(axis=1)), info["C"]

    def sklearn_cv(F_tr, y_tr):
        model = make_pipeline(
            StandardScaler(),
            LogisticRegressionCV(Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss"),
        ).fit(F_tr, y_tr)
        return model.predict, float(model[-1].C_[0])

    def plain(F_tr, y_tr):
        model = make_pipeline(StandardScaler(), LogisticRegression()).fit(F_tr, y_tr)
        return model.predict, 1.0

    methods = {
        "fit_probe": ours,
        "LogisticRegressionCV": sklearn_cv,
        "LogisticRegression": plain,
    }
    header = f"{'n':>6}" + "".join(f"{name:>34}" for name in methods)
    print(header + f"{'fit_probe / CV':>16}")
    for n in (int(s) for s in args.sizes.split(",")):
        F_tr, y_tr, F_te, y_te = F[:n], y[:n], F[n:], y[n:]
        cells, times = [], {}
        for name, method in methods.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.9 API notes
                (predict, C), seconds = _timed(method, F_tr, y_tr)
            accuracy = (predict(F_te) == y_te).mean()
            times[name] = seconds
            cells.append(f"{seconds:7.2f} s  acc {accuracy:.3f}  C {C:<8.2g}")
        ratio = times["fit_probe"] / times["LogisticRegressionCV"]
        print(f"{n:>6}" + "".join(f"{c:>34}" for c in cells) + f"{ratio:>15.2f}x")


if __name__ == "__main__":
    main()
