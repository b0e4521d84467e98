"""Shape checking for merges (adds, gated mixes, concatenations).

A residual add ``shortcut + branch`` whose operands differ in shape is almost always a bug, and
broadcasting turns some of those bugs into silent wrong answers: ``(B, 1, H, W) + (B, C, H, W)``
runs. skiplab refuses every merge whose operand shapes are not identical.
"""

from __future__ import annotations

import torch
from torch import nn


class SkipShapeError(ValueError):
    """A merge whose operand shapes differ; the message names the block and the fix."""


def block_name(module: nn.Module) -> str:
    """The qualified name :func:`name_skips` gave the block, else its class name."""
    name = getattr(module, "_skiplab_name", None)
    return name if name else f"<unnamed {type(module).__name__}>"


def name_skips(model: nn.Module) -> nn.Module:
    """Record each submodule's qualified name on it so merge errors can say where they happened.

    Called by every skiplab model constructor; call it on hand-built models too. Returns the
    model for chaining.
    """
    for name, module in model.named_modules():
        module._skiplab_name = name or type(model).__name__  # type: ignore[assignment]
    return model


def check_same_shape(
    module: nn.Module, what: str, a: torch.Tensor, b: torch.Tensor, fix: str
) -> None:
    """Raise :class:`SkipShapeError` unless ``a`` and ``b`` have identical shapes.

    Args:
        module: the merging block, named in the message.
        what: the two operands' names, e.g. ``"shortcut + branch"``.
        fix: what would make the shapes agree, e.g. which shortcut option to pass.
    """
    if a.shape != b.shape:
        raise SkipShapeError(
            f"{type(module).__name__} '{block_name(module)}': cannot merge {what} with shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)} (no broadcasting across a skip). {fix}"
        )
