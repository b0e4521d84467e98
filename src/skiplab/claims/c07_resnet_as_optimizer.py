"""C07 resnet-as-optimizer: a residual update ``z + f(z)`` is a gradient step on a Lagrangian.

Part 1 runs weight-tied residual networks whose block is one primal-descent / dual-ascent step
on the augmented Lagrangian (:mod:`skiplab.models.primal_dual`) on a random quadratic program
and a constrained least-squares problem, and compares where they end with the KKT point from a
direct solve. Part 2 trains a weight-tied residual network and its plain twin (same MLP, same
parameters) to map quadratic programs to their solutions, and measures how well the learned
updates line up with the gradient step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skiplab import _plot
from skiplab.claims._base import (
    Check,
    Claim,
    Comparison,
    Figure,
    Summary,
    Table,
    finite_mean,
    register_claim,
)
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import Stat, describe, difference
from skiplab.models.primal_dual import (
    RHO,
    LearnedSolver,
    QPBatch,
    QPFamily,
    alignment,
    random_constrained_least_squares,
    random_qp,
    unrolled_distances,
)
from skiplab.train import TrainConfig
from skiplab.train.qp_tasks import SolveQPs

CONVERGED = 1e-6  # relative distance to the KKT point that counts as reached
SHOWN = 300  # iterations drawn: the residual networks converge well within them
PROBLEMS = ("qp", "cls")  # part 1: a random QP, a random constrained least-squares problem
FAMILY = "qp-family"  # part 2: a solver learned on a family of QPs
MODELS = ("residual", "plain")
EVALS = 10  # held-out evaluations over a learned solver's training


@dataclass(frozen=True)
class Settings:
    n: int = 12  # variables of the part-1 problems
    m: int = 4  # their equality constraints
    unroll: int = 1500  # weight-tied blocks applied (iterations): ample for 1e-6 at this size
    solver_n: int = 6  # variables of the learned family's QPs
    solver_m: int = 2  # their constraints
    hidden: int = 64  # width of the learned step's MLP
    solver_steps: int = 8  # weight-tied applications of the learned step
    iters: int = 800  # Adam steps, each on fresh problems
    batch_size: int = 256  # problems per step
    lr: float = 1e-3  # Adam, cosine-annealed to 0
    test_problems: int = 2000  # held-out problems (same A) for the alignment


SCALES = {
    "tiny": Settings(n=6, m=2, unroll=600, solver_n=5, hidden=32, iters=300),
    "quick": Settings(),
    "full": Settings(n=24, m=8, unroll=5000, solver_n=10, solver_m=4, hidden=128, iters=10000),
}


@dataclass(frozen=True)
class Condition:
    problem: str  # "qp" or "cls" (part 1: the primal-dual network), "qp-family" (part 2)
    model: str  # "residual" (z + f(z)) or "plain" (f(z))


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """Part 1: unroll the primal-dual network on one problem; part 2: train a solver."""
    if c.problem == FAMILY:
        return _learn(run, s, c.model == "residual")
    rng = np.random.default_rng(seed)
    qp = random_qp(s.n, s.m, rng)
    cls, y_null = random_constrained_least_squares(s.n, s.m, 4 * s.n, rng)  # drawn after the QP
    problem = qp if c.problem == "qp" else cls
    dist, rate = unrolled_distances(problem, s.unroll, c.model == "residual", run.device)
    for k, d in enumerate(dist, start=1):
        run.log(k, dist=d)
    reached = next((k for k, d in enumerate(dist, start=1) if d < CONVERGED), math.nan)
    return {"final_dist": dist[-1], "rate": rate, "steps_to_tol": reached,
            "kkt_vs_nullspace": float(np.linalg.norm(cls.kkt()[: s.n] - y_null))}  # fmt: skip


def _learn(run: Run, s: Settings, skip: bool) -> dict[str, Any]:
    family = QPFamily(s.solver_n, s.solver_m, run.generator(0))  # one A for both models
    test = QPBatch._make(run.put(*family.sample(s.test_problems, run.generator(1))))
    net = run.build(
        lambda: LearnedSolver(s.solver_n, family.n_params, s.hidden, s.solver_steps, skip)
    )
    cfg = TrainConfig(optimizer="adam", lr=s.lr, weight_decay=0.0, schedule="cosine", epochs=1,
                      batch_size=s.batch_size, max_steps=s.iters, log_every=max(1, s.iters // 200))  # fmt: skip
    fit = run.fit(net, SolveQPs(family, test, max(1, s.iters // EVALS)), cfg)
    if fit.diverged:
        return {"cos_grad": [], "cos_sol": [], "error": math.nan}
    return alignment(net, test)


@dataclass
class Unrolled:
    """One problem and model of part 1, one value per seed."""

    final_dist: list[float]
    rate: list[float]
    steps_to_tol: list[float]  # NaN: not reached within the unroll
    curves: list[list[float]]  # the first SHOWN distances


@dataclass
class Learned:
    """One learned solver of part 2, per seed."""

    cos_grad: list[list[float]]  # per step k
    cos_sol: list[list[float]]
    error: list[float]
    train_loss: list[list[float]]  # step_loss every iters // 200 steps


@dataclass
class Result(Summary):
    unrolled: dict[str, dict[str, Unrolled]]  # problem -> model
    learned: dict[str, Learned]  # model
    kkt_vs_nullspace: list[float]  # per seed: the KKT solve vs the null-space solution
    seeds: list[int]
    settings: Settings


@register_claim
class ResNetAsOptimizer(Claim[Settings, Condition, Result]):
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
        "Part 1 holds when, for every seed, the residual primal-dual network reaches the KKT "
        f"point (relative distance < {CONVERGED:g}) on both problems and its plain twin does "
        "not (distance > 0.5). Part 2: positive control, the trained residual solver beats the "
        "zero predictor y = 0 (relative error 1): the 95% t-interval of its final error over "
        "seeds lies below 1, else the budget cannot decide (inconclusive). The effect is the "
        "paired difference over seeds (both solvers of a seed share the QP family, the held-out "
        "problems and the initial weights) of the mean cosine between the updates and the "
        "gradient step, residual minus plain: fails when it is not positive, inconclusive when "
        "its 95% t-interval includes 0 or a solver diverged. The solvers' final errors are "
        "reported beside it but not judged: the claim is about what the network computes, not "
        "how well."
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
        "Chen et al. 2018, Theoretical Linear Convergence of Unfolded ISTA and its Practical "
        "Weights and Thresholds",
    )
    default_seeds = {"tiny": 3, "quick": 5, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(p, m) for p in (*PROBLEMS, FAMILY) for m in MODELS]

    def cost(self, s: Settings, c: Condition) -> float:
        if c.problem == FAMILY:
            return s.iters * s.batch_size * s.solver_steps * s.hidden**2 / 1e8
        return s.unroll * (s.n + s.m) ** 2 / 1e6

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        unrolled = {p: {m: _unrolled(runs.where(problem=p, model=m)) for m in MODELS}
                    for p in PROBLEMS}  # fmt: skip
        learned = {m: _learned(runs.where(problem=FAMILY, model=m)) for m in MODELS}
        kkt = runs.values("kkt_vs_nullspace", problem="cls", model="residual")
        return Result(unrolled, learned, kkt, runs.seeds, s)

    def checks(self, r: Result) -> list[Check]:
        u = r.unrolled
        converges = all(v < CONVERGED for p in PROBLEMS for v in u[p]["residual"].final_dist)
        plain_stuck = all(v > 0.5 for p in PROBLEMS for v in u[p]["plain"].final_dist)
        checks = [
            Check("residual iteration reaches KKT", converges and max(r.kkt_vs_nullspace) < 1e-8),
            Check("plain twin misses KKT", plain_stuck),
            _control(r.learned["residual"].error),
        ]
        gap = cos_gap(r)
        if gap is None:
            return [*checks, Check("every learned solver trained without diverging", False,
                                   "a cosine is NaN", kind="evidence")]  # fmt: skip
        text = f"cos(update, gradient step) residual - plain {gap.interval()}"
        return [
            *checks,
            Check("learned residual updates more aligned", gap.mean > 0, text),
            Check("the alignment gap's 95% interval excludes 0", gap.excludes_zero, str(gap),
                  kind="evidence"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        u, res, plain = r.unrolled, r.learned["residual"], r.learned["plain"]
        return (
            f"unrolled residual: distance to KKT {np.max(u['qp']['residual'].final_dist):.1e} (QP), "
            f"{np.max(u['cls']['residual'].final_dist):.1e} (constrained LS), reached 1e-6 in "
            f"{np.nanmean(u['qp']['residual'].steps_to_tol):.0f} / "
            f"{np.nanmean(u['cls']['residual'].steps_to_tol):.0f} steps; the plain twin ends at "
            f"distance >= {np.min(u['qp']['plain'].final_dist):.3g} / "
            f"{np.min(u['cls']['plain'].final_dist):.3g} (runs past 1e6 are stopped: diverged). "
            f"Learned solvers: cos(update, gradient step) residual "
            f"{describe(_per_seed(res.cos_grad))} vs plain {describe(_per_seed(plain.cos_grad))}"
            f"{_gap_text(cos_gap(r))}; final error residual {describe(res.error)} vs plain "
            f"{describe(plain.error)} (zero predictor: 1)."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out = {"cls_kkt_vs_nullspace": float(np.nanmean(r.kkt_vs_nullspace))}
        for p in PROBLEMS:
            out[f"{p}_rate"] = float(np.nanmean(r.unrolled[p]["residual"].rate))
            out[f"{p}_steps_to_1e-6"] = float(np.nanmean(r.unrolled[p]["residual"].steps_to_tol))
            for m in MODELS:
                out[f"{p}_{m}_final_dist"] = float(np.nanmean(r.unrolled[p][m].final_dist))
        for m in MODELS:
            run = r.learned[m]
            out[f"learned_{m}_cos_grad"] = float(np.nanmean(_per_seed(run.cos_grad)))
            out[f"learned_{m}_cos_solution"] = float(np.nanmean(_per_seed(run.cos_sol)))
            out[f"learned_{m}_error"] = float(np.nanmean(run.error))
        gap = cos_gap(r)
        if gap is not None:
            out.update(learned_cos_gap=gap.mean, learned_cos_gap_lo=gap.lo,
                       learned_cos_gap_hi=gap.hi)  # fmt: skip
        return out

    def literature(self, r: Result) -> list[Comparison]:
        u, gap = r.unrolled["qp"]["residual"], cos_gap(r)
        rate = float(np.nanmean(u.rate))
        return [
            Comparison(
                "Chen et al. 2018, abstract (unfolded ISTA)",
                "with a weight structure that keeps the fixed point, unfolded ISTA converges "
                "linearly to the sparse code, faster than the sublinear rate of ISTA/FISTA",
                f"the weight-tied residual primal-dual network converges linearly, contraction "
                f"{rate:.3g} per block, {np.nanmean(u.steps_to_tol):.0f} blocks to 1e-6; the "
                "plain twin, which loses the fixed point, does not converge",
                None,
            ),
            Comparison(
                "Gregor & LeCun 2010 (LISTA)",
                "a trained unrolled iteration approximates the optimiser's output in few steps; "
                "the paper ties the layers to ISTA's update, it does not compare a residual and "
                "a plain step",
                f"after {r.settings.solver_steps} learned steps the relative error is residual "
                f"{describe(r.learned['residual'].error).interval()} vs plain "
                f"{describe(r.learned['plain'].error).interval()}; alignment gap "
                f"{gap.interval() if gap else 'n/a'}",
                None,
            ),
        ]

    def tables(self, r: Result) -> list[Table]:
        s = r.settings
        rows = [
            [seed, p, m, u.rate[i], u.final_dist[i],
             int(u.steps_to_tol[i]) if math.isfinite(u.steps_to_tol[i]) else f">{s.unroll}"]
            for i, seed in enumerate(r.seeds) for p in PROBLEMS for m in MODELS
            for u in [r.unrolled[p][m]]
        ]  # fmt: skip
        cols = ["seed", "problem", "model", "contraction", "final rel. distance to KKT",
                f"steps to {CONVERGED:g}"]  # fmt: skip
        learned = [
            [m, str(describe(_per_seed(v.cos_grad))), str(describe(_per_seed(v.cos_sol))),
             str(describe(v.error))]
            for m in MODELS for v in [r.learned[m]]
        ]  # fmt: skip
        gap = cos_gap(r)
        learned.append(["residual - plain (paired by seed)", str(gap) if gap else "a solver diverged",
                        "-", "zero predictor: 1"])  # fmt: skip
        return [
            Table(f"Weight-tied primal-dual networks (n={s.n}, m={s.m}, rho={RHO:g}) from z = 0",
                  cols, rows, "contraction = max |1 + alpha mu| over the eigenvalues mu of J (the "
                  "predicted linear rate of the residual network)."),
            Table(f"Learned {s.solver_steps}-step solvers on held-out QPs (n={s.solver_n}, "
                  f"m={s.solver_m}, hidden={s.hidden})",
                  ["model", "cos(update, gradient step)", "cos(update, y* - y_k)", "final rel. error"],
                  learned, f"cosines averaged over the {s.solver_steps} steps and "
                  f"{s.test_problems:,} problems; mean ± sd (95% t-interval) over seeds."),
        ]  # fmt: skip

    def notes(self, r: Result) -> list[str]:
        res, plain = (float(np.nanmean(r.learned[m].error)) for m in ("residual", "plain"))
        return [
            f"The learned solvers' final relative errors are residual {res:.3f} and "
            f"plain {plain:.3f}: alignment with the gradient step does not by itself make "
            "the residual solver more accurate at this budget."
        ]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.4, height=3.6)
        _distance_panel(axes[0][0], r)
        _alignment_panel(axes[0][1], r)
        ax = axes[0][2]
        for model, color in (("residual", _plot.RESIDUAL), ("plain", _plot.PLAIN)):
            for i, c in enumerate(r.learned[model].train_loss):
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


def _per_seed(curves: list[list[float]]) -> list[float]:
    """The mean over steps of each seed's cosines (NaN for a diverged run)."""
    return [finite_mean(c) for c in curves]


