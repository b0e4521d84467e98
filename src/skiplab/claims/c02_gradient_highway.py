"""C02 gradient-highway: the identity path keeps the backward signal alive through depth.

For a residual block ``y = x + F(x)`` the chain rule gives ``dL/dx = dL/dy (I + dF/dx)``: the
gradient reaching ``x`` is the incoming one plus a correction. If ``||dF/dx|| <= rho < 1`` the
correction can cancel at most a fraction ``rho`` of it, so through ``L`` blocks at least
``(1 - rho)^L`` of the gradient norm survives; a plain stack ``y = F(x)`` passes at most
``rho^L``. Part one checks both bounds on stacks whose branch Jacobian norm is held at ``rho``
exactly; part two measures the per-block gradient norms of ResNet-56 and plain-56 at
initialisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplab import _plot
from skiplab.claims._base import Claim, Context, Evidence, Figure, Table, Verdict, register_claim
from skiplab.data import load_mnist
from skiplab.models import create_model

RHO = 0.1  # the article's example: (1 - 0.1)^24 = 0.08
DEPTHS = (8, 24, 56, 110)
# Branch phi(W x) of the bounded stacks: name -> (phi, how W is drawn). "worst" is the extremal
# case W = -rho I (phi = identity): every residual block then scales by exactly 1 - rho and
# every plain block by rho, so both bounds are met with equality.
BRANCHES = {"linear": ("linear", "gaussian"), "tanh": ("tanh", "gaussian"),
            "worst": ("linear", "negative_identity")}  # fmt: skip
BRANCH_LABELS = {"linear": "W x", "tanh": "tanh(W x)", "worst": "W = -ρI (extremal)"}
ACTIVATIONS = ("linear", "tanh")  # both 1-Lipschitz with derivative in [0, 1]
WEIGHTS = ("gaussian", "negative_identity")
REAL_MODELS = ("resnet56", "plain56")
# Real networks: the residual gradient counts as kept when its first/last block ratio lies
# within a factor MODEST of 1, and the plain one as far off when it is DECADES_FURTHER decades
# further from 1 than the residual one.
MODEST = 10.0
DECADES_FURTHER = 1.0
# Slack for float64 rounding when comparing a measured ratio with a bound it can touch.
ROUND_SLACK = 1e-9


def spectral_weights(
    depth: int, dim: int, rho: float, generator: torch.Generator, kind: str = "gaussian"
) -> list[torch.Tensor]:
    """``depth`` ``dim x dim`` matrices of spectral norm exactly ``rho``.

    Args:
        kind: ``"gaussian"`` (a Gaussian matrix rescaled by its largest singular value) or
            ``"negative_identity"`` (``-rho I``, the extremal case of both bounds).

    Returns:
        float64 matrices ``W_l`` with ``||W_l||_2 = rho``.
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


def block_gradient_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[list[float], list[float]]:
    """Per-block gradient norms of the cross-entropy loss of one batch, in train mode.

    ``model`` must have ``stem`` and ``blocks`` (the zoo's ResNet family).

    Returns:
        ``(activation, parameter)``: ``activation[0]`` is ``||dL/d stem output||`` and
        ``activation[i]`` ``||dL/d output of block i||`` (Frobenius norm over the batch);
        ``parameter[i - 1]`` is the norm of the gradient of all parameters of block ``i``.
    """
    outputs: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        outputs.append(out)

    blocks = list(model.get_submodule("blocks").children())
    modules = [model.get_submodule("stem"), *blocks]
    handles = [m.register_forward_hook(keep) for m in modules]
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    activation = [o.grad.norm().item() for o in outputs if o.grad is not None]
    parameter = [
        math.sqrt(sum(p.grad.pow(2).sum().item() for p in b.parameters() if p.grad is not None))
        for b in blocks
    ]
    return activation, parameter


