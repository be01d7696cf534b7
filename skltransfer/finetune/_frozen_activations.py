"""Frozen activations: run the frozen first layer groups once per fit.

When the first layer groups stay frozen for a whole fit (and run in inference
mode, with no augmentation of the inputs), their output for a sample is the
same at every epoch. :func:`frozen_activations` computes it once, then the
rest of the network trains on it: inside the body, the ``forward`` of each
module of the frozen groups is replaced by a stub; the last one returns the
stored activations of the batch, the others return (broadcast) zeros of their
usual shape, so that the code between groups runs unchanged and cheaply.

When every group stays frozen (``unfreeze=0``), the backbone's features
themselves are computed once, for any input kind (texts included), and only
the head trains.

The split is checked on a probe batch before use: when the network's output
through the stubs differs from its plain output (a skip connection across
the boundary, work on the raw input before the first group, ...), the stored
activations are not used and training takes the plain path.

Where the activations go is decided on what is stored (the activations at
the freeze boundary, not the inputs): in memory up to :func:`memory_budget`,
else in a memory-mapped file in a temporary folder that lives as long as the
fit. The estimator passes its settings as a :class:`FrozenActivationsConfig`
and records the :class:`FrozenActivationsResult` it gets back; with
``cache_frozen="auto"`` a fit that has frozen groups but takes the plain path
warns with the reason, and ``cache_frozen=True`` raises it instead.

With a ``cache`` (the estimator's parameter, a folder) the activations also
outlive the fit: rows that earlier fits computed are read from it and only the
others are computed (see :mod:`._shared_activations`). A fit that takes the
plain path neither reads nor writes them.

The stubs are set on the module instances (a forward hook cannot skip the
computation it follows) only inside the ``with`` block of
:func:`frozen_activations` and of the probe, and removed on leaving it, also
when training fails: the fitted network keeps its own ``forward`` methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._engines import EngineSpec, inputs_forward
from .._inference import map_batches
from ..exceptions import FrozenCacheWarning, warn_at_caller
from ..inputs.batches import (
    CACHED_KEY,
    ImageInputs,
    MappedInputs,
    TensorInputs,
    TextInputs,
    TokenStateInputs,
)
from ._shared_activations import shared_rows

__all__ = [
    "FrozenActivationsConfig",
    "FrozenActivationsResult",
    "frozen_activations",
    "memory_budget",
]

# Cached activations are kept in memory up to a quarter of the available
# memory, and at least this much.
CACHE_BYTES = 1 << 30
_STOCHASTIC = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


@dataclass(frozen=True)
class FrozenActivationsConfig:
    """The estimator's settings that :func:`frozen_activations` acts on.

    Attributes
    ----------
    cache_frozen : bool or "auto"
        False trains on the plain path; True raises when the activations
        cannot be stored; "auto" warns and trains on the plain path then.
    batch_size : int
        Samples per batch of the pass that computes the activations.
    freeze_batchnorm : bool
        Whether frozen BatchNorm layers keep their statistics; if not, the
        frozen groups' outputs change between epochs.
    cache : str, os.PathLike, joblib.Memory or None
        Where activations are kept across fits (the estimator's ``cache``):
        rows found there are read instead of computed, computed rows are
        added. None keeps them for this fit only.
    engine : EngineSpec or None
        The inference engine that computes the activations, for passes of
        its ``min_samples`` or more (see :mod:`skltransfer._engines`); None:
        torch.
    """

    cache_frozen: bool | str
    batch_size: int
    freeze_batchnorm: bool
    cache: object = None
    engine: EngineSpec | None = None


@dataclass(frozen=True)
class FrozenActivationsResult:
    """What became of the frozen layer groups in one fit.

    Attributes
    ----------
    status : str
        "memory" or "disk" (where the activations are stored), "off"
        (``cache_frozen=False``), "nothing frozen", or "plain: " and the
        reason the frozen groups run at every epoch.
    cached_groups : int
        Layer groups whose activations are stored (0 on the plain path).
    folder : str or None
        The temporary folder of the stored activations when on disk, removed
        when the fit ends.
    rows_read : int
        Samples whose activations were read from the ``cache`` of earlier
        fits rather than computed.
    """

    status: str
    cached_groups: int = 0
    folder: str | None = None
    rows_read: int = 0


class _Replay:
    """The batch of cached activations that the stubs answer with.

    A pre-hook on the body captures its input, which during cached training
    is the batch of cached activations.
    """

    def __init__(self):
        self.batch = None
        self.tokens = False
        self.calls = 0

    def capture(self, _module, args):
        batch = args[0]
        if isinstance(batch, dict) and CACHED_KEY in batch:
            # Token states: the rest of the dict (the attention mask) goes on
            # to the body, so that the trainable blocks mask the padding.
            self.batch, self.tokens = batch[CACHED_KEY], True
            rest = {k: v for k, v in batch.items() if k != CACHED_KEY}
            return (rest, *args[1:])
        self.batch = batch
        return None


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
        batch = self.replay.batch
        if self.replay.tokens:
            # Token states: the code between groups (an attention mask built
            # from the embeddings' shape) must see this batch's length.
            return self.zero[:, :1].expand(
                len(batch), batch.shape[1], *self.zero.shape[2:]
            )
        return self.zero.expand(len(batch), *self.zero.shape[1:])


def _frozen_names(groups, n_frozen: int) -> list[str]:
    return [name for g in groups[:n_frozen] for name in g.modules]


class _NotCached(Exception):
    """Why the frozen groups cannot be cached in this fit."""


def memory_budget() -> int:
    """Bytes of cached activations kept in memory; more go to a file.

    A quarter of the memory available now (``MemAvailable`` on Linux), and
    at least ``CACHE_BYTES``.
    """
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return CACHE_BYTES
    return max(CACHE_BYTES, available // 4)


def _check_applicable(network, config, ctx, inputs) -> None:
    """Raise :class:`_NotCached` with the reason the split cannot be cached."""
    if not isinstance(inputs, TensorInputs | ImageInputs | TextInputs):
        raise _NotCached(f"{type(inputs).__name__} cannot be cached")
    if isinstance(inputs, TextInputs):
        side = getattr(inputs.backbone.tokenizer, "padding_side", "right")
        if side != "right":
            raise _NotCached("the tokenizer pads on the left")
    _check_frozen_forward(network, config, ctx)
    if "" in _frozen_names(ctx.groups, len(ctx.groups) - ctx.n_trainable):
        raise _NotCached("a frozen group is the whole body")


def _check_frozen_forward(network, config, ctx) -> None:
    """Raise :class:`_NotCached` when the frozen groups' outputs could change
    between epochs (any split, the whole body included)."""
    if ctx.augment is not None:
        raise _NotCached("augmentation changes the inputs at every epoch")
    if not config.freeze_batchnorm:
        raise _NotCached(
            "freeze_batchnorm=False lets the frozen BatchNorm statistics change"
        )
    if _free_stochastic(network.backbone.body, ctx):
        raise _NotCached("dropout or BatchNorm outside the layer groups would train")


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


@contextlib.contextmanager
def _answering_from_store(body: nn.Module, names: list[str], examples: dict):
    """Inside the block, the frozen modules ``names`` of ``body`` answer from
    the stored activations; yields the :class:`_Replay` they read.

    The modules stay in place (their attributes may be read by the code
    around them); only their ``forward`` is overridden on the instance, and
    the override removed on exit.
    """
    modules = [body.get_submodule(n) for n in names]
    replay = _Replay()
    hook = body.register_forward_pre_hook(replay.capture)
    try:
        for name, module in zip(names[:-1], modules[:-1], strict=True):
            module.forward = _Zeros(replay, examples[name])
        modules[-1].forward = _Cached(replay)
        yield replay
    finally:
        hook.remove()
        for module in modules:
            vars(module).pop("forward", None)


@contextlib.contextmanager
def _features_given(backbone: nn.Module):
    """Inside the block, ``backbone.forward_features`` returns its input: the
    stored features (the override is removed on exit)."""
    backbone.forward_features = _identity
    try:
        yield
    finally:
        vars(backbone).pop("forward_features", None)


def _probe(module, names: list[str], probe):
    """Plain output and the output of every frozen module, or None if unusable."""
    module.eval()
    with torch.no_grad():
        plain = module(probe)
        examples = _outputs(module.backbone.body, names, probe)
    if not all(isinstance(examples.get(n), torch.Tensor) for n in names):
        return None
    return plain, examples


def _replay_input(cached: torch.Tensor, batch):
    """What the network takes when its frozen part answers with ``cached``:
    the activations themselves, or for texts the tokenised ``batch`` (its
    attention mask) carrying the token states."""
    if isinstance(batch, dict):
        return {**batch, CACHED_KEY: cached}
    return cached


def _split_reproduces(module, names, plain, examples, probe) -> bool:
    """Whether the stubbed network maps the cached probe to the plain output."""
    try:
        with (
            _answering_from_store(module.backbone.body, names, examples) as replay,
            torch.no_grad(),
        ):
            replayed = module(_replay_input(examples[names[-1]], probe))
        return replay.calls == 1 and torch.allclose(
            plain, replayed, rtol=1e-4, atol=1e-5
        )
    except Exception:  # any failure of the stubbed network: use the plain path
        return False


def _store(n: int, example: torch.Tensor, folder: str | None):
    """An empty (n, *example.shape[1:]) store: a tensor, or a file-backed array."""
    shape = (n, *example.shape[1:])
    if folder is None:
        return torch.empty(shape, dtype=example.dtype)
    dtype = torch.empty(0, dtype=example.dtype).numpy().dtype
    path = os.path.join(folder, f"activations-{len(os.listdir(folder))}.npy")
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _fill(store, fn, inputs, ctx, batch_size: int, dtype, on_batch=None, at=None):
    """Write ``fn`` of every batch of ``inputs`` into ``store`` as it comes (a
    store on disk never has the whole result in memory), at the rows ``at``
    (None: 0..n-1). A token-state part shorter than the store is zero-padded
    on the right. ``on_batch(rows, batch, part)`` sees each batch and its
    part on the CPU."""
    filled = [0]
    at = np.arange(len(inputs)) if at is None else at
    # Texts run longest first, so that each batch pads little (batches in
    # input order padded 128 movie snippets to twice their tokens): the
    # rows are written where their samples belong.
    order = inputs.length_order()
    if order is not None:
        at = at[order]

    def write(batch):
        part = fn(batch).detach().to("cpu", dtype)
        rows = at[filled[0] : filled[0] + len(part)]
        filled[0] += len(part)
        if isinstance(store, np.ndarray):
            values, index = part.numpy(), rows
        else:
            values, index = part, torch.from_numpy(rows)
        if part.ndim == 3 and part.shape[1] < store.shape[1]:
            store[index, part.shape[1] :] = 0
        store[index, : part.shape[1]] = values
        if on_batch is not None:
            on_batch(rows, batch, part)

    map_batches(
        inputs,
        write,
        device=ctx.device,
        dtype=ctx.dtype,
        batch_size=batch_size,
        order=order,
        verbose=ctx.verbose,
        desc="Frozen layers",
    )


def _fill_shared(
    store,
    fn,
    inputs,
    ctx,
    batch_size,
    dtype,
    shared,
    *,
    lengths=None,
    on_batch=None,
    on_read=None,
):
    """:func:`_fill`, reading the rows that ``shared`` (rows of earlier fits,
    or None) holds and adding the others to it. ``lengths`` and
    ``on_read(i)``: see :meth:`SharedRows.read`."""
    if shared is None:
        _fill(store, fn, inputs, ctx, batch_size, dtype, on_batch)
        return
    missing = shared.read(store, inputs, dtype, lengths, on_read)
    if not len(missing):
        return

    def keep(rows, batch, part):
        shared.keep(rows, part)
        if on_batch is not None:
            on_batch(rows, batch, part)

    part = inputs if len(missing) == len(inputs) else inputs.subset(missing)
    _fill(store, fn, part, ctx, batch_size, dtype, keep, missing)


def _compute(fn, inputs, ctx, batch_size: int, example, folder, shared=None):
    """``fn`` of every sample of ``inputs``, in memory or in a file under
    ``folder``; the rows that ``shared`` holds are read from it."""
    out = _store(len(inputs), example, folder)
    _fill_shared(out, fn, inputs, ctx, batch_size, example.dtype, shared)
    return TensorInputs(out) if folder is None else MappedInputs(out)


def _compute_tokens(
    fn, inputs: TextInputs, ctx, batch_size, example, folder, longest, shared=None
):
    """Token states at the freeze boundary of every text, right-padded to
    ``longest`` tokens, with their attention masks (``folder`` and
    ``shared`` as in :func:`_compute`)."""
    states = _store(len(inputs), example[:1, :1].expand(1, longest, -1), folder)
    mask = torch.zeros(states.shape[:2], dtype=torch.long)
    lengths = inputs.lengths()

    def keep_mask(rows, batch, _part):
        t = batch["attention_mask"].shape[1]
        mask[torch.from_numpy(rows), :t] = batch["attention_mask"].cpu()

    def read_mask(i):
        mask[i, : lengths[i]] = 1  # right padding: the first tokens are real

    _fill_shared(
        states,
        fn,
        inputs,
        ctx,
        batch_size,
        example.dtype,
        shared,
        lengths=lengths,
        on_batch=keep_mask,
        on_read=read_mask,
    )
    return TokenStateInputs(states, mask, prefetch=folder is not None)


def _where(n_bytes: int) -> str:
    """Where ``n_bytes`` of activations go ("memory" or "disk"); raises
    :class:`_NotCached` when neither has room."""
    if n_bytes <= memory_budget():
        return "memory"
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if n_bytes * 1.1 + (64 << 20) <= free:
        return "disk"
    raise _NotCached(
        f"the activations ({n_bytes / 2**30:.1f} GiB) fit neither in the memory "
        f"budget ({memory_budget() / 2**30:.1f} GiB) nor on the disk of "
        f"{tempfile.gettempdir()} ({free / 2**30:.1f} GiB free)"
    )


def _plan(network, config, ctx, inputs):
    """The frozen module names and probe outputs; raises :class:`_NotCached`."""
    _check_applicable(network, config, ctx, inputs)
    names = _frozen_names(ctx.groups, len(ctx.groups) - ctx.n_trainable)
    probe = inputs.to_model(inputs.load(slice(0, 2)), ctx.device)
    probed = _probe(network, names, probe)
    if probed is None:
        raise _NotCached("a frozen group does not return a tensor")
    if not _split_reproduces(network, names, *probed, probe):
        raise _NotCached(
            "the network does not reproduce its output from the activations at "
            "the freeze boundary (a skip connection across it?)"
        )
    return names, probed[1]


def _n_samples(inputs, valid) -> int:
    return len(inputs) + (len(valid[0]) if valid is not None else 0)


def _whole_body_frozen(ctx) -> bool:
    """Whether every group stays frozen, so the features themselves can be stored.

    This holds for any input kind (texts included): the backbone's
    ``forward_features`` is computed once and only the head trains.
    """
    return ctx.n_trainable == 0 and bool(ctx.groups)


def _identity(x):
    return x


def _features_plan(network, config, ctx, inputs):
    """``forward_features`` as the stored function, and its output on a probe."""
    _check_frozen_forward(network, config, ctx)
    network.eval()

    def features(x):
        return network.backbone.forward_features(x).float()

    # The head's input is what the store holds; a pass over two samples to
    # learn its width cost a third of the pass itself over 16 texts.
    return features, torch.zeros(2, network.n_features)


def _prefix_plan(network, config, ctx, inputs):
    names, examples = _plan(network, config, ctx, inputs)
    network.eval()

    def prefix(x):
        return network.backbone.forward_layer(x, names[-1])

    return prefix, names, examples


def _on_engine(fn, engine: EngineSpec | None, network, what: str, inputs, valid):
    """``fn`` run by ``engine`` (the frozen part exported once per weights,
    ``what`` and input size; see :func:`~skltransfer._engines.engine_forward`)
    when the pass has its ``min_samples``, else ``fn``."""
    if engine is not None:
        engine = dataclasses.replace(engine, key=(*engine.key, what))
    return inputs_forward(
        engine, network.backbone, fn, inputs, _n_samples(inputs, valid)
    )


def _plain(config, n_frozen: int, reason: str) -> FrozenActivationsResult:
    """The plain path, for ``reason``: raised with ``cache_frozen=True``, else
    warned about."""
    if config.cache_frozen is True:
        raise ValueError(
            f"cache_frozen=True cannot be honoured: {reason}. Use "
            "cache_frozen='auto' to train on the plain path."
        )
    warn_at_caller(
        f"The {n_frozen} frozen layer groups run at every epoch, because "
        f"{reason}. Pass cache_frozen=False to silence this warning.",
        FrozenCacheWarning,
    )
    return FrozenActivationsResult(f"plain: {reason}")


@contextlib.contextmanager
def frozen_activations(network, config: FrozenActivationsConfig, ctx, inputs, valid):
    """Yield ``(inputs, valid, result)``: the inputs replaced by the frozen
    groups' activations when they can be stored, and a
    :class:`FrozenActivationsResult` saying what was done.

    ``network`` is the :class:`~._heads.FineTuneNetwork` being trained;
    ``ctx`` the fit's context (device, precision, layer groups, the number
    of trainable groups, augmentation). Inside the block the network answers
    from the stored activations; on exit it is as it was and any file of
    activations is removed.
    """
    n_frozen = len(ctx.groups) - ctx.n_trainable
    if config.cache_frozen is False or n_frozen == 0:
        status = "off" if n_frozen else "nothing frozen"
        yield inputs, valid, FrozenActivationsResult(status)
        return
    whole = _whole_body_frozen(ctx)
    # Token states of texts (a frozen prefix of an encoder) are per token.
    tokens = not whole and isinstance(inputs, TextInputs)
    try:
        if whole:
            fn, example = _features_plan(network, config, ctx, inputs)
        else:
            fn, names, examples = _prefix_plan(network, config, ctx, inputs)
            example = examples[names[-1]]
        if tokens:
            parts = (inputs,) if valid is None else (inputs, valid[0])
            # Token states are padded to the longest text (tokenising once more
            # is cheap next to the encoder).
            longest = max(int(part.lengths().max(initial=0)) for part in parts)
            per_sample = longest * example[0, 0].nbytes
        else:
            per_sample = example[0].nbytes
        where = _where(_n_samples(inputs, valid) * per_sample)
        what = "features" if whole else repr(names)
        shared = shared_rows(config, network, ctx, inputs, what, example)
        fn = _on_engine(fn, config.engine, network, what, inputs, valid)
    except _NotCached as exc:
        yield inputs, valid, _plain(config, n_frozen, str(exc))
        return
    with contextlib.ExitStack() as stack:
        folder = None
        if where == "disk":
            folder = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="skltransfer-activations-")
            )

        def compute(part):
            size = config.batch_size
            if tokens:
                return _compute_tokens(
                    fn, part, ctx, size, example, folder, longest, shared
                )
            return _compute(fn, part, ctx, size, example, folder, shared)

        inputs = compute(inputs)
        if valid is not None:
            valid = (compute(valid[0]), valid[1])
        if whole:
            # The backbone answers with the features it is given.
            stack.enter_context(_features_given(network.backbone))
        else:
            body = network.backbone.body
            stack.enter_context(_answering_from_store(body, names, examples))
        read = 0 if shared is None else shared.rows_read
        yield inputs, valid, FrozenActivationsResult(where, n_frozen, folder, read)
