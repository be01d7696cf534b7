"""The one head API every backbone family is wrapped into."""

from __future__ import annotations

import torch
from torch import nn

from ._groups import LayerGroup, find_layer_groups
from ._preprocessing import ImagePreprocessing

__all__ = ["Backbone", "split_head"]


class _StopForward(Exception):
    """Raised by a hook once the requested layer has run, to skip the rest."""


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list):
        return output[0]
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    raise TypeError(f"Cannot read a tensor from a layer output of type {type(output)}.")


def split_head(model: nn.Module, head_name: str | None = None):
    """Detach the classification head of ``model`` in place.

    The head is ``head_name`` or, by default, the last ``nn.Linear`` in
    definition order: in torchvision, timm and Hugging Face classifiers it is
    the final operation, so replacing it with ``nn.Identity`` makes ``model``
    return exactly what the head used to see.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier; changed in place.
    head_name : str or None, default=None
        Qualified name of the head module; None takes the last ``nn.Linear``.

    Returns
    -------
    model : torch.nn.Module
        ``model`` with the head replaced by ``nn.Identity``.
    head : torch.nn.Module or None
        The detached head; None when ``model`` has no linear layer.
    """
    if head_name is None:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            return model, None
        head_name = linears[-1]
    head = model.get_submodule(head_name)
    model.set_submodule(head_name, nn.Identity())
    return model, head


class Backbone(nn.Module):
    """A pretrained network as a body that embeds plus the head it came with.

    Every family (torchvision, timm, Hugging Face, user modules) is wrapped into
    this class, so estimators use one API: :meth:`forward_features` for the
    embedding the pretrained head sees, :meth:`forward_head` for that head's
    logits, :meth:`forward_layer` for any intermediate layer and
    :meth:`layer_groups` for the ordered stages that freezing depth counts.

    Parameters
    ----------
    body : nn.Module
        Maps a preprocessed input batch to features.
    head : nn.Module or None
        The pretrained classification head, if any.
    preprocessing : ImagePreprocessing or None
        What the weights expect of an image; None for non-image inputs.
    class_names : list of str or None
        Names of the head's outputs.
    name : str
        A readable identifier, used in messages and cache keys.
    layer_groups : list of LayerGroup or None
        Explicit layer groups; found automatically when None.
    """

    def __init__(
        self,
        body: nn.Module,
        head: nn.Module | None = None,
        *,
        preprocessing: ImagePreprocessing | None = None,
        class_names: list[str] | None = None,
        name: str = "custom",
        layer_groups: list[LayerGroup] | None = None,
    ):
        super().__init__()
        self.body = body
        self.head = head
        self.preprocessing = preprocessing
        self.class_names = None if class_names is None else list(class_names)
        self.name = name
        self._layer_groups = layer_groups

    def forward_features(self, x) -> torch.Tensor:
        """The embedding the pretrained head sees, shaped (N, D)."""
        out = _first_tensor(self.body(x))
        return out.flatten(1) if out.ndim > 2 else out

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the pretrained head."""
        if self.head is None:
            raise ValueError(f"Backbone {self.name!r} has no pretrained head.")
        return self.head(features)

    def forward(self, x) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A dummy image batch of the size the weights expect."""
        if self.preprocessing is None:
            raise ValueError(f"Backbone {self.name!r} has no image preprocessing.")
        size = self.preprocessing.crop_size
        return torch.zeros(batch_size, 3, size, size)

    def layer_groups(self, example=None) -> list[LayerGroup]:
        """The ordered layer groups of the body, from the stem to the top."""
        if self._layer_groups is None:
            if example is None and self.preprocessing is not None:
                example = self.example_input(2)
            self._layer_groups = find_layer_groups(self.body, example)
        return self._layer_groups

    def layer_names(self) -> list[str]:
        """Names accepted by :meth:`forward_layer`: the layer groups, in order."""
        return [g.name for g in self.layer_groups()]

    def resolve_layer(self, layer: str | int) -> str:
        """The module name whose output is ``layer`` (a group name, index or module)."""
        groups = self.layer_groups()
        if isinstance(layer, int):
            if not -len(groups) <= layer < len(groups):
                raise ValueError(
                    f"layer={layer} is out of range: {self.name!r} has "
                    f"{len(groups)} layer groups ({self.layer_names()})."
                )
            return groups[layer].output_module
        by_name = {g.name: g.output_module for g in groups}
        if layer in by_name:
            return by_name[layer]
        if layer in dict(self.body.named_modules()) and layer != "":
            return layer
        raise ValueError(
            f"Unknown layer {layer!r} for backbone {self.name!r}. Layer groups: "
            f"{self.layer_names()}; any module name of the body is accepted too."
        )

    def forward_layer(self, x, module_name: str) -> torch.Tensor:
        """Output of the body's submodule ``module_name``; later layers do not run."""
        captured = {}

        def hook(_module, _inputs, output):
            captured["out"] = _first_tensor(output)
            raise _StopForward

        handle = self.body.get_submodule(module_name).register_forward_hook(hook)
        try:
            self.body(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "out" not in captured:
            raise RuntimeError(
                f"Layer {module_name!r} did not run in the forward pass."
            )
        return captured["out"]

    def group_parameters(self, example=None) -> list[list[nn.Parameter]]:
        """Parameters of each layer group, in order.

        Parameters that belong to no group (a class token, position embeddings)
        are added to the first group: they are part of the input embedding.
        """
        groups = self.layer_groups(example)
        params = [
            [p for m in g.modules for p in self.body.get_submodule(m).parameters()]
            for g in groups
        ]
        seen = {id(p) for ps in params for p in ps}
        orphans = [p for p in self.body.parameters() if id(p) not in seen]
        if params:
            params[0] = orphans + params[0]
        return params
