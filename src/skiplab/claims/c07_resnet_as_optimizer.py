"""C07 resnet-as-optimizer: a residual update ``z + f(z)`` is a gradient step on a Lagrangian.

Part 1 builds weight-tied residual networks whose block is one primal-descent / dual-ascent
step on the augmented Lagrangian of an equality-constrained problem, runs them on a random
quadratic program and a constrained least-squares problem, and compares where they end with the
KKT point from a direct solve. Part 2 trains a weight-tied residual network and its plain twin
(same MLP, same parameters) to map quadratic programs to their solutions, and measures how well
the learned updates line up with the gradient step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.claims._stats import clearly_greater, summarize
from skiplab.nn import Residual

RHO = 1.0  # augmented-Lagrangian weight: makes Q + rho A^T A positive definite on all of R^n
CONVERGED = 1e-6  # relative distance to the KKT point that counts as reached
SHOWN = 300  # iterations drawn: the residual networks converge well within them


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


def unrolled_distances(problem: EqualityQP, steps: int, skip: bool) -> tuple[list[float], float]:
    """Run the weight-tied network ``steps`` times from 0; relative distance to the KKT point
    after every step, and the contraction factor of the step used. A run whose distance
    passes 1e6 (the plain twin can blow up) stops there, so the list may be shorter."""
    alpha, rate = problem.step_size()
    block = Residual(PrimalDualStep(problem, alpha), skip=skip)  # one block, reused: weight-tied
    star = torch.from_numpy(problem.kkt())
    z = torch.zeros(1, problem.n + problem.m, dtype=torch.float64)
    dist = []
    with torch.no_grad():
        for _ in range(steps):
            z = block(z)
            dist.append(float((z[0] - star).norm() / star.norm()))
            if not dist[-1] < 1e6:
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


# -- part 2: learning to solve -------------------------------------------------------------


class QPFamily:
    """QPs ``min 1/2 y^T diag(q) y + c^T y s.t. A y = b`` with a fixed A and random q, c, b.

    ``q`` in [0.5, 2.5] makes ``y*`` a nonlinear function of the parameters, so no single
    linear map solves the family.
    """

    def __init__(self, n: int, m: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.n, self.m = n, m
        self.a = torch.randn(m, n, generator=gen) / np.sqrt(n)
        self.gen = gen

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        q = 0.5 + 2.0 * torch.rand(batch, self.n, generator=self.gen)
        c = torch.randn(batch, self.n, generator=self.gen)
        b = torch.randn(batch, self.m, generator=self.gen)
        kkt = torch.zeros(batch, self.n + self.m, self.n + self.m)
        kkt[:, : self.n, : self.n] = torch.diag_embed(q)
        kkt[:, : self.n, self.n :] = self.a.T
        kkt[:, self.n :, : self.n] = self.a
        sol = torch.linalg.solve(kkt, torch.cat([-c, b], dim=1))  # (B, n + m)
        params = torch.cat([q, c, b], dim=1)  # (B, 2n + m)
        return {"q": q, "c": c, "b": b, "params": params, "y": sol[:, : self.n],
                "lam": sol[:, self.n :]}  # fmt: skip

    def lagrangian_step(self, p: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """``-grad_y L_rho(y, lambda*)``, the primal gradient step at the optimal multiplier."""
        infeasible = y @ self.a.T - p["b"]  # (B, m)
        grad = p["q"] * y + p["c"] + p["lam"] @ self.a + RHO * infeasible @ self.a
        return -grad


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

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        y = params.new_zeros(params.shape[0], self.n)
        out = [y]
        for _ in range(self.steps):
            update = self.step(torch.cat([y, params], dim=1))  # (B, n)
            y = y + update if self.skip else update
            out.append(y)
        return torch.stack(out)


def train_solver(
    family: QPFamily, skip: bool, hidden: int, steps: int, iters: int, seed: int
) -> tuple[LearnedSolver, list[float]]:
    """Adam on the final iterate's relative squared error, fresh problems every step."""
    torch.manual_seed(seed)
    net = LearnedSolver(family.n, 2 * family.n + family.m, hidden, steps, skip)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    losses = []
    for _ in range(iters):
        p = family.sample(256)
        y_final = net(p["params"])[-1]
        loss = ((y_final - p["y"]).pow(2).sum(1) / p["y"].pow(2).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return net, losses


@torch.no_grad()
def alignment(net: LearnedSolver, family: QPFamily, batch: int) -> dict[str, Any]:
    """Mean cosine of each learned update ``y_{k+1} - y_k`` with the gradient step
    ``-grad_y L_rho(y_k, lambda*)`` and with the direction to the solution ``y* - y_k``, per
    step, and the final relative error."""
    p = family.sample(batch)
    ys = net(p["params"])  # (K + 1, B, n)
    cos_grad, cos_sol = [], []
    for k in range(net.steps):
        update = ys[k + 1] - ys[k]
        cos_grad.append(
            F.cosine_similarity(update, family.lagrangian_step(p, ys[k]), dim=1).mean().item()
        )
        cos_sol.append(F.cosine_similarity(update, p["y"] - ys[k], dim=1).mean().item())
    err = ((ys[-1] - p["y"]).norm(dim=1) / p["y"].norm(dim=1)).mean().item()
    return {"cos_grad": cos_grad, "cos_sol": cos_sol, "error": err}


@register_claim
class ResNetAsOptimizer(Claim):
    id = "C07"
    slug = "resnet-as-optimizer"
    title = "A residual update is a gradient step on a Lagrangian"
    statement = (
        "A residual update y + f(y) is a gradient step y - alpha * grad_y L(y, lambda) on a "
        "Lagrangian: weight-tied residual networks running primal and dual gradient steps reach "
        "the KKT point of a constrained problem; a trained residual network recovers the step; "
        "plain networks do not."
    )
    method = (
        "Part 1: one Residual block whose branch is the primal-dual step f(z) = alpha(-grad_y "
        "L_rho, +grad_lambda L_rho) on the augmented Lagrangian (rho = 1), applied K times "
        "(weight-tied), on a random equality-constrained QP and a random constrained "
        "least-squares problem; distance to the KKT point from a direct solve (np.linalg.solve "
        "of the KKT system; for least squares also the null-space solution from lstsq); the plain "
        "twin applies the same step without the skip. Part 2: a weight-tied MLP step applied 8 "
        "times, trained (Adam, fresh random problems each step) to map QPs with diagonal "
        "Q in [0.5, 2.5]^n, random c, b and a fixed A to y*; residual (y + g) vs plain (g), the "
        "same MLP; cosine between each learned update and the gradient step -grad_y L_rho(y_k, "
        "lambda*), and final relative error, on held-out problems."
    )
    criterion = (
        "Holds when, for every seed: the residual primal-dual network reaches the KKT point "
        f"(relative distance < {CONVERGED:g}) on both problems and its plain twin does not "
        "(distance > 0.5); and the trained residual solver's mean cosine between its updates "
        "and the gradient step is higher than the plain solver's for every seed (ranges "
        "separate). The solvers' final errors are reported beside it but not judged: the claim "
        "is about what the network computes, not how well. Fails otherwise."
    )
    math = (
        "Problem: min f(y) s.t. A y = b, f(y) = 1/2 y^T Q y + c^T y, Q + rho A^T A > 0, A full "
        "row rank.\n"
        "Augmented Lagrangian: L_rho(y, l) = f(y) + l^T (A y - b) + rho/2 |A y - b|^2.\n"
        "KKT: grad_y L = Q y + c + A^T l = 0 and A y = b, i.e. [[Q, A^T], [A, 0]] [y; l] = [-c; b].\n"
        "Residual block: z = (y, l),  z_{k+1} = z_k + f(z_k),  f(z) = alpha (-grad_y L_rho, "
        "+grad_l L_rho) = alpha (J z + g), J = [[-(Q + rho A^T A), -A^T], [A, 0]].\n"
        "Fixed points: z = z + f(z)  <=>  f(z) = 0  <=>  grad_y L_rho = 0 and A y = b  <=>  KKT. "
        "The plain twin z_{k+1} = f(z_k) has the fixed point z = alpha (I - alpha J)^-1 g, "
        "not the KKT point: the skip is what makes the iteration a gradient method.\n"
        "Convergence: z_k - z* = (I + alpha J)^k (z_0 - z*). With H = Q + rho A^T A > 0 and A of "
        "full row rank every eigenvalue mu of J has Re mu < 0 (Benzi, Golub & Liesen 2005, "
        "saddle-point matrices); alpha = min_mu (-Re mu) / |mu|^2 gives |1 + alpha mu|^2 = 1 + "
        "2 alpha Re mu + alpha^2 |mu|^2 <= 1 + alpha Re mu < 1, a linear rate max |1 + alpha mu|.\n"
        "Constrained least squares: Q = D^T D, c = -D^T e; checked against y_p + N w, A y_p = b, "
        "N an orthonormal basis of ker A, w = argmin |D N w - (e - D y_p)|.\n"
        "Alignment: at the optimal multiplier -grad_y L_rho(y, l*) = -(Q + rho A^T A)(y - y*), a "
        "preconditioned direction to the solution; cos(update, step) = 1 for an exact gradient "
        "step."
    )
    references = (
        "Arrow, Hurwicz & Uzawa 1958, Studies in Linear and Non-linear Programming",
        "Benzi, Golub & Liesen 2005, Numerical solution of saddle point problems",
        "Gregor & LeCun 2010, Learning Fast Approximations of Sparse Coding (LISTA)",
        "Lu et al. 2018, Beyond Finite Layer Neural Networks (ResNets as ODE discretisations)",
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}

    def run(self, ctx: Context) -> Evidence:
        n, m = ctx.pick(tiny=6, quick=12, full=24), ctx.pick(tiny=2, quick=4, full=8)
        unroll = ctx.pick(tiny=600, quick=1500, full=5000)
        ln, lm = ctx.pick(tiny=5, quick=6, full=10), ctx.pick(tiny=2, quick=2, full=4)
        hidden = ctx.pick(tiny=32, quick=64, full=128)
        solver_steps = 8
        iters = ctx.pick(tiny=300, quick=800, full=10000)
        ev = Evidence(seeds=ctx.seeds)
        per_seed: dict[str, list[float]] = {}
        dists: dict[str, list[list[float]]] = {}
        learned: dict[str, list[dict[str, Any]]] = {"residual": [], "plain": []}
        train_curves: dict[str, list[list[float]]] = {"residual": [], "plain": []}
        rows: list[list[Any]] = []

        def keep(key: str, value: float) -> None:
            per_seed.setdefault(key, []).append(float(value))

        for seed in ctx.seeds:
            cfg = {"n": n, "m": m, "unroll": unroll, "rho": RHO}
            with ctx.run(f"C07 unrolled seed {seed}", cfg, seed=seed) as run_id:
                rng = np.random.default_rng(seed)
                qp = random_qp(n, m, rng)
                cls, cls_null = random_constrained_least_squares(n, m, 4 * n, rng)
                keep("cls_kkt_vs_nullspace", float(np.linalg.norm(cls.kkt()[:n] - cls_null)))
                for pname, problem in (("qp", qp), ("cls", cls)):
                    for skip in (True, False):
                        model = "residual" if skip else "plain"
                        d, rate = unrolled_distances(problem, unroll, skip)
                        dists.setdefault(f"{pname}_{model}", []).append(d[:SHOWN])
                        reached = next((k + 1 for k, v in enumerate(d) if v < CONVERGED), None)
                        keep(f"{pname}_{model}_final_dist", d[-1])
                        keep(f"{pname}_rate", rate)
                        if skip:
                            keep(f"{pname}_steps_to_1e-6", reached or float("nan"))
                        rows.append([seed, pname, model, rate, d[-1], reached or f">{unroll}"])
                ctx.store.finish_run(run_id, "completed",
                                     results={k: v[-1] for k, v in per_seed.items()})  # fmt: skip
            family_seed = 1000 + seed
            for skip in (True, False):
                model = "residual" if skip else "plain"
                cfg = {"n": ln, "m": lm, "hidden": hidden, "steps": solver_steps, "iters": iters}
                with ctx.run(f"C07 learned {model} seed {seed}", cfg, seed=seed) as run_id:
                    family = QPFamily(ln, lm, family_seed)
                    net, losses = train_solver(family, skip, hidden, solver_steps, iters, seed)
                    test = QPFamily(ln, lm, family_seed)
                    test.gen.manual_seed(family_seed + 1)  # same A, unseen problems
                    res = alignment(net, test, 2000)
                    ctx.store.finish_run(run_id, "completed", results=res)
                learned[model].append(res)
                train_curves[model].append(losses[:: max(1, iters // 200)])
                keep(f"learned_{model}_cos_grad", float(np.mean(res["cos_grad"])))
                keep(f"learned_{model}_cos_solution", float(np.mean(res["cos_sol"])))
                keep(f"learned_{model}_error", res["error"])
        ev.series.update(per_seed=per_seed, dists=dists, learned=learned, train=train_curves,
                         unroll=unroll)  # fmt: skip
        for key, values in per_seed.items():
            ev.numbers[key] = float(np.nanmean(values))
        ev.tables.append(
            Table(
                f"Weight-tied primal-dual networks (n={n}, m={m}, rho={RHO:g}) from z = 0",
                [
                    "seed",
                    "problem",
                    "model",
                    "contraction",
                    "final rel. distance to KKT",
                    f"steps to {CONVERGED:g}",
                ],
                rows,
                "contraction = max |1 + alpha mu| over the eigenvalues mu of J (the predicted "
                "linear rate of the residual network).",
            )
        )
        ev.tables.append(
            Table(
                f"Learned {solver_steps}-step solvers on held-out QPs (n={ln}, m={lm}, hidden={hidden})",
                [
                    "model",
                    "cos(update, gradient step)",
                    "cos(update, y* - y_k)",
                    "final rel. error",
                ],
                [
                    [
                        model,
                        str(summarize(per_seed[f"learned_{model}_cos_grad"])),
                        str(summarize(per_seed[f"learned_{model}_cos_solution"])),
                        str(summarize(per_seed[f"learned_{model}_error"])),
                    ]
                    for model in ("residual", "plain")
                ],
                "cosines averaged over the 8 steps and 2,000 problems.",
            )
        )
        err_r = float(np.mean(per_seed["learned_residual_error"]))
        err_p = float(np.mean(per_seed["learned_plain_error"]))
        ev.notes.append(
            f"The learned solvers' final relative errors are residual {err_r:.3f} and plain "
            f"{err_p:.3f}: alignment with the gradient step does not by itself make the "
            "residual solver more accurate at this budget."
        )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        s = evidence.series["per_seed"]
        converges = (
            all(v < CONVERGED for p in ("qp", "cls") for v in s[f"{p}_residual_final_dist"])
            and max(s["cls_kkt_vs_nullspace"]) < 1e-8
        )
        plain_stuck = all(v > 0.5 for p in ("qp", "cls") for v in s[f"{p}_plain_final_dist"])
        aligned = clearly_greater(s["learned_residual_cos_grad"], s["learned_plain_cos_grad"])
        detail = (
            f"unrolled residual: distance to KKT {np.max(s['qp_residual_final_dist']):.1e} (QP), "
            f"{np.max(s['cls_residual_final_dist']):.1e} (constrained LS), reached 1e-6 in "
            f"{np.nanmean(s['qp_steps_to_1e-6']):.0f} / {np.nanmean(s['cls_steps_to_1e-6']):.0f} "
            f"steps; the plain twin ends at distance >= {np.min(s['qp_plain_final_dist']):.3g} / "
            f"{np.min(s['cls_plain_final_dist']):.3g} (runs past 1e6 are stopped: diverged). Learned solvers: cos(update, gradient step) "
            f"residual {summarize(s['learned_residual_cos_grad'])} vs plain "
            f"{summarize(s['learned_plain_cos_grad'])}; final error residual "
            f"{summarize(s['learned_residual_error'])} vs plain {summarize(s['learned_plain_error'])}."
        )
        return Verdict.from_checks(
            (
                ("residual iteration reaches KKT", converges),
                ("plain twin misses KKT", plain_stuck),
                ("learned residual updates more aligned", aligned),
            ),
            detail,
        )

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.6)
        ax = axes[0][0]
        for key, curves in evidence.series["dists"].items():
            pname, model = key.split("_")
            color = _plot.RESIDUAL if model == "residual" else _plot.PLAIN
            ls = "-" if pname == "qp" else "--"
            for i, c in enumerate(curves):
                label = (
                    f"{model}, {'QP' if pname == 'qp' else 'constrained LS'}" if i == 0 else None
                )
                steps = np.arange(1, len(c) + 1)
                ax.semilogy(steps, np.maximum(c, 1e-16), ls, color=color, lw=1.5, label=label)
        ax.axhline(CONVERGED, color=_plot.REFERENCE, ls=":", label=f"{CONVERGED:g}")
        ax.set(title="weight-tied primal-dual network", xlabel=f"blocks (iterations), first {SHOWN}",
               ylabel="|z_k - z*| / |z*|")  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[0][1]
        for model, color in (("residual", _plot.RESIDUAL), ("plain", _plot.PLAIN)):
            runs = evidence.series["learned"][model]
            cg = np.asarray([r["cos_grad"] for r in runs])
            cs = np.asarray([r["cos_sol"] for r in runs])
            k = np.arange(1, cg.shape[1] + 1)
            ax.errorbar(k, cg.mean(0), yerr=cg.std(0), fmt="o-", color=color, capsize=3,
                        label=f"{model}: vs gradient step")  # fmt: skip
            ax.plot(k, cs.mean(0), "x:", color=color, label=f"{model}: vs y* - y_k")
        ax.axhline(0, color=_plot.REFERENCE, lw=1)
        ax.set(title="learned updates: cosine", xlabel="step k", ylabel="mean cosine",
               ylim=(-1.05, 1.05))  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[0][2]
        for model, color in (("residual", _plot.RESIDUAL), ("plain", _plot.PLAIN)):
            for i, c in enumerate(evidence.series["train"][model]):
                ax.semilogy(np.linspace(0, 1, len(c)), c, color=color, alpha=0.8,
                            label=model if i == 0 else None)  # fmt: skip
        ax.set(title="training loss (rel. squared error)", xlabel="fraction of training",
               ylabel="loss")  # fmt: skip
        ax.legend()
        _plot.save(fig, outdir / "resnet_optimizer.png")
        return [
            Figure(
                "resnet_optimizer.png",
                "Left: distance to the KKT point after each application of one weight-tied "
                "block; the residual network z + f(z) converges linearly, the plain twin f(z) "
                "does not. Middle: cosine between the learned updates y_{k+1} - y_k and the "
                "gradient step -grad_y L_rho(y_k, lambda*) (and the direction to the solution), "
                "mean ± sd over seeds. Right: training loss of the learned solvers.",
            )
        ]
