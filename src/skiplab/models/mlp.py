"""Deep residual MLPs and their plain twins.

Each block is the post-activation pattern of He et al. 2015 on vectors,
``relu(x + N(W2 relu(N(W1 x))))``, so zero-gamma (the last ``N``'s weight at 0) makes every block
an exact identity at initialisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from skiplab.models._registry import register_family_example, register_model
from skiplab.nn import Residual, reset_residual_inits
from skiplab.nn.residual import BranchInit


@dataclass
class ResMLPConfig:
    """Architecture of a deep (residual or plain) MLP."""

    depth: int = 20  # linear layers inside the blocks (two per block)
    width: int = 128  # wide enough that depth, not width, limits it
    in_features: int = 40  # MNIST-1D's length
    num_classes: int = 10
    skip: bool = True
    norm_layer: Callable[[int], nn.Module] = nn.LayerNorm  # batch-independent
    act_layer: Callable[[], nn.Module] = nn.ReLU
    branch_init: BranchInit | None = None  # e.g. ZeroGamma()
    scale: Callable[[int], nn.Module] | None = None  # e.g. lambda c: ReZero()

    def __post_init__(self) -> None:
        if self.depth < 2 or self.depth % 2:
            raise ValueError(
                f"ResMLP depth counts two layers per block: an even number >= 2, got {self.depth}"
            )


def _branch(cfg: ResMLPConfig, w: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(w, w), cfg.norm_layer(w), cfg.act_layer(),
        nn.Linear(w, w), cfg.norm_layer(w),
    )  # fmt: skip


class ResMLP(nn.Module):
    """A deep MLP of residual blocks (plain when ``cfg.skip`` is False).

    Shapes:
        input ``(B, *)`` flattened to ``(B, in_features)``; returns ``(B, num_classes)``.
    """

    def __init__(self, cfg: ResMLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.stem = nn.Sequential(nn.Linear(cfg.in_features, w), cfg.act_layer())
        self.blocks = nn.Sequential(
            *(
                Residual(
                    _branch(cfg, w),
                    scale=cfg.scale(w) if cfg.scale else None,
                    branch_init=cfg.branch_init,
                    post=cfg.act_layer(),
                    skip=cfg.skip,
                )
                for _ in range(cfg.depth // 2)
            )
        )
        self.head = nn.Linear(w, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm | nn.BatchNorm1d) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        reset_residual_inits(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, in_features)
        if x.shape[1] != self.cfg.in_features:
            raise ValueError(
                f"ResMLP expects {self.cfg.in_features} input features, got {x.shape[1]}"
            )
        return self.head(self.blocks(self.stem(x)))


register_family_example("mlp", lambda: (torch.randn(2, 40),))


@register_model
def resmlp(**kwargs: Any) -> ResMLP:
    """Deep residual MLP; ``depth`` counts linear layers in the blocks (default 20)."""
    return ResMLP(ResMLPConfig(**kwargs))


@register_model
def resmlp100(**kwargs: Any) -> ResMLP:
    """100-layer residual MLP (50 blocks)."""
    return ResMLP(replace(ResMLPConfig(depth=100), **kwargs))
