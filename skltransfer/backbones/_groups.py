"""Ordered layer groups: the units that freezing depth counts.

A layer group is a stage of the network (the stem, a ResNet ``layerN``, an
EfficientNet stage, a transformer block). Groups are found the same way for
every architecture, so ``unfreeze=2`` always means "the last two stages":

1. Start from the body's parameterised children (the children of the body itself
   when it is an ``nn.Sequential``/``nn.ModuleList``).
2. Expand a child into its own children when it is the only parameterised child
   (a wrapper) or when its name is a conventional stage container
   (``features``, ``blocks``, ``stages``, ``layers``, ``layer``, ``encoder``, ...).
3. A child holding only normalisation layers joins the group before it (a
   ``bn1`` belongs to its ``conv1``).
4. With an example input, groups are ordered by when they run and groups whose
   parameters receive no gradient (unused poolers) are dropped.

A model that declares its stages (timm's ``group_matcher``) needs no probe:
:func:`declared_layer_groups` builds the groups from the declaration, and
rule 3 applies to them too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .._device import on_module_device
from .._process_state import layer_group_orders

__all__ = ["LayerGroup", "declared_layer_groups", "find_layer_groups"]

STAGE_CONTAINERS = frozenset(
    {"features", "blocks", "stages", "layers", "layer", "encoder", "trunk_output"}
)
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
)


@dataclass(frozen=True)
class LayerGroup:
    """A named run of modules; its output is the output of its last module.

    Parameters
    ----------
    name : str
        The group's name, e.g. ``"blocks.5"`` or ``"encoder.layer.0"``.
    modules : tuple of str
        Qualified names of the modules in the group, in order.
    """

    name: str
    modules: tuple[str, ...]

    @property
    def output_module(self) -> str:
        return self.modules[-1]


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _is_norm_only(module: nn.Module) -> bool:
    owners = [
        m for m in module.modules() if next(m.parameters(False), None) is not None
    ]
    return bool(owners) and all(isinstance(m, _NORMS) for m in owners)


def _candidates(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    children = [
        (f"{prefix}{n}", c) for n, c in module.named_children() if _has_params(c)
    ]
    out = []
    for name, child in children:
        short = name.rsplit(".", 1)[-1]
        expandable = len(children) == 1 or short in STAGE_CONTAINERS
        if expandable and any(_has_params(c) for c in child.children()):
            out.extend(_candidates(child, f"{name}."))
        else:
            out.append((name, child))
    return out


def _merge_norms(groups) -> list[LayerGroup]:
    """Groups of ``(name, module)`` pairs; one holding only normalisation layers
    joins the group before it."""
    merged: list[list[str]] = []
    for group in groups:
        names = [name for name, _ in group]
        if merged and all(_is_norm_only(module) for _, module in group):
            merged[-1].extend(names)
        else:
            merged.append(names)
    return [LayerGroup(g[0], tuple(g)) for g in merged]


def _declared_units(module: nn.Module, prefix: str, stage_of: dict) -> list:
    """``(stage, name, module)`` for the largest submodules whose parameters all
    belong to one stage."""
    names = [f"{prefix}{n}" for n, _ in module.named_parameters()]
    stages = {stage_of[n] for n in names if n in stage_of}  # tied weights: once
    if prefix and len(stages) == 1:
        return [(stages.pop(), prefix[:-1], module)]
    return [
        unit
        for name, child in module.named_children()
        for unit in _declared_units(child, f"{prefix}{name}.", stage_of)
    ]


def declared_layer_groups(body: nn.Module, stage: Callable) -> list[LayerGroup]:
    """The layer groups a model declares: ``stage`` maps a parameter name to its
    stage, a sortable key.

    A group holds the largest submodules whose parameters all belong to its
    stage, in order of definition; groups follow the order of their keys.
    Parameters held directly by a module whose parts belong to different
    stages (a ViT's class token) are in no group;
    :meth:`Backbone.group_parameters` adds them to the first.
    """
    stage_of = {name: stage(name) for name, _ in body.named_parameters()}
    units = sorted(_declared_units(body, "", stage_of), key=lambda u: u[0])
    by_stage = itertools.groupby(units, key=lambda u: u[0])
    return _merge_norms([[(n, m) for _, n, m in unit] for _, unit in by_stage])


def _recorder(order: dict, name: str):
    def hook(*_):
        order.setdefault(name, len(order))  # returns None: output unchanged

    return hook


def _execution_order(body, groups, example) -> list[LayerGroup]:
    """Reorder ``groups`` by first execution; drop those that get no gradient.

    The probe is a forward and backward pass of the whole body (on a text
    encoder, more than the rest of a few-shot fit with a frozen body), and
    its answer depends on the architecture only: it is remembered for the
    process by :func:`_architecture_key` (``layer_group_orders``), so that
    the folds of a cross-validation probe once.
    """
    key = (_architecture_key(body, example), tuple(groups))
    names = layer_group_orders.get_or_put(
        key, lambda: [g.name for g in _probe_order(body, groups, example)]
    )
    by_name = {g.name: g for g in groups}
    return [by_name[name] for name in names]


def _architecture_key(body, example) -> tuple:
    """What the order of a body's groups depends on: its classes and module
    names, the names, shapes and types of its tensors, and the form of the
    example (a tensor's shape past the batch; a dict's keys and types: a text
    encoder's order does not depend on the length of the texts)."""
    modules = tuple((name, type(m)) for name, m in body.named_modules())
    tensors = tuple(
        (name, tuple(t.shape), t.dtype)
        for name, t in itertools.chain(body.named_parameters(), body.named_buffers())
    )
    if isinstance(example, torch.Tensor):
        form = (tuple(example.shape[1:]), example.dtype)
    elif isinstance(example, dict):
        form = tuple(
            sorted((k, getattr(v, "dtype", type(v))) for k, v in example.items())
        )
    else:
        form = type(example)
    return modules, tensors, form


def _probe_order(body, groups, example) -> list[LayerGroup]:
    """:func:`_execution_order`, found by running ``body`` on ``example``."""
    order: dict[str, int] = {}
    hooks = []
    for group in groups:
        module = body.get_submodule(group.modules[0])
        hooks.append(module.register_forward_hook(_recorder(order, group.name)))
    was_training = body.training
    flags = {p: p.requires_grad for p in body.parameters()}
    try:
        body.eval()
        for p in body.parameters():
            p.requires_grad_(True)
            p.grad = None
        with torch.enable_grad():
            out = body(on_module_device(body, example))
            out = out if isinstance(out, torch.Tensor) else out[0]
            out.float().sum().backward()
        used = {
            g.name
            for g in groups
            if any(
                p.grad is not None
                for m in g.modules
                for p in body.get_submodule(m).parameters()
            )
        }
    finally:
        for h in hooks:
            h.remove()
        for p, flag in flags.items():
            p.grad = None
            p.requires_grad_(flag)
        body.train(was_training)
    kept = [g for g in groups if g.name in order and g.name in used]
    return sorted(kept, key=lambda g: order[g.name])


def find_layer_groups(body: nn.Module, example=None) -> list[LayerGroup]:
    """Split ``body`` into ordered layer groups (see the module docstring).

    Parameters
    ----------
    body : torch.nn.Module
        The network without its head.
    example : tensor, dict or None, default=None
        An input ``body`` accepts; with it, groups are ordered by when they
        run in a forward pass, and groups whose parameters get no gradient are
        dropped. None keeps the order of definition.

    Returns
    -------
    groups : list of LayerGroup
        From the input to the top.
    """
    if isinstance(body, nn.Sequential | nn.ModuleList):
        candidates = _candidates(body, "")
    else:
        candidates = _candidates(nn.ModuleDict({"_": body}), "")
        candidates = [(n[2:] if n.startswith("_.") else n, m) for n, m in candidates]
    if not candidates:
        return []
    if candidates == [("_", body)]:
        # A body with no parameterised children (one layer): a single group.
        return [LayerGroup("", ("",))]
    groups = _merge_norms([[candidate] for candidate in candidates])
    if example is not None:
        groups = _execution_order(body, groups, example)
    return groups
