"""The contrastive stage: adapt the body to the classes before the head is fit.

With a few labelled examples per class, a classification loss has little to
work with: 16 texts give 16 gradients of a softmax. Pairs give many more: 16
texts make 120 pairs, each saying "same class" or "different class".
SetFit (Tunstall et al., 2022) trains a sentence encoder on such pairs, with
the cosine similarity of the two embeddings regressed on 1 (same class) or 0
(different), then fits a logistic regression on the new embeddings.

This stage does the same with every pair of a batch at once: a batch of 32
samples holds 496 pairs for one forward and backward pass of 32 samples,
where a loop over pairs passes 64 samples for 32 pairs. Positive and negative
pairs weigh half each, whatever their numbers (SetFit oversamples the rarer
kind to the same effect). Only the trainable layer groups learn, on the
stored activations of the frozen ones when those are stored, so the stage
costs a few forward passes of the top of the network.

The number of passes follows the number of pairs: every pair is seen
``PAIR_PASSES`` times, in ``ceil(PAIR_PASSES * (n - 1) / (batch - 1))``
epochs of shuffled batches (a batch of ``b`` samples holds ``b - 1`` of the
pairs of each sample), within ``MIN_STEPS`` and ``MAX_STEPS`` steps.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from .._device import autocast
from .._inference import iterate_batches, n_steps_per_epoch
from .._progress import progress_bar
from ..backbones._packing import without_padding
from ._loop import lr_factor, optimizer_step

__all__ = ["CONTRASTIVE_LR", "contrastive_epochs", "pair_loss", "train_on_pairs"]

# Every pair of training samples is seen this many times, in at least
# MIN_STEPS and at most MAX_STEPS optimiser steps.
PAIR_PASSES = 8
MIN_STEPS = 8
MAX_STEPS = 30
# The peak learning rate of every trainable group of the body.
CONTRASTIVE_LR = 5e-5


def contrastive_epochs(n: int, batch_size: int) -> int:
    """Epochs that show every pair ``PAIR_PASSES`` times, within ``MIN_STEPS``
    and ``MAX_STEPS`` optimiser steps."""
    b = max(2, min(batch_size, n))
    per_epoch = n_steps_per_epoch(n, batch_size)
    epochs = math.ceil(PAIR_PASSES * (n - 1) / (b - 1))
    epochs = min(epochs, max(1, MAX_STEPS // per_epoch))
    return max(epochs, math.ceil(MIN_STEPS / per_epoch))


def pair_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the cosine similarity of every pair of the batch
    against 1 (same label) or 0 (different labels), positive and negative
    pairs weighing half each."""
    e = F.normalize(embeddings.float(), dim=1)
    i, j = torch.triu_indices(len(e), len(e), 1, device=e.device)
    similarity = (e[i] * e[j]).sum(dim=1)
    same = labels[i] == labels[j]
    errors = (similarity - same.float()) ** 2
    parts = [errors[mask].mean() for mask in (same, ~same) if bool(mask.any())]
    return torch.stack(parts).mean()


def train_on_pairs(
    module, inputs, y, ctx, *, batch_size: int, param_groups: list, seed: int
) -> dict:
    """Train the body's trainable parameters on the pairs of ``(inputs, y)``.

    ``param_groups`` are the optimiser groups of the trainable body groups,
    each with its ``lr`` (the head takes no part). Returns a record of the
    stage for ``history_``.
    """
    n = len(inputs)
    epochs = contrastive_epochs(n, batch_size)
    total = epochs * n_steps_per_epoch(n, batch_size)
    params = [p for g in param_groups for p in g["params"]]
    optimizer = torch.optim.AdamW(param_groups)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    rng = np.random.default_rng(seed)
    labels = y.to(ctx.device)
    losses, step = [], 0
    # Closed at the end, or by the garbage collector if a step raises.
    bar = progress_bar(verbose=ctx.verbose, total=total, desc="Pairs", leave=False)
    for _ in range(epochs):
        order = inputs.positions(rng.permutation(n))
        batches = iterate_batches(
            inputs, order, batch_size, training=True, device=ctx.device
        )
        for idx, raw in batches:
            rows = idx if isinstance(idx, torch.Tensor) else torch.as_tensor(idx)
            if len(rows) < 2:
                continue
            factor = lr_factor(step, total, max(1, total // 10), "cosine")
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            xb = without_padding(module.backbone, inputs.to_model(raw, ctx.device))
            with autocast(ctx.device, ctx.dtype):
                embeddings = module.backbone.forward_features(xb)
            loss = pair_loss(embeddings, labels[rows.to(labels.device)])
            # Gradients clipped at norm 1.
            optimizer_step(loss, optimizer, ctx.scaler, params, 1.0)
            losses.append(loss.detach())
            step += 1
            bar.update()
    bar.close()
    mean = float(torch.stack(losses).mean()) if losses else float("nan")
    return {"stage": "pairs", "epochs": epochs, "steps": step, "pair_loss": mean}
