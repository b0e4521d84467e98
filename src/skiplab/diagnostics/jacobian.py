"""Input-output Jacobians: spectral norms by power iteration, exact spectra for small inputs.

The spectral norm ``sigma_max(J)`` of ``J = df/dx`` is found by power iteration on ``J^T J``
without forming ``J``: each step is one Jacobian-vector product (``torch.func.jvp``, forward
mode) and one vector-Jacobian product (``torch.func.vjp``, reverse mode):

    u = J v,   sigma ~ ||u||,   v <- J^T u / ||J^T u||.

The iteration converges at the rate ``(sigma_2 / sigma_1)^2`` per step. For a residual block
``J = I + dF/dx``; for a plain layer ``J = dF/dx``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from skiplab.diagnostics._probe import batch_statistics, find_blocks

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SpectralNorm:
    """Result of :func:`spectral_norm`: the estimate, iterations used, and its history."""

    sigma: float
    iterations: int
    converged: bool
    history: list[float] = field(default_factory=list)


def spectral_norm(
    fn: Fn,
    x: torch.Tensor,
    *,
    iters: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
) -> SpectralNorm:
    """Largest singular value of the Jacobian of ``fn`` at ``x`` by power iteration.

    Args:
        fn: a function of one tensor (e.g. a block in eval or :func:`batch_statistics` mode).
        x: the point; the Jacobian is taken with respect to all of it (a whole batch when
            ``x`` is one: with per-example independence, the largest over examples).
        iters: maximum iterations (default 50).
        tol: stop when the relative change of the estimate falls below ``tol`` (default 1e-4).
        seed: seed of the random start vector.
    """
    x = x.detach()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    v = v / v.norm()
    _, vjp_fn = torch.func.vjp(fn, x)[:2]
    sigma, history = 0.0, []
    for it in range(1, iters + 1):
        u = torch.func.jvp(fn, (x,), (v,))[1]
        new = float(u.detach().norm())
        history.append(new)
        (w,) = vjp_fn(u)
        w_norm = w.norm()
        if w_norm == 0:
            return SpectralNorm(0.0, it, True, history)
        v = w / w_norm
        if it > 1 and abs(new - sigma) <= tol * max(new, 1e-30):
            return SpectralNorm(new, it, True, history)
        sigma = new
    return SpectralNorm(sigma, iters, False, history)


def exact_jacobian(fn: Fn, x: torch.Tensor) -> torch.Tensor:
    """The full Jacobian of ``fn`` at ``x`` as a ``(out.numel(), x.numel())`` matrix.

    Only for small inputs: it costs one reverse pass per output element.
    """
    x = x.detach()
    jac = torch.func.jacrev(fn)(x)
    out_numel = jac.numel() // x.numel()
    return jac.reshape(out_numel, x.numel())


def singular_values(fn: Fn, x: torch.Tensor) -> torch.Tensor:
    """All singular values (descending) of the Jacobian of ``fn`` at ``x`` (small inputs)."""
    return torch.linalg.svdvals(exact_jacobian(fn, x).double()).to(x.dtype)


def block_spectral_norms(
    model: nn.Module,
    inputs: tuple[Any, ...],
    *,
    iters: int = 20,
    tol: float = 1e-3,
    per_example: bool = True,
    whole: bool = True,
) -> dict[str, Any]:
    """Spectral norm of every block's input-output Jacobian, and of the whole network.

    Batch-norm layers use batch statistics (nothing updated). With ``per_example`` (default)
    only the first example is used, so the result is the Jacobian of one input's map (batch
    normalisation then normalises over that example's positions); otherwise the Jacobian is
    that of the whole batch, coupled through the batch statistics (also the fallback when a
    single example cannot run, e.g. ``BatchNorm1d`` on ``(1, C)``).

    Returns:
        ``blocks`` (names), ``sigma`` (per block), ``iterations`` (per block), and ``network``
        (the whole model's input-to-output spectral norm) when ``whole``.
    """
    blocks = find_blocks(model)
    captured: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_pre_hook(lambda _m, args, i=i: captured.__setitem__(i, args[0].detach()))
        for i, (_, b) in enumerate(blocks)
    ]
    first = tuple(a[:1] if per_example and isinstance(a, torch.Tensor) else a for a in inputs)
    try:
        with batch_statistics(model), torch.no_grad():
            try:
                model(*first)
            except ValueError:  # BatchNorm on (1, C) has no batch statistics: use the batch
                first = tuple(inputs)
                model(*first)
    finally:
        for h in handles:
            h.remove()
    sigmas, its = [], []
    with batch_statistics(model):
        for i, (_, block) in enumerate(blocks):
            if i not in captured:
                sigmas.append(float("nan"))
                its.append(0)
                continue
            res = spectral_norm(block, captured[i], iters=iters, tol=tol)
            sigmas.append(res.sigma)
            its.append(res.iterations)
        out: dict[str, Any] = {"blocks": [n for n, _ in blocks], "sigma": sigmas, "iterations": its}
        if whole and isinstance(first[0], torch.Tensor) and first[0].is_floating_point():
            rest = first[1:]
            res = spectral_norm(lambda t: model(t, *rest), first[0], iters=iters, tol=tol)
            out["network"] = res.sigma
            out["network_iterations"] = res.iterations
    return out
