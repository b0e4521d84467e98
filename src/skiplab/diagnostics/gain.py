"""Backward gain through a stack of residual blocks, against the ``(1-c)^L, (1+c)^L`` bounds.

For ``L`` blocks ``h_{l+1} = h_l + F_l(h_l)`` with ``||dF_l/dh||_2 <= c`` the Jacobian
``J = prod_l (I + dF_l/dh)`` has every singular value in ``[(1-c)^L, (1+c)^L]``, so the backward
gain ``||g^T J|| / ||g||`` of any vector ``g`` lies there too; a plain stack
``h_{l+1} = F_l(h_l)`` only has ``prod_l c_l`` above. :func:`stack_gain` measures the gain and
each block's ``c`` per sample for a :class:`~skiplab.models.gan.Discriminator` (whose input
gradient is what a GAN's generator learns from); :func:`gain_summary` reduces it to medians.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import jacrev, vmap
from torch.nn.utils import parametrize

from skiplab.diagnostics._probe import eval_mode
from skiplab.models.gan import Discriminator

__all__ = ["GainSummary", "bounds_hold", "gain_summary", "stack_gain"]


def stack_gain(d: Discriminator, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample backward gain through the block stack, branch Jacobian norms and input grads.

    ``d`` runs in eval mode (spectral norm uses its current estimate, no power-iteration
    update per call); no parameter's ``.grad`` is touched.

    Returns:
        ``gain`` ``(B,)``: ``||dD/dh_0|| / ||dD/dh_L||``; ``c`` ``(B, L)``: spectral norm of
        each block's branch Jacobian at that sample; ``input_grad`` ``(B,)``: ``||dD/dx||``.
    """
    with eval_mode(d), parametrize.cached():  # each normalised weight computed once
        x = x.detach().requires_grad_(True)
        h0 = d.stem(x)  # (B, H)
        hs, h = [h0], h0
        for block in d.blocks:
            h = block(h)  # residual: h + F(h); plain: F(h)
            hs.append(h)
        out = d.head(d.final(h)).sum()
        dx, dh0, dh = torch.autograd.grad(out, [x, h0, h])
        gain = dh0.norm(dim=1) / dh.norm(dim=1).clamp_min(1e-30)
        cs = []
        for block, hin in zip(d.blocks, hs[:-1]):
            branch: Any = block.branch
            jac = vmap(jacrev(branch))(hin.detach())  # (B, H, H): dF/dh per sample
            # sigma_max(J) = sqrt(lambda_max(J^T J)); eigvalsh is cheaper than an SVD.
            top = torch.linalg.eigvalsh(jac.mT @ jac)[:, -1]
            cs.append(top.clamp_min(0).sqrt())
    return {
        "gain": gain.detach().cpu().numpy(),
        "c": torch.stack(cs, dim=1).detach().cpu().numpy(),
        "input_grad": dx.norm(dim=1).detach().cpu().numpy(),
    }


def bounds_hold(gain: np.ndarray, c: np.ndarray, tol: float = 1e-4) -> float:
    """Fraction of samples with ``(1-c)^L <= gain <= (1+c)^L``, ``c`` the sample's largest."""
    cmax, n_blocks = c.max(axis=1), c.shape[1]
    lo = np.clip(1 - cmax, 0, None) ** n_blocks
    hi = (1 + cmax) ** n_blocks
    return float(np.mean((gain >= lo * (1 - tol)) & (gain <= hi * (1 + tol))))


@dataclass
class GainSummary:
    """:func:`stack_gain` at a set of samples, as medians over the samples.

    Attributes:
        gain: the backward gain through the stack.
        c: each sample's largest block ``c``.
        c_mean: ``c`` of every block and sample, averaged.
        prod_c: ``prod_l c_l``, the plain stack's upper bound.
        in_bounds: the fraction of samples within the residual bounds (:func:`bounds_hold`).
        input_grad: ``||dD/dx||``.
    """

    gain: float
    c: float
    c_mean: float
    prod_c: float
    in_bounds: float
    input_grad: float


def gain_summary(d: Discriminator, x: torch.Tensor) -> GainSummary:
    """:func:`stack_gain` of ``d`` at the samples ``x``, as medians over the samples."""
    p = stack_gain(d, x)
    c = p["c"]
    return GainSummary(
        gain=float(np.median(p["gain"])),
        c=float(np.median(c.max(1))),
        c_mean=float(c.mean()),
        prod_c=float(np.median(np.prod(c, axis=1))),
        in_bounds=bounds_hold(p["gain"], c),
        input_grad=float(np.median(p["input_grad"])),
    )