@register_claim
class GradientHighway(Claim):
    id = "C02"
    slug = "gradient-highway"
    title = "The skip is a gradient highway: (1-rho)^L survives, a plain stack can fall to rho^L"
    statement = (
        "dL/dx = dL/dy (I + dF/dx); through L blocks the gradient keeps at least (1-rho)^L "
        "(0.08 for L = 24, rho = 0.1) while a plain stack can fall like rho^L."
    )
    method = (
        "(1) Stacks of L in {8, 24, 56, 110} blocks with branch phi(W x), W Gaussian rescaled to "
        "spectral norm exactly rho = 0.1, phi the identity or tanh; residual x + phi(W x) vs "
        "plain phi(W x); plus the extremal W = -rho I that meets both bounds with equality; a random output gradient g is backpropagated (float64) and "
        "||dL/dx_0|| / ||dL/dx_L|| is measured for several random inputs and directions per "
        "seed, a fresh stack per seed. (2) ResNet-56 and plain-56 (2-D, MNIST batch, train-mode "
        "BatchNorm) at initialisation: the norm of the loss gradient with respect to each "
        "block's parameters and each block's output, against depth, one init per seed."
    )
    criterion = (
        "Holds when (1) for every L, branch, seed and direction the residual ratio is "
        ">= (1-rho)^L and the plain ratio <= rho^L (up to 1e-9 relative float64 rounding), and "
        "(2) for every seed the real ResNet-56 keeps its first block's parameter-gradient norm "
        "within a factor 10 of its last block's (1/10 <= r_res <= 10), while plain-56's ratio "
        "r_plain is at least one decade further from 1: |log10 r_plain| >= |log10 r_res| + 1. "
        "Part (2) counts a departure in either direction: with BatchNorm a plain network's "
        "gradient at initialisation grows toward the input rather than decaying (He et al. "
        "2015 sec. 4.1 found BN keeps it from vanishing; Yang et al. 2019 show it explodes), "
        "and the measured direction is reported. Fails otherwise."
    )
    math = (
        "Residual block y = x + phi(W x), ||W||_2 = rho, 0 <= phi' <= 1:\n"
        "  J = dy/dx = I + D W,  D = diag(phi'(W x)),  ||D W||_2 <= ||D||_2 ||W||_2 <= rho.\n"
        "Backward: dL/dx = J^T dL/dy, and for any v\n"
        "  ||J^T v|| >= ||v|| - ||W^T D v|| >= (1 - rho) ||v||   (reverse triangle inequality)\n"
        "  ||J^T v|| <= (1 + rho) ||v||.\n"
        "Chaining L blocks: (1 - rho)^L <= ||dL/dx_0|| / ||dL/dx_L|| <= (1 + rho)^L.\n"
        "Plain block y = phi(W x): J^T v = W^T D v, so ||J^T v|| <= rho ||v|| and\n"
        "  ||dL/dx_0|| / ||dL/dx_L|| <= rho^L.\n"
        "rho = 0.1:  L = 24: (0.9)^24 = 0.080 vs 0.1^24 = 1e-24;  L = 110: 9.5e-6 vs 1e-110.\n"
        "Both bounds are provable for this class, so part (1) checks the implementation and "
        "shows how far inside the bounds typical gradients lie; part (2) asks whether real "
        "networks, whose branches are not norm-bounded, behave in the same spirit."
    )
    references = (
        "He et al. 2015, Deep Residual Learning",
        "He et al. 2016, Identity Mappings in Deep Residual Networks",
        "Balduzzi et al. 2017, The Shattered Gradients Problem",
        "Yang et al. 2019, A Mean Field Theory of Batch Normalization",
    )
    default_seeds = {"tiny": 2, "quick": 3, "full": 5}

    def run(self, ctx: Context) -> Evidence:
        dim = ctx.pick(tiny=16, quick=64, full=256)
        n_dirs = ctx.pick(tiny=4, quick=16, full=64)
        batch = ctx.pick(tiny=16, quick=64, full=256)
        size = ctx.pick(tiny=14, quick=28, full=28)
        ev = Evidence(seeds=ctx.seeds)

        # (1) norm-bounded stacks: per activation, depth, kind -> every measured ratio
        ratios: dict[str, dict[str, dict[str, list[float]]]] = {
            b: {str(d): {"residual": [], "plain": []} for d in DEPTHS} for b in BRANCHES
        }
        rows: list[list[Any]] = []
        for seed in ctx.seeds:
            cfg = {"rho": RHO, "dim": dim, "directions": n_dirs, "depths": list(DEPTHS)}
            with ctx.run(f"C02 bounded stacks seed {seed}", cfg, seed=seed) as run_id:
                gen = torch.Generator().manual_seed(seed)
                results: dict[str, Any] = {}
                for branch, (phi, w_kind) in BRANCHES.items():
                    for depth in DEPTHS:
                        weights = spectral_weights(depth, dim, RHO, gen, w_kind)
                        x0 = torch.randn(n_dirs, dim, generator=gen, dtype=torch.float64)
                        g = torch.randn(n_dirs, dim, generator=gen, dtype=torch.float64)
                        for kind in ("residual", "plain"):
                            r = gradient_ratio(weights, x0, g, kind == "residual", phi).tolist()
                            ratios[branch][str(depth)][kind].extend(r)
                            results[f"{branch}_L{depth}_{kind}_min"] = min(r)
                            results[f"{branch}_L{depth}_{kind}_max"] = max(r)
                ctx.store.finish_run(run_id, "completed", results=results)
        for branch in BRANCHES:
            for depth in DEPTHS:
                res, pl = (
                    ratios[branch][str(depth)]["residual"],
                    ratios[branch][str(depth)]["plain"],
                )
                lo_b, hi_b = (1 - RHO) ** depth, RHO**depth
                rows.append([
                    branch, depth, f"{lo_b:.3g}", f"{min(res):.3g}", f"{max(res):.3g}",
                    f"{(1 + RHO) ** depth:.3g}", f"{max(pl):.3g}", f"{hi_b:.3g}",
                ])  # fmt: skip
                ev.numbers[f"{branch}_L{depth}_residual_min"] = min(res)
                ev.numbers[f"{branch}_L{depth}_plain_max"] = max(pl)
        ev.series["ratios"] = ratios
        ev.series["rho"] = RHO
        ev.tables.append(
            Table(
                f"Gradient-norm ratio ||dL/dx_0|| / ||dL/dx_L|| of norm-bounded stacks (rho = "
                f"{RHO}, width {dim}, {n_dirs} directions x {len(ctx.seeds)} seeds)",
                [
                    "branch",
                    "L",
                    "(1-rho)^L",
                    "residual min",
                    "residual max",
                    "(1+rho)^L",
                    "plain max",
                    "rho^L",
                ],
                rows,
                "residual must stay >= (1-rho)^L (and <= (1+rho)^L); plain must stay <= rho^L",
            )
        )

        # (2) real networks at initialisation
        mnist = load_mnist(size=None if size == 28 else size)
        x, y = mnist.train.tensors[0][:batch], mnist.train.tensors[1][:batch]
        curves: dict[str, dict[str, list[list[float]]]] = {
            m: {"activation": [], "parameter": []} for m in REAL_MODELS
        }
        real_rows: list[list[Any]] = []
        for seed in ctx.seeds:
            real_cfg = {"models": list(REAL_MODELS), "data": f"MNIST {size}x{size}", "batch": batch}
            with ctx.run(
                f"C02 ResNet-56 vs plain-56 at init seed {seed}", real_cfg, seed=seed
            ) as rid:
                results = {}
                for name in REAL_MODELS:
                    torch.manual_seed(seed)
                    model = create_model(name, in_channels=1)
                    act_g, par_g = block_gradient_norms(model, x, y)
                    curves[name]["activation"].append(act_g)
                    curves[name]["parameter"].append(par_g)
                    r_par, r_act = par_g[0] / par_g[-1], act_g[0] / act_g[-1]
                    results[f"{name}_param_ratio"] = r_par
                    results[f"{name}_act_ratio"] = r_act
                    real_rows.append([seed, name, f"{r_par:.3g}", f"{r_act:.3g}"])
                ctx.store.finish_run(rid, "completed", results=results)
        ev.series["curves"] = curves
        for name in REAL_MODELS:
            par = [c[0] / c[-1] for c in curves[name]["parameter"]]
            out = [c[0] / c[-1] for c in curves[name]["activation"]]
            ev.series[f"{name}_param_ratio"] = par
            ev.series[f"{name}_act_ratio"] = out
            ev.numbers[f"{name}_param_ratio_gmean"] = float(np.exp(np.mean(np.log(par))))
            ev.numbers[f"{name}_act_ratio_gmean"] = float(np.exp(np.mean(np.log(out))))
        ev.tables.append(
            Table(
                f"Real networks at init (MNIST {size}x{size}, batch {batch}, train-mode BN): "
                "first-block / last-block gradient norm",
                ["seed", "model", "parameter-gradient ratio", "block-output-gradient ratio"],
                real_rows,
                "ratio > 1: the gradient is larger near the input than near the output. Block "
                "outputs of different stages differ in size (16x28x28 vs 64x7x7), so the "
                "parameter ratio is the one the criterion uses.",
            )
        )
        return ev

    def decide(self, evidence: Evidence) -> Verdict:
        ratios = evidence.series["ratios"]
        rho = float(evidence.series["rho"])
        broken: list[str] = []
        for act, by_depth in ratios.items():
            for depth_s, kinds in by_depth.items():
                depth = int(depth_s)
                lo_b, hi_b = (1 - rho) ** depth, rho**depth
                if min(kinds["residual"]) < lo_b * (1 - ROUND_SLACK):
                    broken.append(
                        f"{act} L={depth}: residual {min(kinds['residual']):.3g} < {lo_b:.3g}"
                    )
                if max(kinds["plain"]) > hi_b * (1 + ROUND_SLACK):
                    broken.append(f"{act} L={depth}: plain {max(kinds['plain']):.3g} > {hi_b:.3g}")
        r_res = evidence.series["resnet56_param_ratio"]
        r_pl = evidence.series["plain56_param_ratio"]
        res_kept = all(1 / MODEST <= r <= MODEST for r in r_res)
        plain_off = all(
            abs(math.log10(p)) >= abs(math.log10(r)) + DECADES_FURTHER for p, r in zip(r_pl, r_res)
        )
        direction = "grows toward the input" if min(r_pl) > 1 else "decays toward the input"
        if max(r_pl) > 1 > min(r_pl):
            direction = "changes direction between seeds"
        n = evidence.numbers
        l24 = (
            f"L=24, rho={rho:g}: random W x residual min {n['linear_L24_residual_min']:.3g} vs "
            f"bound {(1 - rho) ** 24:.3g}, plain max {n['linear_L24_plain_max']:.3g} vs "
            f"{rho**24:.3g}; extremal W=-rho*I residual {n['worst_L24_residual_min']:.3g}, "
            f"plain {n['worst_L24_plain_max']:.3g}"
        )
        detail = (
            f"Bounded stacks: {'all bounds respected' if not broken else 'bounds broken'} "
            f"over L in {sorted(int(d) for d in next(iter(ratios.values())))} ({l24}). "
            f"At init, first/last block parameter-gradient ratio: ResNet-56 "
            f"{_fmt(r_res)}, plain-56 {_fmt(r_pl)} (plain gradient {direction}; block-output "
            f"gradient ratios ResNet-56 {_fmt(evidence.series['resnet56_act_ratio'])}, plain-56 "
            f"{_fmt(evidence.series['plain56_act_ratio'])})."
        )
        if broken:
            return Verdict("fails", f"bound violated: {'; '.join(broken[:4])}. {detail}")
        if res_kept and plain_off:
            return Verdict("holds", detail)
        missing = [
            what
            for what, ok in (
                (f"ResNet-56 ratio within {MODEST:g}x", res_kept),
                (f"plain-56 at least {DECADES_FURTHER:g} decade(s) further off", plain_off),
            )
            if not ok
        ]
        return Verdict("fails", f"not observed: {', '.join(missing)}. {detail}")

    def figures(self, evidence: Evidence, outdir: Path) -> list[Figure]:
        ratios = evidence.series["ratios"]
        rho = float(evidence.series["rho"])
        fig, axes = _plot.subplots(2, len(ratios), width=4.6, height=3.8)
        for col, (act, by_depth) in enumerate(ratios.items()):
            depths = sorted(int(d) for d in by_depth)
            grid = np.linspace(min(depths), max(depths), 200)
            branch = BRANCH_LABELS.get(act, act)
            for row, kinds in ((0, ("residual", "plain")), (1, ("residual",))):
                ax = axes[row][col]
                ax.semilogy(grid, (1 + rho) ** grid, color=_plot.REFERENCE, ls=":", zorder=3,
                            label="(1+ρ)^L upper bound, residual")  # fmt: skip
                ax.semilogy(grid, (1 - rho) ** grid, color=_plot.REFERENCE, ls="--", zorder=3,
                            label="(1-ρ)^L lower bound, residual")  # fmt: skip
                if row == 0:
                    ax.semilogy(grid, rho**grid, color=_plot.REFERENCE, ls="-.", zorder=3,
                                label="ρ^L upper bound, plain")  # fmt: skip
                for kind in kinds:
                    color = _plot.RESIDUAL if kind == "residual" else _plot.PLAIN
                    vals = [np.asarray(by_depth[str(d)][kind]) for d in depths]
                    if row == 1:  # every measured ratio, slightly spread out to be seen
                        for d, v in zip(depths, vals):
                            jitter = np.linspace(-1.5, 1.5, len(v))
                            ax.scatter(d + jitter, v, s=8, color=color, alpha=0.6)
                    ax.fill_between(depths, [v.min() for v in vals], [v.max() for v in vals],
                                    color=color, alpha=0.25)  # fmt: skip
                    ax.semilogy(depths, [np.exp(np.log(v).mean()) for v in vals], marker="o",
                                color=color, label=f"{kind}: geo. mean, band min-max")  # fmt: skip
                ax.set(
                    title=f"{branch}, ||W||₂ = ρ = {rho:g}" if row == 0
                    else f"{branch}: residual stacks, zoomed",
                    xlabel="depth L (blocks)",
                    ylabel="||dL/dx₀|| / ||dL/dx_L||",
                    xticks=depths,
                )  # fmt: skip
                ax.legend(loc="lower left", fontsize=7.5)
        _plot.save(fig, outdir / "ratio_vs_depth.png")

        curves = evidence.series["curves"]
        fig, axes = _plot.subplots(1, 2, width=5.0, height=3.9)
        for ax, key, ylabel, title in (
            (axes[0][0], "parameter", "||dL/dθ|| of the block", "per block: parameter gradient"),
            (axes[0][1], "activation", "||dL/d(block output)||", "per block: output gradient"),
        ):
            for name in REAL_MODELS:
                arr = np.asarray(curves[name][key])  # (seeds, blocks)
                start = 1 if key == "parameter" else 0  # activation index 0 is the stem
                xs = np.arange(start, start + arr.shape[1])
                color = _plot.RESIDUAL if name.startswith("res") else _plot.PLAIN
                label = "ResNet-56" if name.startswith("res") else "plain-56"
                ax.fill_between(xs, arr.min(0), arr.max(0), color=color, alpha=0.25)
                ax.semilogy(xs, np.exp(np.log(arr).mean(0)), color=color, lw=2, label=label)
            per_stage = len(curves[REAL_MODELS[0]]["parameter"][0]) // 3
            for boundary in (per_stage + 0.5, 2 * per_stage + 0.5):  # 16 -> 32 -> 64 channels
                ax.axvline(boundary, color=_plot.REFERENCE, lw=0.8, ls=":")
            ax.set(
                title=f"{title} at init",
                xlabel="block (0 = stem; input side left)"
                if start == 0
                else "block (input side left)",
                ylabel=ylabel,
            )
            ax.legend()
        _plot.save(fig, outdir / "per_block_gradients.png")
        r_res = evidence.series["resnet56_param_ratio"]
        r_pl = evidence.series["plain56_param_ratio"]
        plain_way = "grows toward the input" if min(r_pl) > 1 else "does not grow uniformly"
        if max(r_pl) < 1:
            plain_way = "decays toward the input"
        return [
            Figure(
                "ratio_vs_depth.png",
                f"Input/output gradient-norm ratio of stacks whose branch Jacobian norm is held "
                f"at ρ = {rho:g}, against depth (log scale), with the bounds derived in the math "
                "section. Bottom: the residual stacks alone, every measured ratio as a dot.",
            ),
            Figure(
                "per_block_gradients.png",
                "ResNet-56 vs plain-56 at initialisation on one MNIST batch (train-mode BN): "
                "gradient norm per block against depth (line: geometric mean over seeds, band: "
                f"min-max; dotted: stage changes). Plain-56's gradient {plain_way} (first/last "
                f"block parameter-gradient ratio {_fmt(r_pl)}); ResNet-56's ratio {_fmt(r_res)}.",
            ),
        ]


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)
