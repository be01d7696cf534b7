"""The training loop, as a ladder of small steps that subclasses may override.

``_fit_loop`` runs epochs; ``_run_epoch`` runs training steps over shuffled
batches; ``_train_step`` does one forward, backward and optimiser step;
``_evaluate`` scores the validation split under ``torch.inference_mode``.
The loop keeps per-batch Python work to a minimum: batches are indexed from
tensors already on the device, losses are summed on the device and read once
per epoch, and learning rates are set by a multiplication per parameter group.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .._device import autocast
from .._inference import iterate_batches
from .._progress import progress_bar
from ..backbones._packing import without_padding
from ..exceptions import SkltransferWarning, warn_at_caller
from ..freezing import freeze, n_unfrozen_at, set_train_mode

__all__ = ["FitContext", "Progress", "TrainingLoopMixin", "lr_factor", "optimizer_step"]


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rates at ``step``: linear warm-up, then
    cosine decay to zero (``"cosine"``) or a constant rate (``"constant"``)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Progress:
    """What changes while the loop trains, advanced by the loop alone: the
    optimiser steps taken and the parameters that train this epoch."""

    step: int = 0
    params: list = field(default_factory=list)


@dataclass(frozen=True)
class FitContext:
    """What one call to ``fit`` needs beyond the network it trains, fixed
    for the fit (``dataclasses.replace`` makes a new one); only its
    ``progress`` changes, and only in the loop."""

    device: torch.device
    dtype: torch.dtype | None
    groups: list
    group_params: list
    n_trainable: int
    total_steps: int
    warmup_steps: int
    n_epochs: int = 0
    head_start: bool = False
    weights: torch.Tensor | None = None
    valid_weights: torch.Tensor | None = None
    augment: object = None
    scaler: object = None
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    progress: Progress = field(default_factory=Progress)
    # The estimator's ``verbose``, for the bars of the fit's stages and epochs
    # (0 in the folds of a cross-fit, which fit silently).
    verbose: int | str = 0


class _Diverged(Exception):
    """An epoch that made the loss or the weights non-finite; the message
    says which."""


class _Best:
    """The best monitored loss so far and a copy of the weights that reached it."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.loss = math.inf
        self.epoch = None
        self.state = None
        self.stale = 0
        self.diverged = False

    def update(self, loss: float, epoch: int, module) -> None:
        state = module.state_dict()
        if loss < self.loss and _all_finite(state[k] for k in self.keys):
            self.loss, self.epoch, self.stale = loss, epoch, 0
            self.state = {k: state[k].detach().clone() for k in self.keys}
        else:
            self.stale += 1


