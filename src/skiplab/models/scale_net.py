"""Networks whose only input-scale-dependent parts are their residual blocks.

A block ``y = x + F(x)`` whose branch ends in a normalisation adds a branch of size ~1 to a skip
of size ~sigma (the input's standard deviation): its branch/skip ratio is ~1/sigma. The
scale-balanced block (:class:`skiplab.nn.ScaleBalancedResidual`) gates the branch by sigma,
``y = x + sigma(x) F(x / sigma(x))``, and is exactly positively homogeneous,
``y(c x) = c y(x)`` for ``c > 0``.

:class:`ScaleNet` puts ``depth`` such blocks between a bias-free linear stem and a read-out
that divides each sample by its root-mean-square; with balanced blocks the whole network is
invariant to the scale of its input, with standard blocks it is not.
"""

from __future__ import annotations

import torch
from torch import nn

from skiplab.nn import Residual, ScaleBalancedResidual

__all__ = [
    "BLOCK_KINDS",
    "ScaleNet",
    "UnitScale",
    "branch_to_skip_ratio",
    "homogeneity_error",
    "make_block",
    "normalised_branch",
]

BLOCK_KINDS = ("standard", "balanced")


def normalised_branch(width: int) -> nn.Sequential:
    """The branch both blocks share: it ends in LayerNorm, so its output has unit scale."""
    return nn.Sequential(
        nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(),
        nn.Linear(width, width), nn.LayerNorm(width),
    )  # fmt: skip


def make_block(kind: str, branch: nn.Module) -> nn.Module:
    """``x + F(x)`` (``"standard"``) or ``x + sigma(x) F(x / sigma(x))`` (``"balanced"``)."""
    if kind == "standard":
        return Residual(branch)
    if kind == "balanced":
        return ScaleBalancedResidual(branch)
    raise ValueError(f"block kind must be one of {BLOCK_KINDS}, got {kind!r}")


class UnitScale(nn.Module):
    """Divide each sample by its root-mean-square: the head sees the direction only.

    Shapes:
        input ``(B, D)``; returns ``(B, D)`` (a zero sample stays zero).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.pow(2).mean(dim=1, keepdim=True).sqrt()  # (B, 1)
        return x / torch.where(rms > 0, rms, torch.ones_like(rms))


class ScaleNet(nn.Module):
    """Bias-free linear stem, ``depth`` blocks of one kind, unit-scale read-out, linear head.

    The stem has no bias (a bias would make the stem itself scale-dependent) and the read-out
    is shared by both kinds, so the blocks are the only parts that see the input's scale.

    Args:
        kind: ``"standard"`` or ``"balanced"`` blocks (see :func:`make_block`).
        in_features: inputs are flattened to this many features.
        width: of the stem and every block.
        depth: number of blocks.
        classes: outputs of the head.

    Shapes:
        input ``(B, *)`` flattened to ``(B, in_features)``; returns ``(B, classes)``.
    """

    def __init__(self, kind: str, in_features: int, width: int, depth: int, classes: int) -> None:
        super().__init__()
        if kind not in BLOCK_KINDS:
            raise ValueError(f"ScaleNet kind must be one of {BLOCK_KINDS}, got {kind!r}")
        self.kind = kind
        self.stem = nn.Linear(in_features, width, bias=False)
        self.blocks = nn.Sequential(
            *(make_block(kind, normalised_branch(width)) for _ in range(depth))
        )
        self.readout = UnitScale()
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x.flatten(1)))  # (B, width)
        return self.head(self.readout(h))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def branch_to_skip_ratio(block: nn.Module, x: torch.Tensor) -> float:
    """``|y - x| / |x|``: the size of what the block adds relative to what the skip carries."""
    with torch.no_grad():
        return float((block(x) - x).norm() / x.norm())


def homogeneity_error(f: nn.Module, x: torch.Tensor, c: float) -> float:
    """``|f(c x) - c f(x)| / |c f(x)|``: 0 for a positively homogeneous ``f`` (up to rounding)."""
    with torch.no_grad():
        base = c * f(x)
        return float((f(c * x) - base).norm() / base.norm())