def cos_gap(r: Result) -> Stat | None:
    """Residual minus plain mean cosine with the gradient step, paired by seed (None when a
    solver diverged: its cosines are NaN)."""
    res, plain = (_per_seed(r.learned[m].cos_grad) for m in MODELS)
    if not all(math.isfinite(v) for v in res + plain):
        return None
    return difference(res, plain, paired=True)


def _control(error: list[float]) -> Check:
    """Positive control: the learned residual solver beats the zero predictor (error 1)."""
    finite = bool(error) and all(math.isfinite(v) for v in error)
    stat = describe(error) if finite else None
    return Check(
        "the learned residual solver beats the zero predictor (relative error 1)",
        stat is not None and stat.hi < 1,
        f"final relative error {stat}" if stat else "diverged",
        kind="control",
    )


def _gap_text(gap: Stat | None) -> str:
    return f", paired difference {gap}" if gap else ", a solver diverged"


def _unrolled(runs: Runs[Condition]) -> Unrolled:
    curves = [r.curve("dist")[:SHOWN] for r in runs]
    return Unrolled(
        runs.values("final_dist"), runs.values("rate"), runs.values("steps_to_tol"), curves
    )


def _learned(runs: Runs[Condition]) -> Learned:
    return Learned([list(r.get("cos_grad")) for r in runs], [list(r.get("cos_sol")) for r in runs],
                   runs.values("error"), [r.curve("step_loss") for r in runs])  # fmt: skip


