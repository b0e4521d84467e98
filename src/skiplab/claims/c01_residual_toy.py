"""C01 residual-toy: the two-weight toy model of the article.

Learning ``y = alpha * x`` with ``f(x) = w2 * w1 * x`` (plain) or ``f(x) = x + w2 * w1 * x``
(residual) under squared loss. The loss is a function of the product ``p = w1 * w2`` only:
``L = m2 * (p - c)^2`` with ``m2 = E[x^2]`` and ``c = alpha`` (plain) or ``c = alpha - 1``
(residual).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiplab import _plot
from skiplab.claims._base import Check, Claim, Comparison, Figure, Summary, Table, register_claim
from skiplab.claims._runner import Run, Runs
from skiplab.claims._stats import fmt_values

ALPHAS = (1.0, 2.0, 0.5)
MODELS = ("plain", "residual")
LOSS_TARGET = 1e-6
STATS = ("eig_min", "eig_max", "loss0", "grad0", "steps")  # what measure returns, per run
TRACE_POINTS = 400  # the figure's trajectory keeps about this many steps of a long descent


@dataclass(frozen=True)
class Settings:
    n: int = 2048  # Gaussian inputs per seed: E[x^2] within a few % of 1
    max_steps: int = 5000  # far beyond the 25-125 steps the plain model needs (measured)
    lr: float = 0.1  # stable: the minima's curvature 4 E[x^2] |c| <= 8 stays below 2 / lr
    init_scale: float = 0.01  # |w| ~ 1e-2: close to the origin, where the two models differ


SCALES = {
    "tiny": Settings(n=256, max_steps=2000),
    "quick": Settings(),
    "full": Settings(n=65536, max_steps=20000),
}


@dataclass(frozen=True)
class Condition:
    model: str  # plain (w2 w1 x) or residual (x + w2 w1 x)
    alpha: float  # the target slope: y = alpha x


def toy_loss(w: torch.Tensor, x: torch.Tensor, alpha: float, residual: bool) -> torch.Tensor:
    """Mean squared error of the toy model with weights ``w = (w1, w2)`` on inputs ``x``."""
    f = w[1] * w[0] * x
    if residual:
        f = x + f  # the skip: the block starts as the identity map
    return ((f - alpha * x) ** 2).mean()


def hessian_at_origin(x: torch.Tensor, alpha: float, residual: bool) -> np.ndarray:
    """Eigenvalues (ascending) of the exact Hessian of the loss at ``w = 0`` (autograd)."""
    w0 = torch.zeros(2, dtype=torch.float64, device=x.device)
    h = torch.autograd.functional.hessian(lambda w: toy_loss(w, x, alpha, residual), w0)
    return np.linalg.eigvalsh(h.cpu().numpy())


def descend(
    x: torch.Tensor, alpha: float, residual: bool, w_init: torch.Tensor, lr: float, max_steps: int
) -> tuple[list[list[float]], list[float], int | None]:
    """Plain gradient descent; returns the trajectory, the losses and the first step with
    loss below ``LOSS_TARGET`` (None if never reached). ``path[i]`` are the weights at which
    ``losses[i]`` was measured (the path has one more point when the target is never reached)."""
    w = w_init.clone().requires_grad_(True)
    path, losses, reached = [w.detach().tolist()], [], None
    for step in range(max_steps + 1):
        loss = toy_loss(w, x, alpha, residual)
        losses.append(loss.item())
        if reached is None and loss.item() < LOSS_TARGET:
            reached = step
            break
        (g,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= lr * g
        path.append(w.detach().tolist())
    return path, losses, reached


def measure(run: Run, s: Settings, c: Condition, seed: int) -> dict[str, Any]:
    """The origin's Hessian, loss and gradient, then gradient descent from a small init.

    Every condition of one seed draws the same inputs and initialisation.
    """
    gen = run.generator()
    x = run.put(torch.randn(s.n, generator=gen, dtype=torch.float64))
    w_init = run.put(s.init_scale * torch.randn(2, generator=gen, dtype=torch.float64))
    residual = c.model == "residual"
    eig = hessian_at_origin(x, c.alpha, residual)
    origin = torch.zeros(2, dtype=torch.float64, device=run.device, requires_grad=True)
    loss0 = toy_loss(origin, x, c.alpha, residual)
    (grad0,) = torch.autograd.grad(loss0, origin)
    path, losses, reached = descend(x, c.alpha, residual, w_init, s.lr, s.max_steps)
    for step, (loss, (w1, w2)) in enumerate(zip(losses, path)):
        run.log(step, loss=loss, w1=w1, w2=w2)
    return {
        "eig_min": float(eig[0]), "eig_max": float(eig[1]), "loss0": loss0.item(),
        "grad0": grad0.norm().item(), "steps": math.nan if reached is None else float(reached),
    }  # fmt: skip


@dataclass
class Toy:  # one (model, alpha); every list has one entry per seed
    model: str
    alpha: float
    eig_min: list[float]
    eig_max: list[float]
    loss0: list[float]
    grad0: list[float]
    steps: list[float]  # steps to LOSS_TARGET; NaN: not within max_steps

    def stats(self) -> dict[str, list[float]]:
        return dict(zip(STATS, (self.eig_min, self.eig_max, self.loss0, self.grad0, self.steps)))


@dataclass
class Descent:  # the first seed at alpha = 1, about TRACE_POINTS steps and the last
    steps: list[int]
    loss: list[float]
    w1: list[float]
    w2: list[float]


@dataclass
class Result(Summary):
    toys: list[Toy]  # (alpha, model) in ALPHAS x MODELS order
    descents: dict[str, Descent]  # plain, residual
    seeds: list[int]
    max_steps: int
    lr: float

    def toy(self, model: str, alpha: float) -> Toy:
        return next(t for t in self.toys if t.model == model and t.alpha == alpha)


@register_claim
class ResidualToy(Claim[Settings, Condition, Result]):
    id = "C01"
    slug = "residual-toy"
    title = "Two-weight toy: the skip turns a saddle into a global minimum"
    statement = (
        "Learning y = alpha*x with the plain model w2*w1*x has a saddle point at the origin; "
        "with the residual model x + w2*w1*x the origin is a global minimum when alpha = 1."
    )
    method = (
        "Exact autograd Hessian of the empirical loss at w = 0 for plain and residual models, "
        "alpha in {1, 2, 0.5}, on Gaussian inputs (one sample per seed); gradient descent from "
        "the same small random initialisation (|w| ~ 1e-2, lr 0.1), counting steps until the "
        "loss falls below 1e-6; loss-surface contours with the trajectories."
    )
    criterion = (
        "Holds when, for alpha = 1 and every seed: the plain Hessian at the origin has one "
        "negative and one positive eigenvalue (a saddle) with loss > 0 there; the residual loss "
        "and gradient at the origin are 0 (< 1e-12) and its Hessian is positive semi-definite "
        "(so, since the loss is >= 0, a global minimum); and gradient descent from the same "
        "initialisation reaches loss 1e-6 in fewer steps with the skip than without it."
    )
    math = (
        "With p = w1*w2 and m2 = E[x^2]:  L(w) = m2 * (p - c)^2,  c = alpha (plain), alpha - 1 "
        "(residual).\n"
        "grad L = 2 m2 (p - c) (w2, w1)  ->  0 at w = 0.\n"
        "Hessian at w = 0:  [[0, -2 m2 c], [-2 m2 c, 0]],  eigenvalues  +-2 m2 c.\n"
        "Plain, alpha = 1: c = 1, eigenvalues +-2 m2, loss m2 > 0: a saddle.\n"
        "Residual, alpha = 1: c = 0, Hessian 0, loss 0 = min L: a global minimum.\n"
        "Residual, alpha != 1: c != 0, a saddle again; the skip helps only near the identity."
    )
    references = (
        "He et al. 2015, Deep Residual Learning",
        "Hardt & Ma 2017, Identity Matters in Deep Learning",
    )
    default_seeds = {"tiny": 1, "quick": 3, "full": 5}
    scales = SCALES
    measure = staticmethod(measure)

    def conditions(self, s: Settings) -> list[Condition]:
        return [Condition(m, a) for a in ALPHAS for m in MODELS]

    def cost(self, s: Settings, c: Condition) -> float:
        return s.n / 1000  # the Hessian and every descent step are O(n)

    def summarize(self, s: Settings, runs: Runs[Condition]) -> Result:
        toys = [
            Toy(m, a, *(runs.values(k, model=m, alpha=a) for k in STATS))
            for a in ALPHAS
            for m in MODELS
        ]
        descents = {}
        for m in MODELS:
            r = runs.where(model=m, alpha=1.0).records[0]
            steps = r.steps("loss")
            stride = max(1, len(steps) // TRACE_POINTS)
            keep = sorted({*range(0, len(steps), stride), len(steps) - 1})
            loss, w1, w2 = (r.curve(k) for k in ("loss", "w1", "w2"))
            descents[m] = Descent([steps[i] for i in keep], [loss[i] for i in keep],
                                  [w1[i] for i in keep], [w2[i] for i in keep])  # fmt: skip
        return Result(toys, descents, runs.seeds, s.max_steps, s.lr)

    def checks(self, r: Result) -> list[Check]:
        p, q = r.toy("plain", 1.0), r.toy("residual", 1.0)
        plain_saddle = all(
            lo < -1e-9 and hi > 1e-9 and l0 > 1e-12
            for lo, hi, l0 in zip(p.eig_min, p.eig_max, p.loss0)
        )
        res_min = all(
            l0 < 1e-12 and g0 < 1e-12 and lo > -1e-9
            for l0, g0, lo in zip(q.loss0, q.grad0, q.eig_min)
        )
        faster = all(
            np.isfinite(b) and (not np.isfinite(a) or b < a) for a, b in zip(p.steps, q.steps)
        )
        return [
            Check("plain saddle", plain_saddle,
                  f"eigenvalues {fmt_values(p.eig_min)} / {fmt_values(p.eig_max)}, loss at 0 {fmt_values(p.loss0)}"),
            Check("residual minimum", res_min, f"eigenvalues {fmt_values(q.eig_min)} / "
                  f"{fmt_values(q.eig_max)}, loss at 0 {fmt_values(q.loss0)}, gradient {fmt_values(q.grad0)}"),
            Check("faster descent", faster,
                  f"steps to 1e-6 plain {_steps(p.steps)} vs residual {_steps(q.steps)}"),
        ]  # fmt: skip

    def detail(self, r: Result) -> str:
        p, q = r.toy("plain", 1.0), r.toy("residual", 1.0)
        return (
            f"alpha=1: plain Hessian eigenvalues {np.mean(p.eig_min):.3f} / "
            f"{np.mean(p.eig_max):.3f} (loss at 0 {np.mean(p.loss0):.3f}); "
            f"residual eigenvalues {np.mean(q.eig_min):.2g} / {np.mean(q.eig_max):.2g}, loss at 0 "
            f"{np.mean(q.loss0):.2g}; steps to 1e-6 plain {_steps(p.steps)} vs residual "
            f"{_steps(q.steps)} over {len(p.steps)} seed(s)."
        )

    def numbers(self, r: Result) -> dict[str, float]:
        out = {}
        for t in r.toys:
            for key, values in t.stats().items():
                arr = np.asarray(values, dtype=float)
                mean = float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan
                out[f"{t.model}_a{t.alpha:g}_{key}"] = mean
        return out

    def literature(self, r: Result) -> list[Comparison]:
        p, q = r.toy("plain", 1.0), r.toy("residual", 1.0)
        res_min = all(l0 < 1e-12 and lo > -1e-9 for l0, lo in zip(q.loss0, q.eig_min))
        steps = {(t.model, t.alpha): float(np.nanmean(t.steps)) if np.isfinite(t.steps).any()
                 else math.inf for t in r.toys}  # fmt: skip
        near = [a for a in ALPHAS if abs(a - 1) < abs(a)]  # closer to the identity than to 0
        easier = all(steps["residual", a] < steps["plain", a] for a in near)
        return [
            Comparison(
                "Hardt & Ma 2017, abstract",
                "arbitrarily deep linear residual networks have no spurious local optima",
                f"alpha=1: the residual origin has loss {np.mean(q.loss0):.2g} and Hessian "
                f"eigenvalues {np.mean(q.eig_min):.2g} / {np.mean(q.eig_max):.2g}, a global "
                f"minimum; the plain origin is a saddle ({np.mean(p.eig_min):.3g} / "
                f"{np.mean(p.eig_max):.3g}); a two-weight scalar branch, not their I + A_i layers",
                res_min,
            ),
            Comparison(
                "He et al. 2015, sec. 3.1",
                "'if the optimal function is closer to an identity mapping than to a zero "
                "mapping, it should be easier for the solver to find the perturbations with "
                "reference to an identity mapping'",
                "steps to loss 1e-6 from the same init, plain vs residual: "
                + "; ".join(
                    f"alpha={a:g}: {_steps([steps['plain', a]])} vs "
                    f"{_steps([steps['residual', a]])}"
                    for a in near
                ),
                easier,
            ),
        ]

    def tables(self, r: Result) -> list[Table]:
        rows: list[list[Any]] = []
        for i, seed in enumerate(r.seeds):
            for t in r.toys:
                lo, hi, l0, steps = t.eig_min[i], t.eig_max[i], t.loss0[i], t.steps[i]
                kind = "saddle" if lo < -1e-9 < 1e-9 < hi else "other"
                kind = "minimum" if lo > -1e-9 and l0 < 1e-12 else kind
                reached = int(steps) if math.isfinite(steps) else f">{r.max_steps}"
                rows.append([seed, t.model, t.alpha, lo, hi, l0, kind, reached])
        columns = ["seed", "model", "alpha", "eig min", "eig max", "loss at 0", "origin is",
                   "steps to 1e-6"]  # fmt: skip
        note = ("eigenvalues of the exact Hessian; theory: +-2 E[x^2] c with c = alpha (plain) "
                "or alpha - 1 (residual)")  # fmt: skip
        title = f"Hessian at the origin and gradient descent from a small init (lr {r.lr:g})"
        return [Table(title, columns, rows, note)]

    def figures(self, r: Result, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.3, height=3.8)
        grid = np.linspace(-1.6, 1.6, 161)
        w1, w2 = np.meshgrid(grid, grid)
        for ax, model in zip(axes[0][:2], MODELS):
            residual = model == "residual"
            c = 0.0 if residual else 1.0  # alpha = 1; E[x^2] taken as 1 for the surface
            cs = ax.contourf(w1, w2, np.log10((w1 * w2 - c) ** 2 + 1e-6), levels=24, cmap="viridis")
            fig.colorbar(cs, ax=ax, label="log10 loss")
            d = r.descents[model]
            ax.plot(d.w1, d.w2, color="white", lw=2)
            ax.plot(d.w1[0], d.w2[0], "o", color="white", ms=5, label="start")
            ax.plot(d.w1[-1], d.w2[-1], "*", color="red", ms=10, label="end")
            ax.plot(0, 0, "x", color="black", ms=8, mew=2)
            ax.set(
                title=f"{model}: {'x + ' if residual else ''}w2·w1·x, alpha=1",
                xlabel="w1", ylabel="w2", xlim=(-1.6, 1.6), ylim=(-1.6, 1.6),
            )  # fmt: skip
            ax.legend(loc="lower left")
        ax = axes[0][2]
        for model, color in (("plain", _plot.PLAIN), ("residual", _plot.RESIDUAL)):
            d = r.descents[model]
            # a run that starts below the target is one point: draw markers so it shows
            ax.semilogy(d.steps, np.maximum(d.loss, 1e-18), color=color, lw=2, marker="o", ms=3,
                        label=f"{model} ({d.steps[-1]} steps)",
                        markevery=max(1, len(d.steps) // 20))  # fmt: skip
        ax.axhline(LOSS_TARGET, color=_plot.REFERENCE, ls="--", label="1e-6 target")
        ax.set(title="gradient descent, same init", xlabel="step", ylabel="loss")
        ax.legend()
        _plot.save(fig, outdir / "surfaces.png")
        return [
            Figure(
                "surfaces.png",
                "Loss surfaces for alpha = 1 (black x: origin). Plain: a saddle at the origin, "
                "minima on the hyperbola w1*w2 = 1. Residual: the origin lies on the zero-loss "
                "set w1*w2 = 0. Right: loss along gradient descent from the same small init.",
            )
        ]


def _steps(values: list[float]) -> str:
    return ", ".join(str(int(v)) if np.isfinite(v) else "never" for v in values)
