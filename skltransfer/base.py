"""Device placement and pickling of every torch-backed estimator.

:class:`TorchModelMixin` is the one owner of both. Each estimator declares in
``_device_state`` the attributes that may hold tensors (modules, optimisers
and their state, a parameter holding a user's module); nothing else needs to
know how they travel:

- a fit moves the declared fitted attributes to its device with
  :meth:`TorchModelMixin._move_fitted_state`;

- pickling serialises the declared attributes with :func:`torch.save` into
  bytes, which copies each tensor to host memory once, straight from the
  device, and leaves the live model as it is (no copy of the module first);
- unpickling loads the fitted ones with :func:`torch.load` onto the
  estimator's ``device`` where this machine has it, else onto the CPU
  (parameters always onto the CPU: a fit copies them, they never compute),
  warning when tensors saved on an accelerator land on the CPU because it is
  missing.

Pretrained weights travel by reference, one scheme for every estimator: a
:class:`WeightsReference` (a reloadable spec, see ``BackboneSpec.reloadable``,
and a fingerprint of the weights it loaded) stands for them in the pickle, and
the attribute that held them loads again on first use. Each estimator names in
``_by_reference`` the attribute pickled so and the key its light form is
pickled under: a frozen ``backbone_`` becomes the fingerprint next to its spec;
a fine-tuner's fitted network becomes its reference plus what training changed
(see ``skltransfer.finetune._network``). See
:func:`skltransfer.config_context` to keep the weights in the pickle.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.serialization import default_restore_location

from ._config import get_config
from ._device import device_available, resolve_device
from ._process_state import load_frozen
from .caching import module_fingerprint
from .exceptions import SkltransferWarning, warn_at_caller

__all__ = [
    "TorchModelMixin",
    "WeightsReference",
    "cpu_copy",
    "load_verified",
    "move_optimizer_state",
]

_CPU = torch.device("cpu")
# Keys of the serialised tensors in a pickled estimator's state: those of
# parameters (loaded on the CPU: a fit copies them, so they never compute) and
# those of the fitted state (loaded on the estimator's device).
_TORCH_PARAMS = "_torch_params"
_TORCH_STATE = "_torch_state"


def load_verified(load, spec, fingerprint: str) -> nn.Module:
    """``load(spec)``, refusing weights other than those fingerprinted at fit
    (:func:`~skltransfer.caching.module_fingerprint`): an estimator pickled by
    reference loads its backbone again this way."""
    backbone = load(spec)
    if module_fingerprint(backbone) != fingerprint:
        raise ValueError(
            f"The weights of {spec!r} installed here differ from those this "
            "model was fitted with (their fingerprints differ). Install the "
            "same version of the model, or pickle the fitted model inside "
            "skltransfer.config_context(pickle_weights=True)."
        )
    return backbone


@dataclass(frozen=True)
class WeightsReference:
    """Pretrained weights by reference: the spec that loads them and the
    fingerprint (:func:`~skltransfer.caching.module_fingerprint`) of the
    weights it loaded at fit."""

    spec: object
    fingerprint: str

    @classmethod
    def of(cls, spec, module: nn.Module) -> WeightsReference | None:
        """The reference of ``module`` loaded from ``spec``; None when the spec
        cannot load it anywhere (a user's module travels with its weights)."""
        if not getattr(spec, "reloadable", False):
            return None
        return cls(spec, module_fingerprint(module))

    def load(self, load=load_frozen) -> nn.Module:
        """The weights again, through ``load(spec)``, refused if they differ."""
        return load_verified(load, self.spec, self.fingerprint)


def move_optimizer_state(optimizer: torch.optim.Optimizer, device) -> None:
    """The tensors of ``optimizer``'s state (its moments) moved to ``device``."""
    for per_param in optimizer.state.values():
        for key, tensor in per_param.items():
            if isinstance(tensor, torch.Tensor):
                per_param[key] = tensor.to(device)


def cpu_copy(
    module: nn.Module, memory_format=torch.preserve_format, share=()
) -> nn.Module:
    """A copy of ``module`` on the CPU, each tensor copied once, straight to
    host memory (a copy on the device first would need its memory twice), in
    ``memory_format``; the objects of ``share`` are not copied: the copy
    refers to them."""
    # deepcopy takes these for the objects they stand for.
    memo = {id(obj): obj for obj in share}
    for tensor in [*module.parameters(), *module.buffers()]:
        host = tensor.detach().to(_CPU, copy=True, memory_format=memory_format)
        if isinstance(tensor, nn.Parameter):
            host = nn.Parameter(host, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = host
    return _copy_tree(module, memo)


# Values a deep copy returns as they are.
_ATOMIC = frozenset(
    {type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device}
)


def _copy_tree(module: nn.Module, memo: dict) -> nn.Module:
    """``copy.deepcopy(module, memo)``, five times faster on a module tree.

    deepcopy goes through ``__reduce_ex__`` for every module and copies the
    dozen dicts each one holds (hooks, parameters, submodules) one call at a
    time: on MiniLM's 122 modules that was 6,300 calls and 45 ms, a tenth
    of a fit with a frozen body on 16 texts. Here a module of a class with
    no copying hooks of its own is rebuilt from its ``__dict__``, whose
    empty containers and atomic values need no copy; anything else goes to
    ``copy.deepcopy`` with the same ``memo`` (shared objects stay shared).
    """
    found = memo.get(id(module))
    if found is not None:
        return found
    cls = type(module)
    if (
        hasattr(cls, "__deepcopy__")
        or cls.__reduce_ex__ is not object.__reduce_ex__
        or cls.__reduce__ is not object.__reduce__
        or cls.__getstate__ is not nn.Module.__getstate__
        or cls.__setstate__ is not nn.Module.__setstate__
    ):
        return copy.deepcopy(module, memo)
    new = cls.__new__(cls)
    memo[id(module)] = new
    # What nn.Module.__getstate__ gives a deep copy: its __dict__ without the
    # compiled call.
    state = vars(module)
    new.__dict__.update(
        {
            k: _copy_value(v, memo)
            for k, v in state.items()
            if k != "_compiled_call_impl"
        }
    )
    return new


def _copy_value(value, memo: dict):
    kind = type(value)
    if kind in _ATOMIC:
        return value
    found = memo.get(id(value))
    if found is not None:
        return found
    if isinstance(value, nn.Module):
        return _copy_tree(value, memo)
    if kind in (dict, OrderedDict) and all(type(k) in _ATOMIC for k in value):
        new = kind()
        memo[id(value)] = new
        for k, v in value.items():
            new[k] = _copy_value(v, memo)
        return new
    if kind in (set, frozenset, tuple) and all(type(v) in _ATOMIC for v in value):
        return value if kind is not set else set(value)
    return copy.deepcopy(value, memo)


def load_device(device) -> torch.device:
    """Where an unpickled estimator's tensors go: its ``device`` parameter
    where this machine has that device, else the CPU."""
    try:
        resolved = resolve_device(device)
    except ValueError:  # "cuda" where CUDA is missing, ...
        return _CPU
    return resolved if device_available(resolved) else _CPU


def _save(tensors: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.getvalue()


def _load(blob: bytes, device: torch.device, owner: str) -> dict:
    """What :func:`_save` wrote, every tensor mapped to ``device``; ``owner``
    names the estimator in the warning about a missing device."""
    missing = set()

    def restore(storage, location: str):
        if location not in missing and not device_available(torch.device(location)):
            missing.add(location)
            warn_at_caller(
                f"This {owner} was pickled with tensors on {location!r}, which "
                f"this machine does not have; they are loaded on {device} "
                "instead.",
                SkltransferWarning,
            )
        return default_restore_location(storage, str(device))

    # Not weights_only: this is the estimator's own pickle, trusted already.
    return torch.load(io.BytesIO(blob), map_location=restore, weights_only=False)


class TorchModelMixin:
    """Device resolution and device-portable pickling for fitted torch state.

    Subclasses list in ``_device_state`` the attributes that may hold
    tensors; pickling copies them to host memory and loading maps them to
    the estimator's device (see :mod:`skltransfer.base`). The attribute
    named in ``_by_reference`` is pickled by reference (see
    :class:`WeightsReference`) and loaded again on first use after
    unpickling; see :func:`skltransfer.config_context` to keep the weights
    in the pickle.
    """

    #: Attributes that may hold tensors: pickled through :func:`torch.save`.
    _device_state: tuple[str, ...] = ()
    #: The attribute pickled by reference and the key its light form is
    #: pickled under (see :meth:`_reference` and :meth:`_dereference`).
    _by_reference: tuple[str, str] = ("backbone_", "_backbone_fingerprint")

    def _device(self) -> torch.device:
        return resolve_device(getattr(self, "device", "auto"))

    def _move_fitted_state(self, device: torch.device) -> None:
        """Every declared fitted attribute on ``device``: modules, optimiser
        state, tensors and objects that move themselves (a warm start may
        continue on another device than the one that trained). Parameters
        stay as the user gave them."""
        params = set(self._get_param_names())
        for name in self._device_state:
            value = self.__dict__.get(name)
            if name in params or value is None:
                continue
            if isinstance(value, torch.optim.Optimizer):
                move_optimizer_state(value, device)
            elif isinstance(value, torch.Tensor):
                self.__dict__[name] = value.to(device)
            elif callable(getattr(value, "to", None)):  # modules, networks
                value.to(device)

    def __getstate__(self):
        by_reference = not get_config()["pickle_weights"]
        name, light_key = self._by_reference
        if not by_reference:
            getattr(self, name, None)  # loads what was pickled by reference
        # A copy: on Python >= 3.11 the parent returns the live __dict__ itself.
        state = dict(super().__getstate__())
        self._state_to_pickle(state)
        light = self._reference(state[name]) if by_reference and name in state else None
        if light is not None:
            del state[name]
            state[light_key] = light
        params = set(self._get_param_names())
        declared = [k for k in self._device_state if k in state]
        for key, names in (
            (_TORCH_PARAMS, [k for k in declared if k in params]),
            (_TORCH_STATE, [k for k in declared if k not in params]),
        ):
            if names:
                state[key] = _save({k: state.pop(k) for k in names})
        return state

    def __setstate__(self, state):
        state = dict(state)
        fitted_on = load_device(state.get("device", "auto"))
        for key, device in ((_TORCH_PARAMS, _CPU), (_TORCH_STATE, fitted_on)):
            blob = state.pop(key, None)
            if blob is not None:
                state.update(_load(blob, device, type(self).__name__))
        super().__setstate__(state)

    def _state_to_pickle(self, state: dict) -> None:
        """Edit ``state`` (a copy of ``__dict__``) into what the pickle holds,
        before the attribute named in ``_by_reference`` becomes its reference."""

    def _reference(self, value):
        """The light form of the attribute pickled by reference, or None to
        pickle it whole. Here a frozen ``backbone_``: the fingerprint of its
        weights, next to the spec they load from."""
        reference = WeightsReference.of(self.__dict__.get("_backbone_spec"), value)
        return None if reference is None else reference.fingerprint

    def _dereference(self, light):
        """The attribute again from its light form (see :meth:`_reference`)."""
        return WeightsReference(self.__dict__["_backbone_spec"], light).load()

    def __getattr__(self, name):
        # Only reached when normal lookup fails: an attribute pickled by
        # reference loads on first use.
        state = self.__dict__
        attribute, key = self._by_reference
        if name != attribute or key not in state:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            )
        value = self._dereference(state[key])
        state[name] = value
        del state[key]
        return value

    def _remember_spec(self, spec) -> None:
        """Pickle ``backbone_`` by reference when ``spec`` can load it anywhere."""
        self._backbone_spec = spec if getattr(spec, "reloadable", False) else None
        self.__dict__.pop("_backbone_fingerprint", None)
