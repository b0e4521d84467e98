"""A residual block whose branch gate is proportional to the input's scale.

In ``y = x + F(x)`` with a normalised branch (the branch ends in, or starts with, a
normalisation layer) the skip carries the input's variance ``sigma^2`` while the branch carries
about 1, so the branch-to-skip ratio is ``~1 / sigma``: at ``sigma = 1e3`` the block is almost an
identity, at ``sigma = 1e-3`` almost a plain layer. Gating the branch by ``sigma`` itself,

    y = x + sigma(x) * s(F(x / sigma(x))),

keeps the two balanced at every scale and makes the block *exactly* positively homogeneous:
``block(c x) = c block(x)`` for every ``c > 0`` (the branch sees ``x / sigma(x)``, which does not
depend on ``c``, and both terms scale with ``c``).
"""

from __future__ import annotations

import torch
from torch import nn

from skiplab.nn._merge import check_same_shape
from skiplab.nn.residual import SkipModule

SCALE_STATS = ("std", "rms")


class ScaleBalancedResidual(SkipModule):
    """``y = x + sigma(x) * scale(branch(x / sigma(x)))``; plain twin ``sigma(x) * scale(branch(...))``.

    ``sigma(x)`` is taken per sample over every non-batch axis, so the block is homogeneous
    sample by sample and independent of the batch. A sample with ``sigma = 0`` (all entries
    equal, or all zero for ``"rms"``) gets a zero branch: the only value that keeps
    ``block(c x) = c block(x)``.

    Args:
        branch: the residual function ``F``; it sees an input of unit scale.
        scale: a module applied to the branch output, e.g. ``ReZero()`` (default none).
        stat: ``"std"`` (standard deviation about the sample mean, default) or ``"rms"``
            (root mean square, zero only for a zero input).
        skip: False builds the plain twin (the same gated branch, no shortcut).

    Shapes:
        input ``(B, *)``; ``branch`` must keep the shape. Returns ``(B, *)``.
    """

    def __init__(
        self,
        branch: nn.Module,
        *,
        scale: nn.Module | None = None,
        stat: str = "std",
        skip: bool = True,
    ) -> None:
        super().__init__()
        if stat not in SCALE_STATS:
            raise ValueError(
                f"ScaleBalancedResidual stat must be one of {SCALE_STATS}, got {stat!r}"
            )
        self.skip = skip
        self.stat = stat
        self.branch = branch
        self.scale = scale or nn.Identity()

    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample scale ``sigma(x)``, shaped ``(B, 1, ..., 1)`` to broadcast over ``x``."""
        if x.dim() < 2:
            raise ValueError(
                f"ScaleBalancedResidual expects a batch (B, *), got shape {tuple(x.shape)}"
            )
        dims = tuple(range(1, x.dim()))
        if self.stat == "std":
            return x.std(dim=dims, keepdim=True, unbiased=False)
        return x.pow(2).mean(dim=dims, keepdim=True).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma(x)  # (B, 1, ..., 1)
        alive = sigma > 0
        # x / sigma is invariant to x -> c x; where sigma = 0 any input gives a zero branch.
        unit = torch.where(alive, x / torch.where(alive, sigma, torch.ones_like(sigma)), 0.0)
        out = sigma * self.scale(self.branch(unit))  # (B, *), scales like x
        if not self.skip:
            return out
        if out.shape != x.shape:
            check_same_shape(
                self,
                "input + branch",
                x,
                out,
                "The branch of a scale-balanced block must keep the shape.",
            )
        return x + out

    def extra_repr(self) -> str:
        return f"stat={self.stat!r}, skip={self.skip}"
