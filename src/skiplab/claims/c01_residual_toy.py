"""C01 residual-toy: the two-weight toy model of the article.

Learning ``y = alpha * x`` with ``f(x) = w2 * w1 * x`` (plain) or ``f(x) = x + w2 * w1 * x``
(residual) under squared loss. The loss is a function of the product ``p = w1 * w2`` only:
``L = m2 * (p - c)^2`` with ``m2 = E[x^2]`` and ``c = alpha`` (plain) or ``c = alpha - 1``
(residual).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim

ALPHAS = (1.0, 2.0, 0.5)
LOSS_TARGET = 1e-6


def toy_loss(w: torch.Tensor, x: torch.Tensor, alpha: float, residual: bool) -> torch.Tensor:
    """Mean squared error of the toy model with weights ``w = (w1, w2)`` on inputs ``x``."""
    f = w[1] * w[0] * x
    if residual:
        f = x + f  # the skip: the block starts as the identity map
    return ((f - alpha * x) ** 2).mean()


def hessian_at_origin(x: torch.Tensor, alpha: float, residual: bool) -> np.ndarray:
    """Eigenvalues (ascending) of the exact Hessian of the loss at ``w = 0`` (autograd)."""
    w0 = torch.zeros(2, dtype=torch.float64)
    h = torch.autograd.functional.hessian(lambda w: toy_loss(w, x, alpha, residual), w0)
    return np.linalg.eigvalsh(h.numpy())


def descend(
    x: torch.Tensor, alpha: float, residual: bool, w_init: torch.Tensor, lr: float, max_steps: int
) -> tuple[list[list[float]], list[float], int | None]:
    """Plain gradient descent; returns the trajectory, the losses and the first step with
    loss below ``LOSS_TARGET`` (None if never reached)."""
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


@register_claim
class ResidualToy(Claim):
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

    def run(self, ctx: Context) -> Evidence:
        n = ctx.pick(tiny=256, quick=2048, full=65536)
        max_steps = ctx.pick(tiny=2000, quick=5000, full=20000)
        lr = 0.1
        ev = Evidence(seeds=ctx.seeds)
        rows: list[list[Any]] = []
        per_seed: dict[str, list[float]] = {}
        for seed in ctx.seeds:
            cfg = {"n": n, "lr": lr, "max_steps": max_steps, "alphas": list(ALPHAS)}
            with ctx.run(f"C01 toy seed {seed}", cfg, seed=seed) as run_id:
                gen = torch.Generator().manual_seed(seed)
                x = torch.randn(n, generator=gen, dtype=torch.float64)
                w_init = 0.01 * torch.randn(2, generator=gen, dtype=torch.float64)
                results: dict[str, Any] = {}
                for alpha in ALPHAS:
                    for residual in (False, True):
                        model = "residual" if residual else "plain"
                        eig = hessian_at_origin(x, alpha, residual)
                        origin = torch.zeros(2, dtype=torch.float64, requires_grad=True)
                        loss0 = toy_loss(origin, x, alpha, residual)
                        (grad0,) = torch.autograd.grad(loss0, origin)
                        path, losses, reached = descend(x, alpha, residual, w_init, lr, max_steps)
                        key = f"{model}_a{alpha:g}"
                        results[key] = {
                            "eig": eig.tolist(), "loss0": loss0.item(),
                            "grad0": grad0.norm().item(), "steps": reached,
                        }  # fmt: skip
                        for name, value in (
                            ("eig_min", eig[0]), ("eig_max", eig[1]), ("loss0", loss0.item()),
                            ("grad0", grad0.norm().item()),
                            ("steps", float(reached) if reached is not None else float("nan")),
                        ):  # fmt: skip
                            per_seed.setdefault(f"{key}_{name}", []).append(float(value))
                        rows.append([
                            seed, model, alpha, eig[0], eig[1], loss0.item(),
                            "saddle" if eig[0] < -1e-9 < 1e-9 < eig[1] else "minimum" if eig[0] > -1e-9 and loss0.item() < 1e-12 else "other",
                            reached if reached is not None else f">{max_steps}",
                        ])  # fmt: skip
                        if alpha == 1.0 and seed == ctx.seeds[0]:
                            ev.series[f"traj_{model}"] = [
                                *path[:: max(1, len(path) // 400)],
                                path[-1],
                            ]
                            ev.series[f"loss_{model}"] = losses[:: max(1, len(losses) // 400)]
                ctx.store.finish_run(run_id, "completed", results=results)
        ev.series["per_seed"] = per_seed
        ev.series["w_init"] = w_init.tolist()
        for key, values in per_seed.items():
            arr = np.asarray(values, dtype=float)
            ev.numbers[key] = float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")
        ev.tables.append(
            Table(
                "Hessian at the origin and gradient descent from a small init (lr 0.1)",
                [
                    "seed",
                    "model",
                    "alpha",
                    "eig min",
                    "eig max",
                    "loss at 0",
                    "origin is",
                    "steps to 1e-6",
                ],
                rows,
                "eigenvalues of the exact Hessian; theory: +-2 E[x^2] c with c = alpha (plain) or alpha - 1 (residual)",
            )
        )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        s = evidence.series["per_seed"]
        plain_saddle = all(
            lo < -1e-9 and hi > 1e-9 and l0 > 1e-12
            for lo, hi, l0 in zip(s["plain_a1_eig_min"], s["plain_a1_eig_max"], s["plain_a1_loss0"])
        )
        res_min = all(
            l0 < 1e-12 and g0 < 1e-12 and lo > -1e-9
            for l0, g0, lo in zip(
                s["residual_a1_loss0"], s["residual_a1_grad0"], s["residual_a1_eig_min"]
            )
        )
        steps_p, steps_r = s["plain_a1_steps"], s["residual_a1_steps"]
        faster = all(
            np.isfinite(r) and (not np.isfinite(p) or r < p) for p, r in zip(steps_p, steps_r)
        )
        detail = (
            f"alpha=1: plain Hessian eigenvalues {np.mean(s['plain_a1_eig_min']):.3f} / "
            f"{np.mean(s['plain_a1_eig_max']):.3f} (loss at 0 {np.mean(s['plain_a1_loss0']):.3f}); "
            f"residual eigenvalues {np.mean(s['residual_a1_eig_min']):.2g} / "
            f"{np.mean(s['residual_a1_eig_max']):.2g}, loss at 0 {np.mean(s['residual_a1_loss0']):.2g}; "
            f"steps to 1e-6 plain {_steps(steps_p)} vs residual {_steps(steps_r)} "
            f"over {len(steps_p)} seed(s)."
        )
        checks = (
            ("plain saddle", plain_saddle),
            ("residual minimum", res_min),
            ("faster descent", faster),
        )
        return Verdict.from_checks(checks, detail)

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        fig, axes = _plot.subplots(1, 3, width=4.3, height=3.8)
        grid = np.linspace(-1.6, 1.6, 161)
        w1, w2 = np.meshgrid(grid, grid)
        for ax, residual in zip(axes[0][:2], (False, True)):
            c = 0.0 if residual else 1.0  # alpha = 1; E[x^2] taken as 1 for the surface
            loss = (w1 * w2 - c) ** 2
            cs = ax.contourf(w1, w2, np.log10(loss + 1e-6), levels=24, cmap="viridis")
            fig.colorbar(cs, ax=ax, label="log10 loss")
            model = "residual" if residual else "plain"
            traj = np.asarray(evidence.series[f"traj_{model}"])
            ax.plot(traj[:, 0], traj[:, 1], color="white", lw=2)
            ax.plot(traj[0, 0], traj[0, 1], "o", color="white", ms=5, label="start")
            ax.plot(traj[-1, 0], traj[-1, 1], "*", color="red", ms=10, label="end")
            ax.plot(0, 0, "x", color="black", ms=8, mew=2)
            ax.set(
                title=f"{model}: {'x + ' if residual else ''}w2·w1·x, alpha=1",
                xlabel="w1", ylabel="w2", xlim=(-1.6, 1.6), ylim=(-1.6, 1.6),
            )  # fmt: skip
            ax.legend(loc="lower left")
        ax = axes[0][2]
        for model, color in (("plain", _plot.PLAIN), ("residual", _plot.RESIDUAL)):
            losses = np.maximum(np.asarray(evidence.series[f"loss_{model}"]), 1e-18)
            # a run that starts below the target is one point: draw markers so it shows
            ax.semilogy(
                losses,
                color=color,
                label=f"{model} ({len(losses) - 1} steps)",
                lw=2,
                marker="o",
                ms=3,
                markevery=max(1, len(losses) // 20),
            )
        ax.axhline(LOSS_TARGET, color=_plot.REFERENCE, ls="--", label="1e-6 target")
        ax.set(title="gradient descent, same init", xlabel="step (subsampled)", ylabel="loss")
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