def _distance_panel(ax: Any, r: Result) -> None:
    for p in PROBLEMS:
        for model in MODELS:
            color = _plot.RESIDUAL if model == "residual" else _plot.PLAIN
            for i, c in enumerate(r.unrolled[p][model].curves):
                label = f"{model}, {'QP' if p == 'qp' else 'constrained LS'}" if i == 0 else None
                ax.semilogy(np.arange(1, len(c) + 1), np.maximum(c, 1e-16),
                            "-" if p == "qp" else "--", color=color, lw=1.5, label=label)  # fmt: skip
    ax.axhline(CONVERGED, color=_plot.REFERENCE, ls=":", label=f"{CONVERGED:g}")
    ax.set(title="weight-tied primal-dual network", xlabel=f"blocks (iterations), first {SHOWN}",
           ylabel="|z_k - z*| / |z*|")  # fmt: skip
    ax.legend(fontsize=8)


def _alignment_panel(ax: Any, r: Result) -> None:
    for model, color in (("residual", _plot.RESIDUAL), ("plain", _plot.PLAIN)):
        run = r.learned[model]
        cg = np.asarray([v for v in run.cos_grad if v])  # a diverged run has no cosines
        cs = np.asarray([v for v in run.cos_sol if v])
        if cg.size == 0:
            continue
        k = np.arange(1, cg.shape[1] + 1)
        ax.errorbar(k, cg.mean(0), yerr=cg.std(0), fmt="o-", color=color, capsize=3,
                    label=f"{model}: vs gradient step")  # fmt: skip
        ax.plot(k, cs.mean(0), "x:", color=color, label=f"{model}: vs y* - y_k")
    ax.axhline(0, color=_plot.REFERENCE, lw=1)
    ax.set(title="learned updates: cosine", xlabel="step k", ylabel="mean cosine",
           ylim=(-1.05, 1.05))  # fmt: skip
    ax.legend(fontsize=8)
