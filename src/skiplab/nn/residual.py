"""The residual block as a part: ``y = post(shortcut(x) + scale(branch(x)))``.

He et al. 2015 (post-activation, ``post = ReLU``) and He et al. 2016, "Identity Mappings in Deep
Residual Networks" (pre-activation: normalisation and nonlinearity inside the branch, ``post =
Identity``, so the identity path is clean from input to output).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from skiplab.nn._merge import check_same_shape

BranchInit = Callable[[nn.Module], None]


class SkipModule(nn.Module):
    """Base of every skiplab merge (residual, gated, concatenating, temporal).

    ``skip`` is False in a plain twin: the module then computes its branch alone. Diagnostics
    and tests use it to tell a network's skips from its plain twin's.
    """

    skip: bool


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop the whole branch per sample with prob ``p``.

    Surviving samples are scaled by ``1 / (1 - p)`` so the expectation is unchanged; an identity
    in eval mode.

    Args:
        p: drop probability in [0, 1) (default 0).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class Residual(SkipModule):
    """``y = post(shortcut(x) + scale(branch(x)))``; with ``skip=False`` ``y = post(scale(branch(x)))``.

    Args:
        branch: the residual function F.
        shortcut: the skip path (default identity); see :mod:`skiplab.nn.shortcut`.
        scale: a module applied to the branch output, e.g. ``ReZero()`` or ``LayerScale(C)``
            (default none).
        branch_init: called on ``branch`` at every ``reset_parameters()``, e.g. ``ZeroGamma()``
            (default none).
        post: applied after the merge, ``nn.ReLU()`` for post-activation blocks (default none).
        drop_path: stochastic-depth probability of the branch (default 0).
        skip: False builds the plain twin: the same branch, no shortcut.

    Shapes:
        ``shortcut(x)`` and ``branch(x)`` must have identical shapes; anything else, broadcastable
        or not, raises :class:`~skiplab.nn.SkipShapeError` naming the block.
    """

    def __init__(
        self,
        branch: nn.Module,
        shortcut: nn.Module | None = None,
        *,
        scale: nn.Module | None = None,
        branch_init: BranchInit | None = None,
        post: nn.Module | None = None,
        drop_path: float = 0.0,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.skip = skip
        self.branch = branch
        self.shortcut = (shortcut or nn.Identity()) if skip else None
        self.scale = scale or nn.Identity()
        self.post = post or nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.branch_init = branch_init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-apply the residual-aware init parts (the branch's own layers are left alone)."""
        if self.branch_init is not None:
            self.branch_init(self.branch)
        reset = getattr(self.scale, "reset_parameters", None)
        if callable(reset):
            reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.scale(self.branch(x)))
        if self.shortcut is None:
            return self.post(out)
        shortcut = self.shortcut(x)
        if shortcut.shape != out.shape:
            check_same_shape(
                self,
                "shortcut + branch",
                shortcut,
                out,
                "Pass a shortcut that matches the branch: "
                "shortcut=PadShortcut(in_channels, out_channels, stride) (option A) or "
                "ProjectionShortcut(in_channels, out_channels, stride) (option B).",
            )
        return self.post(shortcut + out)

    def extra_repr(self) -> str:
        init = f", branch_init={self.branch_init!r}" if self.branch_init is not None else ""
        return f"skip={self.skip}{init}"


def count_skips(model: nn.Module) -> int:
    """Number of skiplab merges in ``model`` that are active (``skip=True``)."""
    return sum(1 for m in model.modules() if isinstance(m, SkipModule) and m.skip)


def reset_residual_inits(model: nn.Module) -> None:
    """Re-apply every block's residual-aware init after a model-wide weight init."""
    for module in model.modules():
        if isinstance(module, Residual):
            module.reset_parameters()
