"""Gradients through norm-bounded stacks: what the identity path guarantees.

For a residual block ``y = x + phi(W x)`` with ``||W||_2 = rho < 1`` and ``0 <= phi' <= 1`` the
block Jacobian is ``J = I + D W`` with ``D = diag(phi'(W x))``, so ``||D W||_2 <= rho`` and by
the reverse triangle inequality every backpropagated vector keeps at least ``(1 - rho)`` of its
norm (and at most ``(1 + rho)``); a plain block ``y = phi(W x)`` passes at most ``rho``. Through
``L`` blocks::

    (1 - rho)^L <= ||dL/dx_0|| / ||dL/dx_L|| <= (1 + rho)^L     (residual)
                   ||dL/dx_0|| / ||dL/dx_L|| <= rho^L           (plain)

:func:`spectral_weights` draws the weights of such a stack (Gaussian rescaled to spectral norm
exactly ``rho``, or the extremal ``-rho I`` that meets both bounds with equality) and
:func:`gradient_ratio` measures the ratio by backpropagation (He et al. 2016, Identity Mappings
in Deep Residual Networks, eq. 5; Balduzzi et al. 2017); :func:`bound_violations` compares
measured ratios with the bounds and :func:`plot_ratios` draws them against depth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "WEIGHTS",
    "bound_violations",
    "gradient_ratio",
    "plot_ratios",
    "spectral_weights",
]

ACTIVATIONS = ("linear", "tanh")  # both 1-Lipschitz with derivative in [0, 1]
WEIGHTS = ("gaussian", "negative_identity")


def spectral_weights(
    depth: int, dim: int, rho: float, generator: torch.Generator, kind: str = "gaussian"
) -> list[torch.Tensor]:
    """``depth`` ``dim x dim`` matrices of spectral norm exactly ``rho``.

    Args:
        kind: ``"gaussian"`` (a Gaussian matrix rescaled by its largest singular value) or
            ``"negative_identity"`` (``-rho I``, the extremal case of both bounds).

    Returns:
        float64 matrices ``W_l`` with ``||W_l||_2 = rho``, on the CPU.
    """
    if kind not in WEIGHTS:
        raise ValueError(f"weight kind must be one of {WEIGHTS}, got {kind!r}")
    if kind == "negative_identity":
        return [-rho * torch.eye(dim, dtype=torch.float64) for _ in range(depth)]
    weights = []
    for _ in range(depth):
        g = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        weights.append(rho * g / torch.linalg.matrix_norm(g, ord=2))
    return weights


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return nn.Identity() if name == "linear" else nn.Tanh()


def gradient_ratio(
    weights: list[torch.Tensor],
    x0: torch.Tensor,
    g: torch.Tensor,
    residual: bool,
    activation: str = "linear",
) -> torch.Tensor:
    """Backpropagate ``dL/dx_L = g`` through the stack and return ``||dL/dx_0|| / ||g||``.

    The stack is ``x_{l+1} = x_l + phi(W_l x_l)`` (residual) or ``x_{l+1} = phi(W_l x_l)``
    (plain), with ``phi`` the identity or tanh. The loss ``L = sum_b <g_b, x_L[b]>`` makes
    ``g`` the output gradient of each sample; samples do not interact, so row ``b`` of the
    input gradient is that sample's backpropagated gradient.

    Args:
        weights: the ``W_l`` (e.g. from :func:`spectral_weights`), on the device of ``x0``.
        x0: the stack's inputs; g: the output gradients.
        residual: add the identity path (``x + phi(W x)``) or not (``phi(W x)``).
        activation: ``"linear"`` or ``"tanh"``.

    Shapes:
        x0, g: ``(B, D)``; returns ``(B,)``.
    """
    phi = _activation(activation)
    x = x0.detach().clone().requires_grad_(True)
    h = x
    for w in weights:
        branch = phi(h @ w.T)  # (B, D)
        h = h + branch if residual else branch
    (grad,) = torch.autograd.grad(h, x, grad_outputs=g)
    return grad.norm(dim=1) / g.norm(dim=1)


def bound_violations(
    residual: Sequence[float], plain: Sequence[float], depth: int, rho: float, slack: float = 1e-9
) -> list[str]:
    """The bounds a set of measured ratios of one depth breaks, in words (empty: none).

    Args:
        residual, plain: measured ``||dL/dx_0|| / ||dL/dx_L||`` of residual and plain stacks.
        slack: relative float64 rounding allowed where a ratio can touch its bound (the
            extremal stack meets both with equality).
    """
    lower, upper = (1 - rho) ** depth, rho**depth
    broken = []
    if residual and min(residual) < lower * (1 - slack):
        broken.append(f"L={depth}: residual {min(residual):.3g} < (1-rho)^L = {lower:.3g}")
    if plain and max(plain) > upper * (1 + slack):
        broken.append(f"L={depth}: plain {max(plain):.3g} > rho^L = {upper:.3g}")
    return broken


def plot_ratios(
    stacks: Mapping[str, Mapping[int, tuple[Sequence[float], Sequence[float]]]],
    rho: float,
    path: str | os.PathLike[str],
) -> None:
    """Measured ratios against depth with the bounds, one column per stack family.

    Args:
        stacks: ``{label: {depth: (residual ratios, plain ratios)}}``.
        rho: the branch norm the bounds are drawn for.
        path: the PNG to write. Top row: residual and plain with all three bounds (geometric
            mean, min-max band); bottom row: the residual stacks alone, every ratio as a dot.
    """
    from skiplab import _plot  # matplotlib only when a figure is drawn

    fig, axes = _plot.subplots(2, len(stacks), width=4.6, height=3.8)
    for col, (label, by_depth) in enumerate(stacks.items()):
        depths = sorted(by_depth)
        grid = np.linspace(min(depths), max(depths), 200)
        for row in (0, 1):
            ax = axes[row][col]
            bounds = [((1 + rho) ** grid, ":", "(1+ρ)^L upper bound, residual"),
                      ((1 - rho) ** grid, "--", "(1-ρ)^L lower bound, residual")]  # fmt: skip
            if row == 0:
                bounds.append((rho**grid, "-.", "ρ^L upper bound, plain"))
            for ys, ls, name in bounds:
                ax.semilogy(grid, ys, color=_plot.REFERENCE, ls=ls, zorder=3, label=name)
            for kind in ("residual", "plain") if row == 0 else ("residual",):
                color = _plot.RESIDUAL if kind == "residual" else _plot.PLAIN
                vals = [np.asarray(by_depth[d][0 if kind == "residual" else 1]) for d in depths]
                if row == 1:  # every measured ratio, slightly spread out to be seen
                    for d, v in zip(depths, vals):
                        ax.scatter(d + np.linspace(-1.5, 1.5, len(v)), v, s=8, color=color,
                                   alpha=0.6)  # fmt: skip
                ax.fill_between(depths, [v.min() for v in vals], [v.max() for v in vals],
                                color=color, alpha=0.25)  # fmt: skip
                ax.semilogy(depths, [np.exp(np.log(v).mean()) for v in vals], marker="o",
                            color=color, label=f"{kind}: geo. mean, band min-max")  # fmt: skip
            title = (
                f"{label}, ||W||₂ = ρ = {rho:g}"
                if row == 0
                else f"{label}: residual stacks, zoomed"
            )
            ax.set(title=title, xlabel="depth L (blocks)", ylabel="||dL/dx₀|| / ||dL/dx_L||",
                   xticks=depths)  # fmt: skip
            ax.legend(loc="lower left", fontsize=7.5)
    _plot.save(fig, path)
