"""Never below the probe: the final weights between the head start and training.

The probe head start (:mod:`._probe`) is the regularised optimum of a linear
head on the pretrained body. Training the body from there usually does
better, but on a few dozen samples it can also overfit, and nothing in the
training data says so. Weight-space interpolation (WiSE-FT; Wortsman et al.,
CVPR 2022) gives a line of models between the two: ``(1 - a) * start + a *
trained`` for every weight that training changed, where ``a = 0`` is the
probe and ``a = 1`` plain fine-tuning.

:func:`choose_interpolation` picks ``a`` by cross-fitting: the network is
trained on the complement of each of ``CROSS_FIT_FOLDS`` folds, exactly as
the whole fit trains it, and every weight of ``INTERPOLATIONS`` is scored on
the held-out fold by its score: accuracy for classifiers, minus the squared
error for regressors. The best weight above 0 wins, ties going to the
larger weight, unless the probe (weight 0) leads it by more than
``PROBE_LEAD_ERRORS`` (two) standard errors of their paired difference:
falling back to the probe needs evidence beyond the noise of a few dozen
held-out samples, which often tie or differ by a sample or two. The
comparison leans against the trained side, too: each fold's network learns
from two thirds of the samples, the final one from all of them, and
training gains more from the extra third than the probe does. On 64 movie
snippets per class, a probe ahead by one held-out text in 128 (0.734
against 0.727) had kept the probe, 0.678 on the test texts where the
trained encoder scored 0.724; in the same draw, after a change that only
redrew the folds' dropout masks, the probe led by four texts (0.734 against
0.703, 1.4 standard errors) and one standard error would again have kept
it, where the trained encoder scored 0.718 on the test texts.
Among the weights above 0 the best score decides alone: keeping the largest
weight within one standard error of the best (the one-standard-error rule,
toward the trained side) took weight 1 where the best score had chosen
0.25 to 0.75, and lost 1.0 and 1.9 points of in-domain test accuracy on
ELPV solar cells (3 draws each of mono and poly cells). The loss
does not decide either, as it would favour the probe: a fine-tuned network
is often more accurate and less well calibrated than the probe (on 50
digits 5-9 fine-tuned from a network trained on 0-4, 5 draws, ties to the
lower loss chose weights 0 to 0.75 in three draws and 0.919 test accuracy,
ties to the trained weights 0.932; digits, 400 samples: weight 0.5 by the
loss, 0.76 accurate, against 0.82 for the trained weights). Every sample is
held out once, so the choice rests on all of them (a validation split of a
few samples could not tell), and moves to the probe's side only where the
samples that the training did not see say so beyond their noise.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold

from .._device import module_device
from .._progress import progress_bar
from ._probe import weighted_mean_se

__all__ = [
    "AUTO_CROSS_FIT",
    "CROSS_FIT_FOLDS",
    "INTERPOLATIONS",
    "PROBE_LEAD_ERRORS",
    "choose_interpolation",
    "choose_weight",
    "interpolate",
    "may_cross_fit",
    "rows",
]

# interpolation="auto": below this many training samples, when the body
# trains, the weight is chosen by cross-fitting.
AUTO_CROSS_FIT = 1_000
CROSS_FIT_FOLDS = 3
INTERPOLATIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
# The probe is kept only when it leads the best other weight by more than
# this many standard errors of their paired difference.
PROBE_LEAD_ERRORS = 2.0


def may_cross_fit(estimator, n_samples: int) -> bool:
    """Whether a fit of ``n_samples`` may choose its weight by cross-fitting
    (decided before the network is built; whether the body trains is known
    after)."""
    return (
        estimator.interpolation == "auto"
        and estimator.head_init == "probe"
        and n_samples < AUTO_CROSS_FIT
    )


def choose_interpolation(estimator, pristine, data, device, seed):
    """``(weight, report)`` for a fit of ``estimator`` on ``data``.

    A number as ``interpolation`` is used as it is. With "auto", when the
    body trains and ``pristine`` (a copy of the pretrained backbone, which
    the folds train in turn) is given, the weight is cross-fitted (see the
    module docstring) and the report holds the candidates, their held-out
    losses and the number of folds; otherwise the trained weights are kept
    whole (weight 1, no report).
    """
    if estimator.interpolation != "auto":
        return float(estimator.interpolation), None
    if pristine is None or not (
        estimator.n_trainable_groups_ or estimator.contrastive_
    ):
        return 1.0, None
    inputs, targets, weights = data
    # After the contrastive stage the head is a probe of the adapted body, and
    # the head start one of the pretrained body: a mix of the two heads
    # matches neither body, so the choice is between the two whole models.
    candidates = (0.0, 1.0) if estimator.contrastive_ else INTERPOLATIONS
    scores = np.zeros((2, len(candidates), len(targets)))
    folds = _folds(estimator._fold_labels(targets), len(targets), seed)
    # Each fold fits silently (see _fit_fold): one bar counts the folds.
    bar = progress_bar(
        folds, verbose=estimator.verbose, desc="Cross-fitting", unit="fold", leave=False
    )
    # Every fold trains the same working copy of the pretrained body, its
    # weights put back in between: a deep copy of a text encoder's modules
    # took 0.5 s, putting back its tensors a few milliseconds.
    pretrained = {k: v.detach().clone() for k, v in pristine.state_dict().items()}
    for k, (train, test) in enumerate(bar):
        if k:
            pristine.load_state_dict(pretrained)
        fold, start = _fit_fold(
            estimator, pristine, rows(data, train), device, seed + k
        )
        held_out = rows(data, test)
        scores[:, :, test] = _held_out_scores(fold, start, held_out, candidates)
    w = np.ones(len(targets)) if weights is None else weights.numpy()
    score, loss = scores @ w / w.sum()
    # The loss is reported, not used (see the module docstring).
    chosen, error = choose_weight(scores[0], w)
    report = {
        "interpolations": list(candidates),
        "held_out_score": [float(v) for v in score],
        "probe_lead_error": error,
        "held_out_loss": [float(v) for v in loss],
        "folds": len(folds),
    }
    return float(candidates[chosen]), report


def choose_weight(per_sample: np.ndarray, weights: np.ndarray):
    """``(index, error)``: the candidate to keep, and the standard error of
    the probe's lead over the best of the others.

    ``per_sample`` holds each candidate's score of each held-out sample,
    shape (candidates, n), the probe (weight 0) first; ``weights`` the
    samples' weights. The best of the other candidates is kept (ties to the
    larger weight) unless the probe's mean score leads it by more than
    ``PROBE_LEAD_ERRORS`` standard errors of their paired difference.
    """
    score = per_sample @ weights / weights.sum()
    best = max(range(1, len(score)), key=lambda i: (score[i], i))
    difference = (per_sample[0] - per_sample[best])[None]
    (lead,), (error,) = weighted_mean_se(difference, weights, ddof=1)
    probe_wins = lead > PROBE_LEAD_ERRORS * error + 1e-12
    return (0 if probe_wins else best), float(error)


def _folds(labels, n: int, seed: int) -> list:
    """Stratified folds where every class has a sample in each, else plain
    shuffled folds."""
    if labels is not None:
        counts = np.bincount(labels)
        if counts[counts > 0].min() >= CROSS_FIT_FOLDS:
            folds = StratifiedKFold(CROSS_FIT_FOLDS, shuffle=True, random_state=seed)
            return list(folds.split(np.zeros(n), labels))
    folds = KFold(min(CROSS_FIT_FOLDS, n), shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(n)))


def _fit_fold(estimator, body, data, device, seed):
    """A copy of ``estimator`` fitted on ``data`` as the whole fit is, with
    the same trainable groups and stages, and the state it started from;
    ``body`` (the pretrained backbone) is trained in place."""
    fold = copy.copy(estimator)
    fold.unfreeze = estimator.n_trainable_groups_
    fold.verbose = 0
    fold._initialize(body, data[0], data[1], device)
    fold.contrastive_ = estimator.contrastive_
    start = fold._fit_network(data, device, seed + 1, head_start=True)
    return fold, start


def _held_out_scores(fold, start: dict, data, candidates) -> np.ndarray:
    """The score (``_sample_scores``: 1 for a right prediction, for
    classifiers) and the loss of every sample of ``data`` at every weight of
    ``candidates``, shape (2, len(candidates), n)."""
    inputs, targets, _ = data
    state = fold.module_.state_dict()
    final = {k: state[k].detach().clone() for k in start}
    device = module_device(fold.module_)
    y = targets.to(device)
    out = np.empty((2, len(candidates), len(targets)))
    for i, alpha in enumerate(candidates):
        interpolate(fold.module_, start, alpha, final)
        outputs = torch.from_numpy(fold._network_outputs(inputs)).to(device)
        with torch.no_grad():
            out[0, i] = fold._sample_scores(outputs, y).cpu().numpy()
            out[1, i] = fold._sample_losses(outputs, y).cpu().numpy()
    return out


def interpolate(module, start: dict, alpha: float, final=None) -> None:
    """Set the entries of ``start`` in ``module`` to ``(1 - alpha) * start +
    alpha * final``; ``final`` defaults to the module's current weights.
    Integer entries (BatchNorm's batch counters) take ``final``'s value."""
    if alpha == 1.0 and final is None:
        return
    state = module.state_dict()
    final = state if final is None else final
    mixed = {}
    for key, begin in start.items():
        end = final[key]
        begin = begin.to(end.device)
        mixed[key] = torch.lerp(begin, end, alpha) if end.is_floating_point() else end
    module.load_state_dict(mixed, strict=False)


def rows(data, idx):
    """(inputs, targets, weights) restricted to the samples ``idx``."""
    inputs, targets, weights = data
    index = torch.from_numpy(idx)
    return (
        inputs.subset(idx),
        targets[index],
        None if weights is None else weights[index],
    )
