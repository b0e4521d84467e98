"""Weight-tied residual networks as primal-dual solvers of equality-constrained QPs.

For ``min 1/2 y^T Q y + c^T y  s.t.  A y = b`` and the augmented Lagrangian
``L_rho(y, l) = f(y) + l^T (A y - b) + rho/2 |A y - b|^2``, one gradient step on ``L_rho``
(descent in ``y``, ascent in ``l``; Arrow, Hurwicz & Uzawa 1958) is a residual update

    z_{k+1} = z_k + f(z_k),    f(z) = alpha (-grad_y L_rho(y, l), +grad_l L_rho(y, l)),

so ``K`` applications of one block (:class:`PrimalDualStep` as the branch of a
:class:`~skiplab.nn.Residual`) are ``K`` iterations of the method; its fixed points are the KKT
points. The plain twin ``z_{k+1} = f(z_k)`` has another fixed point. :class:`LearnedSolver` is
the learned counterpart (Gregor & LeCun 2010, LISTA): one MLP step applied ``K`` times, with or
without the skip, trained on a :class:`QPFamily`; :func:`alignment` compares its updates with
the gradient step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn

from skiplab.nn import Residual

RHO = 1.0  # augmented-Lagrangian weight: makes Q + rho A^T A positive definite on all of R^n
BLOWUP = 1e6  # relative distance at which an unrolled iteration counts as diverged and stops


class EqualityQP:
    """``min 1/2 y^T Q y + c^T y  s.t.  A y = b`` (Q symmetric, A of full row rank).

    Args:
        q, c, a, b: the problem data, ``(n, n)``, ``(n,)``, ``(m, n)``, ``(m,)``.
    """

    def __init__(self, q: np.ndarray, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        self.q, self.c, self.a, self.b = (np.asarray(v, dtype=np.float64) for v in (q, c, a, b))
        n, m = len(self.c), len(self.b)
        if self.q.shape != (n, n) or self.a.shape != (m, n):
            raise ValueError(
                f"EqualityQP needs Q (n, n), c (n,), A (m, n), b (m,); got Q {self.q.shape}, "
                f"c {self.c.shape}, A {self.a.shape}, b {self.b.shape}"
            )

    @property
    def n(self) -> int:
        return len(self.c)

    @property
    def m(self) -> int:
        return len(self.b)

    def kkt(self) -> np.ndarray:
        """``(y*, lambda*)`` from the KKT system ``[[Q, A^T], [A, 0]] [y; l] = [-c; b]``."""
        k = np.block([[self.q, self.a.T], [self.a, np.zeros((self.m, self.m))]])
        return np.linalg.solve(k, np.concatenate([-self.c, self.b]))

    def jacobian(self, rho: float = RHO) -> np.ndarray:
        """``J`` with ``f(z) = alpha (J z + const)``: ``[[-(Q + rho A^T A), -A^T], [A, 0]]``."""
        h = self.q + rho * self.a.T @ self.a
        return np.block([[-h, -self.a.T], [self.a, np.zeros((self.m, self.m))]])

    def step_size(self, rho: float = RHO) -> tuple[float, float]:
        """The step ``alpha`` minimising the contraction ``max |1 + alpha mu|`` over the
        eigenvalues ``mu`` of J, and that contraction (the residual iteration's linear rate).

        Every ``alpha`` in ``(0, 2 a0]``, ``a0 = min (-Re mu) / |mu|^2``, contracts; the best
        one is found by a bounded scalar search in that interval.
        """
        mu = np.linalg.eigvals(self.jacobian(rho))
        if np.max(mu.real) >= 0:
            raise ValueError("the primal-dual iteration has no contracting step for this problem")
        a0 = float(np.min(-mu.real / np.abs(mu) ** 2))
        res = minimize_scalar(
            lambda a: float(np.max(np.abs(1 + a * mu))),
            bounds=(1e-3 * a0, 2 * a0),
            method="bounded",
        )
        alpha = float(res.x)
        return alpha, float(np.max(np.abs(1 + alpha * mu)))


class PrimalDualStep(nn.Module):
    """One gradient step on ``L_rho(y, l) = f(y) + l^T (A y - b) + rho/2 |A y - b|^2``:

        f(z) = ( -alpha grad_y L_rho(y, l),  +alpha grad_l L_rho(y, l) )
             = ( -alpha (Q y + c + A^T l + rho A^T (A y - b)),  alpha (A y - b) ).

    As the branch of a :class:`~skiplab.nn.Residual`, ``z + f(z)`` is one iteration of the
    (augmented) Arrow-Hurwicz primal-dual method; the plain twin outputs ``f(z)`` alone.

    Shapes:
        ``z = (y, l)``: ``(B, n + m)``; returns ``(B, n + m)``.
    """

    q: torch.Tensor
    c: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    def __init__(self, problem: EqualityQP, alpha: float, rho: float = RHO) -> None:
        super().__init__()
        self.n, self.alpha, self.rho = problem.n, float(alpha), float(rho)
        for name in ("q", "c", "a", "b"):
            self.register_buffer(name, torch.from_numpy(getattr(problem, name)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y, lam = z[:, : self.n], z[:, self.n :]  # (B, n), (B, m)
        infeasible = y @ self.a.T - self.b  # (B, m)
        grad_y = y @ self.q + self.c + lam @ self.a + self.rho * infeasible @ self.a
        return self.alpha * torch.cat([-grad_y, infeasible], dim=1)


@torch.no_grad()
def unrolled_distances(
    problem: EqualityQP, steps: int, skip: bool, device: str | torch.device = "cpu"
) -> tuple[list[float], float]:
    """Run the weight-tied network ``steps`` times from 0 (in float64 on ``device``).

    Returns:
        The relative distance ``|z_k - z*| / |z*|`` to the KKT point after every step, and the
        contraction factor of the step used. A run whose distance passes :data:`BLOWUP` (the
        plain twin can blow up) stops there, so the list may be shorter than ``steps``.
    """
    alpha, rate = problem.step_size()
    block = Residual(PrimalDualStep(problem, alpha), skip=skip).to(device)  # one block, reused
    star = torch.from_numpy(problem.kkt()).to(device)
    z = torch.zeros(1, problem.n + problem.m, dtype=torch.float64, device=device)
    dist = []
    for _ in range(steps):
        z = block(z)
        dist.append(float((z[0] - star).norm() / star.norm()))
        if not dist[-1] < BLOWUP:
            break
    return dist, rate


def random_qp(n: int, m: int, rng: np.random.Generator) -> EqualityQP:
    """A random strictly convex QP: ``Q = M M^T / n + I / 2``, Gaussian c, b and
    ``A = G / sqrt(n)`` (rows of unit expected norm, so A and Q live on one scale)."""
    mat = rng.standard_normal((n, n))
    q = mat @ mat.T / n + 0.5 * np.eye(n)
    a = rng.standard_normal((m, n)) / np.sqrt(n)
    return EqualityQP(q, rng.standard_normal(n), a, rng.standard_normal(m))


def random_constrained_least_squares(
    n: int, m: int, rows: int, rng: np.random.Generator
) -> tuple[EqualityQP, np.ndarray]:
    """``min 1/(2 rows) |D y - e|^2 s.t. A y = b`` as a QP (``Q = D^T D / rows``,
    ``c = -D^T e / rows``; dividing the objective by ``rows`` keeps the minimiser and puts Q on
    the scale of A), and its solution by the null-space method with ``lstsq`` (independent of
    the KKT solve)."""
    d, e = rng.standard_normal((rows, n)), rng.standard_normal(rows)
    a, b = rng.standard_normal((m, n)) / np.sqrt(n), rng.standard_normal(m)
    y_p = np.linalg.lstsq(a, b, rcond=None)[0]  # a particular solution of A y = b
    _, _, vt = np.linalg.svd(a)
    null = vt[m:].T  # (n, n - m), an orthonormal basis of ker A
    w = np.linalg.lstsq(d @ null, e - d @ y_p, rcond=None)[0]
    return EqualityQP(d.T @ d / rows, -d.T @ e / rows, a, b), y_p + null @ w


# -- learning to solve ---------------------------------------------------------------------


class QPBatch(NamedTuple):
    """A batch of QPs ``min 1/2 y^T diag(q) y + c^T y s.t. A y = b`` and their KKT points.

    Shapes:
        ``q, c``: ``(B, n)``; ``b``: ``(B, m)``; ``a``: ``(m, n)`` (shared); ``y``: ``(B, n)``
        and ``lam``: ``(B, m)``, the solutions and their multipliers.
    """

    q: torch.Tensor
    c: torch.Tensor
    b: torch.Tensor
    a: torch.Tensor
    y: torch.Tensor
    lam: torch.Tensor

    @property
    def params(self) -> torch.Tensor:
        """What a learned solver sees: ``(q, c, b)`` as ``(B, 2n + m)``."""
        return torch.cat([self.q, self.c, self.b], dim=1)


class QPFamily:
    """QPs ``min 1/2 y^T diag(q) y + c^T y s.t. A y = b`` with a fixed A and random q, c, b.

    ``q`` in [0.5, 2.5] makes ``y*`` a nonlinear function of the parameters, so no single
    linear map solves the family.

    Args:
        n, m: variables and constraints.
        generator: draws the fixed ``A = G / sqrt(n)``.
    """

    def __init__(self, n: int, m: int, generator: torch.Generator) -> None:
        self.n, self.m = n, m
        self.a = torch.randn(m, n, generator=generator) / np.sqrt(n)

    @property
    def n_params(self) -> int:
        return 2 * self.n + self.m

    def sample(self, batch: int, generator: torch.Generator) -> QPBatch:
        """``batch`` problems drawn with ``generator``, solved exactly through their KKT system."""
        q = 0.5 + 2.0 * torch.rand(batch, self.n, generator=generator)
        c = torch.randn(batch, self.n, generator=generator)
        b = torch.randn(batch, self.m, generator=generator)
        kkt = torch.zeros(batch, self.n + self.m, self.n + self.m)
        kkt[:, : self.n, : self.n] = torch.diag_embed(q)
        kkt[:, : self.n, self.n :] = self.a.T
        kkt[:, self.n :, : self.n] = self.a
        sol = torch.linalg.solve(kkt, torch.cat([-c, b], dim=1))  # (B, n + m)
        return QPBatch(q, c, b, self.a, sol[:, : self.n], sol[:, self.n :])


def gradient_step(p: QPBatch, y: torch.Tensor, rho: float = RHO) -> torch.Tensor:
    """``-grad_y L_rho(y, lambda*)``, the primal gradient step at the optimal multiplier ``(B, n)``."""
    infeasible = y @ p.a.T - p.b  # (B, m)
    return -(p.q * y + p.c + p.lam @ p.a + rho * infeasible @ p.a)


def relative_sq_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``|pred - target|^2 / |target|^2`` per row ``(B,)``."""
    return (pred - target).pow(2).sum(1) / target.pow(2).sum(1)


class LearnedSolver(nn.Module):
    """``K`` weight-tied applications of one MLP step ``g([y, params])``.

    Residual: ``y <- y + g([y, params])``; plain twin (``skip=False``): ``y <- g([y, params])``;
    the same MLP, the same parameter count.

    Shapes:
        params ``(B, P)``; returns the iterates ``(K + 1, B, n)`` starting from ``y_0 = 0``.
    """

    def __init__(self, n: int, n_params: int, hidden: int, steps: int, skip: bool) -> None:
        super().__init__()
        self.n, self.steps, self.skip = n, steps, skip
        self.step = nn.Sequential(
            nn.Linear(n + n_params, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"n={self.n}, steps={self.steps}, skip={self.skip}"

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        y = params.new_zeros(params.shape[0], self.n)
        out = [y]
        for _ in range(self.steps):
            update = self.step(torch.cat([y, params], dim=1))  # (B, n)
            y = y + update if self.skip else update
            out.append(y)
        return torch.stack(out)


@torch.no_grad()
def alignment(net: nn.Module, p: QPBatch) -> dict[str, Any]:
    """How a learned solver's updates ``y_{k+1} - y_k`` point, on the problems ``p``.

    Returns:
        ``cos_grad``: mean cosine with the gradient step ``-grad_y L_rho(y_k, lambda*)`` per
        step ``k``; ``cos_sol``: mean cosine with the direction ``y* - y_k`` to the solution;
        ``error``: the mean relative error ``|y_K - y*| / |y*|`` of the final iterate.
    """
    ys = net(p.params)  # (K + 1, B, n)
    cos_grad, cos_sol = [], []
    for k in range(len(ys) - 1):
        update = ys[k + 1] - ys[k]
        cos_grad.append(F.cosine_similarity(update, gradient_step(p, ys[k]), dim=1).mean().item())
        cos_sol.append(F.cosine_similarity(update, p.y - ys[k], dim=1).mean().item())
    err = ((ys[-1] - p.y).norm(dim=1) / p.y.norm(dim=1)).mean().item()
    return {"cos_grad": cos_grad, "cos_sol": cos_sol, "error": err}
