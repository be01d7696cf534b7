"""The head start: a convex probe on the frozen features sets the new head.

Linear probing, then fine-tuning (LP-FT; Kumar et al., ICLR 2022): the last
linear layer of the new head starts from the solution of a convex problem on
the features it sees at initialisation, instead of from random weights. A
randomly initialised head sends large, meaningless gradients into the
pretrained layers during the first steps and distorts them; a probed head
starts where a linear model on the frozen features ends, so fine-tuning can
only refine it.

- classifiers: multinomial logistic regression (one binary logistic
  regression per label for multi-label targets), with the estimator's class
  weights;
- regressors: ridge regression on the standardised targets.

The features are centred and divided by one common scale for the fit, and
that is folded back into the layer's weights, so the regularisation strength
means the same thing for every backbone. It is chosen by stratified
cross-validation of the log loss with the one-standard-error rule
(classifiers; over ``C`` in ``PROBE_CS``, see :func:`choose_C`; on few-shot
folds by Newton's method in the span of the samples, see
:func:`_newton_fit`) or
by efficient leave-one-out (ridge; over ``RIDGE_ALPHAS``). Above
``PROBE_CV_SAMPLES`` samples the choice is made on a stratified subsample and
the final fit uses every sample.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import scipy
import torch
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits
from torch import nn

from .._inference import map_batches
from ..backbones._packing import without_padding

__all__ = [
    "PROBE_CS",
    "fit_probe",
    "head_features",
    "last_linear",
    "weighted_mean_se",
]

# Half a decade apart, from 1e-4 to 100.
PROBE_CS = tuple(float(c) for c in np.logspace(-4, 2, 13))
RIDGE_ALPHAS = tuple(np.logspace(-2, 4, 13))
PROBE_CV_SAMPLES = 2000
_MAX_ITER = 300


def last_linear(head: nn.Module) -> nn.Linear:
    """The output layer of a head built by :func:`._heads.build_head`."""
    return head if isinstance(head, nn.Linear) else head[-1]


def head_features(module, inputs, ctx, batch_size: int) -> np.ndarray:
    """What the head's output layer sees for every sample, in eval mode.

    For a linear head these are the backbone's features; for an MLP head, the
    last hidden layer at its current (initial) weights. Texts run packed
    (see :mod:`skltransfer.backbones._packing`).
    """
    captured = []
    hook = last_linear(module.head).register_forward_pre_hook(
        lambda _m, args: captured.append(args[0].float().cpu())
    )
    module.eval()
    try:
        map_batches(
            inputs,
            lambda xb: module(without_padding(module.backbone, xb)),
            device=ctx.device,
            dtype=ctx.dtype,
            batch_size=batch_size,
        )
    finally:
        hook.remove()
    return torch.cat(captured).numpy().astype(np.float64)


def adapt_batchnorm(module, inputs, ctx, batch_size: int) -> int:
    """Re-estimate the statistics of the BatchNorm layers that will train.

    Training normalises with batch statistics and moves the running ones
    towards the new data within a few steps, so a head fitted on features
    computed with the pretrained statistics would be wrong from the first
    epoch. The layers in training mode (as set for the first epoch) get the
    exact statistics of the training inputs instead (AdaBN; Li et al., 2016),
    and the probe sees the features that training starts from. Returns how
    many layers were adapted.
    """
    layers = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.training
        and m.track_running_stats
    ]
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the whole pass
    try:
        map_batches(
            inputs,
            module,
            device=ctx.device,
            dtype=ctx.dtype,
            batch_size=batch_size,
            training=True,
        )
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
    return len(layers)


def _standardise(F: np.ndarray):
    """Centre each feature and divide all by one scale (their RMS).

    One scale, not one per feature: per-feature scaling would give
    near-constant features large weights once folded back, and fine-tuning
    changes exactly those features, so the logits would swing.
    """
    mean = F.mean(axis=0)
    scale = float(np.sqrt(np.mean((F - mean) ** 2)))
    scale = scale if scale > 1e-12 else 1.0
    return (F - mean) / scale, mean, scale


def _subsample(Z, y, seed: int, sample_weight=None):
    if len(Z) <= PROBE_CV_SAMPLES:
        return Z, y, sample_weight
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    idx, _ = train_test_split(
        np.arange(len(y)),
        train_size=PROBE_CV_SAMPLES,
        stratify=stratify,
        random_state=seed,
    )
    return Z[idx], y[idx], _rows(sample_weight, idx)


def _cv_folds(y) -> int:
    counts = np.bincount(y)
    return int(min(3, counts[counts > 0].min()))


def _fold_losses(Z, y, train, test, class_weight, sample_weight):
    """Log loss of every test sample, C by C of ``PROBE_CS``: a generator of
    arrays of shape (n_test,), so that the cross-validation can stop the path
    early (:func:`choose_C`).

    The Cs run from the strongest regularisation up, each fit warm-started
    from the previous solution, which makes the whole path cost a few fits.
    """
    weights = _row_weights(y[train], class_weight, _rows(sample_weight, train))
    fit = _solver(Z[train], y[train])
    for classes, proba in _path(fit, Z[train], y[train], weights, Z[test]):
        proba = np.clip(proba, 1e-12, 1.0)
        # Classes missing from this training fold get the floor probability.
        columns = np.searchsorted(classes, y[test])
        known = np.isin(y[test], classes)
        picked = np.where(known, proba[np.arange(len(test)), columns * known], 1e-12)
        yield -np.log(picked)


def _path(fit, Z, y, weights, Z_test):
    """For each C of ``PROBE_CS``: the classes and the test probabilities of
    LogisticRegression(C) fitted on ``(Z, y)`` with sample ``weights`` by
    ``fit`` (:func:`_newton_fit` or :func:`_lbfgs_fit`)."""
    for classes, coef, intercept in fit(Z, y, weights, PROBE_CS):
        if len(classes) < 2:
            yield classes, np.ones((len(Z_test), 1))
        else:
            yield classes, _softmax_proba(Z_test @ coef.T + intercept)


def _span(Z):
    """``(X, Vt)`` with ``Z = X @ Vt``, ``X`` of as many columns as the rank
    of ``Z`` and ``Vt`` of orthonormal rows: ``X = U S`` of the thin SVD.

    The penalised coefficients of a logistic regression's optimum lie in the
    row space of ``Z`` (the gradient of the loss in them is ``Z.T @
    residual``), so the problem on ``X`` with coefficients ``B`` is the same
    problem, ``W = B @ Vt``, in at most as many unknowns as samples or
    features, whichever is fewer. With fewer samples than features the
    factors come from the eigenvectors of the Gram matrix ``Z @ Z.T``: three
    times faster than an SVD of ``Z`` (0.5 against 1.7 s for 1,023 samples
    of 1,280 features, one thread); directions whose singular value is below
    a millionth of the largest, where the Gram matrix's rounding would
    dominate, are left out (they move no prediction of a penalised fit).
    With more samples than features (20,000 texts of 384 features), it is
    the thin SVD, whose cost grows with the samples only linearly.
    """
    if Z.shape[0] >= Z.shape[1]:
        U, sv, Vt = np.linalg.svd(Z, full_matrices=False)
        rank = int(np.count_nonzero(sv > 1e-10 * sv.max(initial=0.0)))
        return U[:, :rank] * sv[:rank], Vt[:rank]
    eigenvalues, U = np.linalg.eigh(Z @ Z.T)
    keep = eigenvalues > 1e-12 * eigenvalues.max(initial=0.0)
    sv = np.sqrt(eigenvalues[keep])
    U = U[:, keep]
    return U * sv, (U / sv).T @ Z


def _classes_onehot(y):
    classes, codes = np.unique(y, return_inverse=True)
    k = 1 if len(classes) == 2 else len(classes)
    onehot = codes[:, None].astype(float) if k == 1 else np.eye(k)[codes]
    return classes, k, onehot


def _lbfgs_fit(Z, y, weights, Cs):
    """What :func:`_newton_fit` yields, by L-BFGS, for problems whose Hessian
    is too large for Newton's method.

    The objective is scikit-learn's: ``C`` times the weighted log loss plus
    half the squared norm of the coefficients (not of the intercepts), with
    one logit for two classes and a softmax over all classes otherwise. The
    minimisation is scipy's L-BFGS-B, without scikit-learn's checks around
    each fit (which cost ten times the fit on few-shot data: 13 Cs on 3
    folds took 0.3 s for 16 samples), at the gradient tolerance of
    scikit-learn's ``lbfgs`` solver at its defaults: 1e-4 of the mean loss,
    which is ``C`` times the total weight smaller than this objective
    (scipy's own tolerance on the objective's relative decrease, looser
    than scikit-learn's, can stop it a little sooner).
    A path over several Cs with fewer samples than features is solved in
    their span (:func:`_span`); for a single fit with nearly as many samples
    as features, the factorisation would cost more than it saves.

    On 1,024 ImageNet features of 10 digit classes (one thread), these took
    the cross-validation of C from 32 to 7 s and chose the same C as a
    gradient of 1e-4 of this objective did, at 64, 256 and 1,024 samples.
    """
    classes, k, onehot = _classes_onehot(y)
    n, d = Z.shape
    if len(classes) < 2:
        for _ in Cs:
            yield classes, np.zeros((1, d)), np.zeros(1)
        return
    reduce = n < d and (len(Cs) > 1 or 2 * n <= d)
    X, Vt = _span(Z) if reduce else (Z, None)
    m = X.shape[1]
    X1 = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros((m + 1) * k)
    for C in Cs:

        def loss_grad(flat, C=C):
            W = flat.reshape(m + 1, k)
            logits = X1 @ W
            if k == 1:
                loss = np.logaddexp(0, logits) - onehot * logits
                residual = expit(logits) - onehot
            else:
                logits = logits - logits.max(axis=1, keepdims=True)
                log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
                loss = -(onehot * log_p)
                residual = np.exp(log_p) - onehot
            value = C * float(weights @ loss.sum(axis=1))
            grad = C * (X1.T @ (residual * weights[:, None]))
            value += 0.5 * float(np.sum(W[:-1] ** 2))
            grad[:-1] += W[:-1]
            return value, grad.ravel()

        theta = minimize(
            loss_grad,
            theta,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": _MAX_ITER, "gtol": 1e-4 * C * weights.sum()},
        ).x
        W = theta.reshape(m + 1, k)
        coef = W[:-1].T if Vt is None else W[:-1].T @ Vt
        yield classes, coef, W[-1].copy()


# Newton's method runs where the Hessian of the reduced problem (see
# _newton_fit) has at most this many rows.
_NEWTON_MAX_ROWS = 400


def _newton_fits(Z, y) -> bool:
    n_classes = len(np.unique(y))
    k = 1 if n_classes <= 2 else n_classes
    return (min(Z.shape) + 1) * k <= _NEWTON_MAX_ROWS


def _solver(Z, y):
    """:func:`_newton_fit` where its Hessian is small, else :func:`_lbfgs_fit`."""
    return _newton_fit if _newton_fits(Z, y) else _lbfgs_fit


def _newton_fit(Z, y, weights, Cs):
    """For each C of ``Cs``, the classes, coefficients and intercepts of
    LogisticRegression(C) fitted on ``(Z, y)`` with sample ``weights`` (the
    objective of :func:`_lbfgs_fit`), each warm-started from the last.

    The problem is solved in the span of the samples (:func:`_span`). On a
    few-shot fold (10 samples of 384 features) that is 11 unknowns per
    class: Newton's method converges in a handful of exact steps where
    L-BFGS through scipy took 2 ms per C, mostly in its own set-up, and the
    13 Cs of 3 folds were a fifth of a frozen fit on 16 texts.
    """
    classes, k, onehot = _classes_onehot(y)
    if len(classes) < 2:
        for _ in Cs:
            yield classes, np.zeros((1, Z.shape[1])), np.zeros(1)
        return
    X, Vt = _span(Z)
    rank = X.shape[1]
    X = np.hstack([X, np.ones((len(Z), 1))])
    m = rank + 1
    # The penalty's diagonal: every coefficient, not the intercepts (a tiny
    # ridge on those keeps the Hessian invertible when the softmax's shared
    # shift leaves it singular; it moves no prediction).
    penalty = np.tile(np.r_[np.ones(rank), 1e-10], k)
    theta = np.zeros(m * k)
    for C in Cs:
        theta = _newton(X, onehot, weights, C, penalty, theta, k)
        B = theta.reshape(k, m)
        yield classes, B[:, :rank] @ Vt, B[:, rank]


def _softmax_proba(logits):
    """Class probabilities of ``logits`` (one column: the second class's)."""
    if logits.shape[1] == 1:
        p = expit(logits[:, 0])
        return np.stack([1 - p, p], axis=1)
    logits = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return proba / proba.sum(axis=1, keepdims=True)


def _objective(X, onehot, weights, C, penalty, theta, k):
    logits = X @ theta.reshape(k, -1).T
    if k == 1:
        loss = np.logaddexp(0, logits[:, 0]) - onehot[:, 0] * logits[:, 0]
    else:
        top = logits.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        loss = log_norm - (onehot * logits).sum(axis=1)
    return C * float(weights @ loss) + 0.5 * float(penalty @ theta**2)


def _newton(X, onehot, weights, C, penalty, theta, k, max_steps=50):
    """The minimiser of ``_objective`` from ``theta`` (parameters class by
    class, each block the coefficients then the intercept), by Newton steps
    with backtracking, until the Newton decrement is a 1e-10th of the
    objective (well past what a choice of C can tell)."""
    n, m = X.shape
    value = _objective(X, onehot, weights, C, penalty, theta, k)
    for _ in range(max_steps):
        logits = X @ theta.reshape(k, m).T
        if k == 1:
            p = expit(logits)
            residual = (p - onehot) * weights[:, None]
            hessian = C * (X.T * ((p * (1 - p))[:, 0] * weights)) @ X
        else:
            p = _softmax_proba(logits)
            weighted = p * weights[:, None]
            residual = (p - onehot) * weights[:, None]
            # The sum over the samples of (diag(p_i) - p_i p_i^T) (x) x_i x_i^T:
            # the diagonal blocks, less the outer products.
            left = (weighted[:, :, None] * X[:, None, :]).reshape(n, k * m)
            right = (p[:, :, None] * X[:, None, :]).reshape(n, k * m)
            hessian = -(left.T @ right)
            for a in range(k):
                block = slice(a * m, (a + 1) * m)
                hessian[block, block] += (X.T * weighted[:, a]) @ X
            hessian *= C
        grad = C * (X.T @ residual).T.ravel() + penalty * theta
        hessian[np.diag_indices_from(hessian)] += penalty
        step = np.linalg.solve(hessian, grad)
        decrement = float(grad @ step)
        if decrement <= 1e-10 * (1.0 + abs(value)):
            break
        t = 1.0
        while t > 1e-8:
            candidate = theta - t * step
            new = _objective(X, onehot, weights, C, penalty, candidate, k)
            if new <= value - 1e-4 * t * decrement:
                break
            t /= 2
        else:  # no decrease left that rounding lets us see
            break
        theta, value = candidate, new
    return theta


def choose_C(Z, y, class_weight, seed: int, sample_weight=None) -> float:
    """The most regularised C within one standard error of the best log loss.

    The (weighted) log loss of every sample is cross-validated over
    ``PROBE_CS``; among the Cs whose mean loss is within one standard error
    of the lowest, the smallest is chosen (the one-standard-error rule;
    Hastie, Tibshirani and Friedman, *Elements of Statistical Learning*,
    7.10). Near the optimum the loss curve is flat, and the more regularised
    head there predicts as well while leaving fine-tuning smaller logits to
    move; on 2,000 review texts the rule matched an accuracy-chosen C where
    the plain minimum picked a 3x weaker regularisation and lost a point.
    With fewer than two samples in some class there is nothing to
    cross-validate and C=1 is used.
    """
    Z, y, sample_weight = _subsample(Z, y, seed, sample_weight)
    n_folds = _cv_folds(y)
    if n_folds < 2:
        return 1.0
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(Z, y))
    paths = [
        _fold_losses(Z, y, train, test, class_weight, sample_weight)
        for train, test in folds
    ]
    weights = _row_weights(y, class_weight, sample_weight)
    losses = np.empty((len(PROBE_CS), len(y)))
    workers = _fold_workers(Z, len(folds))
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        step = map if pool is None else pool.map
        for i in range(len(PROBE_CS)):
            for (_, test), row in zip(folds, step(next, paths), strict=True):
                losses[i, test] = row
            mean, se = weighted_mean_se(losses[: i + 1], weights)
            if _past_the_minimum(mean, se):
                break
    best = int(np.argmin(mean))
    return float(PROBE_CS[int(np.flatnonzero(mean <= mean[best] + se[best])[0])])


def _fold_workers(Z, n_folds: int) -> int:
    """Threads for the folds' paths: one per fold where the process has
    more than one core's share (``torch.get_num_threads``, which joblib's
    and the distributed workers' limits set) and a fold's fits take long
    enough. Each thread holds one BLAS thread, and numpy's products release
    the GIL. Three folds on two cores run in three threads, not two, which
    would leave the third fold of every C to run alone. On two cores, with
    1,500 samples of 1,280 features, the choice of C took 10.9 s in one
    thread, 7.6 in two and 7.1 in three (numpy's smaller steps hold the
    GIL). scipy's L-BFGS-B before 1.15 was Fortran behind f2py wrappers,
    not written for threads: the folds run one after another there."""
    if Z.size < _THREADED_SIZE or torch.get_num_threads() < 2:
        return 1
    return n_folds if _SCIPY_VERSION >= (1, 15) else 1


_SCIPY_VERSION = tuple(int(part) for part in scipy.__version__.split(".")[:2])


# Features times samples above which the folds run in threads (about 100
# samples of a 1,280-wide image backbone; a few-shot fold takes milliseconds).
_THREADED_SIZE = 100_000


def _past_the_minimum(mean, se) -> bool:
    """Whether the path of mean losses has risen out of the best one's
    one-standard-error band for two Cs in a row.

    The rule chooses among the Cs below those, so the weaker regularisations
    left (the slowest to fit: at 1,024 samples the last four Cs took half of
    the path's time) could change the choice only by a new, lower minimum
    after the loss had risen twice. That is the assumption: the
    cross-validated log loss of an L2-penalised logistic regression along C
    typically falls to one minimum and rises after it, and a second, lower
    one past two rises out of the band is given up.
    """
    best = int(np.argmin(mean))
    band = mean[best] + se[best]
    return len(mean) >= best + 3 and mean[-1] > mean[-2] > band


def weighted_mean_se(losses: np.ndarray, weights: np.ndarray, ddof: int = 0):
    """Weighted mean of each row of ``losses`` and its standard error, the
    variance divided by the effective sample size less ``ddof`` (at least 1)."""
    total = weights.sum()
    mean = losses @ weights / total
    var = ((losses - mean[:, None]) ** 2) @ weights / total
    n_eff = total**2 / np.sum(weights**2)
    return mean, np.sqrt(var / max(n_eff - ddof, 1.0))


def _rows(sample_weight, idx):
    return None if sample_weight is None else sample_weight[idx]


def _row_weights(y, class_weight, sample_weight=None) -> np.ndarray:
    """The weight of each row in the loss: its class's times its own."""
    if class_weight is None:
        weights = np.ones(len(y))
    else:
        weights = np.array([class_weight.get(int(c), 1.0) for c in y])
    return weights if sample_weight is None else weights * sample_weight


def _fit_at(C, Z, y, weights):
    """The classes, coefficients and intercepts of LogisticRegression(C)."""
    return next(_solver(Z, y)(Z, y, weights, (C,)))


def _classifier_probe(Z, y, n_outputs: int, class_weight, seed: int, weight):
    C = choose_C(Z, y, class_weight, seed, weight)
    classes, W, b = _fit_at(C, Z, y, _row_weights(y, class_weight, weight))
    coef = np.zeros((n_outputs, Z.shape[1]))
    intercept = np.full(n_outputs, -10.0)  # classes absent from y: never predicted
    if len(classes) == 2:
        # Binary: one logit; split it symmetrically.
        coef[classes] = np.stack([-W[0], W[0]]) / 2
        intercept[classes] = np.array([-1, 1]) * b[0] / 2
    else:
        coef[classes] = W
        intercept[classes] = b
    return coef, intercept, {"C": C}


def _multilabel_probe(Z, Y, seed: int, weight):
    coef = np.zeros((Y.shape[1], Z.shape[1]))
    intercept = np.zeros(Y.shape[1])
    Cs = []
    for j in range(Y.shape[1]):
        y = Y[:, j].astype(int)
        rate = y.mean()
        if rate in (0.0, 1.0):  # a constant label: its prior
            intercept[j] = 10.0 if rate else -10.0
            continue
        C = choose_C(Z, y, None, seed, weight)
        _, W, b = _fit_at(C, Z, y, _row_weights(y, None, weight))
        coef[j], intercept[j] = W[0], b[0]
        Cs.append(C)
    return coef, intercept, {"C": Cs}


def _ridge_probe(Z, Y, weight):
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(Z, Y, sample_weight=weight)
    coef = np.atleast_2d(model.coef_)
    return coef, np.atleast_1d(model.intercept_), {"alpha": float(model.alpha_)}


def fit_probe(
    F,
    targets,
    *,
    task: str,
    n_outputs: int,
    class_weight=None,
    sample_weight=None,
    seed=0,
):
    """Weights ``(W, b)`` of the output layer from a convex fit on ``F``.

    Parameters
    ----------
    F : ndarray of shape (n_samples, n_features)
        The features the output layer sees.
    targets : ndarray
        Encoded class indices (``"multiclass"``), a 0/1 indicator matrix
        (``"multilabel"``) or standardised targets (``"regression"``).
    task : {"multiclass", "multilabel", "regression"}
    n_outputs : int
        Rows of ``W``.
    class_weight : dict or None
        Weight of each class index in the loss.
    sample_weight : ndarray of shape (n_samples,) or None
        Weight of each sample in the loss (and in the choice of C).

    Returns
    -------
    W, b : ndarray
        In the units of ``F`` (the standardisation is folded in).
    info : dict
        The regularisation chosen (``"C"`` or ``"alpha"``).
    """
    Z, mean, scale = _standardise(F)
    # One BLAS thread: these problems are small, and a multi-threaded BLAS
    # that spins while waiting ran one fit 100x slower (3.6 s against
    # 0.036 s) on a loaded two-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        if task == "multiclass":
            coef, intercept, info = _classifier_probe(
                Z, targets, n_outputs, class_weight, seed, sample_weight
            )
        elif task == "multilabel":
            coef, intercept, info = _multilabel_probe(Z, targets, seed, sample_weight)
        else:
            coef, intercept, info = _ridge_probe(Z, targets, sample_weight)
    W = coef / scale
    b = intercept - W @ mean
    return W, b, info


def set_output_layer(head: nn.Module, W: np.ndarray, b: np.ndarray) -> None:
    """Copy ``(W, b)`` into the head's output layer."""
    layer = last_linear(head)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(W, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(b, dtype=layer.bias.dtype))
