"""The frozen-prefix cache: run the frozen first layer groups once per fit.

When the first layer groups stay frozen for a whole fit (and run in inference
mode, with no augmentation of the inputs), their output for a sample is the
same at every epoch. The cache computes it once, then trains the rest of the
network on it: inside the body, the ``forward`` of each module of the frozen
groups is replaced by a stub; the last one returns the cached activations of
the batch, the others return (broadcast) zeros of their usual shape, so that
the code between groups runs unchanged and cheaply.

When every group stays frozen (``unfreeze=0``), the backbone's features
themselves are computed once, for any input kind (texts included), and only
the head trains.

The split is checked on a probe batch before use: when the network's output
through the stubs differs from its plain output (a skip connection across
the boundary, work on the raw input before the first group, ...), the cache
is not used and training takes the plain path.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ._data import TensorInputs, map_batches

__all__ = ["frozen_prefix"]

CACHE_BYTES = 1 << 30
_STOCHASTIC = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


class _Replay:
    """The batch of cached activations that the stubs answer with.

    A pre-hook on the body captures its input, which during cached training
    is the batch of cached activations.
    """

    def __init__(self):
        self.batch = None
        self.calls = 0

    def capture(self, _module, args):
        self.batch = args[0]


class _Cached:
    """Forward of the last frozen module: returns the cached activations."""

    def __init__(self, replay: _Replay):
        self.replay = replay

    def __call__(self, *args, **kwargs):
        self.replay.calls += 1
        return self.replay.batch


class _Zeros:
    """Forward of an earlier frozen module: zeros of its usual output shape."""

    def __init__(self, replay: _Replay, example: torch.Tensor):
        self.replay = replay
        self.zero = torch.zeros_like(example[:1])

    def __call__(self, *args, **kwargs):
        return self.zero.expand(len(self.replay.batch), *self.zero.shape[1:])


def _frozen_names(groups, n_frozen: int) -> list[str]:
    return [name for g in groups[:n_frozen] for name in g.modules]


def _applicable(estimator, ctx, inputs, n_frozen: int) -> bool:
    if estimator.cache_frozen is False or n_frozen == 0:
        return False
    if not isinstance(inputs, TensorInputs) or ctx.augment is not None:
        return False
    if not estimator.freeze_batchnorm:
        return False
    names = _frozen_names(ctx.groups, n_frozen)
    return "" not in names and not _free_stochastic(
        estimator.module_.backbone.body, ctx
    )


def _free_stochastic(body: nn.Module, ctx) -> bool:
    """Whether dropout/BatchNorm outside every group could act in training mode."""
    grouped = [name for g in ctx.groups for name in g.modules]
    for name, module in body.named_modules():
        inside = any(name == g or name.startswith(f"{g}.") for g in grouped)
        if inside or not isinstance(module, _STOCHASTIC):
            continue
        if not isinstance(module, nn.modules.dropout._DropoutNd) or module.p > 0:
            return True
    return False


def _outputs(body: nn.Module, names: list[str], probe) -> dict:
    """Output of each named module of ``body`` on ``probe``."""
    captured = {}
    hooks = [
        body.get_submodule(n).register_forward_hook(
            lambda _m, _a, out, n=n: captured.setdefault(n, out)
        )
        for n in names
    ]
    try:
        body(probe)
    finally:
        for h in hooks:
            h.remove()
    return captured


class _Swap:
    """Frozen modules of ``body`` answering from the cache; :meth:`restore` undoes it.

    The modules stay in place (their attributes may be read by the code
    around them); only their ``forward`` is overridden on the instance.
    """

    def __init__(self, body: nn.Module, names: list[str], examples: dict):
        self.modules = [body.get_submodule(n) for n in names]
        self.replay = _Replay()
        self.hook = body.register_forward_pre_hook(self.replay.capture)
        for name, module in zip(names[:-1], self.modules[:-1], strict=True):
            module.forward = _Zeros(self.replay, examples[name])
        self.modules[-1].forward = _Cached(self.replay)

    def restore(self) -> None:
        self.hook.remove()
        for module in self.modules:
            vars(module).pop("forward", None)


def _probe(module, names: list[str], probe):
    """Plain output and the output of every frozen module, or None if unusable."""
    module.eval()
    with torch.no_grad():
        plain = module(probe)
        examples = _outputs(module.backbone.body, names, probe)
    if not all(isinstance(examples.get(n), torch.Tensor) for n in names):
        return None
    return plain, examples


def _split_reproduces(module, names, plain, examples) -> bool:
    """Whether the stubbed network maps the cached probe to the plain output."""
    swap = _Swap(module.backbone.body, names, examples)
    try:
        with torch.no_grad():
            replayed = module(examples[names[-1]])
        return swap.replay.calls == 1 and torch.allclose(
            plain, replayed, rtol=1e-4, atol=1e-5
        )
    except Exception:  # any failure of the stubbed network: use the plain path
        return False
    finally:
        swap.restore()


def _compute(module, inputs, last: str, ctx, batch_size: int) -> TensorInputs:
    """The output of module ``last`` of the body for every sample of ``inputs``."""
    module.eval()
    parts = map_batches(
        inputs, lambda x: module.backbone.forward_layer(x, last), ctx, batch_size
    )
    return TensorInputs(torch.cat(parts))


def _fits_budget(estimator, n: int, example: torch.Tensor) -> bool:
    if estimator.cache_frozen is True:
        return True
    return n * example[0].numel() * example.element_size() <= CACHE_BYTES


def _plan(estimator, ctx, inputs, valid):
    """The frozen module names and probe outputs, when the cache can be used."""
    n_frozen = len(ctx.groups) - ctx.n_trainable
    if not _applicable(estimator, ctx, inputs, n_frozen):
        return None
    names = _frozen_names(ctx.groups, n_frozen)
    probe = inputs.to_model(inputs.load(slice(0, 2)), ctx.device)
    probed = _probe(estimator.module_, names, probe)
    if probed is None or not _split_reproduces(estimator.module_, names, *probed):
        return None
    n = len(inputs) + (len(valid[0]) if valid is not None else 0)
    if not _fits_budget(estimator, n, probed[1][names[-1]]):
        return None
    return names, probed[1]


def _whole_body_frozen(estimator, ctx) -> bool:
    """Whether every group stays frozen, so the features themselves can be cached.

    This holds for any input kind (texts included): the backbone's
    ``forward_features`` is computed once and only the head trains.
    """
    if estimator.cache_frozen is False or ctx.n_trainable != 0 or not ctx.groups:
        return False
    if ctx.augment is not None or not estimator.freeze_batchnorm:
        return False
    return not _free_stochastic(estimator.module_.backbone.body, ctx)


def _features(module, inputs, ctx, batch_size: int) -> TensorInputs:
    """``forward_features`` of every sample, in inference mode."""
    module.eval()
    parts = map_batches(
        inputs, lambda x: module.backbone.forward_features(x).float(), ctx, batch_size
    )
    return TensorInputs(torch.cat(parts))


def _identity(x):
    return x


@contextlib.contextmanager
def _cached_features(estimator, ctx, inputs, valid):
    module = estimator.module_
    inputs = _features(module, inputs, ctx, estimator.batch_size)
    if valid is not None:
        valid = (_features(module, valid[0], ctx, estimator.batch_size), valid[1])
    # The backbone answers with the features it is given, for this fit only.
    module.backbone.forward_features = _identity
    estimator.cached_groups_ = len(ctx.groups)
    try:
        yield inputs, valid
    finally:
        vars(module.backbone).pop("forward_features", None)


@contextlib.contextmanager
def frozen_prefix(estimator, ctx, inputs, valid):
    """Yield ``(inputs, valid)``, replaced by cached activations when possible.

    Sets ``estimator.cached_groups_`` to the number of layer groups cached.
    """
    estimator.cached_groups_ = 0
    if _whole_body_frozen(estimator, ctx):
        with _cached_features(estimator, ctx, inputs, valid) as cached:
            yield cached
        return
    plan = _plan(estimator, ctx, inputs, valid)
    if plan is None:
        yield inputs, valid
        return
    names, examples = plan
    module = estimator.module_

    def compute(part):
        return _compute(module, part, names[-1], ctx, estimator.batch_size)

    inputs = compute(inputs)
    if valid is not None:
        valid = (compute(valid[0]), valid[1])
    swap = _Swap(module.backbone.body, names, examples)
    estimator.cached_groups_ = len(ctx.groups) - ctx.n_trainable
    try:
        yield inputs, valid
    finally:
        swap.restore()
