"""The fine-tuner's fitted network as one value.

:class:`FittedNetwork` holds everything a fit produces that belongs to the
network: the module (the backbone and the new head), the optimiser and the
history, the reference of the pretrained weights the backbone started from
(see :class:`~skltransfer.base.WeightsReference`) and the names of the
backbone's parameters any fit trained. It has three jobs, so that nothing
else decides what "the fitted network" is:

- pickling by reference: :meth:`FittedNetwork.light` keeps the reference, the
  head and the entries training changed, and :meth:`FittedNetwork.from_light`
  loads the pretrained weights again and puts those entries back;
- putting back a network trained in place by a warm start that failed:
  :meth:`FittedNetwork.checkpoint` and :meth:`FittedNetwork.restore`;
- moving between devices: :meth:`FittedNetwork.to`.

A fit builds a new one and the estimator takes it only when the fit succeeds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .._device import module_device
from .._process_state import load_frozen
from ..base import WeightsReference, cpu_copy, move_optimizer_state
from ..caching import copy_fingerprint
from ._heads import FineTuneNetwork

__all__ = ["FittedNetwork", "NetworkReference", "load_fresh"]

_CPU = torch.device("cpu")
# The hooks of a module that run in its passes, with their records.
_PASS_HOOKS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def load_fresh(spec) -> nn.Module:
    """A new copy of the pretrained backbone (fine-tuning changes it in place).

    Weights that ``spec`` loads identically every time (``reloadable``: the
    library's specs seed any random initialisation) are copied from the
    process's shared frozen copy (:func:`~skltransfer._process_state.load_frozen`),
    which knows its fingerprint: for MiniLM the copy takes about 0.05 s,
    against 0.11 to 0.23 s to load the weights from disk and 0.1 s more to
    fingerprint them. The copy owns all its tensors, in the memory order a
    load gives them, so nothing done to it reaches the shared copy; only a
    text encoder's tokenizer, which nothing trains, is shared. Other specs
    (a user's module, which the user may go on training) load as they are.
    """
    if not getattr(spec, "reloadable", False):
        return spec.load().eval()
    shared = load_frozen(spec)
    # Frozen passes may have put the shared copy's 4-D weights in channels-last
    # order for speed; a fit must not depend on which pass ran before it.
    # A text encoder's tokenizer is shared, not copied: nothing trains it, its
    # calls take a lock per tokenizer (see backbones._text.tokenizer_lock), and
    # a deep copy of MiniLM's took 0.09 s, two thirds of the whole copy.
    tokenizer = getattr(shared, "tokenizer", None)
    backbone = cpu_copy(
        shared,
        memory_format=torch.contiguous_format,
        share=() if tokenizer is None else (tokenizer,),
    )
    # A frozen estimator in another thread may have a hook on a layer of the
    # shared copy for the length of a pass (an intermediate layer's output):
    # the copy must not keep it. A freshly loaded backbone has none.
    for module in backbone.modules():
        for name in _PASS_HOOKS:
            getattr(module, name).clear()
    copy_fingerprint(shared, backbone)
    return backbone.requires_grad_(True).eval()


@dataclass(frozen=True)
class NetworkReference:
    """What a pickle by reference holds of a :class:`FittedNetwork`: the
    reference of the pretrained body, the head, the body's entries training
    may have changed, the optimiser's state (by index: the network is built
    again on load) or None, and the history."""

    weights: WeightsReference
    head: nn.Module
    changed: dict
    trained: frozenset
    optimizer: dict | None
    history: list


@dataclass(frozen=True)
class Checkpoint:
    """Copies, on the CPU, of what a warm start trains in place."""

    weights: dict
    optimizer: dict | None


class FittedNetwork:
    """The module, optimiser, history and pretrained reference of one fit.

    Parameters
    ----------
    module : FineTuneNetwork
        The backbone and the head.
    optimizer : torch.optim.Optimizer or None
        The optimiser over ``module``'s parameters; None once dropped (a
        pickle without a warm start to continue).
    reference : WeightsReference or None
        The pretrained weights the backbone was loaded with; None when they
        cannot be loaded again (a user's module): the network then travels
        whole.
    trained : set of str, default=()
        The backbone's parameters any fit trained (a warm start adds to
        them); every buffer counts as trained.
    history : list of dict or None
        One record per epoch.
    """

    def __init__(
        self, module, optimizer=None, *, reference=None, trained=(), history=None
    ):
        self.module = module
        self.optimizer = optimizer
        self.reference = reference
        self.trained = frozenset(trained)
        self.history = [] if history is None else history

    def continued(self) -> FittedNetwork:
        """The network a warm start trains: the same module and optimiser
        (trained in place; see :meth:`checkpoint`), a copy of the history."""
        return FittedNetwork(
            self.module,
            self.optimizer,
            reference=self.reference,
            trained=self.trained,
            history=list(self.history),
        )

    def without_optimizer(self) -> FittedNetwork:
        """This network without its optimiser (nothing is copied)."""
        lighter = copy.copy(self)
        lighter.optimizer = None
        return lighter

    # -- pickling by reference --------------------------------------------------

    def light(self) -> NetworkReference | None:
        """What a pickle by reference holds, or None when the pretrained
        weights cannot be loaded again."""
        if self.reference is None:
            return None
        return NetworkReference(
            weights=self.reference,
            head=self.module.head,
            changed=self._changed_entries(),
            trained=self.trained,
            # By index, not by parameter: the network is built again on load.
            optimizer=None if self.optimizer is None else self.optimizer.state_dict(),
            history=self.history,
        )

    def _changed_entries(self) -> dict:
        """The backbone's entries training may have changed: the parameters
        any fit trained, and every buffer; the rest are the pretrained
        weights."""
        entries = self.module.backbone.state_dict(keep_vars=True)
        return {
            k: v.detach()
            for k, v in entries.items()
            if k in self.trained or not isinstance(v, nn.Parameter)
        }

    @classmethod
    def from_light(cls, light: NetworkReference, make_optimizer) -> FittedNetwork:
        """The network again: the pretrained weights loaded and verified,
        updated with what training changed; ``make_optimizer(module, device)``
        builds the optimiser that the pickled state is loaded into."""
        backbone = light.weights.load(load_fresh)
        backbone.load_state_dict(light.changed, strict=False)
        # On the device the pickled head was loaded on (see TorchModelMixin).
        device = module_device(light.head)
        module = FineTuneNetwork(backbone, light.head).to(device).eval()
        optimizer = None
        if light.optimizer is not None:
            optimizer = make_optimizer(module, device)
            optimizer.load_state_dict(light.optimizer)
        return cls(
            module,
            optimizer,
            reference=light.weights,
            trained=light.trained,
            history=light.history,
        )

    # -- a warm start that fails ------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """Copies of the weights and optimiser state (on the CPU, at the cost
        of one copy of the weights), for :meth:`restore`."""
        weights = {
            k: v.detach().to(_CPU, copy=True)
            for k, v in self.module.state_dict().items()
        }
        optimizer = self.optimizer
        state = None if optimizer is None else copy.deepcopy(optimizer.state_dict())
        return Checkpoint(weights, state)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Put the weights and optimiser state of ``checkpoint`` back."""
        self.module.load_state_dict(checkpoint.weights)
        if self.optimizer is not None and checkpoint.optimizer is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer)

    # -- devices -----------------------------------------------------------------

    def to(self, device) -> FittedNetwork:
        """The module and the optimiser's state on ``device``, in place."""
        self.module.to(device)
        if self.optimizer is not None:
            move_optimizer_state(self.optimizer, device)
        return self
