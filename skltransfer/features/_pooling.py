"""Pooling of layer outputs into one vector per sample."""

from __future__ import annotations

import torch

POOLINGS = ("auto", "avg", "max", "avgmax", "none")


def pool(t: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool (N, C, H, W) maps or (N, T, D) tokens to (N, D); ``"none"`` flattens.

    ``"auto"`` means ``"avg"`` here; 2-D outputs are returned as they are.
    """
    if t.ndim == 2:
        return t
    if mode == "none":
        return t.flatten(1)
    dims = tuple(range(2, t.ndim)) if t.ndim == 4 else (1,)
    if mode in ("avg", "auto"):
        return t.mean(dim=dims)
    if mode == "max":
        return t.amax(dim=dims)
    if mode == "avgmax":
        return torch.cat([t.mean(dim=dims), t.amax(dim=dims)], dim=1)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}.")