def optimizer_step(loss, optimizer, scaler, params, max_grad_norm) -> None:
    """Backward, clip the gradients of ``params`` to ``max_grad_norm`` (None:
    no clipping) and step; with a loss scaler (fp16), the loss is scaled so
    that small gradients do not underflow, and unscaled before clipping."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if max_grad_norm is not None and params:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


class TrainingLoopMixin:
    """The epochs, steps and validation of fine-tuning (see the module docstring).

    Expects ``module_``, ``optimizer_``, ``criterion_``, ``history_`` and
    ``n_iter_`` to have been built by the estimator's initialise step.
    """

    # -- epochs ----------------------------------------------------------------

    def _fit_loop(self, ctx: FitContext, train, y_train, valid=None, y_valid=None):
        """Train for ``max_epochs`` epochs or until early stopping."""
        best = _Best(self._changing_state_keys())
        if valid is not None and ctx.head_start:
            # The probed head is a candidate too: training must improve on it.
            best.update(
                self._evaluate(ctx, valid, y_valid)[0], self.n_iter_, self.module_
            )
        bar = progress_bar(range(ctx.n_epochs), verbose=ctx.verbose, unit="epoch")
        for _ in bar:
            try:
                record = self._one_epoch(ctx, train, y_train, valid, y_valid)
            except _Diverged as diverged:
                self._on_divergence(best, str(diverged))
                best.diverged = True
                break
            # Without validation, the latest weights are the ones to keep.
            monitor = record["valid_loss"] if valid is not None else -self.n_iter_
            best.update(monitor, self.n_iter_, self.module_)
            bar.set_postfix({k: v for k, v in record.items() if "_" in k})
            if valid is not None and best.stale >= self.n_iter_no_change:
                break
        self._finish_fit(best)

    def _one_epoch(self, ctx, train, y_train, valid, y_valid) -> dict:
        """Train one epoch, validate, and append its record to ``history_``.

        Raises ``_Diverged``, recording nothing, when the training loss or the
        weights are not finite.
        """
        start = time.perf_counter()
        n_unfrozen = self._unfreeze_for_epoch(ctx)
        train_loss = self._run_epoch(ctx, train, y_train)
        if not math.isfinite(train_loss):
            raise _Diverged(f"the training loss became {train_loss}")
        if not _all_finite(ctx.progress.params):
            # A last step can overflow the weights while the epoch's mean
            # loss still looks fine; such weights must never be kept.
            raise _Diverged("the weights became non-finite")
        record = {"epoch": self.n_iter_ + 1, "train_loss": train_loss}
        if valid is not None:
            loss, score = self._evaluate(ctx, valid, y_valid)
            record.update(valid_loss=loss, valid_score=score)
        record.update(lr=self.optimizer_.param_groups[0]["lr"], n_unfrozen=n_unfrozen)
        record["seconds"] = time.perf_counter() - start
        self.history_.append(record)
        self.n_iter_ += 1
        return record

    def _unfreeze_for_epoch(self, ctx: FitContext) -> int:
        """Apply gradual unfreezing for the coming epoch; returns how many
        groups train."""
        n = n_unfrozen_at(self.n_iter_, ctx.n_trainable, self.unfreeze_schedule)
        freeze(ctx.group_params, n)
        body = self.module_.backbone.body
        set_train_mode(body, ctx.groups, n, freeze_batchnorm=self.freeze_batchnorm)
        self.module_.head.train()
        groups = self.optimizer_.param_groups
        ctx.progress.params = [
            p for g in groups for p in g["params"] if p.requires_grad
        ]
        return n

    def _on_divergence(self, best: _Best, what: str) -> None:
        """Stop with a warning, keeping the last good weights, or raise if none;
        ``what`` says what diverged."""
        message = (
            f"Training diverged at epoch {self.n_iter_ + 1}: {what}. Try a lower "
            "lr, precision='fp32' or a smaller max_grad_norm."
        )
        if best.state is None:
            raise FloatingPointError(message)
        warn_at_caller(
            f"{message} Training stopped; the weights of epoch {best.epoch} are kept.",
            SkltransferWarning,
        )

    def _finish_fit(self, best: _Best) -> None:
        if best.state is not None and (best.epoch != self.n_iter_ or best.diverged):
            self.module_.load_state_dict(best.state, strict=False)
        self.best_epoch_ = best.epoch if best.epoch is not None else self.n_iter_
        self.module_.eval()
        # A fitted estimator keeps no training state it will not use: the last
        # gradients never, the optimiser's moments (two tensors per trained
        # weight) only for a warm start, as in a pickle. In a search, where the
        # candidates train more or fewer layers, they would otherwise set the
        # size of each worker process.
        self.optimizer_.zero_grad(set_to_none=True)
        if not self.warm_start:
            self.optimizer_.state.clear()

    def _changing_state_keys(self) -> list[str]:
        """State entries that training may change: trainable parameters, buffers."""
        groups = self.optimizer_.param_groups
        trainable = {id(p) for g in groups for p in g["params"]}
        state = self.module_.state_dict(keep_vars=True)
        return [
            key
            for key, value in state.items()
            if id(value) in trainable or not isinstance(value, torch.nn.Parameter)
        ]

    # -- steps -----------------------------------------------------------------

    def _run_epoch(self, ctx: FitContext, inputs, y) -> float:
        """One pass over shuffled training batches; returns the mean loss."""
        order = self._epoch_order(ctx, len(inputs), inputs)
        total = torch.zeros((), device=ctx.device)
        batches = iterate_batches(
            inputs, order, self._batch_size(), training=True, device=ctx.device
        )
        for idx, raw in batches:
            xb = inputs.to_model(raw, ctx.device, ctx.augment)
            xb = without_padding(self.module_.backbone, xb)
            rows = idx if isinstance(idx, torch.Tensor) else torch.as_tensor(idx)
            yb = y[rows]
            wb = None if ctx.weights is None else ctx.weights[rows.to(y.device)]
            total += self._train_step(ctx, xb, yb, wb) * len(yb)
        return float(total) / len(inputs)

    def _epoch_order(self, ctx: FitContext, n: int, inputs):
        return inputs.positions(ctx.rng.permutation(n))

    def _train_step(self, ctx: FitContext, xb, yb, wb=None) -> torch.Tensor:
        """Forward, backward and one optimiser step; returns the detached loss."""
        self._set_lr(ctx)
        with autocast(ctx.device, ctx.dtype):
            loss = self._get_loss(self._forward(xb), yb, wb)
        optimizer_step(
            loss, self.optimizer_, ctx.scaler, ctx.progress.params, self.max_grad_norm
        )
        ctx.progress.step += 1
        return loss.detach()

    def _forward(self, xb) -> torch.Tensor:
        return self.module_(xb)

    def _get_loss(self, output: torch.Tensor, yb: torch.Tensor, wb=None):
        """The batch loss; with sample weights ``wb`` (mean 1 over the training
        set), the weighted mean of the per-sample losses."""
        if wb is None:
            return self.criterion_(output.float(), yb)
        return (self._sample_losses(output, yb) * wb).mean()

    def _sample_losses(self, output: torch.Tensor, yb: torch.Tensor):
        """The loss of each sample, shape (n,)."""
        reduction = self.criterion_.reduction
        self.criterion_.reduction = "none"
        try:
            per_sample = self.criterion_(output.float(), yb)
        finally:
            self.criterion_.reduction = reduction
        if per_sample.ndim > 1:  # one loss per output: average them
            per_sample = per_sample.mean(dim=1)
        return per_sample

    def _set_lr(self, ctx: FitContext) -> None:
        factor = lr_factor(
            ctx.progress.step, ctx.total_steps, ctx.warmup_steps, self.lr_schedule
        )
        for group in self.optimizer_.param_groups:
            group["lr"] = group["base_lr"] * factor

    def _batch_size(self) -> int:
        return self.batch_size

    # -- validation ------------------------------------------------------------

    def _evaluate(self, ctx: FitContext, inputs, y) -> tuple[float, float]:
        """Validation loss and score, in eval mode under ``inference_mode``.

        The next epoch puts the network back in training mode.
        """
        self.module_.eval()
        order = inputs.positions(np.arange(len(inputs)))
        outputs = []
        with torch.inference_mode(), autocast(ctx.device, ctx.dtype):
            batches = iterate_batches(
                inputs, order, self._batch_size(), device=ctx.device
            )
            for _, raw in batches:
                outputs.append(self._forward(inputs.to_model(raw, ctx.device)).float())
            out = torch.cat(outputs)
            loss = float(self._get_loss(out, y, ctx.valid_weights))
        return loss, float(self._score_outputs(out, y))
